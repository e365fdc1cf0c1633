"""The ``config.json`` of a run directory: written once, checked on resume."""

from __future__ import annotations

import json
import os
from typing import Callable, Optional, Sequence

from model.errors import UserError

__all__ = ["RunConfigMismatch", "differing_fields", "write_or_check_config"]


class RunConfigMismatch(ValueError, UserError):
  """A run directory holds a run with a different configuration."""


def _field(config: dict, dotted: str) -> tuple[dict, str]:
  """The section of ``config`` that holds the field at ``dotted`` (an empty
  one where a section is missing) and the field's name."""
  *parents, key = dotted.split(".")
  for parent in parents:
    config = config.get(parent, {})
  return config, key


def differing_fields(found: dict, expected: dict, *,
                     ignore: Sequence[str] = ()) -> list[str]:
  """Top-level fields in which two JSON configurations differ, sorted.

  Args:
    found: A configuration as read from a file.
    expected: The configuration asked for.
    ignore: Dotted paths of fields left out of the comparison.

  Returns:
    The names of the top-level fields whose values differ (through JSON, so
    tuples equal lists) once the ``ignore`` fields are removed.
  """
  def comparable(c: dict) -> dict:
    c = json.loads(json.dumps(c))
    for dotted in ignore:
      node, key = _field(c, dotted)
      node.pop(key, None)
    return c

  found, expected = comparable(found), comparable(expected)
  return sorted(k for k in set(found) | set(expected)
                if found.get(k) != expected.get(k))


def write_or_check_config(
    run_dir: str, config: dict, *, extendable: Sequence[str] = (),
    growable: Sequence[str] = (),
    upgrade: Optional[Callable[[dict], dict]] = None) -> None:
  """Writes ``<run_dir>/config.json``, or checks it matches an existing one.

  Args:
    run_dir: The run directory (must exist).
    config: JSON-serializable configuration.
    extendable: Dotted paths of fields a rerun may change (execution
      resources that do not change results, e.g. ``"num_workers"``); the
      file is then updated.
    growable: Dotted paths of numeric fields a rerun may raise but not lower
      (``"train.steps"``, ``"rounds"``: a rerun with more trains on); the
      file is then updated. A lower value is refused: the directory's
      checkpoints are past the point asked for, so it holds another run.
    upgrade: Rewrites an existing file's configuration into the current
      form before the comparison (e.g. drops fields that older versions
      stored redundantly); it may raise ValueError for a contradiction.

  Raises:
    RunConfigMismatch: The directory holds a run whose configuration differs
      in anything else (the message names the sections), or that went
      further in a ``growable`` field than ``config`` asks.
  """
  path = os.path.join(run_dir, "config.json")
  config = json.loads(json.dumps(config))  # Tuples -> lists, as when read.
  if os.path.exists(path):
    with open(path) as f:
      existing = json.load(f)
    if upgrade is not None:
      existing = json.loads(json.dumps(upgrade(existing)))

    for dotted in growable:
      (done_in, key), (asked_in, _) = (_field(existing, dotted),
                                       _field(config, dotted))
      done, asked = done_in.get(key), asked_in.get(key)
      numbers = all(isinstance(v, (int, float)) for v in (done, asked))
      if numbers and done > asked:
        raise RunConfigMismatch(
            f"{path}: run directory holds a run with {dotted} = {done}, past "
            f"the {asked} asked for (its checkpoints are the longer run); "
            f"ask for {dotted} >= {done} or use a new run directory")

    if diff := differing_fields(existing, config,
                                ignore=(*extendable, *growable)):
      raise RunConfigMismatch(
          f"{path}: run directory holds a run with a different configuration "
          f"(differs in {diff}); use a new run directory or delete it")
    if existing == config:
      return
  with open(path + ".tmp", "w") as f:
    json.dump(config, f, indent=2, sort_keys=True)
  os.replace(path + ".tmp", path)
