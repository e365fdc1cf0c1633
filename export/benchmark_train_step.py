"""Step time of on-device training and embed latency, host-side, in one process.

Compares one ``train`` step of the same module as a builtin-only TFLite file
(``tflite_runtime``), as a flex TFLite file (``tf.lite.Interpreter`` with
Select-TF kernels) and as TensorFlow's own graph-mode step (``tf.function``
with TF's gradients, and with the custom builtin gradients), and ``embed``
latency of the float32 and quantized embed-only models. All variants run in
one process on the same corpus batch, one thread each; steps are
interleaved round-robin so background load hits every variant alike, and
both wall time and the process's CPU time are recorded per call (on a
busy host, CPU time is the steadier measure of a 1-thread call).

Usage:
  python -m export.benchmark_train_step
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Sequence

from absl import app
import numpy as np
import tensorflow as tf

from export.conversion import (QUANTIZATIONS, convert_embed_model,
                               convert_training_model)
from export.corpus import load_corpus
from export.exporter import fresh_source
from export.ondevice_module import EmbedModule, OnDeviceModule
from export.optimizers import OptimizerConfig
from export.runtime import OnDeviceModel

__all__ = ["BenchmarkConfig", "Timing", "benchmark", "format_table", "main"]


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
  """What to time.

  Attributes:
    preset: Encoder preset.
    task: SSL task of the ``train`` step.
    batch_size: Static batch of ``train``.
    optimizer: Optimizer of the step.
    steps: Timed calls per variant (the median is reported).
    warmup: Untimed calls per variant first.
    num_threads: Interpreter threads (TF's own threads are set by
      :func:`main` before TF starts).
    embed_batches: Patches per ``embed`` call.
    quantizations: Embed-only variants timed.
  """

  preset: str = "small"
  task: str = "temporal_gap"
  batch_size: int = 32
  optimizer: OptimizerConfig = OptimizerConfig("sgd", learning_rate=0.01)
  steps: int = 20
  warmup: int = 3
  num_threads: int = 1
  embed_batches: tuple[int, ...] = (1, 32)
  quantizations: tuple[str, ...] = QUANTIZATIONS


@dataclasses.dataclass(frozen=True)
class Timing:
  """Wall times of one variant.

  Attributes:
    name: What was timed.
    runtime: Which runtime ran it.
    file_bytes: Size of its ``.tflite`` (0 for TF).
    wall_ms: Wall time of every timed call.
    cpu_ms: CPU time of the process during every timed call.
  """

  name: str
  runtime: str
  file_bytes: int
  wall_ms: tuple[float, ...]
  cpu_ms: tuple[float, ...]

  def wall_percentile(self, q: float) -> float:
    return float(np.percentile(self.wall_ms, q))

  def cpu_percentile(self, q: float) -> float:
    return float(np.percentile(self.cpu_ms, q))


def _time_round_robin(calls: dict[str, Callable[[], object]], steps: int,
                      warmup: int
                      ) -> dict[str, tuple[list[float], list[float]]]:
  """Wall and CPU milliseconds of each call, ``steps`` rounds of all calls."""
  for _ in range(warmup):
    for call in calls.values():
      call()
  times = {name: ([], []) for name in calls}
  for _ in range(steps):
    for name, call in calls.items():
      wall, cpu = time.perf_counter(), time.process_time()
      call()
      times[name][0].append(1e3 * (time.perf_counter() - wall))
      times[name][1].append(1e3 * (time.process_time() - cpu))
  return times


def benchmark(config: BenchmarkConfig) -> list[Timing]:
  """Times the ``train`` variants and the embed models.

  Args:
    config: What to time.

  Returns:
    One :class:`Timing` per variant: train steps first, then embed calls.
  """
  source = fresh_source(config.preset, config.task)
  model = source.model
  corpus = load_corpus()
  batch = corpus.segments(model.example_samples, config.batch_size,
                          min_samples=model.spec.frontend.patch_samples)
  patches, _ = corpus.patches(model.spec.frontend)

  module = lambda mode: OnDeviceModule(model, config.optimizer,
                                       config.batch_size, mode=mode)
  builtin = convert_training_model(module("builtin")).content
  flex = convert_training_model(module("flex")).content
  lite = {"builtin": OnDeviceModel(builtin, runtime="tflite_runtime",
                                   num_threads=config.num_threads),
          "flex": OnDeviceModel(flex, runtime="tensorflow",
                                num_threads=config.num_threads)}
  tf_step = module("flex").train_function()
  tf_custom_step = module("builtin").train_function()
  x = tf.constant(batch)
  rows = [
      ("train: TFLite builtin-only", "tflite_runtime", len(builtin),
       lambda: lite["builtin"].train(batch)),
      ("train: TFLite + Flex", "tf.lite.Interpreter", len(flex),
       lambda: lite["flex"].train(batch)),
      ("train: TF graph, TF's gradients", "tf.function", 0,
       lambda: tf_step(waveform=x)["loss"].numpy()),
      ("train: TF graph, custom builtin gradients", "tf.function", 0,
       lambda: tf_custom_step(waveform=x)["loss"].numpy()),
  ]
  embed_module = EmbedModule(model)
  rng = np.random.default_rng(0)
  representative = lambda: ({"waveform": patches[i:i + 1]} for i in
                            rng.choice(len(patches), 64))
  for quantization in config.quantizations:
    content = convert_embed_model(embed_module, quantization,
                                  representative=representative).content
    for n in config.embed_batches:
      # One interpreter per batch size: resizing the input re-prepares.
      embed_model = OnDeviceModel(content, runtime="tflite_runtime",
                                  num_threads=config.num_threads)
      rows.append((f"embed {n} patch{'es' if n > 1 else ''}: {quantization}",
                   "tflite_runtime", len(content),
                   lambda m=embed_model, p=patches[:n]: m.embed(p)))
  times = _time_round_robin({name: call for name, _, _, call in rows},
                            config.steps, config.warmup)
  return [Timing(name=name, runtime=runtime, file_bytes=size,
                 wall_ms=tuple(times[name][0]), cpu_ms=tuple(times[name][1]))
          for name, runtime, size, _ in rows]


def format_table(timings: Sequence[Timing], config: BenchmarkConfig) -> str:
  """A Markdown table of the timings, with a heading line."""
  load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
  lines = [f"{config.preset} encoder, {config.task}, train batch "
           f"{config.batch_size}, optimizer {config.optimizer.name}, "
           f"{config.num_threads} thread(s); median of {config.steps} calls "
           f"after {config.warmup} warm-up calls (interleaved); host load "
           f"average {load} on {os.cpu_count()} CPUs", "",
           "| variant | runtime | file bytes | CPU ms median | CPU ms p10-p90 "
           "| wall ms median | wall ms p10-p90 |",
           "|---|---|---:|---:|---:|---:|---:|"]
  for t in timings:
    size = f"{t.file_bytes:,}" if t.file_bytes else "-"
    lines.append(
        f"| {t.name} | {t.runtime} | {size} | {t.cpu_percentile(50):.1f} | "
        f"{t.cpu_percentile(10):.1f}-{t.cpu_percentile(90):.1f} | "
        f"{t.wall_percentile(50):.1f} | {t.wall_percentile(10):.1f}-"
        f"{t.wall_percentile(90):.1f} |")
  return "\n".join(lines)


def main(argv: Sequence[str]) -> None:
  """Times the default :class:`BenchmarkConfig` and prints the table."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = BenchmarkConfig()
  tf.config.threading.set_intra_op_parallelism_threads(config.num_threads)
  tf.config.threading.set_inter_op_parallelism_threads(config.num_threads)
  print(format_table(benchmark(config), config))


if __name__ == "__main__":
  app.run(main)
