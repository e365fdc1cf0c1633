"""Cost report of exported models: FLOPs, latency, memory, size, quality.

:func:`build_report` takes export directories (``python -m export`` output:
``training/`` and ``embed_<quantization>/``, each ``model.tflite`` +
``manifest.json``; or one such model directory), counts every signature's
FLOPs from the file (:mod:`benchmarks.flops`, cross-checked against
``tf.profiler`` and the analytic count), times every signature on the host
in fresh processes (:mod:`benchmarks.latency`), optionally on an Android
device (:mod:`benchmarks.adb`) and checks them under aarch64 emulation
(:mod:`benchmarks.arm64`), and writes ``report.md``, ``results.csv`` and PNG
plots: latency vs FLOPs across encoder presets, file size vs quantization
and, given federated run directories (``eval.csv`` / ``metrics.csv`` of
``tff_sim``), quality vs cost. :func:`headline_table` is the table ``make
demo`` prints.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from typing import Any, Callable, Mapping, Optional, Sequence

from matplotlib.figure import Figure

from benchmarks import adb as adb_lib
from benchmarks import arm64 as arm64_lib
from benchmarks import flops as flops_lib
from benchmarks import latency as latency_lib
from export import delegation as delegation_lib
from export.manifest import MANIFEST_NAME, MODEL_NAME, Manifest
from tff_sim.report import plot_quality_vs_cost_runs, read_release_csv

__all__ = ["REPORT_NAME", "RESULTS_CSV", "LATENCY_PLOT", "SIZE_PLOT",
           "QUALITY_PLOT", "ReportConfig", "ModelEntry", "CostRow", "Report",
           "find_models", "build_report", "headline_table", "read_rows"]

REPORT_NAME = "report.md"
RESULTS_CSV = "results.csv"
LATENCY_PLOT = "latency_vs_flops.png"
SIZE_PLOT = "size_vs_quantization.png"
QUALITY_PLOT = "quality_vs_cost.png"


@dataclasses.dataclass(frozen=True)
class ReportConfig:
  """What the report measures.

  Attributes:
    signatures: Signatures to time (empty: all but string-input ones);
      FLOPs are counted for all.
    runtimes: Host interpreters (``flex`` exports always use
      ``tensorflow``).
    threads: Interpreter thread counts.
    xnnpack: XNNPACK settings to time (on and/or off).
    embed_batch: ``N`` of dynamic-batch signatures (``embed``).
    warmup: Untimed calls per configuration.
    runs: Timed calls per configuration.
    cross_check: Compare the FLOP counts with ``tf.profiler`` and the
      analytic count.
    adb: Also run on an Android device (None: not).
    arm64: Also check every signature under aarch64 emulation (None: not).
  """

  signatures: tuple[str, ...] = ()
  runtimes: tuple[str, ...] = ("ai_edge_litert",)
  threads: tuple[int, ...] = (1,)
  xnnpack: tuple[bool, ...] = (True,)
  embed_batch: int = 1
  warmup: int = 3
  runs: int = 20
  cross_check: bool = True
  adb: Optional[adb_lib.AdbConfig] = None
  arm64: Optional[arm64_lib.Arm64Config] = None

  def __post_init__(self):
    for field in ("signatures", "runtimes", "threads", "xnnpack"):
      object.__setattr__(self, field, tuple(getattr(self, field)))
    if unknown := [r for r in self.runtimes
                   if r not in latency_lib.RUNTIMES]:
      raise ValueError(f"ReportConfig.runtimes: unknown {unknown}; expected "
                       f"some of {latency_lib.RUNTIMES}")
    if not (self.runtimes and self.threads and self.xnnpack):
      raise ValueError("ReportConfig: runtimes, threads and xnnpack need at "
                       "least one value each")


@dataclasses.dataclass(frozen=True)
class ModelEntry:
  """One exported model file.

  Attributes:
    export: Name of its export directory.
    variant: Its subdirectory (``training``, ``embed_int8``, ...).
    directory: Directory holding ``model.tflite`` + ``manifest.json``.
    manifest: The manifest.
  """

  export: str
  variant: str
  directory: str
  manifest: Manifest

  @property
  def label(self) -> str:
    return f"{self.export}/{self.variant}"

  @property
  def preset(self) -> str:
    return self.manifest.model.encoder.preset

  @property
  def quantization(self) -> str:
    return self.manifest.quantization.type


@dataclasses.dataclass(frozen=True)
class CostRow:
  """One line of ``results.csv``: a signature's FLOPs and one measurement.

  Rows without a measurement (``runner`` empty) carry the FLOP count only.
  ``gflops_per_s`` is the achieved rate: FLOPs per example x examples per
  call over the median call time.
  """

  export: str
  preset: str
  task: str
  variant: str
  quantization: str
  mode: str
  file_bytes: int
  signature: str
  examples: int
  macs: int
  flops: int
  flops_per_example: float
  profiler_flops: Optional[int] = None
  analytic_flops: Optional[int] = None
  runner: str = ""
  runtime: str = ""
  threads: Optional[int] = None
  xnnpack: Optional[bool] = None
  xnnpack_partitions: Optional[int] = None
  runs: Optional[int] = None
  median_ms: Optional[float] = None
  p90_ms: Optional[float] = None
  min_ms: Optional[float] = None
  max_ms: Optional[float] = None
  first_ms: Optional[float] = None
  init_ms: Optional[float] = None
  examples_per_s: Optional[float] = None
  gflops_per_s: Optional[float] = None
  peak_rss_mb: Optional[float] = None
  model_rss_mb: Optional[float] = None
  emulated: bool = False
  machine: str = ""
  load_1m: Optional[float] = None
  notes: str = ""


@dataclasses.dataclass(frozen=True)
class Report:
  """What :func:`build_report` wrote.

  Attributes:
    out_dir: Output directory.
    rows: Every row of ``results.csv``.
    files: Paths written (report, CSV, plots).
    headline: The headline table (Markdown).
  """

  out_dir: str
  rows: tuple[CostRow, ...]
  files: tuple[str, ...]
  headline: str


def find_models(model_dir: str) -> list[ModelEntry]:
  """The models of an export directory, or the one model of a model directory.

  Raises:
    FileNotFoundError: No ``manifest.json`` in the directory or its
      subdirectories.
  """
  model_dir = os.path.abspath(model_dir)
  if os.path.exists(os.path.join(model_dir, MANIFEST_NAME)):
    parent = os.path.dirname(model_dir)
    return [ModelEntry(export=os.path.basename(parent),
                       variant=os.path.basename(model_dir),
                       directory=model_dir,
                       manifest=Manifest.read(model_dir))]
  entries = [ModelEntry(export=os.path.basename(model_dir), variant=name,
                        directory=os.path.join(model_dir, name),
                        manifest=Manifest.read(os.path.join(model_dir, name)))
             for name in sorted(os.listdir(model_dir))
             if os.path.exists(os.path.join(model_dir, name, MANIFEST_NAME))]
  if not entries:
    raise FileNotFoundError(f"{model_dir}: no {MANIFEST_NAME} in it or its "
                            f"subdirectories; expected a directory written "
                            f"by `python -m export`")
  return entries


def _timed_signatures(entry: ModelEntry, config: ReportConfig) -> list[str]:
  """Signatures to time: the chosen ones the model has, minus string inputs."""
  signatures = entry.manifest.signatures
  chosen = [s for s in (config.signatures or sorted(signatures))
            if s in signatures]
  return [s for s in chosen
          if all(t.dtype != "string"
                 for t in signatures[s].inputs.values())]


def _base_row(entry: ModelEntry, counted: flops_lib.SignatureFlops,
              checks: Sequence[flops_lib.CrossCheck]) -> CostRow:
  manifest = entry.manifest
  reference = {c.reference: c.reference_flops for c in checks}
  return CostRow(
      export=entry.export, preset=entry.preset,
      task=manifest.model.task, variant=entry.variant,
      quantization=entry.quantization, mode=manifest.mode,
      file_bytes=manifest.file.bytes, signature=counted.signature,
      examples=counted.examples, macs=counted.macs, flops=counted.flops,
      flops_per_example=counted.flops_per_example,
      profiler_flops=reference.get("tf.profiler"),
      analytic_flops=reference.get("analytic"))


def _measured_row(base: CostRow, result: latency_lib.LatencyResult) -> CostRow:
  flops = base.flops_per_example * result.examples
  return dataclasses.replace(
      base, examples=result.examples, runner=result.runner,
      runtime=result.runtime, threads=result.threads, xnnpack=result.xnnpack,
      xnnpack_partitions=result.xnnpack_partitions, runs=result.runs,
      median_ms=result.median_ms, p90_ms=result.p90_ms,
      min_ms=result.min_ms, max_ms=result.max_ms, first_ms=result.first_ms,
      init_ms=result.init_ms, examples_per_s=result.examples_per_s,
      gflops_per_s=flops / (result.median_ms / 1e3) / 1e9,
      peak_rss_mb=result.peak_rss_mb, model_rss_mb=result.model_rss_mb,
      emulated=result.emulated, machine=result.machine.label,
      load_1m=result.load_1m, notes=result.notes)


def _host_results(entry: ModelEntry, signature: str, config: ReportConfig
                  ) -> list[latency_lib.LatencyResult]:
  """Every host configuration of one signature."""
  path = os.path.join(entry.directory, MODEL_NAME)
  flex = entry.manifest.mode == "flex"
  runtimes = ("tensorflow",) if flex else config.runtimes
  results = []
  for runtime in runtimes:
    partitions = (latency_lib.delegate_partitions(path, signature,
                                                  runtime=runtime)
                  if any(config.xnnpack) and runtime != "tensorflow"
                  else None)
    for threads in config.threads:
      for xnnpack in config.xnnpack:
        timing = latency_lib.TimingConfig(
            runtime=runtime, threads=threads, xnnpack=xnnpack,
            batch=config.embed_batch, warmup=config.warmup, runs=config.runs)
        results.append(latency_lib.measure(
            path, signature, timing, label=entry.label,
            xnnpack_partitions=partitions))
  return results


def _fmt(value: Optional[float], spec: str = ".1f") -> str:
  return "-" if value is None else format(value, spec)


def _mflops(value: Optional[float]) -> str:
  return "-" if value is None else f"{value / 1e6:,.1f}"


def _headline_rows(rows: Sequence[CostRow]) -> list[CostRow]:
  """Host rows of the first runtime, fewest threads, XNNPACK as first timed."""
  host = [r for r in rows if r.runner == "host"]
  if not host:
    return []
  first = host[0]
  threads = min(r.threads for r in host)
  return [r for r in host if r.runtime == first.runtime
          and r.threads == threads and r.xnnpack == first.xnnpack
          and r.signature in ("train", "embed")]


def headline_table(rows: Sequence[CostRow]) -> str:
  """The headline table (Markdown): train and embed cost per model on the host.

  One line per model and signature, for the first runtime, the fewest
  threads and the first XNNPACK setting measured.
  """
  selected = _headline_rows(rows)
  if not selected:
    return "(no host measurements)"
  first = selected[0]
  lines = [f"Host: {first.machine}; {first.runtime}, {first.threads} "
           f"thread(s), XNNPACK {'on' if first.xnnpack else 'off'}; median "
           f"of the timed calls.", "",
           "| model | signature | examples/call | MFLOPs/example | median ms "
           "| p90 ms | examples/s | GFLOP/s | peak MB | model MB |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in selected:
    lines.append(
        f"| {r.export}/{r.variant} | {r.signature} | {r.examples} | "
        f"{_mflops(r.flops_per_example)} | {_fmt(r.median_ms)} | "
        f"{_fmt(r.p90_ms)} | {_fmt(r.examples_per_s)} | "
        f"{_fmt(r.gflops_per_s, '.2f')} | {_fmt(r.peak_rss_mb, '.0f')} | "
        f"{_fmt(r.model_rss_mb, '.0f')} |")
  return "\n".join(lines)


def _flops_section(counts: Mapping[str, Mapping[str, flops_lib.SignatureFlops]],
                   checks: Sequence[tuple[str, flops_lib.CrossCheck]]
                   ) -> list[str]:
  lines = ["## FLOPs per signature (counted from the .tflite)", "",
           "MACs of conv / matmul / FFT ops; FLOPs = 2 x MACs + elementwise, "
           "reduction and pooling ops (conventions: `benchmarks/flops.py`).",
           "", "| model | signature | examples/call | MMACs/call | "
           "MFLOPs/call | MFLOPs/example | top ops (MFLOPs) | shapes |",
           "|---|---|---:|---:|---:|---:|---|---|"]
  for label, by_signature in counts.items():
    for signature, c in by_signature.items():
      top = ", ".join(f"{o.op} {o.flops / 1e6:,.1f}" for o in c.by_op[:3]
                      if o.flops)
      extra = "; ".join([*c.notes, *(
          [f"not counted: {', '.join(c.uncounted)}"] if c.uncounted else [])])
      lines.append(f"| {label} | {signature} | {c.examples} | "
                   f"{c.macs / 1e6:,.2f} | {c.flops / 1e6:,.2f} | "
                   f"{c.flops_per_example / 1e6:,.2f} | {top or '-'} | "
                   f"{c.shapes}{'; ' + extra if extra else ''} |")
  if checks:
    lines += ["", "### Cross-check", "",
              "Difference: file / reference - 1; residual: the same without "
              "the file's FLOPs in what the reference does not model.", "",
              "| model | signature | reference | file MFLOPs | reference "
              "MFLOPs | difference | residual | explanation |",
              "|---|---|---|---:|---:|---:|---:|---|"]
    for label, c in checks:
      lines.append(f"| {label} | {c.signature} | {c.reference} | "
                   f"{c.file_flops / 1e6:,.1f} | "
                   f"{c.reference_flops / 1e6:,.1f} | {c.difference:+.1%} | "
                   f"{c.residual:+.1%} | {c.explanation} |")
  return lines + [""]


def _delegation_section(
    delegations: Mapping[tuple[str, str],
                         Mapping[str, delegation_lib.Delegation]]
) -> list[str]:
  """Per model, runtime and signature: nodes and FLOPs run in XNNPACK."""
  if not delegations:
    return []
  lines = ["## XNNPACK delegation", "",
           "Operators the runtime's XNNPACK delegate runs and their share of "
           "the signature's FLOPs (`export/delegation.py`: ai_edge_litert is "
           "LiteRT's CompiledModel with XNNPACK flags 0x0B).", "",
           "| model | runtime | signature | nodes delegated | FLOPs "
           "delegated | largest non-delegated (share of FLOPs) |",
           "|---|---|---|---:|---:|---|"]
  for (label, runtime), by_signature in delegations.items():
    for signature, d in by_signature.items():
      left = ", ".join(f"{op} {flops / d.flops:.1%}"
                       for op, flops in d.not_delegated[:2]) or "-"
      lines.append(f"| {label} | {runtime} | {signature} | "
                   f"{d.delegated_nodes} / {d.nodes} | "
                   f"{d.flops_fraction:.1%} | {left} |")
  return lines + [""]


def _latency_section(rows: Sequence[CostRow]) -> list[str]:
  native = [r for r in rows if r.runner and not r.emulated]
  if not native:
    return []
  lines = ["## Latency and memory, every configuration", "",
           "Each configuration ran in a fresh process; peak MB is the "
           "process's peak resident memory (VmHWM), model MB its growth after "
           "importing the runtime. XNNPACK partitions: delegate kernels "
           "verified in the signature's subgraph (0 = requested, took "
           "nothing). Load: the host's 1-minute load average at the start.",
           "", "| model | signature | runner | runtime | threads | XNNPACK "
           "(partitions) | examples | median ms | p90 ms | min ms | first ms "
           "| examples/s | GFLOP/s | peak MB | model MB | load |",
           "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"
           "---:|---:|---:|"]
  for r in native:
    xnnpack = ("on" if r.xnnpack else "off") + (
        f" ({r.xnnpack_partitions})" if r.xnnpack_partitions is not None
        else "")
    lines.append(
        f"| {r.export}/{r.variant} | {r.signature} | {r.runner} | "
        f"{r.runtime} | {r.threads} | {xnnpack} | {r.examples} | "
        f"{_fmt(r.median_ms)} | {_fmt(r.p90_ms)} | {_fmt(r.min_ms)} | "
        f"{_fmt(r.first_ms)} | {_fmt(r.examples_per_s)} | "
        f"{_fmt(r.gflops_per_s, '.2f')} | {_fmt(r.peak_rss_mb, '.0f')} | "
        f"{_fmt(r.model_rss_mb, '.0f')} | {_fmt(r.load_1m)} |")
  notes: dict[tuple[str, str], list[str]] = {}
  for r in native:
    for note in filter(None, r.notes.split("; ")):
      notes.setdefault((r.runtime, note), []).append(
          f"{r.export}/{r.variant} {r.signature}")
  for (runtime, note), where in sorted(notes.items()):
    where = list(dict.fromkeys(where))
    everywhere = len(where) == len({(r.export, r.variant, r.signature)
                                    for r in native})
    scope = "every timed signature" if everywhere else ", ".join(where)
    lines.append(f"- {runtime}: {note} ({scope})")
  return lines + [""]


def _size_section(entries: Sequence[ModelEntry]) -> list[str]:
  lines = ["## File size by quantization", "",
           "| export | preset | model | quantization | bytes | vs float32 "
           "embed |", "|---|---|---|---|---:|---:|"]
  for entry in entries:
    base = next((e.manifest.file.bytes for e in entries
                 if e.export == entry.export
                 and e.variant == "embed_float32"), None)
    size = entry.manifest.file.bytes
    lines.append(f"| {entry.export} | {entry.preset} | {entry.variant} | "
                 f"{entry.quantization} | {size:,} | "
                 f"{f'{size / base:.2f}x' if base else '-'} |")
  return lines + [""]


def _arm64_section(checks: Sequence[tuple[str, arm64_lib.SignatureCheck]]
                   ) -> list[str]:
  if not checks:
    return []
  first = checks[0][1].emulated
  lines = ["## aarch64 tflite-runtime under emulation", "",
           f"Every signature run on the host and under "
           f"{first.machine.emulation} ({first.machine.arch} Python "
           f"{first.runtime}) with the same inputs and {first.runs + 1} calls "
           f"from a fresh interpreter; outputs compared. Emulated times are "
           f"NOT device latencies (shown only to size the emulation).", "",
           "| model | signature | outputs | max abs error | max rel error | "
           "limit | ok | host ms | emulated ms (not device) |",
           "|---|---|---:|---:|---:|---:|---|---:|---:|"]
  for label, c in checks:
    lines.append(f"| {label} | {c.signature} | {c.outputs} | "
                 f"{c.max_abs_error:.3g} | {c.max_rel_error:.3g} | "
                 f"{c.tolerance:g} | {'yes' if c.ok else 'NO'} | "
                 f"{c.host.median_ms:.1f} | {c.emulated.median_ms:.1f} |")
  return lines + [""]


def _run_info(run_dir: str) -> dict[str, Any]:
  path = os.path.join(run_dir, "config.json")
  if not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as f:
    model = json.load(f).get("model", {})
  return {"preset": model.get("encoder", {}).get("name"),
          "task": model.get("task")}


def _quality_metrics(rows: Sequence[Mapping[str, float]]) -> list[str]:
  """Downstream metrics of ``eval.csv`` rows (as ``tff_sim.report`` picks)."""
  return sorted({k for r in rows for k in r
                 if not k.startswith("cumulative_") and k != "round"
                 and not k.startswith("retrieval_precision")})


def _quality_section(run_dirs: Sequence[str], rows: Sequence[CostRow],
                     path: str) -> list[str]:
  """Quality vs cost of federated runs, priced with the measured train cost."""
  runs = {os.path.basename(os.path.normpath(d)):
          read_release_csv(os.path.join(d, "eval.csv")) for d in run_dirs}
  plot_quality_vs_cost_runs(
      runs, _quality_metrics([r for v in runs.values() for r in v]), path)
  trains = [r for r in _headline_rows(rows) if r.signature == "train"]
  lines = ["## Quality vs cost of federated runs", "",
           f"![quality vs cost]({os.path.basename(path)})", "",
           "Simulated client compute (tff_sim's analytic cost model) next to "
           "the exported train signature of the same preset and task: its "
           "FLOPs per example counted from the file, and the client training "
           "time those examples take at the host rate measured above.", "",
           "| run | preset | task | rounds | final metrics | client "
           "examples | sim MFLOPs/example | file MFLOPs/example | est. host "
           "train s |", "|---|---|---|---:|---|---:|---:|---:|---:|"]
  for run_dir in run_dirs:
    label = os.path.basename(os.path.normpath(run_dir))
    info = _run_info(run_dir)
    evals = runs[label]
    metrics_path = os.path.join(run_dir, "metrics.csv")
    history = (read_release_csv(metrics_path) if os.path.exists(metrics_path)
               else evals)
    last = history[-1] if history else {}
    examples = last.get("cumulative_examples")
    sim = (last["cumulative_client_flops"] / examples
           if examples and "cumulative_client_flops" in last else None)
    match = next((r for r in trains if r.preset == info.get("preset")
                  and r.task == info.get("task")), None)
    seconds = (examples / match.examples_per_s if match and examples
               else None)
    metrics = _quality_metrics(evals)
    final = ", ".join(f"{k} {v:.3f}" for k, v in
                      sorted((evals[-1] if evals else {}).items())
                      if k in metrics)
    lines.append(
        f"| {label} | {info.get('preset', '-')} | {info.get('task', '-')} | "
        f"{_fmt(last.get('round'), '.0f')} | {final or '-'} | "
        f"{_fmt(examples, '.0f')} | {_mflops(sim)} | "
        f"{_mflops(match.flops_per_example if match else None)} | "
        f"{_fmt(seconds)} |")
  return lines + [""]


def _plot_latency(rows: Sequence[CostRow], path: str) -> None:
  """Median latency vs FLOPs per call, one point per model and signature."""
  figure = Figure(figsize=(6.4, 4.4), layout="constrained")
  ax = figure.subplots()
  selected = _headline_rows(rows)
  for signature, marker in (("train", "o"), ("embed", "s")):
    points = [r for r in selected if r.signature == signature]
    if not points:
      continue
    ax.scatter([r.flops_per_example * r.examples for r in points],
               [r.median_ms for r in points], marker=marker, label=signature)
    for r in points:
      ax.annotate(f"{r.export} {r.variant.replace('embed_', '')}",
                  (r.flops_per_example * r.examples, r.median_ms),
                  fontsize="x-small", xytext=(3, 3),
                  textcoords="offset points")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("FLOPs per call (counted from the .tflite)")
  ax.set_ylabel("median latency (ms)")
  if selected:
    first = selected[0]
    ax.set_title(f"host, {first.runtime}, {first.threads} thread(s)",
                 fontsize="small")
    ax.legend(fontsize="small")
  ax.grid(alpha=0.3, which="both")
  figure.savefig(path, dpi=110)


def _plot_sizes(entries: Sequence[ModelEntry], path: str) -> None:
  """File size of every model variant, grouped by export."""
  exports = list(dict.fromkeys(e.export for e in entries))
  variants = list(dict.fromkeys(e.variant for e in entries))
  figure = Figure(figsize=(1.6 + 1.4 * len(exports), 4.0),
                  layout="constrained")
  ax = figure.subplots()
  width = 0.8 / len(variants)
  for j, variant in enumerate(variants):
    bars = [(i, e.manifest.file.bytes / 1e6)
            for i, export in enumerate(exports) for e in entries
            if e.export == export and e.variant == variant]
    ax.bar([i + j * width for i, _ in bars], [size for _, size in bars],
           width, color=f"C{j}", label=variant)
  ax.set_xticks([i + 0.4 - width / 2 for i in range(len(exports))],
                [f"{e}\n({next(m.preset for m in entries if m.export == e)})"
                 for e in exports], fontsize="small")
  ax.set_yscale("log")
  ax.set_ylabel("file size (MB)")
  ax.set_title("model file size by variant / quantization", fontsize="small")
  ax.legend(fontsize="small")
  ax.grid(alpha=0.3, axis="y", which="both")
  figure.savefig(path, dpi=110)


def _write_csv(rows: Sequence[CostRow], path: str) -> None:
  fields = [f.name for f in dataclasses.fields(CostRow)]
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    for row in rows:
      writer.writerow({k: "" if v is None else v
                       for k, v in dataclasses.asdict(row).items()})


def read_rows(path: str) -> list[CostRow]:
  """Reads a ``results.csv`` back (e.g. to print :func:`headline_table`)."""
  types = {f.name: f.type for f in dataclasses.fields(CostRow)}
  rows = []
  with open(path, newline="", encoding="utf-8") as f:
    for record in csv.DictReader(f):
      values = {}
      for name, text in record.items():
        kind = types[name]
        if text == "":
          values[name] = None if "Optional" in kind else text
        elif "bool" in kind:
          values[name] = text == "True"
        elif "int" in kind:
          values[name] = int(text)
        elif "float" in kind:
          values[name] = float(text)
        else:
          values[name] = text
      rows.append(CostRow(**values))
  return rows


def build_report(model_dirs: Sequence[str], out_dir: str,
                 config: ReportConfig = ReportConfig(), *,
                 run_dirs: Sequence[str] = (), command: str = "",
                 progress: Callable[[str], None] = lambda message: None
                 ) -> Report:
  """Measures every exported model and writes the report.

  Args:
    model_dirs: Export directories (or single model directories).
    out_dir: Output directory (created).
    config: What to measure.
    run_dirs: Federated run directories (``eval.csv``, ``metrics.csv``,
      ``config.json``) for the quality-vs-cost section.
    command: The command line that produced the report (quoted in it).
    progress: Called with a line before each step.

  Returns:
    The rows, files and headline table.

  Raises:
    FileNotFoundError: A directory has no exported model or run files.
    benchmarks.latency.BenchmarkError: A host benchmark failed.
    benchmarks.adb.AdbError: The device run was requested and failed.
    benchmarks.arm64.Arm64Unavailable: The emulated check was requested and
      its pieces cannot be provided.
  """
  for run_dir in run_dirs:
    if not os.path.exists(os.path.join(run_dir, "eval.csv")):
      raise FileNotFoundError(f"{run_dir}: no eval.csv; expected a run "
                              f"directory of `python -m tff_sim`")
  entries = [e for d in model_dirs for e in find_models(d)]
  os.makedirs(out_dir, exist_ok=True)
  counts: dict[str, dict[str, flops_lib.SignatureFlops]] = {}
  delegations: dict[tuple[str, str],
                    dict[str, delegation_lib.Delegation]] = {}
  check_rows: list[tuple[str, flops_lib.CrossCheck]] = []
  rows: list[CostRow] = []
  bases: dict[tuple[str, str], CostRow] = {}
  arm64_checks: list[tuple[str, arm64_lib.SignatureCheck]] = []
  emulated = (arm64_lib.setup(config.arm64) if config.arm64 is not None
              else None)
  device = (adb_lib.device_machine(dataclasses.replace(
      config.adb, serial=adb_lib.check_setup(config.adb)))
            if config.adb is not None else None)
  for entry in entries:
    progress(f"FLOPs of {entry.label}")
    flex = entry.manifest.mode == "flex"
    with open(os.path.join(entry.directory, MODEL_NAME), "rb") as f:
      content = f.read()
    counts[entry.label] = flops_lib.count_model_flops(
        content, batch=config.embed_batch,
        runtime="tensorflow" if flex else "tflite_runtime")
    for runtime in ([] if flex else config.runtimes):
      if runtime != "tensorflow":
        delegations[(entry.label, runtime)] = (
            delegation_lib.model_delegation(content, runtime=runtime,
                                            batch=config.embed_batch))
    for signature, counted in counts[entry.label].items():
      checks = (flops_lib.cross_check(counted, entry.manifest)
                if config.cross_check and entry.variant == "training" else [])
      check_rows += [(entry.label, c) for c in checks]
      base = bases[(entry.label, signature)] = _base_row(entry, counted,
                                                         checks)
      if signature not in _timed_signatures(entry, config):
        rows.append(base)
        continue
      progress(f"timing {entry.label} {signature}")
      rows += [_measured_row(base, r)
               for r in _host_results(entry, signature, config)]
      if config.adb is not None:
        rows.append(_measured_row(base, adb_lib.run_signature(
            entry.directory, entry.manifest, signature, config.adb,
            label=entry.label, machine=device)))
    if emulated is not None and not flex:
      progress(f"aarch64 emulation check of {entry.label}")
      for check in arm64_lib.check_model(entry.directory, emulated,
                                         label=entry.label):
        arm64_checks.append((entry.label, check))
        rows.append(_measured_row(bases[(entry.label, check.signature)],
                                  check.emulated))
  files = [os.path.join(out_dir, name)
           for name in (REPORT_NAME, RESULTS_CSV, LATENCY_PLOT, SIZE_PLOT)]
  _write_csv(rows, files[1])
  _plot_latency(rows, files[2])
  _plot_sizes(entries, files[3])
  headline = headline_table(rows)
  host = latency_lib.host_machine()
  lines = ["# Cost benchmark of exported models", "",
           *([f"Command: `{command}`", ""] if command else []),
           f"Host: {host.label}. The host is shared with other jobs: "
           f"latencies are noisy (medians of {config.runs} calls after "
           f"{config.warmup} warm-up calls; see the load column).", "",
           "## Headline", "", headline, "",
           f"![latency vs FLOPs]({LATENCY_PLOT})", ""]
  lines += _flops_section(counts, check_rows)
  lines += _delegation_section(delegations)
  lines += _latency_section(rows)
  lines += _size_section(entries)
  lines += [f"![size vs quantization]({SIZE_PLOT})", ""]
  lines += _arm64_section(arm64_checks)
  if run_dirs:
    files.append(os.path.join(out_dir, QUALITY_PLOT))
    lines += _quality_section(run_dirs, rows, files[-1])
  with open(files[0], "w", encoding="utf-8") as f:
    f.write("\n".join(lines))
  return Report(out_dir=os.path.abspath(out_dir), rows=tuple(rows),
                files=tuple(files), headline=headline)
