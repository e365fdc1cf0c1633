"""The best global model per downstream metric of a run (FASSL's selection:
Rehman et al., "FASSL", ICASSP-W 2024, keep for every downstream task the
global model of the round that scored best on it).

Layout in a run directory::

  best/best.json          {metric: {"round": r, "value": v}, ...}
  best/<metric>/          model.json + weights.npz (model.ssl_model.save_model)
                          + selection.json ({"metric", "round", "value"})

A run that saves its state every round keeps ``best/`` consistent with that
state: models of an evaluated round are first *staged* (``best/.staging/
<round>/<metric>/``) and *committed* into place only after the round's state
is saved; on resume, :meth:`BestModels.recover` commits the staged models of
the round the state was saved at and drops any staged for later rounds (they
will be recomputed). Both :mod:`tff_sim` and :mod:`export` use this module.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Mapping

from model.saved_model import SPEC_FILE, is_saved_model
from model.ssl_model import SSLModel, save_model

__all__ = ["BEST_DIR", "INDEX_FILE", "SELECTION_FILE", "BestModels",
           "read_best_index", "best_model_dir"]

#: Subdirectory of a run directory holding the best models.
BEST_DIR = "best"
#: Index of the best models: metric -> round and value.
INDEX_FILE = "best.json"
#: Per-model record of why it was kept.
SELECTION_FILE = "selection.json"
_STAGING = ".staging"
_OLD_PREFIX = ".old-"


def _write_json(path: str, value) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(value, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def read_best_index(run_dir: str) -> dict[str, dict[str, float]]:
  """``{metric: {"round": r, "value": v}}`` of ``run_dir`` (empty if none)."""
  path = os.path.join(run_dir, BEST_DIR, INDEX_FILE)
  if not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def best_model_dir(run_dir: str, metric: str) -> str:
  """The saved-model directory of the best global model for ``metric``.

  Raises:
    FileNotFoundError: ``run_dir`` has no best models (the message says
      where they were expected).
    ValueError: ``metric`` was not evaluated in the run (the message lists
      the metrics that were).
  """
  index = read_best_index(run_dir)
  if not index:
    raise FileNotFoundError(
        f"{os.path.join(run_dir, BEST_DIR, INDEX_FILE)}: not found; expected "
        f"a federated run directory whose simulation evaluated the model")
  if metric not in index:
    raise ValueError(f"best model for {metric!r}: not in {run_dir}; "
                     f"expected one of {sorted(index)}")
  directory = os.path.join(run_dir, BEST_DIR, metric)
  if not is_saved_model(directory):
    raise FileNotFoundError(f"{directory}/{SPEC_FILE}: not found, although "
                            f"{INDEX_FILE} lists {metric!r}")
  return directory


class BestModels:
  """Stages, commits and recovers the best models of one run directory."""

  def __init__(self, run_dir: str):
    self.root = os.path.join(run_dir, BEST_DIR)

  def _staging(self, round_num: int) -> str:
    return os.path.join(self.root, _STAGING, str(round_num))

  def stage(self, round_num: int, metric: str, value: float,
            model: SSLModel) -> None:
    """Saves ``model`` as round ``round_num``'s new best for ``metric``."""
    directory = os.path.join(self._staging(round_num), metric)
    save_model(model, directory)
    _write_json(os.path.join(directory, SELECTION_FILE),
                {"metric": metric, "round": int(round_num),
                 "value": float(value)})

  def commit(self, round_num: int,
             index: Mapping[str, tuple[int, float]]) -> None:
    """Moves round ``round_num``'s staged models into place; writes the index.

    Call after the round's state (which holds ``index``) is saved.

    Args:
      round_num: The round just saved.
      index: Best ``(round, value)`` per metric, as in the saved state.
    """
    staging = self._staging(round_num)
    if os.path.isdir(staging):
      for metric in sorted(os.listdir(staging)):
        source = os.path.join(staging, metric)
        if not os.path.exists(os.path.join(source, SELECTION_FILE)):
          continue  # Killed while staging: not part of the saved state.
        target = os.path.join(self.root, metric)
        old = os.path.join(self.root, _OLD_PREFIX + metric)
        if os.path.exists(target):
          shutil.rmtree(old, ignore_errors=True)
          os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old, ignore_errors=True)
      shutil.rmtree(staging, ignore_errors=True)
      try:
        os.rmdir(os.path.dirname(staging))  # Only if nothing else is staged.
      except OSError:
        pass
    os.makedirs(self.root, exist_ok=True)
    _write_json(os.path.join(self.root, INDEX_FILE),
                {metric: {"round": int(r), "value": float(v)}
                 for metric, (r, v) in index.items()})

  def recover(self, saved_round: int,
              index: Mapping[str, tuple[int, float]]) -> None:
    """Makes ``best/`` match a run's saved state before it continues.

    Commits the models staged for ``saved_round`` (the run was killed after
    saving that round's state but before committing), drops those staged for
    other rounds and any half-replaced model, and rewrites the index.

    Args:
      saved_round: The round the state was loaded from (0: fresh run).
      index: Best ``(round, value)`` per metric in that state.

    Raises:
      RuntimeError: A metric's model is missing or from another round than
        the state says (the run directory was changed by hand).
    """
    if not os.path.isdir(self.root):
      if index:
        raise RuntimeError(f"{self.root}: missing, but the run's saved state "
                           f"has best models for {sorted(index)}")
      return
    staging_root = os.path.join(self.root, _STAGING)
    if saved_round and os.path.isdir(self._staging(saved_round)):
      self.commit(saved_round, index)
    shutil.rmtree(staging_root, ignore_errors=True)
    for name in os.listdir(self.root):
      if name.startswith(_OLD_PREFIX):
        metric = name[len(_OLD_PREFIX):]
        if not os.path.exists(os.path.join(self.root, metric)):
          os.replace(os.path.join(self.root, name),
                     os.path.join(self.root, metric))
        else:
          shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)
    for metric, (round_num, value) in index.items():
      directory = os.path.join(self.root, metric)
      path = os.path.join(directory, SELECTION_FILE)
      recorded = None
      if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
          recorded = json.load(f)["round"]
      elif is_saved_model(directory):
        # Saved before selection records existed, at that round.
        recorded = round_num
        _write_json(path, {"metric": metric, "round": int(round_num),
                           "value": float(value)})
      if recorded != round_num:
        raise RuntimeError(
            f"{os.path.join(self.root, metric)}: holds the model of round "
            f"{recorded}, but the run's saved state says round {round_num}")
    _write_json(os.path.join(self.root, INDEX_FILE),
                {metric: {"round": int(r), "value": float(v)}
                 for metric, (r, v) in index.items()})
