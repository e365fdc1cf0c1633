"""Federated selective aggregation (FedSA) for knowledge amalgamation (Xie et al., "Federated Selective Aggregation for Knowledge Amalgamation", 2022)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shlex
import time
from typing import Optional, Sequence

from absl import logging
from matplotlib.figure import Figure
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
import tensorflow as tf
from tqdm import tqdm

from model.config_checks import require_choice
from model import evaluation
from model import ops
from model import randomness
from model.datasets import synthetic
from model.datasets.audio import decode_clips
from model.datasets.clips import ClipTable
from model.encoders import ENCODERS, Encoder, EncoderConfig, encode
from model.features import FrontendConfig
from model.ssl_model import ModelSpec, SSLModel, load_model
from model.tasks import SSL_TASKS, TaskConfig
from model.tasks.distillation import load_teacher
from model.train import TrainConfig, train_centralized
from tff_sim.algorithms import AlgorithmConfig
from tff_sim.client_data import client_round_seed, round_dataset
from tff_sim.partition import PartitionConfig
from tff_sim.simulation import (SimulationConfig, run_simulation,
                                training_segments)

__all__ = [
    "SALIENCY_METHODS", "PROBE_SET", "FULL_SPLIT", "ProbeSet", "FedSAConfig",
    "FedSATeacher", "SelectionRecord", "FedSAResult", "FedSABenchmarkConfig",
    "last_block_activations", "embedding_from_activations", "saliency_maps",
    "saliency_similarity", "selection_probabilities", "sample_teachers",
    "run_fedsa", "run_fedsa_benchmark",
]

#: ``gradcam``: Grad-CAM on the last conv block's ReLU output, upsampled to
#: the log-mel patch; ``gradient``: ``|d score / d log-mel|``.
SALIENCY_METHODS = ("gradcam", "gradient")

#: Accuracy columns: a linear probe trained on the labelled probe set only,
#: and one trained on the task's whole training split; both tested on the
#: task's test split (unseen speakers).
PROBE_SET = "probe_set_accuracy"
FULL_SPLIT = "full_split_accuracy"

#: ``eval_every`` of the federated runs: only the last round is evaluated
#: (the benchmark probes the final model itself), also when a rerun
#: extends ``rounds``.
_FINAL_EVAL_ONLY = 1_000_000

_LAUNCHER = "python -m tff_sim.fedsa_main"


@dataclasses.dataclass(frozen=True)
class ProbeSet:
  """The small labelled set of the new task that selection relies on.

  Attributes:
    patches: float32 ``[n, patch_frames, num_mel_bins]`` log-mel patches.
    labels: int ``[n]`` class index of each patch.
  """

  patches: np.ndarray
  labels: np.ndarray


@dataclasses.dataclass(frozen=True)
class FedSAConfig:
  """The FedSA training loop.

  Attributes:
    rounds: Communication rounds.
    selection_period: Rounds between teacher (re-)selections.
    top_k: Teachers sampled per period.
    temperature: Softmax temperature turning saliency similarities into
      selection probabilities.
    saliency: One of :data:`SALIENCY_METHODS`.
    local_steps: Distillation steps of each selected client per round.
    batch_size: Client batch size.
    learning_rate: Client Adam step size (state reset every round).
    seed: Seed of the student's initial weights, teacher sampling, batch
      order and in-graph random crops.
  """

  rounds: int = 10
  selection_period: int = 2
  top_k: int = 2
  temperature: float = 0.05
  saliency: str = "gradcam"
  local_steps: int = 10
  batch_size: int = 8
  learning_rate: float = 1e-3
  seed: int = 0

  def __post_init__(self):
    for field in ("rounds", "selection_period", "top_k", "local_steps",
                  "batch_size"):
      if getattr(self, field) <= 0:
        raise ValueError(f"FedSAConfig.{field} must be positive, got "
                         f"{getattr(self, field)}")
    if self.temperature <= 0 or self.learning_rate <= 0:
      raise ValueError(f"FedSAConfig.temperature and learning_rate must be "
                       f"> 0, got {self.temperature} and {self.learning_rate}")
    if self.saliency not in SALIENCY_METHODS:
      raise ValueError(f"FedSAConfig.saliency: unknown {self.saliency!r}; "
                       f"expected one of {SALIENCY_METHODS}")


@dataclasses.dataclass(frozen=True)
class FedSATeacher:
  """One client: a teacher encoder and the client's own audio.

  Attributes:
    name: Display name.
    model_dir: The teacher's saved model (read only on its client).
    clips: The client's waveforms (never leave the client).
  """

  name: str
  model_dir: str
  clips: tuple[np.ndarray, ...]


@dataclasses.dataclass(frozen=True)
class SelectionRecord:
  """One selection period.

  Attributes:
    round: First round of the period.
    scores: Saliency similarity of every teacher to the student.
    probabilities: Selection probability of every teacher.
    selected: Indices of the sampled teachers.
  """

  round: int
  scores: tuple[float, ...]
  probabilities: tuple[float, ...]
  selected: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class FedSAResult:
  """What :func:`run_fedsa` produced.

  Attributes:
    encoder: The final student encoder.
    history: Every selection period.
    round_losses: Per round, mean local loss by selected teacher's name.
    client_examples: Examples processed by all clients together.
    wall_s: Wall time.
  """

  encoder: Encoder
  history: tuple[SelectionRecord, ...]
  round_losses: tuple[dict[str, float], ...]
  client_examples: int
  wall_s: float


def last_block_activations(config: EncoderConfig, params: Sequence[tf.Tensor],
                           patches: tf.Tensor) -> tf.Tensor:
  """The last conv block's ReLU output ``[n, h, w, c]`` (the Grad-CAM layer).

  The same ops as :func:`model.encoders.encode` up to its global max-pool;
  :func:`embedding_from_activations` finishes the forward pass.
  """
  x = patches[..., tf.newaxis]
  weights = iter(params)
  num_blocks = len(config.channels)
  for i in range(num_blocks):
    x = ops.conv2d(x, next(weights), next(weights))
    x = ops.conv2d(x, next(weights), next(weights))
    if i < num_blocks - 1:
      x = ops.relu_max_pool2x2(x)
  return ops.relu(x)


def embedding_from_activations(params: Sequence[tf.Tensor],
                               activations: tf.Tensor) -> tf.Tensor:
  """Global max-pool and embedding layer on :func:`last_block_activations`."""
  return ops.dense(tf.reduce_max(activations, axis=[1, 2]), params[-2],
                   params[-1])


def _probe_head(embeddings: np.ndarray, labels: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """A standardized logistic regression folded into ``e @ kernel + bias``.

  Returns:
    float32 ``kernel [d, classes]``, ``bias [classes]`` and int ``[n]``: the
    logit column of each example's label. A binary regression's single
    logit ``z`` becomes the pair ``(-z / 2, z / 2)``.
  """
  probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
  probe.fit(embeddings, labels)
  scaler, logistic = probe[0], probe[1]
  coef = logistic.coef_ / scaler.scale_
  intercept = logistic.intercept_ - coef @ scaler.mean_
  if len(coef) == 1:
    coef = np.concatenate([-coef, coef]) / 2
    intercept = np.concatenate([-intercept, intercept]) / 2
  return (coef.T.astype(np.float32), intercept.astype(np.float32),
          np.searchsorted(logistic.classes_, labels))


def saliency_maps(config: EncoderConfig, params: Sequence[np.ndarray],
                  probe: ProbeSet, *, method: str = "gradcam") -> np.ndarray:
  """Saliency of every probe patch for its label, one map per patch.

  The score of a patch is its label's logit under a linear probe fitted on
  this encoder's embeddings of the probe set (standardized logistic
  regression, as :func:`model.evaluation.linear_probe`). ``gradcam``: the
  channel weights are the spatially averaged gradients of the score with
  respect to the last conv block's activations ``A``; the map is
  ``ReLU(sum_c w_c A_c)``, bilinearly upsampled to the patch. ``gradient``:
  the map is ``|d score / d patch|``.

  Args:
    config: The encoder's architecture.
    params: Its weights, in the order of ``config.layer_shapes()``.
    probe: The labelled probe set (at least 2 classes).
    method: One of :data:`SALIENCY_METHODS`.

  Returns:
    float32 ``[n, patch_frames, num_mel_bins]``, non-negative.

  Raises:
    ValueError: Unknown ``method``.
  """
  if method not in SALIENCY_METHODS:
    raise ValueError(f"unknown saliency method {method!r}; expected one of "
                     f"{SALIENCY_METHODS}")
  params = [tf.convert_to_tensor(p, tf.float32) for p in params]
  patches = tf.convert_to_tensor(probe.patches, tf.float32)
  kernel, bias, target = _probe_head(encode(config, params, patches).numpy(),
                                     probe.labels)
  mask = tf.one_hot(target, kernel.shape[1])
  score = lambda e: tf.reduce_sum((tf.matmul(e, kernel) + bias) * mask)
  if method == "gradient":
    with tf.GradientTape() as tape:
      tape.watch(patches)
      total = score(encode(config, params, patches))
    return tf.abs(tape.gradient(total, patches)).numpy()
  activations = last_block_activations(config, params, patches)
  with tf.GradientTape() as tape:
    tape.watch(activations)
    total = score(embedding_from_activations(params, activations))
  weights = tf.reduce_mean(tape.gradient(total, activations), axis=[1, 2],
                           keepdims=True)
  cam = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))
  return tf.image.resize(cam[..., tf.newaxis],
                         [config.patch_frames, config.num_mel_bins],
                         method="bilinear")[..., 0].numpy()


def saliency_similarity(student: np.ndarray, teacher: np.ndarray) -> float:
  """Mean cosine similarity of paired maps; a pair with an all-zero map is 0.

  Raises:
    ValueError: The map stacks differ in shape.
  """
  if student.shape != teacher.shape:
    raise ValueError(f"saliency maps differ in shape: {student.shape} vs "
                     f"{teacher.shape}")
  a = student.reshape(len(student), -1).astype(np.float64)
  b = teacher.reshape(len(teacher), -1).astype(np.float64)
  norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
  cosine = np.divide(np.sum(a * b, axis=1), norms, out=np.zeros(len(a)),
                     where=norms > 0)
  return float(np.mean(cosine))


def selection_probabilities(scores: Sequence[float], temperature: float
                            ) -> np.ndarray:
  """``softmax(scores / temperature)`` (float64, sums to 1)."""
  logits = np.asarray(scores, np.float64) / temperature
  weights = np.exp(logits - np.max(logits))
  return weights / np.sum(weights)


def sample_teachers(probabilities: np.ndarray, k: int,
                    rng: np.random.Generator) -> np.ndarray:
  """``k`` distinct teacher indices drawn by probability, sorted.

  At most as many teachers as have a non-zero probability are drawn.
  """
  count = min(k, int(np.count_nonzero(probabilities)))
  return np.sort(rng.choice(len(probabilities), size=count, replace=False,
                            p=probabilities))


class _TeacherClient:
  """A client: its teacher, its audio, and its own translator and optimizer.

  The local objective is the ``distillation`` task with this client's single
  teacher: the student's embedding, through the client's linear translator,
  regresses onto the teacher's. The translator is never sent; it stays here
  across rounds.
  """

  def __init__(self, teacher: FedSATeacher, student: EncoderConfig,
               config: FedSAConfig, index: int):
    spec = ModelSpec(task="distillation", encoder=student, seed=config.seed,
                     task_config=TaskConfig(teacher_dirs=(teacher.model_dir,)))
    self.index = index
    self.config = config
    self.model = SSLModel(spec)
    self.segments = training_segments(teacher.clips, spec).waveforms
    self.optimizer = tf.keras.optimizers.Adam(config.learning_rate)
    self.optimizer.build(self.model.weights)
    self._step = tf.function(self._train_step)

  def _train_step(self, waveform: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    with tf.GradientTape() as tape, randomness.stateless_seed(seed):
      loss = self.model.loss(waveform)
    grads = tape.gradient(loss, self.model.weights)
    self.optimizer.apply_gradients(zip(grads, self.model.weights))
    return loss

  def similarity(self, student_maps: np.ndarray, probe: ProbeSet) -> float:
    """Similarity of the teacher's saliency maps to the student's."""
    teacher = self.model.task.teachers[0]
    return saliency_similarity(student_maps, saliency_maps(
        teacher.config, teacher.values, probe, method=self.config.saliency))

  def train(self, weights: Sequence[np.ndarray], round_num: int
            ) -> tuple[list[np.ndarray], float]:
    """Local distillation from the broadcast student; new weights, loss."""
    for variable, value in zip(self.model.encoder.weights, weights):
      variable.assign(value)
    for variable in self.optimizer.variables:
      variable.assign(tf.zeros_like(variable))
    batches = round_dataset(
        self.segments, self.config.batch_size, self.config.local_steps,
        seed=client_round_seed(self.config.seed, round_num, self.index))
    losses = [float(self._step(b["waveform"], b["seed"])) for b in batches]
    return ([v.numpy() for v in self.model.encoder.weights],
            float(np.mean(losses)))


def run_fedsa(config: FedSAConfig, student: EncoderConfig,
              teachers: Sequence[FedSATeacher], probe: ProbeSet, *,
              show_progress: bool = True) -> FedSAResult:
  """Trains a student from teachers held by different clients.

  Every ``selection_period`` rounds the server sends the student and the
  probe set to every client; each computes its teacher's saliency maps and
  returns their similarity to the student's; the server turns the
  similarities into probabilities (:func:`selection_probabilities`) and
  samples ``top_k`` teachers (:func:`sample_teachers`). In each round every
  selected client distils the broadcast student from its teacher on its own
  audio, and the server averages the returned students weighted by the
  selection probabilities (renormalized over the selected). Teachers, audio
  and translators never leave their client.

  This is a plain-Python loop rather than a TFF process: the clients'
  objectives differ (each embeds its own frozen teacher, whose architecture
  and so the weight types differ per client, which one federated type
  cannot express), the translators are client state kept across rounds,
  and the aggregation weights come from a server-side selection;
  ``tff.learning`` assumes one ``model_fn`` and stateless clients.

  Args:
    config: The loop's settings.
    student: The student's architecture (initialized from ``config.seed``).
    teachers: The clients.
    probe: The labelled probe set of the new task.
    show_progress: Show a progress bar.

  Returns:
    The student, the selection history and the local losses.

  Raises:
    ValueError: No teacher, or a teacher does not fit the student.
  """
  if not teachers:
    raise ValueError("run_fedsa: no teachers")
  start = time.time()
  clients = [_TeacherClient(t, student, config, i)
             for i, t in enumerate(teachers)]
  global_encoder = Encoder(student, seed=config.seed)
  weights = [v.numpy() for v in global_encoder.weights]
  history: list[SelectionRecord] = []
  round_losses: list[dict[str, float]] = []
  examples = 0
  with tqdm(total=config.rounds, unit="round", disable=not show_progress,
            desc="fedsa", dynamic_ncols=True) as bar:
    for round_num in range(1, config.rounds + 1):
      if (round_num - 1) % config.selection_period == 0:
        student_maps = saliency_maps(student, weights, probe,
                                     method=config.saliency)
        scores = [c.similarity(student_maps, probe) for c in clients]
        probabilities = selection_probabilities(scores, config.temperature)
        selected = sample_teachers(
            probabilities, config.top_k,
            np.random.default_rng([config.seed, round_num]))
        history.append(SelectionRecord(
            round=round_num, scores=tuple(scores),
            probabilities=tuple(map(float, probabilities)),
            selected=tuple(map(int, selected))))
        logging.info("round %d: similarities %s, selected %s", round_num,
                     np.round(scores, 4), [teachers[i].name for i in selected])
      updates = [clients[i].train(weights, round_num) for i in selected]
      mix = probabilities[selected] / np.sum(probabilities[selected])
      weights = [np.sum([m * u[j] for m, (u, _) in zip(mix, updates)],
                        axis=0).astype(np.float32)
                 for j in range(len(weights))]
      round_losses.append({teachers[i].name: loss
                           for i, (_, loss) in zip(selected, updates)})
      examples += len(selected) * config.local_steps * config.batch_size
      bar.set_postfix(loss=f"{np.mean([l for _, l in updates]):.4f}")
      bar.update(1)
  for variable, value in zip(global_encoder.weights, weights):
    variable.assign(value)
  return FedSAResult(encoder=global_encoder, history=tuple(history),
                     round_losses=tuple(round_losses),
                     client_examples=examples, wall_s=time.time() - start)


@dataclasses.dataclass(frozen=True)
class FedSABenchmarkConfig:
  """FedSA against its baselines on a new downstream task.

  Attributes:
    corpus: Key of :data:`model.datasets.synthetic.CORPUS_PRESETS`.
    corpus_dir: Where the corpus is generated (reused when complete); None:
      ``<out_dir>/corpus``.
    teacher_tasks: One SSL task per teacher; teacher ``i`` is trained on the
      speakers ``i, i + n, ...`` (sorted client ids, ``n`` teachers).
    teacher_encoder: Preset of every teacher.
    teacher_steps: Training steps of every teacher.
    student_encoder: Preset of the student.
    downstream_task: Label column of the new task.
    probe_clips_per_class: Labelled clips per class in the probe set, drawn
      from the task's training split.
    supervised_steps: Steps of the supervised from-scratch baseline.
    fedavg_task: SSL task of the FedAvg baseline.
    fedsa: The FedSA loop (its batch size, learning rate and seed also
      train the teachers and the baselines).
    out_dir: Output directory.
  """

  corpus: str = "demo"
  corpus_dir: Optional[str] = None
  teacher_tasks: tuple[str, ...] = ("triplet", "temporal_gap",
                                    "audio2vec_cbow")
  teacher_encoder: str = "small"
  teacher_steps: int = 200
  student_encoder: str = "tiny"
  downstream_task: str = "keyword"
  probe_clips_per_class: int = 3
  supervised_steps: int = 200
  fedavg_task: str = "triplet"
  fedsa: FedSAConfig = FedSAConfig()
  out_dir: str = "fedsa_output"

  def __post_init__(self):
    object.__setattr__(self, "teacher_tasks", tuple(self.teacher_tasks))
    require_choice(self, ["corpus"], synthetic.CORPUS_PRESETS)
    require_choice(self, ["teacher_encoder", "student_encoder"], ENCODERS)
    unknown = [t for t in (*self.teacher_tasks, self.fedavg_task)
               if t not in SSL_TASKS]
    if unknown or not self.teacher_tasks:
      raise ValueError(f"FedSABenchmarkConfig: teacher_tasks (at least one) "
                       f"and fedavg_task must be keys of {sorted(SSL_TASKS)}; "
                       f"unknown: {unknown}")
    for field in ("teacher_steps", "probe_clips_per_class",
                  "supervised_steps"):
      if getattr(self, field) <= 0:
        raise ValueError(f"FedSABenchmarkConfig.{field} must be positive, "
                         f"got {getattr(self, field)}")

  @property
  def corpus_path(self) -> str:
    """The corpus directory: ``corpus_dir`` or ``<out_dir>/corpus``."""
    return self.corpus_dir or os.path.join(self.out_dir, "corpus")


def _command_line(config: FedSABenchmarkConfig) -> str:
  """The launcher command that reproduces ``config`` (flags = fields)."""
  fields = {f.name: getattr(config, f.name)
            for f in dataclasses.fields(config) if f.name != "fedsa"}
  fields.update(dataclasses.asdict(config.fedsa))
  args = []
  for name, value in fields.items():
    if value is None:
      continue
    if isinstance(value, tuple):
      value = ",".join(map(str, value))
    args.append(shlex.quote(f"--{name}={value}"))
  return " ".join([_LAUNCHER, *args])


class _NewTask:
  """The new downstream task: its split, its probe set and its scores."""

  def __init__(self, config: FedSABenchmarkConfig, table: ClipTable,
               waveforms: Sequence[np.ndarray]):
    task, seed = config.downstream_task, config.fedsa.seed
    rows = [i for i, clip in enumerate(table) if task in clip.labels]
    self.waveforms = [waveforms[i] for i in rows]
    self.labels = np.asarray([table[i].labels[task] for i in rows])
    self.train, self.test = evaluation.split_for_task(table, task, seed=seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(self.train)
    self.probe_clips = np.sort(np.concatenate([
        order[self.labels[order] == label][:config.probe_clips_per_class]
        for label in np.unique(self.labels[self.train])]))
    self.classes = np.unique(self.labels[self.probe_clips])
    self.frontend = FrontendConfig()
    patches, owner = evaluation.clip_patches(
        [self.waveforms[i] for i in self.probe_clips], self.frontend)
    self.probe = ProbeSet(patches=patches, labels=np.searchsorted(
        self.classes, self.labels[self.probe_clips])[owner])

  def scores(self, encoder: Encoder) -> dict[str, float]:
    """Probe-set and full-split linear-probe accuracy on the test split."""
    x = evaluation.clip_embeddings(encoder, self.waveforms, self.frontend)
    y = self.labels
    return {PROBE_SET: evaluation.linear_probe(
                x[self.probe_clips], y[self.probe_clips], x[self.test],
                y[self.test]),
            FULL_SPLIT: evaluation.linear_probe(
                x[self.train], y[self.train], x[self.test], y[self.test])}

  def supervised(self, student: EncoderConfig, steps: int, batch_size: int,
                 learning_rate: float, seed: int) -> dict[str, float]:
    """A student trained from scratch on the probe set's labels."""
    classifier, _ = evaluation.train_classifier(
        Encoder(student, seed=seed), self.probe.patches, self.probe.labels,
        len(self.classes), trainable_blocks=None, steps=steps,
        batch_size=batch_size, learning_rate=learning_rate, seed=seed)
    patches, owner = evaluation.clip_patches(
        [self.waveforms[i] for i in self.test], self.frontend)
    predicted = self.classes[classifier.predict(patches, owner)]
    return {**self.scores(classifier.encoder),
            PROBE_SET: float(np.mean(predicted == self.labels[self.test]))}


def _teacher_groups(table: ClipTable, count: int) -> list[np.ndarray]:
  """Clip indices of teacher ``i``: the speakers ``i, i + count, ...``."""
  speakers = table.client_ids
  if len(speakers) < count:
    raise ValueError(f"{count} teachers need at least {count} speakers; the "
                     f"corpus has {len(speakers)}")
  return [np.flatnonzero([clip.client_id in speakers[i::count]
                          for clip in table]) for i in range(count)]


def _train_teachers(config: FedSABenchmarkConfig, table: ClipTable,
                    waveforms: Sequence[np.ndarray], show_progress: bool
                    ) -> list[FedSATeacher]:
  """Trains (or reuses) each teacher on its own speakers with its task."""
  fedsa = config.fedsa
  teachers = []
  for i, (task, clips) in enumerate(zip(
      config.teacher_tasks, _teacher_groups(table, len(config.teacher_tasks)))):
    own = tuple(waveforms[j] for j in clips)
    spec = ModelSpec(task=task, encoder=ENCODERS[config.teacher_encoder],
                     seed=fedsa.seed + 1 + i)
    result = train_centralized(
        spec, TrainConfig(steps=config.teacher_steps,
                          batch_size=fedsa.batch_size,
                          learning_rate=fedsa.learning_rate, seed=fedsa.seed),
        training_segments(own, spec).waveforms,
        os.path.join(config.out_dir, "runs", f"teacher{i}_{task}"),
        dataset_info={"kind": "synthetic", "preset": config.corpus,
                      "speakers": sorted({table[j].client_id for j in clips})},
        show_progress=show_progress)
    teachers.append(FedSATeacher(
        name=f"T{i} ({config.teacher_encoder}, {task})",
        model_dir=os.path.abspath(result.model_dir), clips=own))
  return teachers


def _teachers_as_clients(table: ClipTable,
                         groups: Sequence[np.ndarray]) -> ClipTable:
  """``table`` with each clip's client id replaced by its teacher's."""
  owner = {int(j): f"teacher{i}" for i, clips in enumerate(groups)
           for j in clips}
  return dataclasses.replace(table, clips=tuple(
      dataclasses.replace(clip, client_id=owner[j])
      for j, clip in enumerate(table)))


def _baselines(config: FedSABenchmarkConfig, table: ClipTable,
               waveforms: Sequence[np.ndarray],
               teachers: Sequence[FedSATeacher], new_task: _NewTask,
               show_progress: bool) -> dict[str, dict[str, float]]:
  """Random-init, supervised, all-teacher distillation and FedAvg rows."""
  fedsa = config.fedsa
  student = ENCODERS[config.student_encoder]
  steps = fedsa.rounds * fedsa.top_k * fedsa.local_steps
  rows = {"student at random init": new_task.scores(
              Encoder(student, seed=fedsa.seed)),
          "student from scratch, supervised on the probe set":
          new_task.supervised(student, config.supervised_steps,
                              fedsa.batch_size, fedsa.learning_rate,
                              fedsa.seed)}
  spec = ModelSpec(task="distillation", encoder=student, seed=fedsa.seed,
                   task_config=TaskConfig(
                       teacher_dirs=tuple(t.model_dir for t in teachers)))
  central = train_centralized(
      spec, TrainConfig(steps=steps, batch_size=fedsa.batch_size,
                        learning_rate=fedsa.learning_rate, seed=fedsa.seed),
      training_segments(waveforms, spec).waveforms,
      os.path.join(config.out_dir, "runs", "distill_all_teachers"),
      dataset_info={"kind": "synthetic", "preset": config.corpus},
      show_progress=show_progress)
  rows["distillation from all teachers (central)"] = new_task.scores(
      central.model.encoder)
  groups = _teacher_groups(table, len(teachers))
  federated = run_simulation(
      SimulationConfig(
          model=ModelSpec(task=config.fedavg_task, encoder=student,
                          seed=fedsa.seed),
          algorithm=AlgorithmConfig(client_optimizer="adam",
                                    client_learning_rate=fedsa.learning_rate),
          partition=PartitionConfig(method="natural"), rounds=fedsa.rounds,
          clients_per_round=fedsa.top_k, batch_size=fedsa.batch_size,
          # Enough epochs that every client runs exactly local_steps steps.
          local_epochs=fedsa.local_steps * fedsa.batch_size,
          max_local_steps=fedsa.local_steps, eval_every=_FINAL_EVAL_ONLY,
          seed=fedsa.seed),
      _teachers_as_clients(table, groups), waveforms,
      os.path.join(config.out_dir, "runs", f"fedavg_{config.fedavg_task}"),
      show_progress=show_progress)
  rows[f"FedAvg {config.fedavg_task} on the teachers' clients"] = (
      new_task.scores(load_model(federated.model_dir).encoder))
  return rows


def _sized(encoder: EncoderConfig, scores: dict[str, float]
           ) -> dict[str, float]:
  return {"params": float(encoder.num_params),
          "forward_mflops": encoder.forward_mflops(), **scores}


def _format_rows(rows: dict[str, dict[str, float]]) -> str:
  lines = ["| model | params | MFLOPs | probe-set probe | full-split probe |",
           "|---|---:|---:|---:|---:|"]
  lines += [f"| {name} | {r['params']:,.0f} | {r['forward_mflops']:.1f} | "
            f"{r[PROBE_SET]:.3f} | {r[FULL_SPLIT]:.3f} |"
            for name, r in rows.items()]
  return "\n".join(lines)


def _format_history(history: Sequence[SelectionRecord],
                    teachers: Sequence[FedSATeacher]) -> str:
  names = [t.name.split(" ")[0] for t in teachers]
  lines = ["| round | " + " | ".join(f"sim {n}" for n in names) + " | "
           + " | ".join(f"p {n}" for n in names) + " | selected |",
           "|---:|" + "---:|" * (2 * len(names)) + "---|"]
  lines += [f"| {r.round} | " + " | ".join(f"{s:.4f}" for s in r.scores)
            + " | " + " | ".join(f"{p:.3f}" for p in r.probabilities)
            + " | " + ", ".join(names[i] for i in r.selected) + " |"
            for r in history]
  return "\n".join(lines)


def _write_history(path: str, history: Sequence[SelectionRecord],
                   teachers: Sequence[FedSATeacher]) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["round", *(f"similarity {t.name}" for t in teachers),
                     *(f"probability {t.name}" for t in teachers),
                     "selected"])
    for r in history:
      writer.writerow([r.round, *r.scores, *r.probabilities,
                       ";".join(teachers[i].name for i in r.selected)])


def _plot(rows: dict[str, dict[str, float]],
          history: Sequence[SelectionRecord],
          teachers: Sequence[FedSATeacher], path: str) -> None:
  """Accuracy bars by model and selection probabilities by round."""
  figure = Figure(figsize=(13.0, 4.5), layout="constrained")
  bars, lines = figure.subplots(1, 2, width_ratios=(2, 1))
  positions = np.arange(len(rows))
  for offset, column in ((-0.2, PROBE_SET), (0.2, FULL_SPLIT)):
    bars.bar(positions + offset, [r[column] for r in rows.values()], 0.4,
             label=column.replace("_", " "))
  bars.set_xticks(positions, list(rows), rotation=20, ha="right",
                  fontsize="small")
  bars.set_ylabel("test accuracy")
  bars.grid(axis="y", alpha=0.3)
  bars.legend(fontsize="small")
  rounds = [r.round for r in history]
  for i, teacher in enumerate(teachers):
    lines.plot(rounds, [r.probabilities[i] for r in history], marker="o",
               label=teacher.name)
  lines.set_xlabel("round")
  lines.set_ylabel("selection probability")
  lines.grid(alpha=0.3)
  lines.legend(fontsize="small")
  figure.savefig(path, dpi=110, format="png")


def run_fedsa_benchmark(config: FedSABenchmarkConfig, *,
                        show_progress: bool = True
                        ) -> tuple[dict[str, dict[str, float]], FedSAResult]:
  """Teachers on disjoint clients -> FedSA student, against the baselines.

  Generates (or reuses) the corpus; trains one teacher per
  ``teacher_tasks`` entry on its own speakers (``runs/teacher<i>_<task>``,
  reused on reruns); runs FedSA and, with the same number of client
  examples, distillation from all teachers at once (central) and FedAvg of
  the student with ``fedavg_task`` over the teachers' clients (TFF); trains
  the student from scratch on the probe set's labels; scores every encoder
  by linear probes on the new task; writes ``report.md``, ``results.csv``,
  ``selection.csv`` and ``results.png``.

  Args:
    config: What to run.
    show_progress: Show progress bars.

  Returns:
    The results table (by model: ``params``, ``forward_mflops``, probe-set
    and full-split probe accuracy) and the FedSA run.

  Raises:
    ValueError: The new task cannot be split, or there are fewer speakers
      than teachers.
  """
  start = time.time()
  table, waveforms, _ = decode_clips(
      synthetic.generate_corpus(config.corpus_path,
                                synthetic.CORPUS_PRESETS[config.corpus],
                                show_progress=show_progress),
      show_progress=show_progress)
  new_task = _NewTask(config, table, waveforms)
  teachers = _train_teachers(config, table, waveforms, show_progress)
  student = ENCODERS[config.student_encoder]
  rows = {}
  for teacher in teachers:
    frozen = load_teacher(teacher.model_dir)
    encoder = Encoder(frozen.config)
    for variable, value in zip(encoder.weights, frozen.values):
      variable.assign(value)
    rows[f"teacher {teacher.name}"] = _sized(frozen.config,
                                             new_task.scores(encoder))
  rows.update({name: _sized(student, scores) for name, scores in _baselines(
      config, table, waveforms, teachers, new_task, show_progress).items()})
  result = run_fedsa(config.fedsa, student, teachers, new_task.probe,
                     show_progress=show_progress)
  fedsa = config.fedsa
  rows[f"FedSA (top {fedsa.top_k} of {len(teachers)}, {fedsa.saliency})"] = (
      _sized(student, new_task.scores(result.encoder)))

  os.makedirs(config.out_dir, exist_ok=True)
  evaluation.write_csv(rows, os.path.join(config.out_dir, "results.csv"))
  _write_history(os.path.join(config.out_dir, "selection.csv"),
                 result.history, teachers)
  _plot(rows, result.history, teachers,
        os.path.join(config.out_dir, "results.png"))
  lines = [
      f"# FedSA: {config.student_encoder} student for `"
      f"{config.downstream_task}` from {len(teachers)} "
      f"{config.teacher_encoder} teachers", "",
      f"Test accuracy on unseen speakers of a linear probe on frozen clip "
      f"embeddings, trained on the {len(new_task.probe_clips)}-clip labelled "
      f"probe set ({config.probe_clips_per_class} per class; `probe-set "
      f"probe`) or on the task's whole training split ({len(new_task.train)} "
      f"clips; `full-split probe`), {len(new_task.test)} test clips. The "
      "supervised row's probe-set cell is its own classifier. The "
      "distillation, FedAvg and FedSA rows each processed "
      f"{result.client_examples} client examples.", "",
      _format_rows(rows), "", "## Teacher selection", "",
      f"Every {fedsa.selection_period} rounds: {fedsa.saliency} saliency "
      f"maps of the probe set's patches (score: the label's logit under a "
      f"linear probe on each model's own embeddings), mean cosine "
      f"similarity of each teacher's maps to the student's, softmax at "
      f"temperature {fedsa.temperature:g}, {fedsa.top_k} teachers sampled "
      "without replacement; the server averages the selected clients' "
      "students weighted by these probabilities.", "",
      _format_history(result.history, teachers), "",
      "## Command", "", "```", _command_line(config), "```", "",
      "```json", json.dumps(dataclasses.asdict(config), indent=2), "```", "",
      f"FedSA loop: {result.wall_s:.0f} s. Wall time of this invocation: "
      f"{time.time() - start:.0f} s.", ""]
  with open(os.path.join(config.out_dir, "report.md"), "w") as f:
    f.write("\n".join(lines))
  return rows, result
