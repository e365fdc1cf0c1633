"""The demo on built-in data: corpus -> federated and centralized SSL ->
probes -> on-device TFLite export that keeps training under tflite_runtime.

Usage:
  python -m benchmarks.demo_main --out_dir demo_output [--task triplet]

Generates the ``demo`` synthetic corpus (reused when present), pre-trains the
encoder with a self-supervised task federatedly in TensorFlow Federated
(natural partition: one client per speaker/device) and centrally on the same
number of examples, then compares both with a random-init encoder by linear
probes on every downstream label. Prints the table and writes it as Markdown,
CSV and a PNG bar chart, next to the simulation's quality-vs-cost plot. Then
exports the federated encoder as a builtin-only TFLite training model (plus
float32 / int8 embed models), verifies it against TF, and trains it for a few
steps on corpus audio under ``tflite_runtime``, as a phone would. Rerunning
reuses or resumes every finished stage.
"""

from __future__ import annotations

import os
import time

from absl import app
from absl import flags

from export.corpus import Corpus
from export.exporter import ExportConfig, export_model, load_source
from export.runtime import OnDeviceModel
from model import evaluation
from model.cli import quiet_logging
from model.datasets import synthetic
from model.datasets.audio import decode_clips
from model.encoders import ENCODERS, Encoder
from model.ssl_model import ModelSpec
from model.tasks import SSL_TASKS
from model.train import TrainConfig, train_centralized
from tff_sim.algorithms import AlgorithmConfig
from tff_sim.partition import PartitionConfig
from tff_sim.report import plot_quality_vs_cost
from tff_sim.simulation import SimulationConfig, run_simulation, training_segments

_OUT_DIR = flags.DEFINE_string("out_dir", "demo_output", "Output directory.")
_CORPUS = flags.DEFINE_enum("corpus", "demo", list(synthetic.CORPUS_PRESETS),
                            "Built-in corpus size.")
_TASK = flags.DEFINE_enum("task", "nt_xent", list(SSL_TASKS),
                          "Self-supervised task.")
_ENCODER = flags.DEFINE_enum("encoder", "small", list(ENCODERS),
                             "Encoder preset.")
_ROUNDS = flags.DEFINE_integer("rounds", 30, "Federated rounds.")
_CLIENTS = flags.DEFINE_integer("clients_per_round", 4, "Clients per round.")
_LOCAL_STEPS = flags.DEFINE_integer("max_local_steps", 8,
                                    "Local steps per client and round.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Examples per step.")
_DEVICE_STEPS = flags.DEFINE_integer(
    "device_steps", 5, "On-device train steps run on the exported model.")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  quiet_logging()
  start = time.time()
  out_dir = _OUT_DIR.value
  table, waveforms, _ = decode_clips(
      synthetic.generate_corpus(os.path.join(out_dir, "corpus"),
                                synthetic.CORPUS_PRESETS[_CORPUS.value]),
      show_progress=True)
  spec = ModelSpec(task=_TASK.value, encoder=ENCODERS[_ENCODER.value])
  print(f"corpus: {len(table)} clips from {len(table.client_ids)} "
        f"speakers/devices")

  print("\n[1/3] federated pre-training in TensorFlow Federated "
        "(FedAvg, one client per speaker)")
  config = SimulationConfig(
      model=spec, algorithm=AlgorithmConfig(algorithm="fedavg"),
      partition=PartitionConfig(method="natural"), rounds=_ROUNDS.value,
      clients_per_round=_CLIENTS.value, batch_size=_BATCH.value,
      max_local_steps=_LOCAL_STEPS.value, eval_every=max(1, _ROUNDS.value // 3))
  run_dir = os.path.join(out_dir, "runs", f"federated_{spec.task}")
  federated = run_simulation(config, table, waveforms, run_dir)
  examples = federated.totals["examples"]
  print(f"{examples:.0f} client examples, "
        f"{federated.totals['client_flops'] / 1e12:.2f} client TFLOPs, "
        f"{(federated.totals['bytes_down'] + federated.totals['bytes_up']) / 1e6:.1f}"
        f" MB on the wire; quality vs cost: {plot_quality_vs_cost(run_dir)}")

  print("\n[2/3] centralized pre-training on the same number of examples")
  central = train_centralized(
      spec, TrainConfig(steps=max(1, round(examples / _BATCH.value)),
                        batch_size=_BATCH.value),
      training_segments(waveforms, spec).waveforms,
      os.path.join(out_dir, "runs", f"centralized_{spec.task}"),
      dataset_info={"kind": "synthetic", "preset": _CORPUS.value})

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
  print("\nLinear-probe accuracy (held-out speakers) and keyword retrieval:")
  print(evaluation.format_markdown_table(rows))
  report_dir = os.path.join(out_dir, "report")
  evaluation.write_csv(rows, os.path.join(report_dir, "probe.csv"))
  with open(os.path.join(report_dir, "probe.md"), "w") as f:
    f.write(evaluation.format_markdown_table(rows) + "\n")
  evaluation.plot_quality_table(rows, os.path.join(report_dir, "probe.png"),
                                title=f"{spec.task} / {spec.encoder.name}",
                                ylabel="accuracy / mAP")
  print(f"wrote {report_dir}/probe.{{md,csv,png}}")

  print("\n[3/3] on-device export of the federated encoder (builtin ops)")
  export_dir = os.path.join(out_dir, "export")
  if not os.path.exists(os.path.join(export_dir, "training", "model.tflite")):
    export_model(load_source(run_dir), export_dir,
                 ExportConfig(batch_size=_BATCH.value,
                              quantizations=("float32", "int8")),
                 corpus=Corpus(table=table, waveforms=waveforms,
                               source=table.root), overwrite=True)
  with open(os.path.join(export_dir, "report.md")) as f:
    print(f.read().strip())
  device = OnDeviceModel.load(os.path.join(export_dir, "training"))
  batch = training_segments(waveforms, spec).waveforms[:_BATCH.value]
  losses = [device.train(batch) for _ in range(_DEVICE_STEPS.value)]
  print(f"tflite_runtime train steps on one corpus batch: "
        + " -> ".join(f"{l:.4f}" for l in losses))
  print(f"\ndemo took {time.time() - start:.0f} s; outputs in {out_dir}/")


def run() -> None:
  app.run(main)


if __name__ == "__main__":
  run()
