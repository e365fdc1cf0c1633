"""Cost report of exported models: FLOPs, latency, memory, size, quality.

Usage:
  python -m benchmarks --model_dir exports/tiny --model_dir exports/small \\
      --out_dir bench [--run_dir runs/fedavg ...] [--threads 1,2] \\
      [--runtime tflite_runtime,ai_edge_litert] [--xnnpack on,off] \\
      [--adb --adb_binary ./benchmark_model [--adb_cpu_mask f0]] [--arm64]
  python -m benchmarks --setup_arm64   # builds the emulated aarch64 Python

Writes <out_dir>/report.md, results.csv and PNG plots, and prints the
headline table. Every configuration is timed in a fresh process; the host
is named in every figure.
"""

from __future__ import annotations

import shlex
import sys

from absl import flags

from benchmarks import adb as adb_lib
from benchmarks import arm64 as arm64_lib
from benchmarks import latency as latency_lib
from benchmarks import report as report_lib
from model import cli

FLAGS = cli.launcher_flags()

_MODEL_DIR = flags.DEFINE_multi_string(
    "model_dir", [], "Export directory of `python -m export` (or one model "
    "directory with model.tflite + manifest.json); repeat for several.",
    flag_values=FLAGS)
_OUT_DIR = cli.define("out_dir", None, help="Report directory.",
                      flag_values=FLAGS)
_RUN_DIR = flags.DEFINE_multi_string(
    "run_dir", [], "Federated run directory (eval.csv, metrics.csv) for the "
    "quality-vs-cost section; repeat for several.", flag_values=FLAGS)
_SIGNATURES = flags.DEFINE_list(
    "signatures", [], "Signatures to time (default: all); FLOPs are counted "
    "for all.", flag_values=FLAGS)
_RUNTIME = flags.DEFINE_list(
    "runtime", ["ai_edge_litert"],
    f"Host runtimes, some of {list(latency_lib.RUNTIMES)} (ai_edge_litert "
    f"with XNNPACK on: LiteRT's CompiledModel with XNNPACK flags 0x0B, "
    f"dynamic FULLY_CONNECTED + QS8/QU8).", flag_values=FLAGS)
_THREADS = flags.DEFINE_list("threads", ["1"], "Interpreter thread counts.",
                             flag_values=FLAGS)
_XNNPACK = flags.DEFINE_list("xnnpack", ["on"], "XNNPACK settings: on, off.",
                             flag_values=FLAGS)
_EMBED_BATCH = flags.DEFINE_integer("embed_batch", 1,
                                    "N of dynamic-batch signatures (embed).",
                                    flag_values=FLAGS)
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed calls per configuration.",
                               flag_values=FLAGS)
_RUNS = flags.DEFINE_integer("runs", 20, "Timed calls per configuration.",
                             flag_values=FLAGS)
_CROSS_CHECK = flags.DEFINE_bool(
    "cross_check", True, "Compare FLOP counts with tf.profiler and the "
    "analytic count.", flag_values=FLAGS)
_ADB = flags.DEFINE_bool("adb", False, "Also run on an Android device or "
                         "emulator with benchmark_model over adb.",
                         flag_values=FLAGS)
_ADB_BINARY = flags.DEFINE_string(
    "adb_binary", None, "benchmark_model built for the device's ABI (cannot "
    "be downloaded here).", flag_values=FLAGS)
_ADB_PATH = flags.DEFINE_string("adb_path", "adb", "The adb executable.",
                                flag_values=FLAGS)
_ADB_SERIAL = flags.DEFINE_string("adb_serial", None, "Device serial.",
                                  flag_values=FLAGS)
_ADB_CPU_MASK = flags.DEFINE_string(
    "adb_cpu_mask", None, "taskset affinity mask (hex, e.g. f0 for the big "
    "cores of many phones).", flag_values=FLAGS)
_ADB_OP_PROFILING = flags.DEFINE_bool("adb_op_profiling", False,
                                      "--enable_op_profiling on the device.",
                                      flag_values=FLAGS)
_ADB_FLEX_BINARY = flags.DEFINE_bool(
    "adb_flex_binary", False, "The binary is benchmark_model_plus_flex "
    "(needed for flex exports).", flag_values=FLAGS)
_ARM64 = flags.DEFINE_bool("arm64", False, "Also run every signature under "
                           "the emulated aarch64 tflite-runtime and compare "
                           "outputs with the host.", flag_values=FLAGS)
_ARM64_CACHE = flags.DEFINE_string(
    "arm64_cache_dir", None, "Cache of the emulated aarch64 Python (default "
    f"{arm64_lib.default_cache_dir()}).", flag_values=FLAGS)
_SETUP_ARM64 = flags.DEFINE_bool(
    "setup_arm64", False, "Only build (or find) the emulated aarch64 Python "
    "and exit.", flag_values=FLAGS)


def _arm64_config() -> arm64_lib.Arm64Config:
  return (arm64_lib.Arm64Config(cache_dir=_ARM64_CACHE.value)
          if _ARM64_CACHE.value else arm64_lib.Arm64Config())


def _config() -> report_lib.ReportConfig:
  """The report configuration from the flags.

  Raises:
    cli.UserError: A flag value is invalid.
    ValueError: The configuration fails validation.
  """
  if unknown := [x for x in _XNNPACK.value if x not in ("on", "off")]:
    raise cli.UserError(f"--xnnpack: expected on/off, got {unknown}")
  threads = tuple(int(t) for t in _THREADS.value)
  adb = None
  if _ADB.value:
    if not _ADB_BINARY.value:
      raise cli.UserError("--adb needs --adb_binary (a benchmark_model "
                          "built for the device)")
    adb = adb_lib.AdbConfig(
        binary=_ADB_BINARY.value, adb=_ADB_PATH.value,
        serial=_ADB_SERIAL.value, threads=threads[0],
        xnnpack=_XNNPACK.value[0] == "on", warmup_runs=_WARMUP.value,
        num_runs=_RUNS.value, op_profiling=_ADB_OP_PROFILING.value,
        cpu_mask=_ADB_CPU_MASK.value, flex_binary=_ADB_FLEX_BINARY.value)
  return report_lib.ReportConfig(
      signatures=tuple(_SIGNATURES.value), runtimes=tuple(_RUNTIME.value),
      threads=threads, xnnpack=tuple(x == "on" for x in _XNNPACK.value),
      embed_batch=_EMBED_BATCH.value, warmup=_WARMUP.value,
      runs=_RUNS.value, cross_check=_CROSS_CHECK.value, adb=adb,
      arm64=_arm64_config() if _ARM64.value else None)


def main() -> None:
  if _SETUP_ARM64.value:
    try:
      python = arm64_lib.setup(_arm64_config())
    except arm64_lib.Arm64Unavailable as e:
      raise cli.UserError(f"arm64 set-up failed: {e}") from e
    print(f"emulated aarch64 Python ready: {' '.join(python.command)}")
    return
  if not _MODEL_DIR.value or not _OUT_DIR.value:
    raise cli.UserError("--model_dir and --out_dir are required")
  config = cli.build_config(_config)
  try:
    report = report_lib.build_report(
        _MODEL_DIR.value, _OUT_DIR.value, config, run_dirs=_RUN_DIR.value,
        command=shlex.join(["python", "-m", "benchmarks", *sys.argv[1:]]),
        progress=lambda line: print(line, flush=True))
  except (FileNotFoundError, latency_lib.BenchmarkError, adb_lib.AdbError,
          arm64_lib.Arm64Unavailable) as e:
    raise cli.UserError(f"benchmark failed: {e}") from e
  print()
  print(report.headline)
  print()
  for path in report.files:
    print(f"wrote {path}")


def run() -> None:
  cli.run(main, FLAGS, quiet=False)


if __name__ == "__main__":
  run()
