"""Host latency and peak memory of signatures, one fresh process per setting.

Every configuration (model, signature, runtime, threads, XNNPACK on/off) runs
in its own worker process (this file run as a script: a JSON request on
stdin, a JSON answer on stdout), so the peak resident memory it reports
(``VmHWM``) belongs to that configuration alone. The worker imports only the
standard library, numpy and the runtime, never TensorFlow (except for the
``tensorflow`` runtime that Select-TF exports need), and runs unchanged under
an emulated aarch64 Python (:mod:`benchmarks.arm64`).

In the worker the interpreter is created with
``experimental_op_resolver_type`` ``AUTO`` (XNNPACK on: the default delegate;
tflite-runtime: a delegate with the project's flags, ``export/xnnpack.py``)
or ``BUILTIN_WITHOUT_DEFAULT_DELEGATES`` (off), and ``allocate_tensors()`` is
called before ``get_signature_runner()``: only then is the default delegate
applied. Whether XNNPACK took anything is then verified, not assumed:
:func:`delegate_partitions` counts the ``DELEGATE`` nodes of the signature's
subgraph (promoted to the primary subgraph, the only one whose nodes the
Python API lists). Timed calls go through the signature runner (input copy,
invoke, output copy: what an app's call costs); the first call is reported
separately, then warm-up calls, then the timed ones, summarized by median
and 90th percentile.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any, Mapping, Optional, Sequence

import numpy as np

__all__ = ["RUNTIMES", "Machine", "host_machine", "TimingConfig",
           "LatencyResult", "BenchmarkError", "measure",
           "delegate_partitions", "worker_command", "run_request"]

#: Interpreters a worker can run: the on-device runtimes and TF's own (for
#: Select-TF exports; its process then also holds TensorFlow).
RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")
_MODULES = {"tflite_runtime": "tflite_runtime.interpreter",
            "ai_edge_litert": "ai_edge_litert.interpreter",
            "tensorflow": "tensorflow"}


class BenchmarkError(RuntimeError):
  """A benchmark process failed; the message says why."""


@dataclasses.dataclass(frozen=True)
class Machine:
  """Where a figure was measured.

  Attributes:
    platform: ``platform.platform()`` (OS, kernel, C library) or the
      device's Android release.
    arch: CPU architecture (``x86_64``, ``aarch64``, ``arm64-v8a``).
    cpu: CPU model (``/proc/cpuinfo`` or the device's SoC).
    cores: Logical cores available to the process.
    emulation: How the code was executed when not natively (e.g.
      ``qemu-aarch64 user-mode on x86_64 AMD EPYC``); empty when native.
  """

  platform: str
  arch: str
  cpu: str
  cores: int
  emulation: str = ""

  @property
  def label(self) -> str:
    """One line naming the machine."""
    native = f"{self.cpu} ({self.arch}, {self.cores} cores), {self.platform}"
    return f"{native}; emulated: {self.emulation}" if self.emulation else native


def _cpu_model() -> str:
  """The CPU model from ``/proc/cpuinfo``."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
      fields = dict(line.split(":", 1) for line in f if ":" in line)
  except OSError:
    return platform.processor() or "unknown"
  stripped = {k.strip(): v.strip() for k, v in fields.items()}
  for key in ("model name", "Hardware", "Processor", "cpu model"):
    if stripped.get(key):
      return stripped[key]
  return platform.processor() or "unknown"


def host_machine() -> Machine:
  """This machine."""
  return Machine(platform=platform.platform(), arch=platform.machine(),
                 cpu=_cpu_model(), cores=len(os.sched_getaffinity(0)))


@dataclasses.dataclass(frozen=True)
class TimingConfig:
  """How one configuration is timed.

  Attributes:
    runtime: One of :data:`RUNTIMES`.
    threads: Interpreter threads.
    xnnpack: Apply the default XNNPACK delegate.
    batch: Value of dynamic input dimensions (``N`` of ``embed``).
    warmup: Untimed calls after the first call.
    runs: Timed calls.
    seed: Seed of the random inputs.
    timeout_s: The worker is killed after this long.
  """

  runtime: str = "ai_edge_litert"
  threads: int = 1
  xnnpack: bool = True
  batch: int = 1
  warmup: int = 3
  runs: int = 20
  seed: int = 0
  timeout_s: float = 900.0

  def __post_init__(self):
    if self.runtime not in RUNTIMES:
      raise ValueError(f"TimingConfig.runtime: unknown runtime "
                       f"{self.runtime!r}; expected one of {RUNTIMES}")
    if self.threads < 1 or self.batch < 1 or self.runs < 1 or self.warmup < 0:
      raise ValueError("TimingConfig: threads, batch and runs must be >= 1, "
                       "warmup >= 0")


@dataclasses.dataclass(frozen=True)
class LatencyResult:
  """Latency and memory of one signature in one configuration.

  Attributes:
    model: Label of the model (e.g. ``small/training``).
    path: The ``.tflite`` file.
    signature: Signature key.
    runner: ``host``, ``qemu-aarch64`` or ``adb``.
    runtime: Interpreter (or ``benchmark_model``).
    threads: Interpreter threads.
    xnnpack: Whether XNNPACK was requested.
    xnnpack_partitions: ``DELEGATE`` nodes XNNPACK created in the
      signature's subgraph (0: requested but took nothing); None when off or
      not verifiable.
    examples: Examples per call (the ``waveform`` batch; 1 without one).
    warmup: Untimed calls.
    runs: Timed calls.
    median_ms: Median call time.
    p90_ms: 90th percentile (None when the runner reports none).
    mean_ms: Mean call time.
    min_ms: Fastest call.
    max_ms: Slowest call.
    first_ms: The first call (allocations, delegate preparation).
    init_ms: Interpreter creation and tensor allocation.
    peak_rss_mb: Peak resident memory of the process.
    model_rss_mb: Peak minus the resident memory after importing the
      runtime: what the model, its interpreter and the calls added.
    machine: Where it ran.
    load_1m: The host's 1-minute load average when the run started (a
      noise indicator on shared machines; None on devices).
    notes: Caveats.
  """

  model: str
  path: str
  signature: str
  runner: str
  runtime: str
  threads: int
  xnnpack: bool
  xnnpack_partitions: Optional[int]
  examples: int
  warmup: int
  runs: int
  median_ms: float
  p90_ms: Optional[float]
  mean_ms: float
  min_ms: float
  max_ms: float
  first_ms: Optional[float]
  init_ms: Optional[float]
  peak_rss_mb: Optional[float]
  model_rss_mb: Optional[float]
  machine: Machine
  load_1m: Optional[float] = None
  notes: str = ""

  @property
  def emulated(self) -> bool:
    """Whether the times are emulated (never a device latency)."""
    return bool(self.machine.emulation)

  @property
  def examples_per_s(self) -> float:
    return self.examples / (self.median_ms / 1e3)


def _peak_rss_mb() -> float:
  """Peak resident memory of this process image, in MiB.

  ``VmHWM`` of ``/proc/self/status``: unlike ``ru_maxrss``, which Linux
  carries over ``execve`` from the forked parent (a worker started by a
  process holding TensorFlow would report TensorFlow's memory), it starts
  afresh with the new image. ``ru_maxrss`` is the fallback elsewhere.
  """
  try:
    with open("/proc/self/status", encoding="ascii") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _random_inputs(runner: Any, batch: int, seed: int
                   ) -> dict[str, np.ndarray]:
  """Random float inputs (N(0, 0.1)), zeros for integer inputs."""
  rng = np.random.default_rng(seed)
  inputs = {}
  for name, details in sorted(runner.get_input_details().items()):
    shape = [batch if d < 0 else int(d) for d in details["shape_signature"]]
    dtype = np.dtype(details["dtype"])
    if dtype.kind == "f":
      inputs[name] = (0.1 * rng.standard_normal(shape)).astype(dtype)
    elif dtype.kind in "iub":
      inputs[name] = np.zeros(shape, dtype)
    else:
      raise BenchmarkError(f"input {name!r} has dtype {dtype}: string inputs "
                           f"(flex save/restore) are not benchmarked")
  return inputs


def _export_module(name: str) -> Any:
  """``export/<name>.py``, loaded by path (no package, no TF)."""
  path = os.path.join(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))), "export", f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _litert_runtime() -> Any:
  """``export/litert_runtime.py``, loaded by path (no package, no TF)."""
  return _export_module("litert_runtime")


def _interpreter(request: Mapping[str, Any]) -> Any:
  """The interpreter of a request, tensors allocated (delegates applied).

  ``ai_edge_litert`` with XNNPACK is LiteRT's ``CompiledModel`` with the
  project's XNNPACK flags (as ``export.runtime`` runs it), except for the
  delegate probe, which needs the interpreter's node list;
  ``tflite_runtime`` with XNNPACK runs a delegate with the project's flags
  (``export/xnnpack.py``), as ``export.runtime`` does.
  """
  if (request["runtime"] == "ai_edge_litert" and request["xnnpack"]
      and not request.get("probe")):
    with open(request["path"], "rb") as f:
      return _litert_runtime().CompiledInterpreter(
          f.read(), num_threads=request["threads"])
  if request["runtime"] == "tflite_runtime" and request["xnnpack"]:
    return _export_module("xnnpack").tflite_runtime_interpreter(
        model_path=request["path"], num_threads=request["threads"])
  module = importlib.import_module(_MODULES[request["runtime"]])
  if request["runtime"] == "tensorflow":
    module = module.lite
    resolver = module.experimental.OpResolverType
  else:
    resolver = module.OpResolverType
  interpreter = module.Interpreter(
      model_path=request["path"], num_threads=request["threads"],
      experimental_op_resolver_type=(
          resolver.AUTO if request["xnnpack"]
          else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
  # Before any signature runner: only then is the default delegate applied.
  interpreter.allocate_tensors()
  return interpreter


def _delegate_nodes(interpreter: Any) -> int:
  """``DELEGATE`` nodes of the primary subgraph."""
  ops = interpreter._get_ops_details()  # pylint: disable=protected-access
  return sum(op["op_name"] == "DELEGATE" for op in ops)


def run_request(request: Mapping[str, Any]) -> dict[str, Any]:
  """The worker's job: one configuration, timed in this process.

  Args:
    request: ``path``, ``signature``, ``runtime``, ``threads``, ``xnnpack``,
      ``batch``, ``warmup``, ``runs``, ``seed``; optionally ``inputs`` (an
      ``.npz`` of the signature's inputs), ``outputs`` (an ``.npz`` to write
      every call's outputs to, as ``<call>/<name>``) and ``probe`` (only
      count the primary subgraph's ``DELEGATE`` nodes).

  Returns:
    Times (ms), memory (MB), examples per call and delegate nodes.
  """
  # The runtime is imported first: the baseline memory includes it.
  importlib.import_module(_MODULES[request["runtime"]])
  baseline = _peak_rss_mb()
  start = time.perf_counter()
  interpreter = _interpreter(request)
  if request.get("probe"):
    return {"delegate_nodes": _delegate_nodes(interpreter)}
  runner = interpreter.get_signature_runner(request["signature"])
  init_ms = 1e3 * (time.perf_counter() - start)
  if request.get("inputs"):
    with np.load(request["inputs"]) as data:
      inputs = {name: data[name] for name in data.files}
  else:
    inputs = _random_inputs(runner, request["batch"], request["seed"])
  outputs = {}

  def call(index: int) -> float:
    begin = time.perf_counter()
    result = runner(**inputs)
    elapsed = 1e3 * (time.perf_counter() - begin)
    if request.get("outputs"):
      outputs.update({f"{index}/{k}": np.asarray(v)
                      for k, v in result.items()})
    return elapsed

  first_ms = call(0)
  for i in range(request["warmup"]):
    call(1 + i)
  times = [call(1 + request["warmup"] + i) for i in range(request["runs"])]
  if request.get("outputs"):
    np.savez(request["outputs"], **outputs)
  waveform = inputs.get("waveform")
  return {
      "times_ms": times, "first_ms": first_ms, "init_ms": init_ms,
      "baseline_rss_mb": baseline, "peak_rss_mb": _peak_rss_mb(),
      "examples": int(waveform.shape[0]) if waveform is not None else 1,
      "machine": dataclasses.asdict(host_machine()),
  }


def worker_command(python: Sequence[str] = (sys.executable,)) -> list[str]:
  """The command line of a worker run by ``python``.

  This file runs as a script (``-P``: its folder is not put on the path),
  so the worker never imports the ``benchmarks`` package or TensorFlow.
  """
  return [*python, "-P", os.path.abspath(__file__)]


def _run_worker(request: Mapping[str, Any], *, timeout_s: float,
                python: Sequence[str] = (sys.executable,),
                env: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
  """Runs one worker to completion (killed after ``timeout_s``)."""
  try:
    process = subprocess.run(worker_command(python), input=json.dumps(request),
                             capture_output=True, text=True,
                             timeout=timeout_s, env=env, check=False)
  except subprocess.TimeoutExpired as e:
    raise BenchmarkError(f"{request['path']} {request['signature']}: the "
                         f"benchmark process ran past {timeout_s:.0f} s and "
                         f"was killed") from e
  lines = process.stdout.strip().splitlines()
  if process.returncode != 0 or not lines:
    tail = "\n".join(process.stderr.strip().splitlines()[-8:])
    raise BenchmarkError(f"{request['path']} {request['signature']} "
                         f"({request['runtime']}): the benchmark process "
                         f"exited with {process.returncode}:\n{tail}")
  answer = json.loads(lines[-1])
  if "error" in answer:
    raise BenchmarkError(f"{request['path']} {request['signature']} "
                         f"({request['runtime']}): {answer['error']}")
  return answer


def delegate_partitions(path: str, signature: str, *,
                        runtime: str = "tflite_runtime",
                        threads: int = 1) -> int:
  """How many partitions XNNPACK delegates in a signature's subgraph.

  The signature's subgraph is promoted to the primary one
  (:func:`benchmarks.flops.promote_signature`) in a temporary copy, and a
  worker counts its ``DELEGATE`` nodes with XNNPACK on.

  Args:
    path: The ``.tflite`` file.
    signature: Signature key.
    runtime: ``tflite_runtime`` or ``ai_edge_litert``.
    threads: Interpreter threads.

  Returns:
    The number of delegate partitions (0: XNNPACK took no node).
  """
  flops = importlib.import_module("benchmarks.flops")  # Imports TensorFlow.
  with open(path, "rb") as f:
    promoted = flops.promote_signature(f.read(), signature)
  with tempfile.TemporaryDirectory(prefix="bench_probe_") as directory:
    probe = os.path.join(directory, "model.tflite")
    with open(probe, "wb") as f:
      f.write(promoted)
    answer = _run_worker({"path": probe, "signature": signature,
                          "runtime": runtime, "threads": threads,
                          "xnnpack": True, "probe": True}, timeout_s=300)
  return int(answer["delegate_nodes"])


def measure(path: str, signature: str, config: TimingConfig, *, label: str,
            python: Sequence[str] = (sys.executable,),
            env: Optional[Mapping[str, str]] = None,
            emulation: str = "", runner: str = "host",
            inputs: Optional[str] = None, outputs: Optional[str] = None,
            xnnpack_partitions: Optional[int] = None) -> LatencyResult:
  """Times one signature in a fresh worker process.

  Args:
    path: The ``.tflite`` file.
    signature: Signature key.
    config: How to time it.
    label: Model label for the result.
    python: Command that starts the worker's Python (e.g. under qemu).
    env: The worker's environment (default: this one).
    emulation: How that Python is emulated (empty: native).
    runner: Runner name for the result.
    inputs: ``.npz`` of the signature's inputs (default: random).
    outputs: ``.npz`` to write every call's outputs to.
    xnnpack_partitions: The verified XNNPACK partitions, recorded when
      XNNPACK is on (see :func:`delegate_partitions`).

  Returns:
    The result.

  Raises:
    BenchmarkError: The worker failed or timed out (the message has the
      reason).
  """
  request = {"path": os.path.abspath(path), "signature": signature,
             **dataclasses.asdict(config), "inputs": inputs,
             "outputs": outputs}
  load = os.getloadavg()[0]
  answer = _run_worker(request, timeout_s=config.timeout_s, python=python,
                       env=env)
  times = np.asarray(answer["times_ms"])
  machine = Machine(**answer["machine"])
  if emulation:
    machine = dataclasses.replace(machine, cpu=host_machine().cpu,
                                  emulation=emulation)
  notes = []
  if config.runtime == "tensorflow":
    notes.append("tf.lite.Interpreter: peak memory includes TensorFlow")
  if config.xnnpack and xnnpack_partitions == 0:
    notes.append("XNNPACK requested but delegated no node")
  return LatencyResult(
      model=label, path=os.path.abspath(path), signature=signature,
      runner=runner, runtime=config.runtime, threads=config.threads,
      xnnpack=config.xnnpack,
      xnnpack_partitions=xnnpack_partitions if config.xnnpack else None,
      examples=answer["examples"], warmup=config.warmup, runs=config.runs,
      median_ms=float(np.median(times)),
      p90_ms=float(np.percentile(times, 90)), mean_ms=float(times.mean()),
      min_ms=float(times.min()), max_ms=float(times.max()),
      first_ms=answer["first_ms"], init_ms=answer["init_ms"],
      peak_rss_mb=answer["peak_rss_mb"],
      model_rss_mb=answer["peak_rss_mb"] - answer["baseline_rss_mb"],
      machine=machine, load_1m=load, notes="; ".join(notes))


def _main() -> None:
  """Worker entry: a JSON request on stdin, one JSON answer line on stdout."""
  request = json.loads(sys.stdin.read())
  try:
    answer = run_request(request)
  except (BenchmarkError, ValueError, RuntimeError, KeyError) as e:
    answer = {"error": f"{type(e).__name__}: {e}"}
  print(json.dumps(answer), flush=True)


if __name__ == "__main__":
  _main()
