"""The demo on built-in data: corpus -> self-supervised training -> linear probes.

Usage:
  python -m model.demo_main --out_dir demo_output [--task triplet] [--steps 300]

Generates the ``demo`` synthetic corpus (reused when present), trains the
encoder centrally with a self-supervised task, and compares it with a
random-init encoder by linear probes on every downstream label. Prints the
table and writes it as Markdown, CSV and a PNG bar chart. Rerunning resumes
or reuses every finished stage.
"""

from __future__ import annotations

import os
import time

from absl import app
from absl import flags

from model import evaluation
from model.datasets import synthetic
from model.datasets.audio import decode_clips
from model.datasets.pipeline import make_segments
from model.encoders import ENCODERS, Encoder
from model.ssl_model import ModelSpec, SSLModel
from model.tasks import SSL_TASKS
from model.train import TrainConfig, train_centralized

_OUT_DIR = flags.DEFINE_string("out_dir", "demo_output", "Output directory.")
_CORPUS = flags.DEFINE_enum("corpus", "demo", list(synthetic.CORPUS_PRESETS),
                            "Built-in corpus size.")
_TASK = flags.DEFINE_enum("task", "triplet", list(SSL_TASKS),
                          "Self-supervised task.")
_ENCODER = flags.DEFINE_enum("encoder", "small", list(ENCODERS),
                             "Encoder preset.")
_STEPS = flags.DEFINE_integer("steps", 300, "Training steps.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Examples per step.")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  start = time.time()
  out_dir = _OUT_DIR.value
  table, waveforms, _ = decode_clips(
      synthetic.generate_corpus(os.path.join(out_dir, "corpus"),
                                synthetic.CORPUS_PRESETS[_CORPUS.value]),
      show_progress=True)
  spec = ModelSpec(task=_TASK.value, encoder=ENCODERS[_ENCODER.value])
  example_samples = SSLModel(spec).example_samples
  segments = make_segments(waveforms, example_samples,
                           hop=spec.frontend.patch_samples // 2,
                           min_samples=example_samples // 2)
  print(f"corpus: {len(table)} clips, {len(table.client_ids)} clients; "
        f"{len(segments)} training examples of "
        f"{example_samples / spec.frontend.sample_rate:.2f} s")
  result = train_centralized(
      spec, TrainConfig(steps=_STEPS.value, batch_size=_BATCH.value),
      segments.waveforms, os.path.join(out_dir, "runs", spec.task),
      dataset_info={"kind": "synthetic", "preset": _CORPUS.value})
  print(f"{spec.task}: loss {result.losses[0][1]:.4f} (step "
        f"{result.losses[0][0]}) -> {result.losses[-1][1]:.4f} (step "
        f"{result.losses[-1][0]})")
  rows = {
      "random init": evaluation.evaluate_encoder(
          Encoder(spec.encoder, seed=spec.seed), table, waveforms,
          spec.frontend),
      spec.task: evaluation.evaluate_encoder(
          result.model.encoder, table, waveforms, spec.frontend),
  }
  print("\nLinear probe accuracy (held-out speakers) and retrieval:")
  print(evaluation.format_markdown_table(rows))
  report_dir = os.path.join(out_dir, "report")
  evaluation.write_csv(rows, os.path.join(report_dir, "probe.csv"))
  with open(os.path.join(report_dir, "probe.md"), "w") as f:
    f.write(evaluation.format_markdown_table(rows) + "\n")
  evaluation.plot_quality_table(rows, os.path.join(report_dir, "probe.png"),
                                title=f"{spec.task} / {spec.encoder.name}",
                                ylabel="accuracy / mAP")
  print(f"\nwrote {report_dir}/probe.{{md,csv,png}}; demo took "
        f"{time.time() - start:.0f} s")


def run() -> None:
  app.run(main)


if __name__ == "__main__":
  run()
