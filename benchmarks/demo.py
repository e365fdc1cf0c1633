"""The demo on built-in data: corpus -> federated and centralized SSL ->
probes -> on-device TFLite export that keeps training under LiteRT -> its
on-device cost.

:func:`run_demo` generates the synthetic corpus (reused when present),
pre-trains the encoder with a self-supervised task federatedly in
TensorFlow Federated (natural partition: one client per speaker/device) and
centrally on the same number of examples, then compares both with a
random-init encoder by linear probes on every downstream label (Markdown,
CSV and a PNG bar chart, next to the simulation's quality-vs-cost plot).
Then it exports the federated encoder as a builtin-only TFLite training
model (plus float32 / int8 embed models), verifies it against TF, trains it
for a few steps on corpus audio under LiteRT, as a phone would, and
benchmarks the exported files: FLOPs per signature, LiteRT latency of
``train`` and ``embed``, and the share of FLOPs XNNPACK runs (Markdown +
PNG). Rerunning reuses or resumes every finished stage.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Optional

import numpy as np

from export.corpus import Corpus
from export.exporter import ExportConfig, export_model, load_source
from export import manifest as manifest_lib
from export import tflite_flops
from export.runtime import OnDeviceModel
from model import evaluation
from model.config_checks import require_choice, require_non_negative
from model.datasets import synthetic
from model.datasets.audio import decode_clips
from model.datasets.pipeline import training_segments
from model.encoders import ENCODERS, Encoder
from model.ssl_model import ModelSpec
from model.tasks import SSL_TASKS
from model.train import TrainConfig, train_centralized
from tff_sim.algorithms import AlgorithmConfig
from tff_sim.partition import PartitionConfig
from tff_sim.report import plot_quality_vs_cost
from tff_sim.simulation import SimulationConfig, run_simulation

__all__ = ["DemoConfig", "DemoResult", "run_demo"]


@dataclasses.dataclass(frozen=True)
class DemoConfig:
  """Settings of the demo.

  Attributes:
    out_dir: Output directory (corpus, runs, export, report).
    corpus: Synthetic corpus preset.
    task: SSL task.
    encoder: Encoder preset.
    rounds: Federated rounds (FedAvg).
    clients_per_round: Clients sampled per round.
    max_local_steps: Cap on local steps per client and round.
    batch_size: Client, centralized and exported train batch size.
    device_steps: On-device train steps run on the exported model.
  """

  out_dir: str = "demo_output"
  corpus: str = "demo"
  task: str = "nt_xent"
  encoder: str = "small"
  rounds: int = 30
  clients_per_round: int = SimulationConfig().clients_per_round
  max_local_steps: int = 8
  batch_size: int = SimulationConfig().batch_size
  device_steps: int = 5

  def __post_init__(self):
    require_choice(self, ["corpus"], synthetic.CORPUS_PRESETS)
    require_choice(self, ["task"], SSL_TASKS)
    require_choice(self, ["encoder"], ENCODERS)
    require_non_negative(self, ("device_steps",))
    self.simulation()  # Validates the federated settings.

  @property
  def spec(self) -> ModelSpec:
    """The pre-trained model."""
    return ModelSpec(task=self.task, encoder=ENCODERS[self.encoder])

  def simulation(self) -> SimulationConfig:
    """The federated run: FedAvg on the natural partition."""
    return SimulationConfig(
        model=self.spec, algorithm=AlgorithmConfig(algorithm="fedavg"),
        partition=PartitionConfig(method="natural"), rounds=self.rounds,
        clients_per_round=self.clients_per_round, batch_size=self.batch_size,
        max_local_steps=self.max_local_steps,
        eval_every=max(1, self.rounds // 3))


@dataclasses.dataclass(frozen=True)
class DemoResult:
  """What :func:`run_demo` produced.

  Attributes:
    probes: Linear-probe metrics by row (random init, log-mel, federated,
      centralized).
    device_losses: Losses of the on-device train steps.
    ondevice: The on-device cost table (Markdown).
    report: The closing line (time taken, output directory).
  """

  probes: dict[str, dict[str, float]]
  device_losses: tuple[float, ...]
  ondevice: str
  report: str


def run_demo(config: DemoConfig,
             progress: Optional[Callable[[str], None]] = None) -> DemoResult:
  """Runs the demo (see the module docstring).

  Args:
    config: The demo's settings.
    progress: Called with each line of the demo's account of its stages
      (results included) as it goes.

  Returns:
    The probes, on-device losses and cost table, and the closing line.
  """
  say = progress or (lambda line: None)
  start = time.time()
  out_dir = config.out_dir
  table, waveforms, _ = decode_clips(
      synthetic.generate_corpus(os.path.join(out_dir, "corpus"),
                                synthetic.CORPUS_PRESETS[config.corpus]),
      show_progress=True)
  spec = config.spec
  say(f"corpus: {len(table)} clips from {len(table.client_ids)} "
      f"speakers/devices")

  say("\n[1/4] federated pre-training in TensorFlow Federated "
      "(FedAvg, one client per speaker)")
  run_dir = os.path.join(out_dir, "runs", f"federated_{spec.task}")
  federated = run_simulation(config.simulation(), table, waveforms, run_dir)
  examples = federated.totals["examples"]
  say(f"{examples:.0f} client examples, "
      f"{federated.totals['client_flops'] / 1e12:.2f} client TFLOPs, "
      f"{(federated.totals['bytes_down'] + federated.totals['bytes_up']) / 1e6:.1f}"
      f" MB on the wire; quality vs cost: {plot_quality_vs_cost(run_dir)}")

  say("\n[2/4] centralized pre-training on the same number of examples")
  central = train_centralized(
      spec, TrainConfig(steps=max(1, round(examples / config.batch_size)),
                        batch_size=config.batch_size),
      training_segments(waveforms, spec).waveforms,
      os.path.join(out_dir, "runs", f"centralized_{spec.task}"),
      dataset_info={"kind": "synthetic", "preset": config.corpus})

  rows = {
      "random init": evaluation.evaluate_encoder(
          Encoder(spec.encoder, seed=spec.seed), table, waveforms,
          spec.frontend),
      evaluation.LOGMEL_BASELINE: evaluation.evaluate_logmel_baseline(
          table, waveforms, spec.frontend),
      f"federated {spec.task}": federated.final_metrics,
      f"centralized {spec.task}": evaluation.evaluate_encoder(
          central.model.encoder, table, waveforms, spec.frontend),
  }
  say("\nLinear-probe accuracy (held-out speakers) and keyword retrieval:")
  say(evaluation.format_markdown_table(rows))
  report_dir = os.path.join(out_dir, "report")
  evaluation.write_csv(rows, os.path.join(report_dir, "probe.csv"))
  with open(os.path.join(report_dir, "probe.md"), "w") as f:
    f.write(evaluation.format_markdown_table(rows) + "\n")
  evaluation.plot_quality_table(rows, os.path.join(report_dir, "probe.png"),
                                title=f"{spec.task} / {spec.encoder.name}",
                                ylabel="accuracy / mAP")
  say(f"wrote {report_dir}/probe.{{md,csv,png}}")

  say("\n[3/4] on-device export of the federated encoder (builtin ops)")
  export_dir = os.path.join(out_dir, "export")
  if not os.path.exists(os.path.join(export_dir, "training", "model.tflite")):
    export_model(load_source(run_dir), export_dir,
                 ExportConfig(batch_size=config.batch_size,
                              quantizations=("float32", "int8")),
                 corpus=Corpus(table=table, waveforms=waveforms,
                               source=table.root), overwrite=True)
  with open(os.path.join(export_dir, "report.md")) as f:
    say(f.read().strip())
  device = OnDeviceModel.load(os.path.join(export_dir, "training"))
  batch = training_segments(waveforms, spec).waveforms[:config.batch_size]
  losses = [device.train(batch) for _ in range(config.device_steps)]
  say(f"{device.runtime} train steps on one corpus batch: "
      + " -> ".join(f"{l:.4f}" for l in losses))

  say("\n[4/4] on-device cost of the exported files (LiteRT, 1 thread)")
  table_md = _benchmark_export(export_dir, batch, report_dir)
  say(table_md)
  say(f"wrote {report_dir}/ondevice.{{md,png}}")
  return DemoResult(
      probes=rows, device_losses=tuple(float(l) for l in losses),
      ondevice=table_md,
      report=f"\ndemo took {time.time() - start:.0f} s; outputs in "
             f"{out_dir}/")


def _cpu_ms(call, runs: int) -> float:
  """Median CPU milliseconds of ``runs`` calls after one warm-up call."""
  call()
  times = []
  for _ in range(runs):
    start = time.process_time()
    call()
    times.append(1e3 * (time.process_time() - start))
  return float(np.median(times))


def _benchmark_export(export_dir: str, batch: np.ndarray,
                      report_dir: str) -> str:
  """FLOPs, LiteRT latency and XNNPACK share of the exported files.

  Returns the Markdown table (also written to ``ondevice.md``, plotted to
  ``ondevice.png``).
  """
  rows = []
  for name in sorted(os.listdir(export_dir)):
    path = os.path.join(export_dir, name, manifest_lib.MODEL_NAME)
    if not os.path.exists(path):
      continue
    manifest = manifest_lib.Manifest.read(os.path.dirname(path))
    with open(path, "rb") as f:
      content = f.read()
    model = OnDeviceModel.load(path)
    patch = batch[:1, :manifest.model.patch_samples]
    calls = {"embed": (lambda: model.embed(patch), 20)}
    if "train" in manifest.signatures:
      calls["train"] = (lambda: model.train(batch), 5)
    for signature, (call, runs) in calls.items():
      flops = tflite_flops.count_flops(content, signature, batch=1).flops
      delegated = (manifest.delegation or {}).get(signature, {})
      rows.append((name, signature, flops, _cpu_ms(call, runs),
                   delegated.get("delegated_flops_fraction")))
  lines = ["| file | signature | GFLOPs / call | LiteRT CPU ms | GFLOP/s | "
           "XNNPACK FLOPs |", "|---|---|---:|---:|---:|---:|"]
  for name, signature, flops, ms, share in rows:
    lines.append(f"| {name} | {signature} | {flops / 1e9:.3f} | {ms:.1f} | "
                 f"{flops / (ms * 1e6):.1f} | "
                 f"{'-' if share is None else f'{share:.0%}'} |")
  table = "\n".join(lines)
  with open(os.path.join(report_dir, "ondevice.md"), "w") as f:
    f.write(table + "\n")
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, ax = plt.subplots(figsize=(7, 3.5))
  labels = [f"{n}\n{s}" for n, s, *_ in rows]
  bars = ax.bar(labels, [ms for *_, ms, _ in rows])
  for bar, (*_, share) in zip(bars, rows):
    if share is not None:
      ax.annotate(f"{share:.0%} XNNPACK", (bar.get_x() + bar.get_width() / 2,
                                           bar.get_height()),
                  ha="center", va="bottom", fontsize=7)
  ax.set_yscale("log")
  ax.set_ylabel("LiteRT CPU ms per call (median)")
  ax.set_title("Exported model on the host (1 thread)")
  ax.tick_params(axis="x", labelsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(report_dir, "ondevice.png"), dpi=120)
  plt.close(fig)
  return table
