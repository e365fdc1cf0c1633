"""Starts a TFF worker that a federated simulation on another host can use.

Usage (on each worker host, with this toolkit installed the same way):
  python -m tff_sim.worker_main --port 8000

then on the driver host:
  python -m tff_sim --data_dir D --run_dir R \\
      --worker_addresses hostA:8000,hostB:8000

The process becomes TFF's ``worker_binary`` (same pid), serving on every
interface of the host until it is stopped (Ctrl-C or SIGTERM). It refuses to
start under another tensorflow-federated release than the driver's.
"""

from __future__ import annotations

import os

from absl import flags

from model import cli
from tff_sim.worker_binary import REQUIRED_TFF_VERSION, tff_version, worker_binary_path, worker_env

FLAGS = cli.launcher_flags()

_PORT = flags.DEFINE_integer("port", None, "TCP port to serve on.",
                             required=True, flag_values=FLAGS)
_CONCURRENCY = flags.DEFINE_integer(
    "max_concurrent_clients", -1,
    "Concurrent client updates on this worker (non-positive: unlimited).",
    flag_values=FLAGS)


def main() -> None:
  if not 0 < _PORT.value < 65536:
    raise cli.UserError(f"--port: expected 1..65535, got {_PORT.value}")
  version = tff_version()
  if version != REQUIRED_TFF_VERSION:
    raise cli.UserError(
        f"tensorflow-federated {version or '(not installed)'} here, but "
        f"workers must run {REQUIRED_TFF_VERSION} like the driver; install "
        f"it as the Makefile does")
  binary = worker_binary_path()
  print(f"TFF worker (tensorflow-federated {version}) serving on port "
        f"{_PORT.value}, pid {os.getpid()}", flush=True)
  os.execve(binary, [binary, f"--port={_PORT.value}",
                     f"--max_concurrent_computation_calls="
                     f"{_CONCURRENCY.value}"], worker_env())


def run() -> None:
  cli.run(main, FLAGS, quiet=False)


if __name__ == "__main__":
  run()
