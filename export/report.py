"""``report.md`` and ``quantization.csv``: what an export wrote and how well."""

from __future__ import annotations

import csv
import dataclasses
from typing import Any, Mapping, Optional, Sequence

from export.manifest import Manifest

__all__ = ["REPORT_NAME", "QUANTIZATION_CSV", "QuantizationRow",
           "write_quantization_csv", "write_report"]

REPORT_NAME = "report.md"
QUANTIZATION_CSV = "quantization.csv"


@dataclasses.dataclass(frozen=True)
class QuantizationRow:
  """One embed-only model variant.

  Attributes:
    variant: Quantization (``float32``, ``float16``, ``dynamic_int8``,
      ``int8``).
    path: The ``.tflite`` file, relative to the export directory.
    bytes: File size.
    mean_cosine: Mean cosine similarity of its embeddings to TF's float32
      ones over the corpus patches.
    min_cosine: The smallest such similarity.
    max_abs_error: Largest absolute embedding difference to TF's.
    accuracy: Linear-probe accuracy by downstream task.
    accuracy_delta: ``accuracy`` minus TF float32's, by task.
    notes: How it was converted.
  """

  variant: str
  path: str
  bytes: int
  mean_cosine: float
  min_cosine: float
  max_abs_error: float
  accuracy: dict[str, float]
  accuracy_delta: dict[str, float]
  notes: str = ""


def _tasks(rows: Sequence[QuantizationRow]) -> list[str]:
  return list(dict.fromkeys(task for row in rows for task in row.accuracy))


def write_quantization_csv(path: str, rows: Sequence[QuantizationRow],
                           reference_accuracy: Mapping[str, float]) -> None:
  """One line per variant, plus a ``tf_float32`` line with TF's accuracies."""
  tasks = _tasks(rows)
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["variant", "path", "bytes", "mean_cosine", "min_cosine",
                     "max_abs_error", *(f"accuracy_{t}" for t in tasks),
                     *(f"delta_{t}" for t in tasks), "notes"])
    writer.writerow(["tf_float32", "", "", 1.0, 1.0, 0.0,
                     *(reference_accuracy.get(t, "") for t in tasks),
                     *(0.0 for _ in tasks), "TensorFlow reference"])
    for row in rows:
      writer.writerow([row.variant, row.path, row.bytes,
                       f"{row.mean_cosine:.6f}", f"{row.min_cosine:.6f}",
                       f"{row.max_abs_error:.6g}",
                       *(f"{row.accuracy[t]:.4f}" if t in row.accuracy else ""
                         for t in tasks),
                       *(f"{row.accuracy_delta[t]:+.4f}"
                         if t in row.accuracy_delta else "" for t in tasks),
                       row.notes])


def _training_section(manifest: Manifest) -> list[str]:
  v = manifest.verification
  train = v["train"]
  optimizer = manifest.optimizer
  hyper = ", ".join(f"{k}={val:g}" for k, val in
                    optimizer.hyperparameters.items())
  lines = [
      "## Training model", "",
      f"- file: `{manifest.path}` ({manifest.file.bytes:,} bytes, "
      f"sha256 `{manifest.file.sha256[:16]}...`)",
      f"- mode: `{manifest.mode}`; operators: "
      f"{len(manifest.operators)} distinct, Select-TF ops: "
      f"{list(manifest.flex_ops) or 'none'}",
      f"- train: batch {manifest.batch_size} x "
      f"{manifest.example_samples} samples; optimizer "
      f"`{optimizer.name}` ({hyper})",
      f"- embed: waveform [N, {manifest.model.patch_samples}] "
      f"({manifest.embed_batch} N) -> "
      f"[N, {manifest.model.embedding_dim}]",
      f"- variables: {len(manifest.variables)} "
      f"({manifest.variable_bytes:,} bytes incl. optimizer state)",
      "", f"Verified under `{v['runtime']}` ({v['num_threads']} thread); "
      f"train compared {train['comparison']}:", "",
      "| check | result |", "|---|---|",
      f"| embed max abs error vs TF ({v['embed']['patches']} patches) | "
      f"{v['embed']['max_abs_error']:.3g} "
      f"(limit {v['embed']['tolerance']:.3g}) |",
      f"| train loss, first -> last cycle ({train['steps']} steps) | "
      f"{train['first_cycle_mean_loss']:.5g} -> "
      f"{train['last_cycle_mean_loss']:.5g} |",
      f"| max relative loss difference vs TF | "
      f"{train['max_relative_loss_difference']:.3g} "
      f"(limit {train['loss_tolerance']:g}) |",
      f"| max relative gradient error vs TF | "
      f"{train['max_relative_gradient_error']:.3g} "
      f"(`{train['max_gradient_error_variable']}`; limit "
      f"{train['gradient_tolerance']:g}) |",
      f"| get_weights -> set_weights exact | "
      f"{v['set_weights']['round_trip_exact']} |",
      f"| set_weights with NaN rejected (ok=0, nothing changed) | "
      f"{v['set_weights']['non_finite_rejected']} |",
  ]
  if "save_restore" in v:
    lines.append(f"| save -> restore exact | "
                 f"{v['save_restore']['round_trip_exact']} |")
  return lines + [""] + delegation_lines(manifest)


def delegation_lines(manifest: Manifest) -> list[str]:
  """Markdown table of the manifest's ``delegation`` entry (if any)."""
  if not manifest.delegation:
    return []
  entries = manifest.delegation
  runtime = next(iter(entries.values()))["runtime"]
  lines = [f"XNNPACK delegation under `{runtime}` (nodes and FLOPs per call "
           f"that run in the delegate):", "",
           "| signature | nodes delegated | FLOPs | FLOPs delegated | "
           "largest non-delegated |", "|---|---:|---:|---:|---|"]
  for signature, d in sorted(entries.items()):
    left = ", ".join(f"{op} {flops / d['flops']:.1%}"
                     for op, flops in d["not_delegated"][:2]) or "-"
    lines.append(f"| {signature} | {d['delegated_nodes']} / {d['nodes']} | "
                 f"{d['flops']:,} | {d['delegated_flops_fraction']:.1%} | "
                 f"{left} |")
  return lines + [""]


def _quantization_section(rows: Sequence[QuantizationRow],
                          reference_accuracy: Mapping[str, float],
                          skipped: Mapping[str, str]) -> list[str]:
  tasks = _tasks(rows)
  base = next((row.bytes for row in rows if row.variant == "float32"), None)
  header = ["variant", "bytes", "vs float32", "mean cos", "min cos",
            "max abs err", *(f"{t} acc (delta)" for t in tasks)]
  lines = ["## Embed models", "",
           "Fidelity is measured against TensorFlow's float32 embeddings of "
           "every corpus patch; accuracy is a linear probe on mean clip "
           "embeddings (`model.evaluation`), delta against TensorFlow float32.",
           "", "| " + " | ".join(header) + " |",
           "|---|" + "---:|" * (len(header) - 1)]
  lines.append("| TF float32 | - | - | 1 | 1 | 0 | " + " | ".join(
      f"{reference_accuracy[t]:.3f}" for t in tasks) + " |")
  for row in rows:
    ratio = f"{row.bytes / base:.2f}x" if base else "-"
    cells = [f"{row.accuracy[t]:.3f} ({row.accuracy_delta[t]:+.3f})"
             if t in row.accuracy else "-" for t in tasks]
    lines.append(f"| {row.variant} | {row.bytes:,} | {ratio} | "
                 f"{row.mean_cosine:.5f} | {row.min_cosine:.5f} | "
                 f"{row.max_abs_error:.3g} | " + " | ".join(cells) + " |")
  lines.append("")
  lines += [f"- {row.variant}: {row.notes}" for row in rows if row.notes]
  lines += [f"- probe task `{task}` skipped: {reason}"
            for task, reason in skipped.items()]
  return lines + [""]


def write_report(path: str, *, title: str, source: Mapping[str, Any],
                 training: Manifest,
                 rows: Sequence[QuantizationRow],
                 reference_accuracy: Optional[Mapping[str, float]] = None,
                 skipped: Optional[Mapping[str, str]] = None) -> None:
  """Writes ``report.md``.

  Args:
    path: Output file.
    title: First heading.
    source: The training manifest's ``source`` entry.
    training: The training model's manifest.
    rows: The embed-only variants (may be empty).
    reference_accuracy: TF float32's probe accuracy by task.
    skipped: Probe tasks that were skipped, with the reason.
  """
  lines = [f"# {title}", "",
           "Source: " + ", ".join(f"{k}=`{v}`" for k, v in source.items()),
           ""]
  lines += _training_section(training)
  if rows:
    lines += _quantization_section(rows, reference_accuracy or {},
                                   skipped or {})
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines))
