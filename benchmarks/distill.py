"""Distilling a large audio encoder into a small on-device student (Peng et al., "Shrinking Bigfoot", 2021)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Mapping, Optional, Sequence

from absl import logging
import numpy as np

from export.conversion import QUANTIZATIONS
from export.corpus import Corpus
from export.exporter import (TRAINING_DIR, ExportConfig, ExportResult, Source,
                             export_model)
from export.verification import VerifyConfig
from model import cli
from model.config_checks import (require_choice, require_non_negative,
                                 require_positive)
from model import evaluation
from model.datasets import synthetic
from model.datasets.audio import decode_clips
from model.datasets.clips import ClipTable
from model.datasets.pipeline import training_segments
from model.encoders import ENCODERS, Encoder, EncoderConfig
from model.features import FrontendConfig
from model.saved_model import saved_model_dir
from model.ssl_model import ModelSpec, load_model, read_spec
from model.tasks import SSL_TASKS, TaskConfig
from model.tasks.distillation import load_teacher
from model.train import TrainConfig, TrainResult, train_centralized
from tff_sim.algorithms import CLIENT_OPTIMIZERS, AlgorithmConfig
from tff_sim.partition import PartitionConfig
from tff_sim.report import read_release_csv
from tff_sim.simulation import (SimulationConfig, SimulationResult,
                                run_simulation)

__all__ = ["PARAMS", "MFLOPS", "MEAN", "PERCENT_OF_TEACHER", "QUANT_DELTA",
           "FLOPS_GOAL", "RETENTION_GOAL", "QUANT_GOAL_PTS", "DistillConfig",
           "DistillResult", "run_distill_benchmark"]

#: Columns of the results table besides the per-task probe accuracies.
PARAMS = "params"
MFLOPS = "forward_mflops"
MEAN = "mean"
PERCENT_OF_TEACHER = "pct_of_teacher"
QUANT_DELTA = "delta_vs_float_pts"

#: Goals: at most this fraction of the teacher's forward FLOPs ...
FLOPS_GOAL = 0.25
#: ... keeping at least this percentage of its mean probe accuracy ...
RETENTION_GOAL = 95.0
#: ... and losing at most this many accuracy points when quantized.
QUANT_GOAL_PTS = 1.0

#: ``eval_every`` of the federated runs: only the last round is evaluated
#: (the benchmark probes the final model itself), also when a rerun
#: extends ``rounds``.
_FINAL_EVAL_ONLY = 1_000_000

_LAUNCHER = "python -m benchmarks.distill_main"


@dataclasses.dataclass(frozen=True)
class DistillConfig:
  """What the distillation benchmark trains, exports and evaluates.

  Attributes:
    corpus: Key of :data:`model.datasets.synthetic.CORPUS_PRESETS`.
    corpus_dir: Where the corpus is generated (reused when complete); None:
      ``<out_dir>/corpus``.
    teacher_dirs: Saved teacher models (run directories holding ``model/``,
      or model directories); empty: train one ``teacher_encoder`` with
      ``teacher_task`` for ``teacher_steps`` steps.
    teacher_encoder: Preset of the trained teacher.
    teacher_task: SSL task of the trained teacher.
    teacher_steps: Steps of the trained teacher.
    student_encoder: Preset of the student.
    student_task: SSL task of the from-scratch student (and of the optional
      own loss added to the distillation loss).
    distill_ssl_weight: Weight of ``student_task``'s loss in the distillation
      objective (0: pure embedding regression).
    steps: Steps of the from-scratch and the centrally distilled student.
    batch_size: Examples per centralized step.
    learning_rate: Adam step size of every centralized run.
    rounds: Federated distillation rounds.
    clients_per_round: Clients sampled per round (natural partition: one per
      speaker/device).
    client_batch_size: Static client batch (also the batch of the exported
      ``train`` signature).
    max_local_steps: Local steps per client and round.
    client_optimizer: Key of ``tff_sim.algorithms.CLIENT_OPTIMIZERS``.
    client_learning_rate: Client step size.
    quantizations: Quantized embed-only variants of the distilled student to
      export and probe (some of ``export.conversion.QUANTIZATIONS``).
    verify_steps: ``train`` steps run on the exported file and on TF.
    seed: Seed of weights, batch order, client sampling and probe splits.
    out_dir: Output directory (runs, export, report, tables, chart).
  """

  corpus: str = "demo"
  corpus_dir: Optional[str] = None
  teacher_dirs: tuple[str, ...] = ()
  teacher_encoder: str = "large"
  teacher_task: str = "triplet"
  teacher_steps: int = 400
  student_encoder: str = "small"
  student_task: str = "triplet"
  distill_ssl_weight: float = 0.0
  steps: int = 300
  batch_size: int = 16
  learning_rate: float = 1e-3
  rounds: int = 20
  clients_per_round: int = 4
  client_batch_size: int = 8
  max_local_steps: int = 8
  client_optimizer: str = "adam"
  client_learning_rate: float = 1e-3
  quantizations: tuple[str, ...] = ("dynamic_int8", "int8")
  verify_steps: int = 24
  seed: int = 0
  out_dir: str = "distill_output"

  def __post_init__(self):
    for field in ("teacher_dirs", "quantizations"):
      object.__setattr__(self, field, tuple(getattr(self, field)))
    require_choice(self, ["corpus"], synthetic.CORPUS_PRESETS)
    require_choice(self, ["teacher_encoder", "student_encoder"], ENCODERS)
    require_choice(self, ["teacher_task", "student_task"], SSL_TASKS)
    if self.client_optimizer not in CLIENT_OPTIMIZERS:
      raise ValueError(f"DistillConfig.client_optimizer: unknown "
                       f"{self.client_optimizer!r}; expected one of "
                       f"{sorted(CLIENT_OPTIMIZERS)}")
    if unknown := [q for q in self.quantizations if q not in QUANTIZATIONS]:
      raise ValueError(f"DistillConfig.quantizations: unknown {unknown}; "
                       f"expected some of {QUANTIZATIONS}")
    require_positive(self, ("teacher_steps", "steps", "batch_size", "rounds",
                            "clients_per_round", "client_batch_size",
                            "max_local_steps", "verify_steps", "learning_rate",
                            "client_learning_rate"))
    require_non_negative(self, ("distill_ssl_weight",))

  @property
  def corpus_path(self) -> str:
    """The corpus directory: ``corpus_dir`` or ``<out_dir>/corpus``."""
    return self.corpus_dir or os.path.join(self.out_dir, "corpus")


@dataclasses.dataclass(frozen=True)
class DistillResult:
  """What the benchmark produced.

  Attributes:
    rows: Results table: by model, :data:`PARAMS`, :data:`MFLOPS`, the probe
      accuracy of every downstream task, :data:`MEAN`,
      :data:`PERCENT_OF_TEACHER` and, for quantized rows, :data:`QUANT_DELTA`.
    goals: Each goal's description and whether it was reached.
    teacher_dirs: The teachers' model directories.
    export: The distilled student's export (builtin training model and
      quantized embed models).
  """

  rows: dict[str, dict[str, float]]
  goals: dict[str, bool]
  teacher_dirs: tuple[str, ...]
  export: ExportResult


def _saved_encoder(model_dir: str) -> tuple[Encoder, str]:
  """A saved model's encoder (as trainable weights) and its training task."""
  frozen = load_teacher(model_dir)
  encoder = Encoder(frozen.config)
  for variable, value in zip(encoder.weights, frozen.values):
    variable.assign(value)
  return encoder, read_spec(model_dir).task


def _command_line(config: DistillConfig) -> str:
  """The launcher command that reproduces ``config`` (flags = fields)."""
  return cli.command_line(_LAUNCHER, {f.name: getattr(config, f.name)
                                      for f in dataclasses.fields(config)})


def _train(spec: ModelSpec, config: DistillConfig, steps: int,
           waveforms: Sequence[np.ndarray], run_dir: str,
           show_progress: bool) -> TrainResult:
  """Trains (or resumes, or reuses) ``spec`` centrally on the corpus."""
  return train_centralized(
      spec, TrainConfig(steps=steps, batch_size=config.batch_size,
                        learning_rate=config.learning_rate, seed=config.seed),
      training_segments(waveforms, spec).waveforms, run_dir,
      dataset_info={"kind": "synthetic", "preset": config.corpus},
      show_progress=show_progress)


def _summary(result: TrainResult, examples: float) -> dict[str, float]:
  (_, first), (_, last) = result.losses[0], result.losses[-1]
  return {"examples": examples, "first_loss": first, "final_loss": last,
          "wall_s": result.wall_s}


def _federated_losses(run_dir: str) -> dict[str, float]:
  """First and last round's mean client loss from ``metrics.csv``."""
  rows = read_release_csv(os.path.join(run_dir, "metrics.csv"))
  return {"first_loss": rows[0]["train_loss"],
          "final_loss": rows[-1]["train_loss"]}


def _probe(encoder: Encoder, table: ClipTable,
           waveforms: Sequence[np.ndarray], frontend: FrontendConfig,
           seed: int) -> dict[str, float]:
  """Linear-probe accuracy of every splittable downstream task."""
  return evaluation.probe_encoder(encoder, table, waveforms, frontend,
                                  retrieval_task=None, seed=seed).accuracy


def _row(encoder_config: EncoderConfig, frontend: FrontendConfig,
         accuracy: Mapping[str, float]) -> dict[str, float]:
  return {PARAMS: float(encoder_config.num_params),
          MFLOPS: encoder_config.forward_mflops(frontend.patch_shape),
          **accuracy,
          MEAN: float(np.mean(list(accuracy.values())))}


def _federated(config: DistillConfig, spec: ModelSpec, table: ClipTable,
               waveforms: Sequence[np.ndarray], show_progress: bool
               ) -> SimulationResult:
  """Federated distillation: each client distils on its own audio."""
  return run_simulation(
      SimulationConfig(
          model=spec,
          algorithm=AlgorithmConfig(
              algorithm="fedavg", client_optimizer=config.client_optimizer,
              client_learning_rate=config.client_learning_rate),
          partition=PartitionConfig(method="natural", seed=config.seed),
          rounds=config.rounds, clients_per_round=config.clients_per_round,
          batch_size=config.client_batch_size,
          max_local_steps=config.max_local_steps,
          eval_every=_FINAL_EVAL_ONLY,
          seed=config.seed),
      table, waveforms, os.path.join(config.out_dir, "runs",
                                     "student_federated"),
      show_progress=show_progress)


def _export(config: DistillConfig, result: TrainResult, table: ClipTable,
            waveforms: list[np.ndarray]) -> ExportResult:
  """Exports the distilled student: builtin training model + quantized."""
  return export_model(
      Source(model=result.model, description={
          "kind": "saved_model", "path": result.model_dir,
          "saved_task": result.model.spec.task, "head": "saved"}),
      os.path.join(config.out_dir, "export"),
      ExportConfig(mode="builtin", batch_size=config.client_batch_size,
                   quantizations=config.quantizations, seed=config.seed,
                   verify=VerifyConfig(train_steps=config.verify_steps)),
      corpus=Corpus(table=table, waveforms=waveforms,
                    source=os.path.abspath(config.corpus_path)),
      overwrite=True)


def _goals(rows: Mapping[str, Mapping[str, float]], teacher: str,
           students: Sequence[str], quantized: Sequence[str]
           ) -> dict[str, bool]:
  """Whether each goal was reached, keyed by its description."""
  ratio = rows[students[0]][MFLOPS] / rows[teacher][MFLOPS]
  goals = {f"student FLOPs <= {FLOPS_GOAL:g} x teacher ({ratio:.3f} x)":
           ratio <= FLOPS_GOAL}
  for name in students:
    pct = rows[name][PERCENT_OF_TEACHER]
    goals[f"{name}: >= {RETENTION_GOAL:g}% of teacher mean accuracy "
          f"({pct:.1f}%)"] = pct >= RETENTION_GOAL
  for name in quantized:
    delta = rows[name][QUANT_DELTA]
    goals[f"{name}: loses <= {QUANT_GOAL_PTS:g} point of mean accuracy vs "
          f"float (change {delta:+.2f} points)"] = -delta <= QUANT_GOAL_PTS
  return goals


def _format_table(rows: Mapping[str, Mapping[str, float]],
                  tasks: Sequence[str]) -> str:
  """Markdown: size and cost columns as integers/decimals, accuracies."""
  header = ["model", PARAMS, "MFLOPs", *tasks, MEAN, "% of teacher",
            "Δ vs float (pts)"]
  lines = ["| " + " | ".join(header) + " |",
           "|---|" + "---:|" * (len(header) - 1)]
  for name, row in rows.items():
    cells = [f"{row[PARAMS]:,.0f}", f"{row[MFLOPS]:.1f}",
             *(f"{row[t]:.3f}" if t in row else "-" for t in tasks),
             f"{row[MEAN]:.3f}", f"{row[PERCENT_OF_TEACHER]:.1f}",
             f"{row[QUANT_DELTA]:+.2f}" if QUANT_DELTA in row else "-"]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _report(config: DistillConfig, rows: Mapping[str, Mapping[str, float]],
            tasks: Sequence[str], teacher: str, goals: Mapping[str, bool],
            training: Mapping[str, Mapping[str, float]],
            export: ExportResult, wall_s: float) -> str:
  """The Markdown report."""
  manifest = export.manifests[TRAINING_DIR]
  lines = [
      f"# Distillation: {config.student_encoder} student from "
      f"{teacher}", "",
      "Linear-probe accuracy on frozen clip embeddings (mean over 0.96 s "
      "patches; test speakers unseen in training except for `speaker`). "
      f"`% of teacher`: mean accuracy relative to `{teacher}` (the teacher "
      "with the best mean). Quantized rows: the exported embed-only TFLite "
      "model's embeddings under the same probe; `Δ vs float`: their mean "
      "accuracy minus that of the float32 TF embeddings of the same patches, "
      "in points.", "",
      _format_table(rows, tasks), "", "## Goals", "",
      *(f"- [{'x' if ok else ' '}] {goal}" for goal, ok in goals.items()), "",
      "## Training runs", "",
      "`wall s`: spent in this invocation (about 0 for a reused run); the "
      "federated run's is summed over its invocations.", "",
      "| run | examples | first loss | final loss | wall s |",
      "|---|---:|---:|---:|---:|",
      *(f"| {name} | {s['examples']:.0f} | {s['first_loss']:.4f} | "
        f"{s['final_loss']:.4f} | {s['wall_s']:.0f} |"
        for name, s in training.items()), "",
      "## Export of the distilled student", "",
      f"`{config.out_dir}/export`: the on-device training model "
      f"({manifest.mode} mode, task `{manifest.model.task}`, "
      f"{manifest.file.bytes:,} bytes, {len(manifest.operators)} "
      f"operators, Select-TF (Flex) ops: {list(manifest.flex_ops) or 'none'}) "
      "and the embed-only variants "
      + ", ".join(f"`{q.variant}` ({q.bytes:,} bytes, mean cosine to TF "
                  f"{q.mean_cosine:.4f})" for q in export.quantization)
      + "; details in its `report.md`.", "",
      "## Command", "", "```", _command_line(config), "```", "",
      "```json", json.dumps(dataclasses.asdict(config), indent=2), "```", "",
      f"Wall time of this invocation: {wall_s:.0f} s.", ""]
  return "\n".join(lines)


def run_distill_benchmark(config: DistillConfig, *, show_progress: bool = True
                          ) -> DistillResult:
  """Teacher(s) -> student from scratch, distilled centrally and federated.

  Generates (or reuses) the corpus; trains the teacher unless
  ``config.teacher_dirs`` are given; probes the student at its initial
  weights; trains the student with its own SSL task
  (``runs/student_scratch``), by distillation centrally
  (``runs/student_distilled``) and federated over the natural partition
  (``runs/student_federated``, TFF FedAvg: every client distils on its own
  audio); exports the centrally distilled student in builtin mode with its
  quantized embed models (``export/``); probes everything and writes
  ``report.md``, ``results.csv`` and ``results.png``. Reruns reuse or resume
  every finished run.

  Args:
    config: What to run.
    show_progress: Show progress bars.

  Returns:
    The table, the goals and the export.

  Raises:
    FileNotFoundError: A teacher directory holds no saved model.
    ValueError: A teacher's patches do not fit the student.
    model.tflite_compat.FlexOpsError: The student needs Select-TF ops.
  """
  start = time.time()
  table, waveforms, _ = decode_clips(
      synthetic.generate_corpus(config.corpus_path,
                                synthetic.CORPUS_PRESETS[config.corpus],
                                show_progress=show_progress),
      show_progress=show_progress)
  student = ENCODERS[config.student_encoder]
  scratch_spec = ModelSpec(task=config.student_task, encoder=student,
                           seed=config.seed)
  frontend = scratch_spec.frontend
  training: dict[str, dict[str, float]] = {}
  if config.teacher_dirs:
    teacher_dirs = tuple(saved_model_dir(d) for d in config.teacher_dirs)
  else:
    spec = ModelSpec(task=config.teacher_task,
                     encoder=ENCODERS[config.teacher_encoder],
                     seed=config.seed)
    result = _train(spec, config, config.teacher_steps, waveforms,
                    os.path.join(config.out_dir, "runs", "teacher"),
                    show_progress)
    training["teacher"] = _summary(
        result, config.teacher_steps * config.batch_size)
    teacher_dirs = (os.path.abspath(result.model_dir),)

  rows: dict[str, dict[str, float]] = {}
  for i, directory in enumerate(teacher_dirs):
    encoder, task = _saved_encoder(directory)
    name = (f"teacher{f' {i + 1}' if len(teacher_dirs) > 1 else ''} "
            f"({encoder.config.name}, {task})")
    rows[name] = _row(encoder.config, frontend,
                      _probe(encoder, table, waveforms, frontend, config.seed))
  teacher = max(rows, key=lambda name: rows[name][MEAN])

  scratch = _train(scratch_spec, config, config.steps, waveforms,
                   os.path.join(config.out_dir, "runs", "student_scratch"),
                   show_progress)
  training["student scratch"] = _summary(scratch,
                                         config.steps * config.batch_size)
  distill_spec = ModelSpec(
      task="distillation", encoder=student, seed=config.seed,
      task_config=TaskConfig(
          teacher_dirs=teacher_dirs,
          distill_ssl_task=(config.student_task if config.distill_ssl_weight
                            else ""),
          distill_ssl_weight=config.distill_ssl_weight))
  central = _train(distill_spec, config, config.steps, waveforms,
                   os.path.join(config.out_dir, "runs", "student_distilled"),
                   show_progress)
  training["student distilled, central"] = _summary(
      central, config.steps * config.batch_size)
  federated = _federated(config, distill_spec, table, waveforms,
                         show_progress)
  training["student distilled, federated"] = {
      "examples": federated.totals["examples"],
      **_federated_losses(federated.run_dir),
      "wall_s": federated.totals["wall_s"]}

  label = config.student_encoder
  rows[f"student random init ({label})"] = _row(student, frontend, _probe(
      Encoder(student, seed=config.seed), table, waveforms, frontend,
      config.seed))
  students = [f"student scratch ({label}, {config.student_task})",
              f"student distilled, central ({label})",
              f"student distilled, federated ({label})"]
  for name, encoder in zip(students, (
      scratch.model.encoder, central.model.encoder,
      load_model(federated.model_dir).encoder)):
    rows[name] = _row(student, frontend, _probe(encoder, table, waveforms,
                                                frontend, config.seed))

  logging.info("exporting the distilled student")
  export = _export(config, central, table, waveforms)
  quantized = []
  for variant in export.quantization:
    name = f"student distilled, TFLite {variant.variant} ({label})"
    rows[name] = {**_row(student, frontend, variant.accuracy),
                  QUANT_DELTA: 100 * float(np.mean(
                      list(variant.accuracy_delta.values())))}
    quantized.append(name)
  for row in rows.values():
    row[PERCENT_OF_TEACHER] = 100 * row[MEAN] / rows[teacher][MEAN]
  goals = _goals(rows, teacher, students[1:], quantized)

  tasks = [t for t in evaluation.default_tasks(table) if t in rows[teacher]]
  os.makedirs(config.out_dir, exist_ok=True)
  evaluation.write_csv(rows, os.path.join(config.out_dir, "results.csv"))
  evaluation.plot_quality_table(
      {name: {t: row[t] for t in (*tasks, MEAN) if t in row}
       for name, row in rows.items()},
      os.path.join(config.out_dir, "results.png"),
      title=f"Distillation into {label}", ylabel="probe accuracy")
  with open(os.path.join(config.out_dir, "report.md"), "w") as f:
    f.write(_report(config, rows, tasks, teacher, goals, training, export,
                    time.time() - start))
  return DistillResult(rows=rows, goals=goals, teacher_dirs=teacher_dirs,
                       export=export)
