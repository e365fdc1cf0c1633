"""TFF's C++ execution contexts over worker processes this module owns.

``tff.backends.native.set_sync_local_cpp_execution_context`` starts a
``worker_binary`` that it stops only when the context is garbage-collected;
at interpreter exit it is often left running, holding the parent's stdout and
hanging piped runs (CI). Here the workers are started, tracked by pid and
stopped by :func:`execution_context` itself, die with the parent even if it is
killed (``PR_SET_PDEATHSIG``), and write their logs to a file.

With one worker, computations run in TFF's synchronous C++ context. With
several, TFF's mergeable-computation context splits each round's clients
across the workers (one gRPC worker process each) and merges the partial
aggregates: the same mechanism scales to workers on other hosts, given their
``host:port`` addresses (:func:`remote_execution_context`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from typing import Iterator, Optional, Sequence

from absl import logging
import grpc
import portpicker
from tensorflow_federated.python.core.backends.native import compiler
from tensorflow_federated.python.core.backends.native import execution_contexts
from tensorflow_federated.python.core.environments.tensorflow_frontend import tensorflow_computation
from tensorflow_federated.python.core.impl.context_stack import context_stack_impl
from tensorflow_federated.python.core.impl.context_stack import runtime_error_context
from tensorflow_federated.python.core.impl.execution_contexts import async_execution_context
from tensorflow_federated.python.core.impl.execution_contexts import sync_execution_context
from tensorflow_federated.python.core.impl.executor_stacks import executor_factory
from tensorflow_federated.python.core.impl.executor_stacks import python_executor_stacks
from tensorflow_federated.python.core.impl.executors import remote_executor
from tensorflow_federated.python.core.impl.executors import remote_executor_grpc_stub
from tensorflow_federated.python.core.impl.types import placements

__all__ = ["worker_binary_path", "WorkerPool", "execution_context",
           "remote_execution_context"]

_GRPC_OPTIONS = [("grpc.max_message_length", -1),
                 ("grpc.max_receive_message_length", -1),
                 ("grpc.max_send_message_length", -1)]
_PR_SET_PDEATHSIG = 1
_STARTUP_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 10.0
# glibc's per-thread arenas fragment in the multi-threaded worker: RSS grew
# +48% from round 10 to 200 by default, +3.8% (whole run) with two arenas.
_WORKER_ENV = {**os.environ, "MALLOC_ARENA_MAX": "2"}

# Importing TFF installs a default context that would start an unowned
# worker_binary on first use; computations must run inside execution_context.
context_stack_impl.context_stack.set_default_context(
    runtime_error_context.RuntimeErrorContext())


def worker_binary_path() -> str:
  """Path of the ``worker_binary`` shipped in the TFF wheel.

  Raises:
    FileNotFoundError: The TFF installation has no worker binary.
  """
  path = os.path.normpath(os.path.join(
      os.path.dirname(executor_factory.__file__), "..", "..", "..", "..",
      "data", "worker_binary"))
  if not os.path.isfile(path):
    raise FileNotFoundError(f"TFF worker binary not found at {path}; is "
                            f"tensorflow-federated 0.87 installed?")
  return path


def _die_with_parent() -> None:
  """In the child before exec: get SIGKILL when the parent process dies."""
  libc = ctypes.CDLL("libc.so.6", use_errno=True)
  libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class WorkerPool:
  """Local ``worker_binary`` processes, started and stopped by pid.

  Use as a context manager; :meth:`stop` is idempotent.
  """

  def __init__(self, num_workers: int, *, max_concurrent_calls: int = -1,
               log_path: Optional[str] = None):
    """Starts ``num_workers`` workers and waits until each serves.

    Args:
      num_workers: Worker processes to start (>= 1).
      max_concurrent_calls: Per-worker limit of concurrent computation calls
        (client updates in flight); non-positive means unlimited.
      log_path: File receiving the workers' output (default: discarded).

    Raises:
      ValueError: ``num_workers`` < 1.
      TimeoutError: A worker did not come up (all started ones are stopped).
    """
    if num_workers < 1:
      raise ValueError(f"WorkerPool: num_workers must be >= 1, got "
                       f"{num_workers}")
    self.processes: list[subprocess.Popen] = []
    self.addresses: list[str] = []
    self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    binary = worker_binary_path()
    try:
      for _ in range(num_workers):
        port = portpicker.pick_unused_port()
        self.processes.append(subprocess.Popen(
            [binary, f"--port={port}",
             f"--max_concurrent_computation_calls={max_concurrent_calls}"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            env=_WORKER_ENV, preexec_fn=_die_with_parent))
        self.addresses.append(f"localhost:{port}")
      self.stubs = [_wait_for_stub(a, p) for a, p in
                    zip(self.addresses, self.processes)]
    except BaseException:
      self.stop()
      raise
    logging.info("started TFF workers %s (pids %s)", self.addresses,
                 [p.pid for p in self.processes])

  @property
  def pids(self) -> list[int]:
    return [p.pid for p in self.processes]

  def stop(self) -> None:
    """Stops every worker (SIGINT, then SIGKILL after a timeout) and reaps it."""
    for process in self.processes:
      if process.poll() is None:
        process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    for process in self.processes:
      try:
        process.wait(max(0.0, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if self._log is not subprocess.DEVNULL:
      self._log.close()
      self._log = subprocess.DEVNULL

  def __enter__(self) -> "WorkerPool":
    return self

  def __exit__(self, *exc) -> None:
    self.stop()


def _wait_for_stub(address: str, process: Optional[subprocess.Popen] = None
                   ) -> remote_executor_grpc_stub.RemoteExecutorGrpcStub:
  stub = remote_executor_grpc_stub.RemoteExecutorGrpcStub(
      grpc.insecure_channel(address, _GRPC_OPTIONS))
  deadline = time.monotonic() + _STARTUP_TIMEOUT_S
  while not stub.is_ready:
    if process is not None and process.poll() is not None:
      raise RuntimeError(f"TFF worker at {address} exited with "
                         f"{process.returncode} during start-up")
    if time.monotonic() > deadline:
      raise TimeoutError(f"TFF worker at {address} not ready after "
                         f"{_STARTUP_TIMEOUT_S:.0f} s")
    time.sleep(0.05)
  return stub


def _executor_factory(stub: remote_executor_grpc_stub.RemoteExecutorGrpcStub):
  def stack_fn(cardinalities):
    if cardinalities.get(placements.CLIENTS) is None:
      cardinalities[placements.CLIENTS] = 0
    executor = remote_executor.RemoteExecutor(stub)
    executor.set_cardinalities(cardinalities)
    return executor
  return python_executor_stacks.ResourceManagingExecutorFactory(
      executor_stack_fn=stack_fn)


def _context_kwargs() -> dict:
  return dict(compiler_fn=compiler.desugar_and_transform_to_native,
              transform_args=tensorflow_computation.transform_args,
              transform_result=tensorflow_computation.transform_result)


def _context(stubs: Sequence[remote_executor_grpc_stub.RemoteExecutorGrpcStub]):
  if len(stubs) == 1:
    return sync_execution_context.SyncExecutionContext(
        executor_fn=_executor_factory(stubs[0]), **_context_kwargs())
  return execution_contexts.create_mergeable_comp_execution_context([
      async_execution_context.AsyncExecutionContext(
          executor_fn=_executor_factory(stub), **_context_kwargs())
      for stub in stubs])


@contextlib.contextmanager
def execution_context(num_workers: int = 1, *, max_concurrent_calls: int = -1,
                      log_path: Optional[str] = None) -> Iterator[WorkerPool]:
  """Runs TFF computations on ``num_workers`` local worker processes.

  Args:
    num_workers: Worker processes; with more than one, each round's clients
      are split across them (mergeable-computation context).
    max_concurrent_calls: Per-worker limit of concurrent client computations.
    log_path: File receiving the workers' output.

  Yields:
    The worker pool (its ``pids`` are stopped when the block exits, also on
    error or KeyboardInterrupt).
  """
  with WorkerPool(num_workers, max_concurrent_calls=max_concurrent_calls,
                  log_path=log_path) as pool, \
      context_stack_impl.context_stack.install(_context(pool.stubs)):
    yield pool


@contextlib.contextmanager
def remote_execution_context(addresses: Sequence[str]) -> Iterator[None]:
  """Runs TFF computations on already running workers (e.g. other hosts).

  Start one ``worker_binary --port=PORT`` per host (see
  :func:`worker_binary_path`), then pass their ``host:port`` addresses.
  """
  stubs = [_wait_for_stub(address) for address in addresses]
  with context_stack_impl.context_stack.install(_context(stubs)):
    yield
