"""The saved-model directory: ``model.json`` (the model's spec) + ``weights.npz``.

``model.ssl_model.save_model`` writes it; everything that reads one (loading
a model, distillation teachers, the export, the studies) goes through
:class:`SavedModel`, which finds the directory inside a run directory, checks
both files are there and that ``model.json`` holds a spec, and names the file
and the field when something is off. This module needs neither TensorFlow nor
the model classes, so the tasks can read their teachers with it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["SPEC_FILE", "WEIGHTS_FILE", "RUN_MODEL_DIR", "SavedModel",
           "is_saved_model", "saved_model_dir", "weight_differences",
           "positional_weight_differences", "OUTDATED_HINT"]

#: The spec (``ModelSpec.to_dict()``) and the weights by name.
SPEC_FILE = "model.json"
WEIGHTS_FILE = "weights.npz"
#: Subdirectory of a run directory that holds its final model.
RUN_MODEL_DIR = "model"
#: Members every ``model.json`` has (``ModelSpec.to_dict``).
_REQUIRED = {"task": str, "encoder": dict, "frontend": dict,
             "task_config": dict, "seed": int}


#: What to do about saved weights that an earlier version wrote for a task or
#: encoder whose weights have changed since.
OUTDATED_HINT = ("It was probably saved by an earlier version of the "
                 "project, before that part changed (e.g. SimSiam before its "
                 "3-layer projector); re-train it with this version, or use "
                 "the version that saved it")

#: Differences listed in full by :func:`weight_differences`.
_MAX_LISTED = 8


def weight_differences(expected: Mapping[str, Sequence[int]],
                       found: Mapping[str, Any], *,
                       allow_extra: bool = False) -> list[str]:
  """What keeps ``found`` weights from fitting ``expected`` names and shapes.

  Args:
    expected: Shape of every weight the model needs, by name.
    found: Arrays (anything with ``.shape``) by name, e.g. a ``weights.npz``.
    allow_extra: Names not in ``expected`` are fine (e.g. a head when only
      the encoder is read).

  Returns:
    One line per missing, unexpected or misshapen weight (at most
    ``_MAX_LISTED``, then a count of the rest), e.g. ``"'a/kernel': saved
    (128, 64), expected (128, 128)"``; empty when they fit.
  """
  return _shape_differences(
      expected, {name: np.shape(value) for name, value in found.items()},
      allow_extra=allow_extra)


def positional_weight_differences(expected: Mapping[str, Sequence[int]],
                                  saved: Mapping[int, Sequence[int]]
                                  ) -> list[str]:
  """:func:`weight_differences` of weights saved as a list (checkpoints,
  federated states), matched by position.

  Args:
    expected: Shape of every weight the model needs, by name, in order.
    saved: Shape of every saved weight, by its position in the list; the
      ``i``-th is compared with the ``i``-th of ``expected`` (positions past
      its end are named ``weight #i``).

  Returns:
    As :func:`weight_differences`.
  """
  names = list(expected)
  return _shape_differences(
      expected, {names[i] if i < len(names) else f"weight #{i}": shape
                 for i, shape in saved.items()})


def _shape_differences(expected: Mapping[str, Sequence[int]],
                       found: Mapping[str, Sequence[int]], *,
                       allow_extra: bool = False) -> list[str]:
  """:func:`weight_differences` on shapes."""
  lines = []
  for name, shape in expected.items():
    if name not in found:
      lines.append(f"{name!r}: missing (expected shape {tuple(shape)})")
    elif tuple(found[name]) != tuple(shape):
      lines.append(f"{name!r}: saved {tuple(found[name])}, "
                   f"expected {tuple(shape)}")
  if not allow_extra:
    lines += [f"{name!r}: unexpected (saved {tuple(found[name])})"
              for name in found if name not in expected]
  if len(lines) > _MAX_LISTED:
    lines = lines[:_MAX_LISTED] + [f"... and {len(lines) - _MAX_LISTED} "
                                   f"more"]
  return lines


def is_saved_model(directory: str) -> bool:
  """Whether ``directory`` holds a ``model.json``."""
  return os.path.exists(os.path.join(directory, SPEC_FILE))


def saved_model_dir(path: str) -> str:
  """The saved-model directory of a run directory or of a model directory.

  Args:
    path: ``<run_dir>`` (holding ``model/``) or the model directory itself.

  Returns:
    The absolute path of the directory holding ``model.json``.

  Raises:
    FileNotFoundError: Neither layout is found (the message names both).
  """
  for directory in (os.path.join(path, RUN_MODEL_DIR), path):
    if is_saved_model(directory):
      return os.path.abspath(directory)
  raise FileNotFoundError(
      f"{path}: no saved model; expected {path}/{RUN_MODEL_DIR}/{SPEC_FILE} "
      f"(a run directory) or {path}/{SPEC_FILE} (a saved-model directory)")


@dataclasses.dataclass(frozen=True)
class SavedModel:
  """A saved model's files and its spec as JSON.

  Attributes:
    directory: The saved-model directory (absolute).
    spec: The content of ``model.json`` (``ModelSpec.from_dict`` builds the
      typed spec from it).
  """

  directory: str
  spec: Mapping[str, Any]

  @classmethod
  def read(cls, path: str) -> "SavedModel":
    """Reads ``model.json`` of a run directory or a saved-model directory.

    Raises:
      FileNotFoundError: No saved model, or its ``weights.npz`` is missing
        (the message names the path).
      ValueError: ``model.json`` is not JSON or lacks a member of a spec
        (the message names the file, the field, expected and found).
    """
    directory = saved_model_dir(path)
    spec_path = os.path.join(directory, SPEC_FILE)
    weights_path = os.path.join(directory, WEIGHTS_FILE)
    if not os.path.exists(weights_path):
      raise FileNotFoundError(f"{weights_path}: not found; expected a model "
                              f"saved by model.ssl_model.save_model")
    with open(spec_path, encoding="utf-8") as f:
      try:
        spec = json.load(f)
      except json.JSONDecodeError as e:
        raise ValueError(f"{spec_path}: expected JSON, got {e.msg} at line "
                         f"{e.lineno}") from e
    if not isinstance(spec, dict):
      raise ValueError(f"{spec_path}: expected an object, got "
                       f"{type(spec).__name__}")
    for key, kind in _REQUIRED.items():
      if not isinstance(spec.get(key), kind):
        got = ("nothing (missing)" if key not in spec
               else f"{type(spec[key]).__name__} {spec[key]!r}")
        raise ValueError(f"{spec_path}: {key}: expected a "
                         f"{kind.__name__}, got {got}")
    return cls(directory=directory, spec=spec)

  @property
  def spec_path(self) -> str:
    return os.path.join(self.directory, SPEC_FILE)

  @property
  def weights_path(self) -> str:
    return os.path.join(self.directory, WEIGHTS_FILE)

  @property
  def task(self) -> str:
    """The SSL task the model was trained with."""
    return self.spec["task"]

  @property
  def encoder(self) -> Mapping[str, Any]:
    """The encoder config as saved (``EncoderConfig`` fields)."""
    return self.spec["encoder"]

  @property
  def frontend(self) -> Mapping[str, Any]:
    """The front-end config as saved (``FrontendConfig`` fields)."""
    return self.spec["frontend"]

  def weights(self) -> dict[str, np.ndarray]:
    """Every saved weight by name."""
    with np.load(self.weights_path) as data:
      return dict(data)
