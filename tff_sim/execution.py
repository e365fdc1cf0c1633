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
``host:port`` addresses (:func:`remote_execution_context`; start one there
with ``python -m tff_sim.worker_main --port PORT``).

TFF's remote executor waits forever for a worker that died; while a round
runs, :meth:`Workers.watch` checks every worker's port and raises
:class:`WorkerLostError` naming the lost worker instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import threading
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
from tensorflow_federated.python.core.impl.executor_stacks import python_executor_stacks
from tensorflow_federated.python.core.impl.executors import remote_executor
from tensorflow_federated.python.core.impl.executors import remote_executor_grpc_stub
from tensorflow_federated.python.core.impl.types import placements

from model.errors import UserError
from tff_sim.worker_binary import REQUIRED_TFF_VERSION, worker_binary_path, worker_env

__all__ = ["worker_binary_path", "worker_env", "WorkerPool", "Workers",
           "WorkerLostError", "WorkerUnreachableError", "execution_context",
           "remote_execution_context", "check_reachable", "parse_address"]

_GRPC_OPTIONS = [("grpc.max_message_length", -1),
                 ("grpc.max_receive_message_length", -1),
                 ("grpc.max_send_message_length", -1)]
_PR_SET_PDEATHSIG = 1
_STARTUP_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 10.0
_REMOTE_TIMEOUT_S = 15.0
_WATCH_INTERVAL_S = 0.5
_WATCH_GRACE_S = 3.0

# Importing TFF installs a default context that would start an unowned
# worker_binary on first use; computations must run inside execution_context.
context_stack_impl.context_stack.set_default_context(
    runtime_error_context.RuntimeErrorContext())


class WorkerUnreachableError(ConnectionError, UserError):
  """A remote worker address does not answer (or is not ``host:port``)."""


class WorkerLostError(RuntimeError):
  """A worker stopped answering while a computation was running.

  Attributes:
    addresses: ``host:port`` of every worker found dead.
  """

  def __init__(self, addresses: Sequence[str], detail: str = ""):
    self.addresses = tuple(addresses)
    super().__init__(
        f"TFF worker(s) {', '.join(self.addresses)} stopped answering"
        + (f"; {detail}" if detail else ""))


def parse_address(address: str) -> tuple[str, int]:
  """Splits ``host:port`` (``[v6]:port`` too).

  Raises:
    WorkerUnreachableError: Not of the form ``host:port`` with a valid port.
  """
  host, sep, port = address.strip().rpartition(":")
  host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
  if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise WorkerUnreachableError(
        f"worker address {address!r}: expected host:port (e.g. "
        f"10.1.2.3:8000)")
  return host, int(port)


def _port_open(address: str, timeout_s: float) -> bool:
  host, port = parse_address(address)
  try:
    with socket.create_connection((host, port), timeout=timeout_s):
      return True
  except OSError:
    return False


def check_reachable(addresses: Sequence[str], *,
                    timeout_s: Optional[float] = None) -> None:
  """Raises unless every ``host:port`` serves a TFF worker within the timeout.

  Args:
    addresses: ``host:port`` of each worker.
    timeout_s: How long to wait for each (default 15 s).

  Raises:
    WorkerUnreachableError: Names every address that did not answer.
  """
  if not addresses:
    raise WorkerUnreachableError("no worker addresses given")
  timeout_s = _REMOTE_TIMEOUT_S if timeout_s is None else timeout_s
  bad = []
  for address in addresses:
    parse_address(address)
    try:
      _wait_for_stub(address, timeout_s=timeout_s)
    except TimeoutError:
      bad.append(address)
  if bad:
    raise WorkerUnreachableError(
        f"cannot reach TFF worker(s) at {', '.join(bad)} within "
        f"{timeout_s:.0f} s; start one on each host with `python -m "
        f"tff_sim.worker_main --port PORT` (tensorflow-federated "
        f"{REQUIRED_TFF_VERSION}, as here)")


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
            env=worker_env(), preexec_fn=_die_with_parent))
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


def _wait_for_stub(address: str, process: Optional[subprocess.Popen] = None,
                   *, timeout_s: float = _STARTUP_TIMEOUT_S
                   ) -> remote_executor_grpc_stub.RemoteExecutorGrpcStub:
  stub = remote_executor_grpc_stub.RemoteExecutorGrpcStub(
      grpc.insecure_channel(address, _GRPC_OPTIONS))
  deadline = time.monotonic() + timeout_s
  while not stub.is_ready:
    if process is not None and process.poll() is not None:
      raise RuntimeError(f"TFF worker at {address} exited with "
                         f"{process.returncode} during start-up")
    if time.monotonic() > deadline:
      raise TimeoutError(f"TFF worker at {address} not ready after "
                         f"{timeout_s:.0f} s")
    time.sleep(0.05)
  return stub


class _LostWorker(BaseException):
  """Raised in the main thread by the watch signal (BaseException, so that
  TFF's own ``except Exception`` handlers do not swallow it)."""


class Workers:
  """The workers computations run on: their addresses and a watchdog.

  Attributes:
    addresses: ``host:port`` of each worker.
    pool: The local :class:`WorkerPool`, or None for remote workers.
  """

  def __init__(self, addresses: Sequence[str],
               pool: Optional[WorkerPool] = None):
    self.addresses = list(addresses)
    self.pool = pool

  @property
  def pids(self) -> list[int]:
    return self.pool.pids if self.pool else []

  def dead(self) -> list[str]:
    """Addresses of the workers that do not answer now."""
    lost = []
    for i, address in enumerate(self.addresses):
      if self.pool is not None and self.pool.processes[i].poll() is not None:
        lost.append(address)
      elif not _port_open(address, timeout_s=1.0):
        lost.append(address)
    return lost

  @contextlib.contextmanager
  def watch(self, *, interval_s: float = _WATCH_INTERVAL_S,
            grace_s: float = _WATCH_GRACE_S) -> Iterator[None]:
    """Turns a worker lost during the block into :class:`WorkerLostError`.

    A thread checks every worker each ``interval_s``; one that stays down
    for ``grace_s`` interrupts the main thread (TFF would otherwise wait for
    it forever). An error raised in the block while a worker is down
    becomes a :class:`WorkerLostError` too. Outside the main thread the
    block runs unwatched.

    Raises:
      WorkerLostError: Names the workers found dead.
    """
    if threading.current_thread() is not threading.main_thread():
      yield
      return
    lost: list[str] = []
    stop = threading.Event()
    main_id = threading.main_thread().ident

    def on_signal(signum, frame):
      del signum, frame
      if lost:
        raise _LostWorker()

    def monitor():
      down_since: dict[str, float] = {}
      while not stop.wait(interval_s):
        now = time.monotonic()
        dead = set(self.dead())
        down_since = {a: down_since.get(a, now) for a in dead}
        expired = [a for a in self.addresses
                   if a in down_since and now - down_since[a] >= grace_s]
        if expired:
          lost.extend(expired)
          signal.pthread_kill(main_id, signal.SIGUSR1)
          return

    previous = signal.signal(signal.SIGUSR1, on_signal)
    thread = threading.Thread(target=monitor, name="tff-worker-watch",
                              daemon=True)
    thread.start()
    try:
      yield
    except _LostWorker:
      raise WorkerLostError(lost) from None
    except Exception as e:
      dead = self.dead()
      if dead:
        raise WorkerLostError(dead) from e
      raise
    finally:
      stop.set()
      thread.join()
      signal.signal(signal.SIGUSR1, previous)


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
                      log_path: Optional[str] = None,
                      addresses: Sequence[str] = ()) -> Iterator[Workers]:
  """Runs TFF computations on local worker processes or on remote workers.

  Args:
    num_workers: Local worker processes; with more than one, each round's
      clients are split across them (mergeable-computation context).
      Ignored when ``addresses`` is given.
    max_concurrent_calls: Per-worker limit of concurrent client computations.
    log_path: File receiving the local workers' output.
    addresses: ``host:port`` of running remote workers
      (``python -m tff_sim.worker``) to use instead of local ones.

  Yields:
    The workers (local ones are stopped when the block exits, also on error
    or KeyboardInterrupt).

  Raises:
    WorkerUnreachableError: A remote address does not answer.
  """
  if addresses:
    with remote_execution_context(addresses) as workers:
      yield workers
    return
  with WorkerPool(num_workers, max_concurrent_calls=max_concurrent_calls,
                  log_path=log_path) as pool, \
      context_stack_impl.context_stack.install(_context(pool.stubs)):
    yield Workers(pool.addresses, pool)


@contextlib.contextmanager
def remote_execution_context(addresses: Sequence[str], *,
                             timeout_s: Optional[float] = None
                             ) -> Iterator[Workers]:
  """Runs TFF computations on already running workers (e.g. other hosts).

  Start ``python -m tff_sim.worker_main --port PORT`` on each host, then pass
  their ``host:port`` addresses.

  Raises:
    WorkerUnreachableError: An address does not answer within ``timeout_s``.
  """
  check_reachable(addresses, timeout_s=timeout_s)
  stubs = [_wait_for_stub(address, timeout_s=_STARTUP_TIMEOUT_S)
           for address in addresses]
  with context_stack_impl.context_stack.install(_context(stubs)):
    yield Workers(addresses)
