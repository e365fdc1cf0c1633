"""FedSA against its baselines by fraction of labels (Table 1 of Xie et al., "Federated Selective Aggregation for Knowledge Amalgamation", 2022).

Teachers with different self-supervised tasks (and encoder presets) are
trained once, each on its own speakers, and cached in the output directory.
For every fraction of the new task's training labels and every seed, the
study trains a student from scratch on the labelled clips (FedSA's starting
point), then from it: central knowledge amalgamation of all teachers (KA),
FedAvg of students distilled at every teacher's client, and FedSA. Every
encoder is scored by a linear probe trained on the same labelled clips and
tested on unseen speakers; a non-learned log-mel (mean + std) row and the
teachers themselves (the best one = transfer) complete the table.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import os
import time
from typing import Optional, Sequence

from absl import logging
from matplotlib.figure import Figure
import numpy as np
from scipy import stats
import tensorflow as tf
from tqdm import tqdm

from model import cli
from model import evaluation
from model.config_checks import (require_choice, require_non_negative,
                                 require_positive)
from model.datasets import synthetic
from model.datasets.audio import decode_clips
from model.datasets.clips import ClipTable
from model.datasets.pipeline import training_segments
from model.encoders import ENCODERS, Encoder, EncoderConfig
from model.features import FrontendConfig, log_mel
from model.ssl_model import ModelSpec
from model.tasks import SSL_TASKS
from model.tasks.distillation import load_teacher
from model.train import TrainConfig, train_centralized
from tff_sim.fedsa import (FedSAConfig, FedSAResult, FedSATeacher, ProbeSet,
                           make_probe_set, prepare_sites, run_fedsa,
                           train_on_probe_set)

__all__ = ["FedSAStudyConfig", "StudyResult", "parse_teacher",
           "labelled_subset", "run_fedsa_study"]

_LAUNCHER = "python -m benchmarks.fedsa_main"

LOG_MEL = "log-mel mean+std (no learning)"
SCRATCH = "scratch (student trained on the labels)"
TRANSFER = "transfer: best single teacher (oracle pick)"
KA = "KA: central distillation from all teachers"
FEDAVG = "FedAvg of students (every teacher, every round)"
FEDSA = "FedSA"
FEDSA_UNIFORM = "ablation: FedSA, uniform draws"
FEDSA_EMBEDDING = "ablation: FedSA, embedding hint"


def parse_teacher(text: str) -> tuple[str, str]:
  """``"preset:task"`` -> ``(preset, task)``.

  Raises:
    ValueError: Not of that form, or an unknown preset or task.
  """
  parts = text.split(":")
  if len(parts) != 2 or parts[0] not in ENCODERS or parts[1] not in SSL_TASKS:
    raise ValueError(f"teacher {text!r}: expected 'preset:task' with preset "
                     f"in {sorted(ENCODERS)} and task in {sorted(SSL_TASKS)}")
  return parts[0], parts[1]


@dataclasses.dataclass(frozen=True)
class FedSAStudyConfig:
  """The FedSA study.

  Attributes:
    corpus: Key of :data:`model.datasets.synthetic.CORPUS_PRESETS`.
    corpus_dir: Where the corpus is generated (reused when complete); None:
      ``<out_dir>/corpus``.
    teachers: ``"preset:task"`` per teacher; teacher ``i`` is trained on the
      non-test speakers ``i, i + n, ...`` (sorted), which are also its
      client's unlabelled audio.
    teacher_steps: Training steps of every teacher (cached in
      ``<out_dir>/teachers``).
    teacher_batch_size: Batch size of the teachers' training.
    student_encoder: Preset of the student.
    downstream_task: Label column of the new task.
    label_fractions: Fractions of the task's training clips that are
      labelled (per class, at least one clip).
    seeds: One run of every learned row per seed (labelled subset, student
      initialization, draws, batches).
    ablation_fractions: Fractions at which the FedSA ablations (uniform
      draws; embedding hint) also run.
    fine_tune_steps: 0: every row is scored by a linear probe on frozen
      embeddings; > 0: the student rows are scored as the reference
      evaluates its student: a copy of the encoder with a new linear head,
      all of it fine-tuned on the labelled clips for this many steps, tested
      by its own predictions (log-mel and teacher rows stay linear probes).
      Accuracy by round always uses the linear probe.
    fedsa: The FedSA loop (KA and FedAvg of students use the same settings;
      its seed is replaced by each of ``seeds``).
    out_dir: Output directory.
  """

  corpus: str = "full"
  corpus_dir: Optional[str] = None
  teachers: tuple[str, ...] = ("small:nt_xent", "small:triplet",
                               "tiny:temporal_gap", "small:audio2vec_cbow")
  teacher_steps: int = 400
  teacher_batch_size: int = 32
  student_encoder: str = "tiny"
  downstream_task: str = "keyword"
  label_fractions: tuple[float, ...] = (0.01, 0.05, 0.1, 1.0)
  seeds: tuple[int, ...] = (0, 1, 2)
  ablation_fractions: tuple[float, ...] = (0.01, 0.05)
  fine_tune_steps: int = 0
  fedsa: FedSAConfig = FedSAConfig(rounds=12, selection_period=3)
  out_dir: str = "fedsa_output"

  def __post_init__(self):
    for field in ("teachers", "label_fractions", "seeds",
                  "ablation_fractions"):
      object.__setattr__(self, field, tuple(getattr(self, field)))
    require_choice(self, ["corpus"], synthetic.CORPUS_PRESETS)
    require_choice(self, ["student_encoder"], ENCODERS)
    if not self.teachers:
      raise ValueError("FedSAStudyConfig.teachers: at least one teacher")
    for teacher in self.teachers:
      parse_teacher(teacher)
    bad = [f for f in (*self.label_fractions, *self.ablation_fractions)
           if not 0 < f <= 1]
    if bad or not self.label_fractions or not self.seeds:
      raise ValueError(f"FedSAStudyConfig: label_fractions (at least one) and "
                       f"ablation_fractions must be in (0, 1], seeds "
                       f"non-empty; got {self.label_fractions}, "
                       f"{self.ablation_fractions}, {self.seeds}")
    extra = sorted(set(self.ablation_fractions) - set(self.label_fractions))
    if extra:
      raise ValueError(f"FedSAStudyConfig.ablation_fractions {extra} are not "
                       f"among label_fractions {self.label_fractions}")
    require_non_negative(self, ("fine_tune_steps",))
    require_positive(self, ("teacher_steps", "teacher_batch_size"))

  @property
  def corpus_path(self) -> str:
    """The corpus directory: ``corpus_dir`` or ``<out_dir>/corpus``."""
    return self.corpus_dir or os.path.join(self.out_dir, "corpus")


@dataclasses.dataclass(frozen=True)
class StudyResult:
  """What :func:`run_fedsa_study` measured.

  Attributes:
    accuracy: ``(row, fraction) -> [accuracy per seed]``.
    table: ``row -> fraction -> (mean, std)``.
    selections: ``(fraction, seed) -> FedSAResult.history``.
    by_round: ``(row, fraction) -> round -> [accuracy per seed]``.
    teacher_names: Display names of the teachers.
  """

  accuracy: dict
  table: dict
  selections: dict
  by_round: dict
  teacher_names: tuple[str, ...]


def labelled_subset(labels: np.ndarray, train: np.ndarray, fraction: float,
                    seed: int) -> np.ndarray:
  """``fraction`` of each class's training clips (at least one), sorted."""
  rng = np.random.default_rng([seed, int(round(fraction * 1e6))])
  chosen = []
  for label in np.unique(labels[train]):
    rows = train[labels[train] == label]
    count = max(1, int(round(fraction * len(rows))))
    chosen.append(rng.choice(rows, size=count, replace=False))
  return np.sort(np.concatenate(chosen))


def _command_line(config: FedSAStudyConfig) -> str:
  """The launcher command that reproduces ``config`` (flags = fields)."""
  fields = {f.name: getattr(config, f.name)
            for f in dataclasses.fields(config) if f.name != "fedsa"}
  fields.update({k: v for k, v in dataclasses.asdict(config.fedsa).items()
                 if k not in ("seed", "aggregation")})
  return cli.command_line(_LAUNCHER, fields)


def _log_mel_features(waveforms: Sequence[np.ndarray],
                      frontend: FrontendConfig) -> np.ndarray:
  """Mean and standard deviation of each clip's log-mel over time."""
  features = []
  for waveform in waveforms:
    waveform = np.asarray(waveform, np.float32)
    if waveform.size < frontend.window_samples:
      waveform = np.pad(waveform, (0, frontend.window_samples - waveform.size))
    mel = log_mel(tf.constant(waveform), frontend).numpy()
    features.append(np.concatenate([mel.mean(axis=0), mel.std(axis=0)]))
  return np.asarray(features, np.float32)


def _train_teachers(config: FedSAStudyConfig, table: ClipTable,
                    waveforms: Sequence[np.ndarray], excluded: set,
                    show_progress: bool) -> list[FedSATeacher]:
  """Trains (or reuses) each teacher on its own non-test speakers."""
  speakers = [s for s in table.client_ids if s not in excluded]
  if len(speakers) < len(config.teachers):
    raise ValueError(f"{len(config.teachers)} teachers need at least as many "
                     f"non-test speakers; there are {len(speakers)}")
  teachers = []
  for i, text in enumerate(config.teachers):
    preset, task = parse_teacher(text)
    own_speakers = set(speakers[i::len(config.teachers)])
    clips = tuple(waveforms[j] for j, clip in enumerate(table)
                  if clip.client_id in own_speakers)
    spec = ModelSpec(task=task, encoder=ENCODERS[preset], seed=1 + i)
    result = train_centralized(
        spec, TrainConfig(steps=config.teacher_steps,
                          batch_size=config.teacher_batch_size, seed=i),
        training_segments(clips, spec).waveforms,
        os.path.join(config.out_dir, "teachers", f"teacher{i}_{preset}_{task}"),
        dataset_info={"kind": "synthetic", "preset": config.corpus,
                      "speakers": sorted(own_speakers)},
        show_progress=show_progress)
    teachers.append(FedSATeacher(name=f"T{i} {preset}/{task}",
                                 model_dir=os.path.abspath(result.model_dir),
                                 clips=clips))
  return teachers


class _Task:
  """The new task's clips, split, and the probe of an encoder on them."""

  def __init__(self, config: FedSAStudyConfig, table: ClipTable,
               waveforms: Sequence[np.ndarray], frontend: FrontendConfig):
    task = config.downstream_task
    rows = [i for i, clip in enumerate(table) if task in clip.labels]
    if not rows:
      raise ValueError(f"downstream_task {task!r}: no clip of corpus "
                       f"{config.corpus!r} carries this label")
    self.waveforms = [waveforms[i] for i in rows]
    self.labels = np.asarray([table[i].labels[task] for i in rows])
    self.train, self.test = evaluation.split_for_task(table, task, seed=0)
    self.test_speakers = {table[rows[i]].client_id for i in self.test}
    self.classes = tuple(np.unique(self.labels[self.train]).tolist())
    self.frontend = frontend
    self._patches, self._owner = evaluation.clip_patches(self.waveforms,
                                                         frontend)
    self._starts = np.flatnonzero(np.diff(self._owner, prepend=-1))
    self._counts = np.bincount(self._owner)

  def probe_set(self, labelled: np.ndarray) -> ProbeSet:
    return make_probe_set([self.waveforms[i] for i in labelled],
                          self.labels[labelled].tolist(), self.classes,
                          self.frontend)

  def embed(self, encoder: Encoder) -> np.ndarray:
    """Mean embedding of each clip's patches (log-mel computed once)."""
    embed = tf.function(encoder.__call__, input_signature=[
        tf.TensorSpec([None, *self._patches.shape[1:]], tf.float32)])
    embeddings = np.concatenate([
        embed(self._patches[i:i + 512]).numpy()
        for i in range(0, len(self._patches), 512)])
    return (np.add.reduceat(embeddings, self._starts, axis=0)
            / self._counts[:, np.newaxis])

  def fine_tuned_accuracy(self, encoder: Encoder, probe: ProbeSet,
                          config: FedSAConfig, steps: int) -> float:
    """Test accuracy of ``encoder`` + a new head fine-tuned on ``probe``."""
    classifier, _ = evaluation.train_classifier(
        encoder, probe.patches, probe.patch_labels, len(probe.classes),
        trainable_blocks=None, steps=steps,
        batch_size=config.probe_batch_size,
        learning_rate=config.learning_rate, seed=config.seed + 1)
    rows = np.isin(self._owner, self.test)
    predicted = classifier.predict(self._patches[rows],
                                   np.searchsorted(self.test,
                                                   self._owner[rows]))
    return float(np.mean(np.asarray(self.classes)[predicted]
                         == self.labels[self.test]))

  def accuracy(self, features: np.ndarray, labelled: np.ndarray) -> float:
    return evaluation.linear_probe(features[labelled],
                                   self.labels[labelled],
                                   features[self.test],
                                   self.labels[self.test])


def _encoder(config: EncoderConfig, weights: Sequence[np.ndarray]) -> Encoder:
  encoder = Encoder(config)
  for variable, value in zip(encoder.weights, weights):
    variable.assign(value)
  return encoder


def _summary(values: Sequence[float]) -> tuple[float, float]:
  return float(np.mean(values)), float(np.std(values))


def _format_table(table: dict, fractions: Sequence[float]) -> str:
  best = {}
  for fraction in fractions:
    baselines = [table[r][fraction][0] for r in (SCRATCH, TRANSFER, KA, FEDAVG)
                 if fraction in table.get(r, {})]
    best[fraction] = max(baselines) if baselines else None
  lines = ["| method | " + " | ".join(f"{f:.0%} labels" for f in fractions)
           + " |", "|---|" + "---:|" * len(fractions)]
  for row, cells in table.items():
    values = []
    for f in fractions:
      if f not in cells:
        values.append("")
        continue
      mean, std = cells[f]
      mark = " **(≥ best baseline)**" if (
          row == FEDSA and best[f] is not None and mean >= best[f]) else ""
      values.append(f"{mean:.3f} ± {std:.3f}{mark}")
    lines.append(f"| {row} | " + " | ".join(values) + " |")
  return "\n".join(lines)


def _plot_selection(result: StudyResult, fractions: Sequence[float],
                    seeds: Sequence[int], path: str) -> None:
  """Each teacher's selection probability by round, one panel per fraction."""
  figure = Figure(figsize=(3.6 * len(fractions), 3.4), layout="constrained")
  axes = np.atleast_1d(figure.subplots(1, len(fractions), sharey=True))
  for ax, fraction in zip(axes, fractions):
    for i, name in enumerate(result.teacher_names):
      curves = np.asarray([[r.probabilities[i] for r in
                            result.selections[(fraction, s)]] for s in seeds])
      rounds = [r.round for r in result.selections[(fraction, seeds[0])]]
      ax.errorbar(rounds, curves.mean(axis=0), yerr=curves.std(axis=0),
                  marker="o", capsize=2, label=name)
    ax.set_title(f"{fraction:.0%} labels")
    ax.set_xlabel("round")
    ax.grid(alpha=0.3)
  axes[0].set_ylabel(f"selection probability (mean ± std, {len(seeds)} seeds)")
  axes[-1].legend(fontsize="small")
  figure.savefig(path, dpi=110, format="png")


def _plot_accuracy(result: StudyResult, fractions: Sequence[float],
                   path: str) -> None:
  figure = Figure(figsize=(7.5, 4.2), layout="constrained")
  ax = figure.subplots()
  for row, cells in result.table.items():
    xs = [f for f in fractions if f in cells]
    if len(xs) < 2 and row.startswith("ablation"):
      ax.errorbar(xs, [cells[f][0] for f in xs], [cells[f][1] for f in xs],
                  marker="x", linestyle="none", capsize=2, label=row)
      continue
    teacher = row.startswith("teacher ")
    ax.errorbar(xs, [cells[f][0] for f in xs], [cells[f][1] for f in xs],
                marker="." if teacher else "o", capsize=2, label=row,
                linestyle=":" if teacher else "-",
                linewidth=1 if teacher else 1.8)
  ax.set_xscale("log")
  ax.set_xticks(list(fractions), [f"{f:.0%}" for f in fractions])
  ax.set_xlabel("labelled fraction of the training clips")
  ax.set_ylabel("test accuracy (linear probe)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize="x-small")
  figure.savefig(path, dpi=110, format="png")


def run_fedsa_study(config: FedSAStudyConfig, *, show_progress: bool = True
                    ) -> StudyResult:
  """Runs the study and writes ``report.md``, CSVs and PNGs to ``out_dir``.

  Args:
    config: What to run.
    show_progress: Show progress bars.

  Returns:
    The measurements.

  Raises:
    ValueError: The task cannot be split, too few speakers for the
      teachers, or a teacher does not fit the student.
  """
  start = time.time()
  os.makedirs(config.out_dir, exist_ok=True)
  frontend = FrontendConfig()
  table, waveforms, _ = decode_clips(
      synthetic.generate_corpus(config.corpus_path,
                                synthetic.CORPUS_PRESETS[config.corpus],
                                show_progress=show_progress),
      show_progress=show_progress)
  task = _Task(config, table, waveforms, frontend)
  teachers = _train_teachers(config, table, waveforms, task.test_speakers,
                             show_progress)
  student = ENCODERS[config.student_encoder]
  teacher_features = []
  for teacher in teachers:
    frozen = load_teacher(teacher.model_dir)
    teacher_features.append(task.embed(_encoder(frozen.config, frozen.values)))
  log_mel_features = _log_mel_features(task.waveforms, frontend)
  sites = {}
  for hint_layer in {config.fedsa.hint_layer,
                     *(["embedding"] if config.ablation_fractions else [])}:
    sites[hint_layer] = prepare_sites(teachers, student, frontend, hint_layer)

  accuracy = collections.defaultdict(list)
  by_round = collections.defaultdict(lambda: collections.defaultdict(list))
  selections = {}
  runs = [(f, s) for f in config.label_fractions for s in config.seeds]
  for fraction, seed in tqdm(runs, desc="fraction x seed", unit="run",
                             disable=not show_progress, dynamic_ncols=True):
    labelled = labelled_subset(task.labels, task.train, fraction, seed)
    probe = task.probe_set(labelled)
    accuracy[(LOG_MEL, fraction)].append(task.accuracy(log_mel_features,
                                                       labelled))
    for teacher, features in zip(teachers, teacher_features):
      accuracy[(f"teacher {teacher.name}", fraction)].append(
          task.accuracy(features, labelled))
    fedsa = dataclasses.replace(config.fedsa, seed=seed)
    initial = train_on_probe_set(student, probe, fedsa)

    def score(encoder: Encoder) -> float:
      if config.fine_tune_steps:
        return task.fine_tuned_accuracy(encoder, probe, fedsa,
                                        config.fine_tune_steps)
      return task.accuracy(task.embed(encoder), labelled)

    accuracy[(SCRATCH, fraction)].append(score(_encoder(student, initial)))
    variants = [(KA, dict(aggregation="central")),
                (FEDAVG, dict(aggregation="all")),
                (FEDSA, {})]
    if fraction in config.ablation_fractions:
      variants += [(FEDSA_UNIFORM, dict(temperature=1e6)),
                   (FEDSA_EMBEDDING, dict(hint_layer="embedding"))]
    for row, changes in variants:
      def record(round_num, encoder, row=row):
        by_round[(row, fraction)][round_num].append(task.accuracy(
            task.embed(encoder), labelled))
      run_config = dataclasses.replace(fedsa, **changes)
      result: FedSAResult = run_fedsa(
          run_config, student, teachers, probe, frontend=frontend,
          initial_weights=initial, sites=sites[run_config.hint_layer],
          on_period=record, show_progress=False)
      accuracy[(row, fraction)].append(
          score(result.encoder) if config.fine_tune_steps
          else by_round[(row, fraction)][fedsa.rounds][-1])
      if row == FEDSA:
        selections[(fraction, seed)] = result.history
      logging.info("%s at %.0f%% labels, seed %d: %.3f (%.0f s)", row,
                   100 * fraction, seed, accuracy[(row, fraction)][-1],
                   result.wall_s)

  # Transfer: the teacher with the best mean accuracy at each fraction.
  for fraction in config.label_fractions:
    best = max(teachers, key=lambda t: np.mean(
        accuracy[(f"teacher {t.name}", fraction)]))
    accuracy[(TRANSFER, fraction)] = accuracy[(f"teacher {best.name}",
                                               fraction)]
  order = [LOG_MEL, SCRATCH, TRANSFER, KA, FEDAVG, FEDSA, FEDSA_UNIFORM,
           FEDSA_EMBEDDING] + [f"teacher {t.name}" for t in teachers]
  summary = {row: {f: _summary(accuracy[(row, f)])
                   for f in config.label_fractions if (row, f) in accuracy}
             for row in order}
  study = StudyResult(accuracy=dict(accuracy), table=summary,
                      selections=selections,
                      by_round={k: dict(v) for k, v in by_round.items()},
                      teacher_names=tuple(t.name for t in teachers))
  _write_outputs(config, study, teachers, task, start)
  return study


def _write_outputs(config: FedSAStudyConfig, study: StudyResult,
                   teachers: Sequence[FedSATeacher], task: _Task,
                   start: float) -> None:
  out = config.out_dir
  fractions = config.label_fractions
  with open(os.path.join(out, "results.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["method", "label_fraction", "seed", "accuracy"])
    for (row, fraction), values in study.accuracy.items():
      for seed, value in zip(config.seeds, values):
        writer.writerow([row, fraction, seed, f"{value:.4f}"])
  with open(os.path.join(out, "selection.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["label_fraction", "seed", "round", "teacher",
                     "similarity", "probability", "draws"])
    for (fraction, seed), history in study.selections.items():
      for record in history:
        for i, teacher in enumerate(teachers):
          writer.writerow([fraction, seed, record.round, teacher.name,
                           f"{record.similarities[i]:.5f}",
                           f"{record.probabilities[i]:.4f}",
                           record.selected.count(i)])
  with open(os.path.join(out, "accuracy_by_round.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["method", "label_fraction", "round", "mean", "std"])
    for (row, fraction), rounds in study.by_round.items():
      for round_num, values in sorted(rounds.items()):
        writer.writerow([row, fraction, round_num, *(
            f"{v:.4f}" for v in _summary(values))])
  _plot_selection(study, fractions, config.seeds,
                  os.path.join(out, "selection.png"))
  _plot_accuracy(study, fractions, os.path.join(out, "results.png"))

  # Selection quality vs teacher quality.
  quality = ["| labels | " + " | ".join(
      f"{t.name}: acc / mean p" for t in teachers) + " | Spearman(acc, p) |",
             "|---|" + "---:|" * (len(teachers) + 1)]
  for fraction in fractions:
    acc = [np.mean(study.accuracy[(f"teacher {t.name}", fraction)])
           for t in teachers]
    p = [np.mean([r.probabilities[i] for s in config.seeds
                  for r in study.selections[(fraction, s)]])
         for i in range(len(teachers))]
    rho = stats.spearmanr(acc, p)[0] if len(teachers) > 2 else np.nan
    quality.append(f"| {fraction:.0%} | " + " | ".join(
        f"{a:.3f} / {q:.3f}" for a, q in zip(acc, p)) + f" | {rho:.2f} |")
  rounds_lines = ["| method | labels | " + " | ".join(
      f"round {r}" for r in range(config.fedsa.selection_period,
                                  config.fedsa.rounds + 1,
                                  config.fedsa.selection_period)) + " |"]
  periods = config.fedsa.rounds // config.fedsa.selection_period
  rounds_lines.append("|---|---|" + "---:|" * periods)
  for (row, fraction), rounds in study.by_round.items():
    rounds_lines.append(f"| {row} | {fraction:.0%} | " + " | ".join(
        f"{np.mean(v):.3f}" for _, v in sorted(rounds.items())) + " |")
  loop = config.fedsa
  lines = [
      f"# FedSA: a {config.student_encoder} student for "
      f"`{config.downstream_task}` from {len(teachers)} decentralized "
      "teachers", "",
      f"Test accuracy on {len(task.test)} clips of unseen speakers of "
      + (f"each student encoder with a new linear head, all fine-tuned for "
         f"{config.fine_tune_steps} steps on the labelled clips (log-mel and "
         f"teacher rows: " if config.fine_tune_steps else "")
      + "a linear probe (standardized logistic regression) on frozen clip "
      + ("embeddings), " if config.fine_tune_steps else "embeddings, ")
      + f"trained on the labelled clips: the given fraction of the "
      f"{len(task.train)} training clips, at least one per class "
      f"({len(task.classes)} classes). Mean ± std over seeds "
      f"{list(config.seeds)} (labelled subset, student init, draws, batches). "
      f"Every learned student row starts from the scratch row's student; KA, "
      f"FedAvg of students and FedSA run {loop.rounds} rounds of "
      f"{loop.local_steps} local steps ({loop.batch_size} patches); per round "
      f"FedSA trains {loop.top_k} copies, FedAvg of students "
      f"{len(teachers)}, KA one copy on all {len(teachers)} teachers' "
      f"batches. Transfer is the teacher with the best mean accuracy at that "
      f"fraction (picked on the test set: an upper bound).", "",
      _format_table(study.table, fractions), "",
      "## Selection quality vs teacher quality", "",
      "Each teacher's own probe accuracy at that fraction and its mean "
      "selection probability over periods and seeds.", "",
      "\n".join(quality), "", "## Accuracy by round", "",
      "Mean over seeds after every selection period (linear probe on "
      "frozen embeddings).", "",
      "\n".join(rounds_lines), "",
      "## Files", "",
      "`results.csv` (every run), `selection.csv` (similarities, "
      "probabilities and draws per period), `accuracy_by_round.csv`, "
      "`selection.png` (each teacher's selection probability by round), "
      "`results.png` (accuracy by fraction of labels).", "",
      "## Command", "", "```", _command_line(config), "```", "",
      "```json", json.dumps(dataclasses.asdict(config), indent=2), "```", "",
      f"Wall time: {time.time() - start:.0f} s.", ""]
  with open(os.path.join(out, "report.md"), "w") as f:
    f.write("\n".join(lines))
