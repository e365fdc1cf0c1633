"""Signature latency on Android over adb with TFLite's ``benchmark_model``.

The user supplies a ``benchmark_model`` binary built for the device's ABI
(it cannot be downloaded here; ``bazel build -c opt --config=android_arm64
//tensorflow/lite/tools/benchmark:benchmark_model``, or the
``benchmark_model_plus_flex`` target for Select-TF exports). The binary and
the model are pushed to the device and run with ``--graph``,
``--signature_to_run_for``, ``--num_threads``, ``--use_xnnpack``, optionally
``--enable_op_profiling`` and pinned to cores with ``taskset``; the output
(upstream format: ``Inference timings in us: Init: ..., First inference:
..., Warmup (avg): ..., Inference (avg): ...`` and ``Memory footprint delta
from the start of the tool (MB): init=... overall=...``) is parsed into a
:class:`benchmarks.latency.LatencyResult`. Dynamic input dimensions run at
``benchmark_model``'s default of 1. Results from an emulator are marked
emulated: they are not device latencies.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shlex
import shutil
import subprocess
from typing import Mapping, Optional, Sequence

from benchmarks.latency import LatencyResult, Machine
from export.manifest import Manifest

__all__ = ["AdbConfig", "AdbError", "OpProfile", "BenchmarkOutput",
           "adb_command", "benchmark_command", "parse_devices",
           "parse_benchmark_output", "check_setup", "device_machine",
           "run_signature"]

_NUMBER = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_TIMINGS = re.compile(
    rf"Inference timings in us: Init: {_NUMBER}, First inference: {_NUMBER}, "
    rf"Warmup \(avg\): {_NUMBER}, Inference \(avg\): {_NUMBER}")
_MEMORY = re.compile(r"Memory footprint delta from the start of the tool "
                     rf"\(MB\): init={_NUMBER} overall={_NUMBER}")
_PEAK = re.compile(r"Overall peak memory footprint \(MB\) via periodic "
                   rf"monitoring: {_NUMBER}")
_COUNT = re.compile(rf"\bcount=(\d+)((?:\s+\w+={_NUMBER})*)")
_STAT = re.compile(rf"(\w+)={_NUMBER}")
_PARTIAL = re.compile(r"Explicitly applied XNNPACK delegate, and the model "
                      r"graph will be partially executed by the delegate "
                      r"w/ (\d+) delegate kernels")
_COMPLETE = "Explicitly applied XNNPACK delegate, and the model graph will " \
            "be completely executed by the delegate"
_NOT_APPLIED = "Though XNNPACK delegate is explicitly applied, the model " \
               "graph will not be executed by the delegate"
_FLEX_MISSING = "Select TensorFlow op(s), included in the given model, " \
                "is(are) not supported by this interpreter"


class AdbError(RuntimeError):
  """Something needed for the device benchmark is missing or failed."""


@dataclasses.dataclass(frozen=True)
class AdbConfig:
  """How to run ``benchmark_model`` on a device.

  Attributes:
    binary: Local path of ``benchmark_model`` built for the device's ABI.
    adb: The ``adb`` executable.
    serial: Device serial (``adb -s``); needed with several devices.
    device_dir: Directory on the device for the binary and the models.
    threads: ``--num_threads``.
    xnnpack: ``--use_xnnpack``.
    warmup_runs: ``--warmup_runs``.
    num_runs: ``--num_runs``.
    op_profiling: ``--enable_op_profiling``.
    report_peak_memory: ``--report_peak_memory_footprint`` (a monitoring
      thread; may perturb timings).
    cpu_mask: ``taskset`` affinity mask (hex, e.g. ``f0`` for the big cores
      of many phones); None: no pinning.
    flex_binary: The binary has the Select-TF (Flex) kernels
      (``benchmark_model_plus_flex``); needed for ``flex`` exports.
    timeout_s: Each adb command is killed after this long.
  """

  binary: str
  adb: str = "adb"
  serial: Optional[str] = None
  device_dir: str = "/data/local/tmp/ondevice_audio_ssl"
  threads: int = 1
  xnnpack: bool = True
  warmup_runs: int = 3
  num_runs: int = 20
  op_profiling: bool = False
  report_peak_memory: bool = False
  cpu_mask: Optional[str] = None
  flex_binary: bool = False
  timeout_s: float = 900.0

  def __post_init__(self):
    if self.cpu_mask is not None and not re.fullmatch(r"[0-9a-fA-F]+",
                                                      self.cpu_mask):
      raise ValueError(f"AdbConfig.cpu_mask: {self.cpu_mask!r} is not a hex "
                       f"affinity mask (e.g. 'f0')")
    if self.threads < 1 or self.num_runs < 1 or self.warmup_runs < 0:
      raise ValueError("AdbConfig: threads and num_runs must be >= 1, "
                       "warmup_runs >= 0")


@dataclasses.dataclass(frozen=True)
class OpProfile:
  """One row of ``--enable_op_profiling``'s summary by node type.

  Attributes:
    node_type: Operator (``CONV_2D``) or delegate kernel.
    count: Nodes of this type.
    avg_ms: Average time per run of all of them.
    percent: Share of the run time.
  """

  node_type: str
  count: int
  avg_ms: float
  percent: float


@dataclasses.dataclass(frozen=True)
class BenchmarkOutput:
  """What ``benchmark_model`` printed.

  Attributes:
    init_us: Interpreter initialization.
    first_us: First inference.
    warmup_avg_us: Mean of the warm-up runs.
    avg_us: Mean of the timed runs.
    stats: The timed runs' statistics line (``count``, ``min``, ``max``,
      ``std`` and, in newer binaries, ``p5``, ``median``, ``p95``), in us.
    memory_init_mb: Memory footprint delta after initialization.
    memory_overall_mb: Memory footprint delta at the end.
    peak_memory_mb: Peak footprint (``--report_peak_memory_footprint``).
    xnnpack_partitions: Delegate kernels XNNPACK reported (None when the
      binary said nothing about XNNPACK).
    op_profile: Summary by node type (``--enable_op_profiling``).
  """

  init_us: float
  first_us: float
  warmup_avg_us: float
  avg_us: float
  stats: Mapping[str, float]
  memory_init_mb: Optional[float] = None
  memory_overall_mb: Optional[float] = None
  peak_memory_mb: Optional[float] = None
  xnnpack_partitions: Optional[int] = None
  op_profile: tuple[OpProfile, ...] = ()


def adb_command(config: AdbConfig, *args: str) -> list[str]:
  """``adb [-s serial] args...``."""
  return [config.adb, *(["-s", config.serial] if config.serial else []),
          *args]


def benchmark_command(config: AdbConfig, device_binary: str,
                      device_model: str, signature: str) -> list[str]:
  """The command run on the device (an argv; quote it for ``adb shell``)."""
  command = ["taskset", config.cpu_mask] if config.cpu_mask else []
  command += [device_binary, f"--graph={device_model}",
              f"--signature_to_run_for={signature}",
              f"--num_threads={config.threads}",
              f"--use_xnnpack={str(config.xnnpack).lower()}",
              f"--warmup_runs={config.warmup_runs}",
              f"--num_runs={config.num_runs}"]
  if config.op_profiling:
    command.append("--enable_op_profiling=true")
  if config.report_peak_memory:
    command.append("--report_peak_memory_footprint=true")
  return command


def parse_devices(text: str) -> dict[str, str]:
  """``adb devices`` output -> ``{serial: state}`` (``device``, ``offline``)."""
  devices = {}
  for line in text.splitlines():
    parts = line.split()
    if len(parts) >= 2 and not line.startswith(("List of devices", "*")):
      devices[parts[0]] = parts[1]
  return devices


def _op_profile(text: str) -> tuple[OpProfile, ...]:
  """Rows of the last ``Summary by node type`` table."""
  start = text.rfind("Summary by node type")
  if start < 0:
    return ()
  rows = []
  for line in text[start:].splitlines()[2:]:
    cells = line.split()
    if len(cells) < 4 or not cells[1].isdigit():
      break
    rows.append(OpProfile(node_type=cells[0], count=int(cells[1]),
                          avg_ms=float(cells[2]),
                          percent=float(cells[3].rstrip("%"))))
  return tuple(rows)


def parse_benchmark_output(text: str) -> BenchmarkOutput:
  """Parses ``benchmark_model``'s output (log prefixes like ``INFO:`` allowed).

  Raises:
    AdbError: The run failed: no timings line (the message quotes the end
      of the output), or Select-TF ops without the Flex kernels.
  """
  if _FLEX_MISSING in text:
    raise AdbError("the model has Select-TF (Flex) ops and this "
                   "benchmark_model has no Flex kernels: build "
                   "//tensorflow/lite/tools/benchmark:benchmark_model_plus_flex"
                   " and pass it with flex_binary set")
  timings = _TIMINGS.search(text)
  if timings is None:
    tail = "\n".join(text.strip().splitlines()[-10:])
    raise AdbError(f"benchmark_model printed no inference timings; its output "
                   f"ends with:\n{tail}")
  # The steady-state statistics line is the last one before the timings
  # (op profiling prints more ``count=`` lines after them).
  counts = _COUNT.findall(text[:timings.start()])
  stats: dict[str, float] = {}
  if counts:
    count, rest = counts[-1][0], counts[-1][1]
    stats = {"count": float(count),
             **{k: float(v) for k, v in _STAT.findall(rest)}}
  memory = _MEMORY.search(text)
  peak = _PEAK.search(text)
  partitions = None
  if match := _PARTIAL.search(text):
    partitions = int(match.group(1))
  elif _COMPLETE in text:
    partitions = 1
  elif _NOT_APPLIED in text:
    partitions = 0
  init, first, warmup, average = (float(g) for g in timings.groups())
  return BenchmarkOutput(
      init_us=init, first_us=first, warmup_avg_us=warmup, avg_us=average,
      stats=stats,
      memory_init_mb=float(memory.group(1)) if memory else None,
      memory_overall_mb=float(memory.group(2)) if memory else None,
      peak_memory_mb=float(peak.group(1)) if peak else None,
      xnnpack_partitions=partitions, op_profile=_op_profile(text))


def _run(command: Sequence[str], timeout_s: float) -> str:
  """Runs a host command; returns stdout + stderr."""
  try:
    process = subprocess.run(list(command), capture_output=True, text=True,
                             timeout=timeout_s, check=False)
  except subprocess.TimeoutExpired as e:
    raise AdbError(f"`{shlex.join(command)}` ran past {timeout_s:.0f} s and "
                   f"was killed") from e
  output = process.stdout + process.stderr
  if process.returncode != 0:
    raise AdbError(f"`{shlex.join(command)}` exited with "
                   f"{process.returncode}:\n{output.strip()[-2000:]}")
  return output


def _push(config: AdbConfig, local: str, remote: str) -> None:
  """Pushes a file unless the device has it (remote names carry a hash)."""
  quoted = shlex.quote(remote)
  present = _run(adb_command(config, "shell",
                             f"[ -f {quoted} ] && echo present || true"), 60)
  if present.strip() != "present":
    _run(adb_command(config, "push", local, remote), config.timeout_s)


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def check_setup(config: AdbConfig) -> str:
  """Checks adb, the binary and the device; returns the device serial.

  Raises:
    AdbError: adb is not installed, the binary does not exist, no device
      (or an unauthorized/offline one) is attached, or several are and no
      serial was given. The message says what is missing.
  """
  if shutil.which(config.adb) is None:
    raise AdbError(f"adb not found ({config.adb!r}): install the Android SDK "
                   f"platform-tools or pass the path of adb")
  if not os.path.isfile(config.binary):
    raise AdbError(
        f"benchmark_model binary not found at {config.binary!r}: build it "
        f"for the device's ABI (bazel build -c opt --config=android_arm64 "
        f"//tensorflow/lite/tools/benchmark:benchmark_model) and pass its "
        f"path; it cannot be downloaded here")
  devices = parse_devices(_run([config.adb, "devices"], 60))
  ready = [serial for serial, state in devices.items() if state == "device"]
  if config.serial is not None:
    if devices.get(config.serial) != "device":
      raise AdbError(f"device {config.serial!r} is not ready (adb devices: "
                     f"{devices or 'none'})")
    return config.serial
  if not ready:
    detail = (f"; not ready: {devices} (authorize USB debugging on the "
              f"phone, or wait for the emulator to boot)" if devices else "")
    raise AdbError(f"no Android device or emulator attached (adb devices "
                   f"lists none ready{detail})")
  if len(ready) > 1:
    raise AdbError(f"several devices attached ({ready}): choose one by serial")
  return ready[0]


def _getprop(config: AdbConfig, name: str) -> str:
  return _run(adb_command(config, "shell", "getprop", name), 60).strip()


def device_machine(config: AdbConfig) -> Machine:
  """The device's model, ABI, SoC and cores (emulators marked emulated)."""
  model = _getprop(config, "ro.product.model")
  soc = next(filter(None, (_getprop(config, p) for p in
                           ("ro.soc.model", "ro.board.platform",
                            "ro.hardware"))), "unknown")
  cores = _run(adb_command(config, "shell", "cat",
                           "/sys/devices/system/cpu/possible"), 60).strip()
  last = cores.split("-")[-1] if cores else "0"
  emulator = "1" in (_getprop(config, "ro.kernel.qemu"),
                     _getprop(config, "ro.boot.qemu"))
  return Machine(
      platform=f"Android {_getprop(config, 'ro.build.version.release')} "
               f"({model})",
      arch=_getprop(config, "ro.product.cpu.abi"), cpu=soc,
      cores=int(last) + 1 if last.isdigit() else 0,
      emulation="Android emulator (QEMU)" if emulator else "")


def _examples(manifest: Manifest, signature: str) -> int:
  """The ``waveform`` batch of a signature (dynamic dimensions run at 1)."""
  tensor = manifest.signature(signature).inputs.get("waveform")
  return max(1, tensor.shape[0]) if tensor else 1


def run_signature(model_dir: str, manifest: Manifest, signature: str,
                  config: AdbConfig, *, label: str,
                  machine: Optional[Machine] = None) -> LatencyResult:
  """Pushes the binary and the model (once), runs a signature, parses it.

  Args:
    model_dir: Directory with ``model.tflite`` and ``manifest.json``.
    manifest: Its manifest.
    signature: Signature key.
    config: How to run it.
    label: Model label for the result.
    machine: The device (default: read with :func:`device_machine`).

  Returns:
    The result (``p90_ms`` is None: ``benchmark_model`` prints none; the
    median is its own when it prints one, else the mean).

  Raises:
    AdbError: Something is missing or the run failed (see
      :func:`check_setup`), or a ``flex`` export meets a binary without Flex
      kernels.
  """
  serial = check_setup(config)
  config = dataclasses.replace(config, serial=serial)
  flex = manifest.mode == "flex" or bool(manifest.flex_ops)
  if flex and not config.flex_binary:
    raise AdbError(f"{model_dir} is a flex export (Select-TF ops "
                   f"{list(manifest.flex_ops)}); benchmark_model cannot run "
                   f"it: pass a benchmark_model_plus_flex binary and set "
                   f"flex_binary")
  machine = machine or device_machine(config)
  device_binary = (f"{config.device_dir}/{os.path.basename(config.binary)}-"
                   f"{_sha256(config.binary)[:12]}")
  device_model = (f"{config.device_dir}/"
                  f"{re.sub(r'[^0-9A-Za-z_.-]', '_', label)}-"
                  f"{manifest.file.sha256[:12]}.tflite")
  _run(adb_command(config, "shell", "mkdir", "-p", config.device_dir), 60)
  _push(config, config.binary, device_binary)
  _run(adb_command(config, "shell", "chmod", "755", device_binary), 60)
  _push(config, os.path.join(model_dir, "model.tflite"), device_model)
  command = benchmark_command(config, device_binary, device_model, signature)
  output = parse_benchmark_output(_run(
      adb_command(config, "shell", shlex.join(command)), config.timeout_s))
  stats = output.stats
  notes = []
  if "median" not in stats:
    notes.append("benchmark_model printed no median: mean reported")
  if config.cpu_mask:
    notes.append(f"taskset {config.cpu_mask}")
  if machine.emulation:
    notes.append("Android emulator: not a device latency")
  return LatencyResult(
      model=label, path=os.path.join(model_dir, "model.tflite"),
      signature=signature, runner="adb", runtime="benchmark_model",
      threads=config.threads, xnnpack=config.xnnpack,
      xnnpack_partitions=output.xnnpack_partitions if config.xnnpack
      else None,
      examples=_examples(manifest, signature), warmup=config.warmup_runs,
      runs=int(stats.get("count", config.num_runs)),
      median_ms=stats.get("median", output.avg_us) / 1e3, p90_ms=None,
      mean_ms=output.avg_us / 1e3,
      min_ms=stats.get("min", output.avg_us) / 1e3,
      max_ms=stats.get("max", output.avg_us) / 1e3,
      first_ms=output.first_us / 1e3, init_ms=output.init_us / 1e3,
      peak_rss_mb=output.peak_memory_mb,
      model_rss_mb=output.memory_overall_mb, machine=machine,
      notes="; ".join(notes))
