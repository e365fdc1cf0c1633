"""Where TFF's ``worker_binary`` lives and how it is started (no TFF import).

Kept free of TensorFlow imports so that ``python -m tff_sim.worker_main``
starts a worker in well under a second.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os

__all__ = ["worker_binary_path", "worker_env", "tff_version",
           "REQUIRED_TFF_VERSION"]

#: The TFF release whose worker protocol the driver speaks.
REQUIRED_TFF_VERSION = "0.87.0"

# glibc's per-thread arenas fragment in the multi-threaded worker: RSS grew
# +48% from round 10 to 200 by default, +3.8% (whole run) with two arenas.
_WORKER_ENV = {"MALLOC_ARENA_MAX": "2"}


def tff_version() -> str:
  """Installed tensorflow-federated version ("" if it is not installed)."""
  try:
    return importlib.metadata.version("tensorflow-federated")
  except importlib.metadata.PackageNotFoundError:
    return ""


def worker_binary_path() -> str:
  """Path of the ``worker_binary`` shipped in the TFF wheel.

  Raises:
    FileNotFoundError: TFF is not installed or its wheel has no worker.
  """
  spec = importlib.util.find_spec("tensorflow_federated")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
        f"tensorflow-federated is not installed; install "
        f"tensorflow-federated=={REQUIRED_TFF_VERSION} (see the Makefile)")
  path = os.path.join(list(spec.submodule_search_locations)[0], "data",
                      "worker_binary")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"TFF worker binary not found at {path}; is "
                            f"tensorflow-federated {REQUIRED_TFF_VERSION} "
                            f"installed?")
  return path


def worker_env() -> dict[str, str]:
  """Environment of a worker process: this one's plus two malloc arenas."""
  return {**os.environ, **_WORKER_ENV}
