"""Step time of on-device training and embed latency, host-side, side by side.

For every (preset, task, batch) of the matrix, one ``train`` step of the same
module is timed as:

* a builtin-only TFLite file in the XNNPACK formulation
  (``ops.EXPORT``: shifted-slice FULLY_CONNECTED convs, DFT by matmuls) on LiteRT (``CompiledModel``,
  XNNPACK flags 0x0B) and on tflite-runtime 2.14 (an XNNPACK delegate made
  through ctypes, flags 0x1B: :mod:`export.xnnpack`);
* a builtin-only file in the previous formulation (``custom``: CONV_2D with
  conv-shaped gradients) on tflite-runtime and LiteRT, the baseline;
* a flex TFLite file (``tf.lite.Interpreter`` with Select-TF kernels);
* TensorFlow's graph-mode step (``tf.function``) with TF's own gradients
  (the reference of every ratio) and with the custom builtin gradients.

Then ``embed`` of one patch for every quantization on both runtimes, from the
waveform (the exported contract) and, optionally, from the front-end's log-mel
patch (the encoder alone: what quantization can speed up when the float32
front-end is taken out of the call); both call the signature runner directly,
without :class:`export.runtime.OnDeviceModel`'s input checks. All
variants of one configuration run in one process on the same corpus batch,
interleaved round-robin so background load hits every variant alike; the
process's CPU time per call is the reported measure (steadier than wall time
on a busy host), wall time is kept too. GFLOP/s are the file's FLOPs
(:func:`export.tflite_flops.count_flops`) over the CPU time. The flex file's
Select-TF ops (TF's conv filter gradients among them) are not counted, so
flex and TF rows use the count of a builtin file with TF's arithmetic
(``custom``: TF's forward ops and RFFT front-end; the ``delegate`` file has
a matmul DFT front-end).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time
from typing import Callable, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from benchmarks.latency import host_machine
from export import delegation as delegation_lib
from export import tflite_flops
from export.conversion import (QUANTIZATIONS, convert_embed_model,
                               convert_training_model)
from export.corpus import load_corpus
from export.exporter import fresh_source
from export.ondevice_module import EmbedModule, OnDeviceModule
from export.optimizers import OptimizerConfig
from export.runtime import OnDeviceModel
from model.ssl_model import SSLModel

__all__ = ["TRAIN_VARIANTS", "EMBED_RUNTIMES", "EMBED_INPUTS",
           "TrainStepConfig", "Row",
           "run", "format_table", "write_csv", "plot",
           "run_benchmark"]

#: Train-step variants: name -> (formulation or TF, runtime).
TRAIN_VARIANTS: dict[str, tuple[str, str]] = {
    "builtin/LiteRT": ("delegate", "ai_edge_litert"),
    "builtin/tflite_runtime": ("delegate", "tflite_runtime"),
    "previous builtin/tflite_runtime": ("custom", "tflite_runtime"),
    "previous builtin/LiteRT": ("custom", "ai_edge_litert"),
    "flex/tf.lite": ("tf", "tensorflow"),
    "TF graph/TF gradients": ("tf", "tf.function"),
    "TF graph/custom gradients": ("custom", "tf.function"),
}
#: The reference of the ratio columns.
REFERENCE = "TF graph/TF gradients"
#: Runtimes the embed variants run on.
EMBED_RUNTIMES = ("ai_edge_litert", "tflite_runtime")
#: What an ``embed`` row's model takes: the waveform (front-end + encoder,
#: the exported ``embed``) or the log-mel patch (the encoder alone).
EMBED_INPUTS = ("waveform", "log_mel")


@dataclasses.dataclass(frozen=True)
class TrainStepConfig:
  """The benchmark matrix.

  Attributes:
    presets: Encoder presets.
    tasks: SSL tasks.
    batch_sizes: Static ``train`` batches.
    threads: Threads of every runtime and of TF (TF's pools are set once
      per process, so one value per run).
    variants: Keys of :data:`TRAIN_VARIANTS` to time.
    quantizations: Embed variants (empty: no embed rows).
    embed_inputs: Inputs of the embed rows, of :data:`EMBED_INPUTS`
      (``log_mel`` adds the encoder alone, so that the front-end's share of
      each quantization's call is measured, not inferred).
    optimizer: Optimizer of the step.
    steps: Timed calls per variant (the median is reported); ``embed``
      rows time ``5 * steps`` rounds.
    warmup: Untimed calls per variant first.
    embed_burst: Consecutive ``embed`` calls of a variant in each round
      (each timed): 1 runs every call right after the other models (cold
      caches: with eight embed files interleaved that added about 0.1 ms
      per call); more measures the steady state of an embed loop.
  """

  presets: tuple[str, ...] = ("small",)
  tasks: tuple[str, ...] = ("temporal_gap",)
  batch_sizes: tuple[int, ...] = (32,)
  threads: int = 1
  variants: tuple[str, ...] = tuple(TRAIN_VARIANTS)
  quantizations: tuple[str, ...] = QUANTIZATIONS
  embed_inputs: tuple[str, ...] = ("waveform",)
  optimizer: OptimizerConfig = OptimizerConfig("sgd", learning_rate=0.01)
  steps: int = 10
  warmup: int = 2
  embed_burst: int = 10

  def __post_init__(self):
    for field in ("presets", "tasks", "batch_sizes", "variants",
                  "quantizations", "embed_inputs"):
      object.__setattr__(self, field, tuple(getattr(self, field)))
    if unknown := [v for v in self.variants if v not in TRAIN_VARIANTS]:
      raise ValueError(f"TrainStepConfig.variants: unknown {unknown}; "
                       f"expected some of {list(TRAIN_VARIANTS)}")
    if unknown := [q for q in self.quantizations if q not in QUANTIZATIONS]:
      raise ValueError(f"TrainStepConfig.quantizations: unknown {unknown}; "
                       f"expected some of {list(QUANTIZATIONS)}")
    if unknown := [i for i in self.embed_inputs if i not in EMBED_INPUTS]:
      raise ValueError(f"TrainStepConfig.embed_inputs: unknown {unknown}; "
                       f"expected some of {list(EMBED_INPUTS)}")
    if self.quantizations and not self.embed_inputs:
      raise ValueError("TrainStepConfig.embed_inputs: empty, but "
                       f"quantizations {list(self.quantizations)} ask for "
                       f"embed rows; expected some of {list(EMBED_INPUTS)}")
    if min(self.batch_sizes, default=0) < 1 or self.threads < 1 or (
        self.steps < 1 or self.warmup < 0 or self.embed_burst < 1):
      raise ValueError("TrainStepConfig: batch sizes, threads, steps and "
                       "embed_burst must be >= 1, warmup >= 0")


@dataclasses.dataclass(frozen=True)
class Row:
  """Timings of one variant in one configuration.

  Attributes:
    preset: Encoder preset.
    task: SSL task (``-`` for embed rows).
    batch: ``train`` batch, or patches per ``embed`` call.
    threads: Threads.
    kind: ``train`` or ``embed``.
    variant: What was timed.
    runtime: Which runtime ran it.
    file_bytes: Size of its ``.tflite`` (0 for TF).
    flops: FLOPs of one call counted from the file; flex and TF rows:
      counted from the ``custom`` builtin file of the same step (TF's
      arithmetic; the flex file's Select-TF ops have no cost model).
    delegated: Share of those FLOPs in XNNPACK (None: not measured).
    cpu_ms: CPU time of every timed call.
    wall_ms: Wall time of every timed call.
  """

  preset: str
  task: str
  batch: int
  threads: int
  kind: str
  variant: str
  runtime: str
  file_bytes: int
  flops: int
  delegated: Optional[float]
  cpu_ms: tuple[float, ...]
  wall_ms: tuple[float, ...]

  @property
  def cpu_median(self) -> float:
    return float(np.median(self.cpu_ms))

  @property
  def wall_median(self) -> float:
    return float(np.median(self.wall_ms))

  @property
  def gflops(self) -> float:
    return self.flops / (self.cpu_median * 1e6) if self.cpu_median else 0.0


def _time_round_robin(calls: dict[str, Callable[[], object]], steps: int,
                      warmup: int, burst: int = 1
                      ) -> dict[str, tuple[list[float], list[float]]]:
  """CPU and wall milliseconds of each call, ``steps`` rounds of all calls
  (``burst`` consecutive calls of each per round, each timed)."""
  for _ in range(warmup):
    for call in calls.values():
      call()
  times = {name: ([], []) for name in calls}
  for _ in range(steps):
    for name, call in calls.items():
      for _ in range(burst):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        times[name][0].append(1e3 * (time.process_time() - cpu))
        times[name][1].append(1e3 * (time.perf_counter() - wall))
  return times


def _module(model: SSLModel, config: TrainStepConfig, batch_size: int,
            formulation: str) -> OnDeviceModule:
  """The on-device module of one formulation (``tf``: flex mode)."""
  return OnDeviceModule(model, config.optimizer, batch_size,
                        mode="flex" if formulation == "tf" else "builtin",
                        formulation=formulation)


def _train_rows(preset: str, task: str, batch_size: int,
                config: TrainStepConfig) -> list[Row]:
  """The train variants of one configuration, timed interleaved."""
  model = fresh_source(preset, task).model
  corpus = load_corpus()
  batch = corpus.segments(model.example_samples, batch_size,
                          min_samples=model.spec.frontend.patch_samples)
  x = tf.constant(batch)
  files: dict[str, bytes] = {}
  calls, meta = {}, {}
  for variant in config.variants:
    formulation, runtime = TRAIN_VARIANTS[variant]
    module = _module(model, config, batch_size, formulation)
    if runtime == "tf.function":
      step = module.train_function()
      calls[variant] = lambda step=step: step(waveform=x)["loss"].numpy()
      meta[variant] = (runtime, 0, files.get("tf", b""), None)
      continue
    if formulation not in files:
      logging.info("converting %s/%s batch %d (%s)", preset, task, batch_size,
                   formulation)
      files[formulation] = convert_training_model(module).content
    content = files[formulation]
    lite = OnDeviceModel(content, runtime=runtime,
                         num_threads=config.threads)
    calls[variant] = lambda lite=lite: lite.train(batch)
    delegated = (None if runtime == "tensorflow" else
                 delegation_lib.delegation(content, "train",
                                           runtime=runtime).flops_fraction)
    meta[variant] = (runtime, len(content), content, delegated)
  flops = _step_flops(preset, task, batch_size, config, model, files)
  times = _time_round_robin(calls, config.steps, config.warmup)
  rows = []
  for variant in config.variants:
    runtime, size, _, delegated = meta[variant]
    formulation = TRAIN_VARIANTS[variant][0]
    rows.append(Row(
        preset=preset, task=task, batch=batch_size, threads=config.threads,
        kind="train", variant=variant, runtime=runtime, file_bytes=size,
        flops=flops[formulation], delegated=delegated,
        cpu_ms=tuple(times[variant][0]), wall_ms=tuple(times[variant][1])))
  return rows


def _step_flops(preset: str, task: str, batch_size: int,
                config: TrainStepConfig, model: SSLModel,
                files: dict[str, bytes]) -> dict[str, int]:
  """FLOPs of one step for every formulation of ``config.variants``.

  Each builtin file is counted as it is. A flex file's Select-TF ops (TF's
  conv filter gradients among them) have no cost model, so the flex and TF
  rows (``tf``) get the count of the ``custom`` builtin file: TF's forward
  ops (RFFT front-end) with conv-shaped gradients, the same arithmetic as
  TF's, fully counted (the ``delegate`` file has a matmul DFT front-end).
  A formulation without a timed
  builtin file is converted here to be counted.
  """
  flops = {}
  for formulation, content in files.items():
    count = tflite_flops.count_flops(content, "train")
    if formulation != "tf" or not count.uncounted:
      flops[formulation] = count.flops
  for formulation in dict.fromkeys(TRAIN_VARIANTS[v][0]
                                   for v in config.variants):
    source = "custom" if formulation == "tf" else formulation
    if source not in flops:
      logging.info("converting %s/%s batch %d (%s, for the FLOP count)",
                   preset, task, batch_size, source)
      content = convert_training_model(
          _module(model, config, batch_size, source)).content
      flops[source] = tflite_flops.count_flops(content, "train").flops
    flops.setdefault(formulation, flops[source])
  return flops


class _EncoderOnly(EmbedModule):
  """``embed`` from the log-mel patch: the encoder without the front-end."""

  def _embed(self, log_mel: tf.Tensor) -> dict[str, tf.Tensor]:
    return {"embedding": self.model.encoder(log_mel)}

  def embed_function(self):
    frontend = self.model.spec.frontend
    return tf.function(self._embed).get_concrete_function(tf.TensorSpec(
        [None, frontend.patch_frames, frontend.num_mel_bins], tf.float32,
        name="log_mel"))


#: Variant suffix of the embed rows whose model takes the log-mel patch.
_LOG_MEL_SUFFIX = ", log-mel in (encoder only)"


def _embed_variant(quantization: str, embed_input: str) -> str:
  return f"embed {quantization}" + (
      "" if embed_input == "waveform" else _LOG_MEL_SUFFIX)


def _embed_rows(preset: str, config: TrainStepConfig) -> list[Row]:
  """``embed`` of one patch for every input, quantization and runtime."""
  model = fresh_source(preset, "temporal_gap").model
  frontend = model.spec.frontend
  waveforms, _ = load_corpus().patches(frontend)
  rng = np.random.default_rng(0)
  inputs = {"waveform": waveforms}
  if "log_mel" in config.embed_inputs:
    inputs["log_mel"] = tf.reshape(
        model.features(tf.constant(waveforms)),
        [-1, frontend.patch_frames, frontend.num_mel_bins]).numpy()
  calls, meta = {}, {}
  for embed_input in config.embed_inputs:
    patches = inputs[embed_input]
    representative = lambda patches=patches, name=embed_input: (
        {name: patches[i:i + 1]} for i in rng.choice(len(patches), 64))
    module = (EmbedModule if embed_input == "waveform" else _EncoderOnly)(
        model)
    for quantization in config.quantizations:
      content = convert_embed_model(module, quantization,
                                    representative=representative).content
      flops = tflite_flops.count_flops(content, "embed", batch=1).flops
      variant = _embed_variant(quantization, embed_input)
      for runtime in EMBED_RUNTIMES:
        lite = OnDeviceModel(content, runtime=runtime,
                             num_threads=config.threads)
        name = f"{variant}, {runtime}"
        feed = {embed_input: patches[:1]}
        calls[name] = lambda lite=lite, feed=feed: lite.runner("embed")(
            **feed)
        meta[name] = (variant, runtime, len(content), flops,
                      delegation_lib.delegation(
                          content, "embed", runtime=runtime).flops_fraction)
  times = _time_round_robin(calls, config.steps * 5, config.warmup,
                            config.embed_burst)
  return [Row(preset=preset, task="-", batch=1, threads=config.threads,
              kind="embed", variant=variant, runtime=runtime,
              file_bytes=size, flops=flops, delegated=delegated,
              cpu_ms=tuple(times[name][0]), wall_ms=tuple(times[name][1]))
          for name, (variant, runtime, size, flops, delegated)
          in meta.items()]


def run(config: TrainStepConfig, *,
        on_rows: Optional[Callable[[list[Row]], None]] = None) -> list[Row]:
  """Times the whole matrix.

  Args:
    config: The matrix.
    on_rows: Called with the rows of each finished configuration (progress).

  Returns:
    Every row: train rows per configuration, then embed rows per preset.
  """
  rows = []
  jobs = [(p, t, b) for p in config.presets for t in config.tasks
          for b in config.batch_sizes] if config.variants else []
  for preset, task, batch in jobs:
    logging.info("timing %s / %s / batch %d", preset, task, batch)
    new = _train_rows(preset, task, batch, config)
    rows += new
    if on_rows:
      on_rows(new)
  if config.quantizations:
    for preset in config.presets:
      new = _embed_rows(preset, config)
      rows += new
      if on_rows:
        on_rows(new)
  return rows


def _ratio(row: Row, reference: Optional[Row]) -> str:
  if reference is None or not reference.cpu_median:
    return "-"
  return f"{row.cpu_median / reference.cpu_median:.2f}"


def format_table(rows: Sequence[Row], config: TrainStepConfig) -> str:
  """Markdown tables (train, then embed) with a heading line."""
  load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
  lines = [f"optimizer {config.optimizer.name}, {config.threads} thread(s); "
           f"CPU ms median of {config.steps} interleaved calls after "
           f"{config.warmup} warm-up calls (embed: {config.steps * 5} rounds "
           f"of {config.embed_burst} consecutive calls); host "
           f"{host_machine().label}, load average {load}", ""]
  train = [r for r in rows if r.kind == "train"]
  if train:
    lines += ["| preset | task | batch | variant | runtime | CPU ms | "
              "p10-p90 | wall ms | / TF | / previous builtin | GFLOP/s | "
              "XNNPACK FLOPs | file bytes |",
              "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in train:
      group = [g for g in train if (g.preset, g.task, g.batch) ==
               (r.preset, r.task, r.batch)]
      find = lambda name: next((g for g in group if g.variant == name), None)
      p10, p90 = np.percentile(r.cpu_ms, [10, 90])
      lines.append(
          f"| {r.preset} | {r.task} | {r.batch} | {r.variant} | {r.runtime} | "
          f"{r.cpu_median:.1f} | {p10:.0f}-{p90:.0f} | {r.wall_median:.1f} | "
          f"{_ratio(r, find(REFERENCE))} | "
          f"{_ratio(r, find('previous builtin/tflite_runtime'))} | "
          f"{r.gflops:.1f} | "
          f"{'-' if r.delegated is None else f'{r.delegated:.0%}'} | "
          f"{r.file_bytes:,} |")
    lines.append("")
  embed = [r for r in rows if r.kind == "embed"]
  if embed:
    lines += ["| preset | variant | runtime | CPU ms / patch | wall ms | "
              "/ float32 same runtime | XNNPACK FLOPs | file bytes |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in embed:
      base = _same_setting(embed, r, _embed_variant(
          "float32", "log_mel" if r.variant.endswith(_LOG_MEL_SUFFIX)
          else "waveform"))
      lines.append(
          f"| {r.preset} | {r.variant} | {r.runtime} | {r.cpu_median:.2f} | "
          f"{r.wall_median:.2f} | {_ratio(r, base)} | "
          f"{'-' if r.delegated is None else f'{r.delegated:.0%}'} | "
          f"{r.file_bytes:,} |")
    lines += _front_end_table(embed)
  return "\n".join(lines)


def _same_setting(embed: Sequence[Row], row: Row,
                  variant: str) -> Optional[Row]:
  """The embed row of ``variant`` with ``row``'s preset and runtime."""
  return next((g for g in embed if (g.preset, g.runtime, g.variant) ==
               (row.preset, row.runtime, variant)), None)


def _front_end_table(embed: Sequence[Row]) -> list[str]:
  """The front-end's share of each embed call: the waveform row minus the
  log-mel row of the same preset, quantization and runtime."""
  pairs = [(r, encoder) for r in embed
           if not r.variant.endswith(_LOG_MEL_SUFFIX)
           and (encoder := _same_setting(embed, r,
                                         r.variant + _LOG_MEL_SUFFIX))]
  if not pairs:
    return []
  lines = ["", "Front-end share (waveform row minus the encoder-only row):",
           "", "| preset | variant | runtime | whole ms | encoder ms | "
           "front-end ms | front-end share |", "|---|---|---|---:|---:|---:|"
           "---:|"]
  for whole, encoder in pairs:
    front = whole.cpu_median - encoder.cpu_median
    share = front / whole.cpu_median if whole.cpu_median else float("nan")
    lines.append(f"| {whole.preset} | {whole.variant} | {whole.runtime} | "
                 f"{whole.cpu_median:.3f} | {encoder.cpu_median:.3f} | "
                 f"{front:.3f} | {share:.0%} |")
  return lines


def write_csv(path: str, rows: Sequence[Row]) -> None:
  """One line per row, with medians and percentiles."""
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["preset", "task", "batch", "threads", "kind", "variant",
                     "runtime", "cpu_ms_median", "cpu_ms_p10", "cpu_ms_p90",
                     "wall_ms_median", "flops", "gflops_per_s",
                     "xnnpack_flops_fraction", "file_bytes"])
    for r in rows:
      p10, p90 = np.percentile(r.cpu_ms, [10, 90])
      writer.writerow([r.preset, r.task, r.batch, r.threads, r.kind,
                       r.variant, r.runtime, f"{r.cpu_median:.3f}",
                       f"{p10:.3f}", f"{p90:.3f}", f"{r.wall_median:.3f}",
                       r.flops, f"{r.gflops:.3f}",
                       "" if r.delegated is None else f"{r.delegated:.4f}",
                       r.file_bytes])


def plot(path: str, rows: Sequence[Row]) -> None:
  """Bar charts: train CPU ms per configuration and variant (log scale),
  and embed CPU ms per variant and runtime, one group per preset."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  panels = [(kind, [r for r in rows if r.kind == kind])
            for kind in ("train", "embed")]
  panels = [(kind, chosen) for kind, chosen in panels if chosen]
  if not panels:
    return
  bars = max(len(set((r.preset, r.task, r.batch, r.variant, r.runtime)
                     for r in chosen)) for _, chosen in panels)
  fig, axes = plt.subplots(len(panels), 1, squeeze=False, figsize=(
      max(6.0, 0.22 * bars + 4.0), 4.5 * len(panels)))
  colors = plt.get_cmap("tab20").colors
  for ax, (kind, chosen) in zip(axes[:, 0], panels):
    if kind == "train":
      groups = list(dict.fromkeys((r.preset, r.task, r.batch) for r in chosen))
      series = {r.variant: r.variant for r in chosen}
      key = lambda r: ((r.preset, r.task, r.batch), r.variant)
      ticks = [f"{p}\n{t}\nB={b}" for p, t, b in groups]
    else:
      groups = list(dict.fromkeys((r.preset,) for r in chosen))
      series = {f"{r.variant}, {r.runtime}": f"{r.variant[len('embed '):]}"
                f", {r.runtime}" for r in chosen}
      key = lambda r: ((r.preset,), f"{r.variant}, {r.runtime}")
      ticks = [g[0] for g in groups]
    values = {key(r): r.cpu_median for r in chosen}
    width = 0.8 / len(series)
    for i, (name, label) in enumerate(series.items()):
      ax.bar(np.arange(len(groups)) + i * width,
             [values.get((g, name), np.nan) for g in groups], width,
             label=label, color=colors[i % len(colors)])
    ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2)
    ax.set_xticklabels(ticks, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel(f"CPU ms per {'train step' if kind == 'train' else 'patch'}"
                  " (median)")
    ax.set_title("On-device train step, host CPU" if kind == "train" else
                 "embed of one patch, host CPU")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def run_benchmark(config: TrainStepConfig, out_dir: str, *,
                  progress: Optional[Callable[[str], None]] = None) -> str:
  """Times the matrix (:func:`run`) and writes ``train_step.md``,
  ``train_step.csv`` and ``train_step.png`` to ``out_dir``.

  TF's thread pools are fixed per process: size them to
  ``config.threads`` before TensorFlow runs anything.

  Args:
    config: The matrix.
    out_dir: Output directory (created).
    progress: Called with a line per finished configuration.

  Returns:
    The Markdown tables.
  """
  os.makedirs(out_dir, exist_ok=True)
  done = []

  def on_rows(rows):
    if not rows:
      return
    done.extend(rows)
    if progress:
      progress(f"[{len(done)} rows] {rows[0].preset} {rows[0].task} "
               f"batch {rows[0].batch}: " + ", ".join(
                   f"{r.variant} {r.cpu_median:.1f} ms" for r in rows))

  rows = run(config, on_rows=on_rows)
  table = format_table(rows, config)
  with open(os.path.join(out_dir, "train_step.md"), "w",
            encoding="utf-8") as f:
    f.write(table + "\n")
  write_csv(os.path.join(out_dir, "train_step.csv"), rows)
  plot(os.path.join(out_dir, "train_step.png"), rows)
  return table
