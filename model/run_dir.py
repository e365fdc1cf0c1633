"""The ``config.json`` of a run directory: written once, checked on resume."""

from __future__ import annotations

import json
import os
from typing import Callable, Optional, Sequence

from model.errors import UserError

__all__ = ["RunConfigMismatch", "write_or_check_config"]


class RunConfigMismatch(ValueError, UserError):
  """A run directory holds a run with a different configuration."""


def write_or_check_config(
    run_dir: str, config: dict, *, extendable: Sequence[str] = (),
    upgrade: Optional[Callable[[dict], dict]] = None) -> None:
  """Writes ``<run_dir>/config.json``, or checks it matches an existing one.

  Args:
    run_dir: The run directory (must exist).
    config: JSON-serializable configuration.
    extendable: Dotted paths of fields a rerun may change (e.g.
      ``"train.steps"`` to train longer, or execution resources that do not
      change results); the file is then updated.
    upgrade: Rewrites an existing file's configuration into the current
      form before the comparison (e.g. drops fields that older versions
      stored redundantly); it may raise ValueError for a contradiction.

  Raises:
    RunConfigMismatch: The directory holds a run whose configuration differs
      in anything else (the message names the sections).
  """
  path = os.path.join(run_dir, "config.json")
  config = json.loads(json.dumps(config))  # Tuples -> lists, as when read.
  if os.path.exists(path):
    with open(path) as f:
      existing = json.load(f)
    if upgrade is not None:
      existing = json.loads(json.dumps(upgrade(existing)))

    def comparable(c: dict) -> dict:
      c = json.loads(json.dumps(c))
      for dotted in extendable:
        *parents, field = dotted.split(".")
        node = c
        for parent in parents:
          node = node.get(parent, {})
        node.pop(field, None)
      return c

    if comparable(existing) != comparable(config):
      diff = sorted(k for k in set(existing) | set(config)
                    if comparable(existing).get(k) != comparable(config).get(k))
      raise RunConfigMismatch(
          f"{path}: run directory holds a run with a different configuration "
          f"(differs in {diff}); use a new run directory or delete it")
    if existing == config:
      return
  with open(path + ".tmp", "w") as f:
    json.dump(config, f, indent=2, sort_keys=True)
  os.replace(path + ".tmp", path)
