"""Persisted weights of the on-device model (``WeightStore.kt``).

The weights from ``get_weights`` are saved atomically as a tensor file with a
checksum; the file they replace is kept as the last good copy. At start the
newest usable file is restored with ``set_weights``; a damaged one falls back
to the previous copy, then to the weights bundled in the model.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Mapping, Sequence

import numpy as np

from export.files import write_atomically
from export.tensor_file import (Kind, TensorFile, TensorFileError,
                                encode_tensor_file, read_tensor_file)

__all__ = ["WEIGHTS_FILE", "PREVIOUS_WEIGHTS_FILE", "weight_delta",
           "Restored", "WeightStore"]

#: Files in the state directory (the app's ``filesDir``).
WEIGHTS_FILE = "weights.odtf"
PREVIOUS_WEIGHTS_FILE = "weights.prev.odtf"


def weight_delta(current: Mapping[str, np.ndarray],
                 bundled: Mapping[str, np.ndarray],
                 names: Sequence[str]) -> dict[str, np.ndarray]:
  """``current - bundled`` of each of ``names``, in that order."""
  return {name: (current[name] - bundled[name]).astype(np.float32)
          for name in names}


@dataclasses.dataclass(frozen=True)
class Restored:
  """What :meth:`WeightStore.restore` assigned.

  Attributes:
    source: ``"current"``, ``"previous"`` (the last good copy) or
      ``"bundled"`` (nothing usable was saved: the model keeps its own).
    examples: Training examples behind the restored weights.
    problems: Why each skipped file was unusable (empty when the first
      choice worked or nothing was saved).
  """

  source: str
  examples: int
  problems: tuple[str, ...]


class WeightStore:
  """The saved weights of one model: current file + last good copy.

  :meth:`save` writes the new file durably before anything is renamed and
  keeps the file it replaces as the previous copy only if that one passes
  its checks, so at every moment one of the two files holds good weights
  once anything was saved.
  """

  def __init__(self, directory: str, model_sha256: str,
               variables: Sequence[tuple[str, Sequence[int]]]):
    """Describes the store.

    Args:
      directory: Where the files live (created on the first save).
      model_sha256: Hex sha256 of the model the weights belong to.
      variables: ``(name, shape)`` of every ``get_weights`` tensor, in
        manifest order.
    """
    self.directory = directory
    self.model_sha256 = model_sha256
    self.variables = [(name, tuple(int(d) for d in shape))
                      for name, shape in variables]
    self.current_path = os.path.join(directory, WEIGHTS_FILE)
    self.previous_path = os.path.join(directory, PREVIOUS_WEIGHTS_FILE)

  def check(self, path: str) -> TensorFile:
    """Reads ``path`` and checks it holds finite weights of this model.

    Raises:
      TensorFileError: Damaged, another model's, another kind, wrong or
        missing tensors, non-finite values.
    """
    content = read_tensor_file(path)
    if content.kind != Kind.WEIGHTS:
      raise TensorFileError(path, f"holds {content.kind.name.lower()}, not "
                            f"weights")
    if content.model_sha256 != self.model_sha256:
      raise TensorFileError(path, f"belongs to model "
                            f"{content.model_sha256[:16]}..., not "
                            f"{self.model_sha256[:16]}...")
    found = [(name, a.shape) for name, a in content.tensors.items()]
    if found != self.variables:
      raise TensorFileError(path, f"tensors do not match the manifest's "
                            f"{len(self.variables)} variables (file has "
                            f"{len(found)})")
    if bad := [n for n, a in content.tensors.items()
               if not np.all(np.isfinite(a))]:
      raise TensorFileError(path, f"non-finite values in {bad[:3]}")
    return content

  def save(self, weights: Mapping[str, np.ndarray], examples: int) -> None:
    """Writes ``weights`` durably; the replaced file becomes the last good copy.

    Args:
      weights: Every variable by name (as ``get_weights`` returns them).
      examples: Training examples behind them.
    """
    os.makedirs(self.directory, exist_ok=True)
    content = encode_tensor_file(TensorFile(
        kind=Kind.WEIGHTS, model_sha256=self.model_sha256, examples=examples,
        tensors={name: np.asarray(weights[name], np.float32)
                 for name, _ in self.variables}))

    def rotate() -> None:
      try:
        self.check(self.current_path)
      except TensorFileError:
        return  # Missing or damaged: keep the previous good copy instead.
      os.replace(self.current_path, self.previous_path)

    write_atomically(self.current_path, content, before_rename=rotate)

  def restore(self, assign: Callable[[dict[str, np.ndarray]], None]
              ) -> Restored:
    """Assigns the newest usable saved weights with ``assign``.

    Tries the current file, then the last good copy; a file that fails its
    checks or that ``assign`` rejects (``ValueError`` or ``RuntimeError``)
    is skipped with its reason recorded. Nothing usable leaves the model as
    it is (``source="bundled"``).
    """
    problems = []
    for source, path in (("current", self.current_path),
                         ("previous", self.previous_path)):
      if not os.path.exists(path):
        continue
      try:
        content = self.check(path)
        assign(content.tensors)
      except (TensorFileError, ValueError, RuntimeError) as e:
        problems.append(f"{source} weights skipped: {e}")
        continue
      return Restored(source=source, examples=content.examples,
                      problems=tuple(problems))
    return Restored(source="bundled", examples=0, problems=tuple(problems))


