"""Federated selective aggregation (FedSA) for knowledge amalgamation (Xie et al., "Federated Selective Aggregation for Knowledge Amalgamation", 2022).

Decentralized teachers (each on its own client, trained for its own task on
its own audio) teach a student for a new task that only a small labelled
probe set describes:

1. The student (encoder + linear head) is first trained on the probe set.
2. Every ``selection_period`` rounds the student and every teacher compute
   Grad-CAM maps of the probe clips at a chosen conv block, each for its own
   predicted class (a teacher's classes come from a linear head it fits on
   the probe set); maps are min-max normalized. The similarity of a teacher
   to the student is ``0.5 + 0.5 cos`` per clip; its transferability
   ``n / sum(similarity)``; ``2 - transferability``, min-max normalized and
   softmaxed, gives the selection probabilities, from which ``top_k``
   teachers are drawn *with replacement*.
3. In each round every draw distils a copy of the broadcast student at the
   drawn teacher's client on that client's unlabelled audio, with a
   FitNet-style hint loss: a per-teacher translator (kept on its client)
   maps the student's feature map at the hint layer onto the teacher's,
   standardized per channel on the client's audio.
4. The server averages the copies (FedAvg, weight ``1 / top_k`` per draw)
   and re-fits the student's linear head on the probe set every
   ``selection_period`` rounds.

The same loop with ``aggregation="all"`` (every teacher each round, uniform
average) is the FedAvg-of-students baseline, and with ``"central"`` (one
student, all teachers' hint losses on pooled audio each step) the central
knowledge-amalgamation baseline.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional, Sequence

from absl import logging
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
import tensorflow as tf
from tqdm import tqdm

from model import evaluation
from model import ops
from model.config_checks import require_positive
from model.encoders import (Encoder, EncoderConfig, encode, glorot_uniform,
                            pool_features)
from model.features import FrontendConfig
from model.saved_model import SavedModel
from model.tasks.distillation import load_teacher

__all__ = [
    "AGGREGATIONS", "HINT_LAYERS", "ProbeSet", "make_probe_set",
    "FedSAConfig", "FedSATeacher", "SelectionRecord", "FedSAResult",
    "block_activations", "forward_from_block", "fit_linear_head",
    "gradcam_maps", "clip_similarities", "selection_probabilities",
    "sample_teachers", "check_teacher", "TeacherSite", "prepare_sites",
    "train_on_probe_set", "run_fedsa",
]

#: ``selective``: FedSA (saliency-based draws with replacement);
#: ``all``: every teacher's client each round, uniform average (FedAvg of
#: students); ``central``: one student distilled from all teachers at once on
#: their pooled audio (central knowledge amalgamation).
AGGREGATIONS = ("selective", "all", "central")

#: Where the hint loss compares student and teacher: the last conv block's
#: ReLU output (FitNet hint, as the reference) or the embedding.
HINT_LAYERS = ("last_block", "embedding")


@dataclasses.dataclass(frozen=True)
class ProbeSet:
  """The small labelled set of the new task.

  Attributes:
    patches: float32 ``[n_patches, patch_frames, num_mel_bins]`` log-mel.
    owner: int ``[n_patches]`` clip index of each patch (non-decreasing).
    labels: int ``[n_clips]`` class index of each clip.
    classes: Class names, indexed by ``labels``.
  """

  patches: np.ndarray
  owner: np.ndarray
  labels: np.ndarray
  classes: tuple

  @property
  def patch_labels(self) -> np.ndarray:
    """Class index of every patch (its clip's)."""
    return self.labels[self.owner]


def make_probe_set(waveforms: Sequence[np.ndarray], labels: Sequence,
                   classes: Sequence, frontend: FrontendConfig) -> ProbeSet:
  """Cuts labelled clips into patches; every class must have a clip.

  Args:
    waveforms: The labelled clips (1-D, 16 kHz).
    labels: Each clip's class name.
    classes: All classes of the task.
    frontend: The student's front-end.

  Raises:
    ValueError: A label is not in ``classes``, lengths differ, or a class
      has no clip (named in the message).
  """
  labels = list(labels)
  classes = tuple(classes)
  if len(labels) != len(waveforms):
    raise ValueError(f"probe set: {len(waveforms)} clips but {len(labels)} "
                     f"labels")
  unknown = sorted({str(l) for l in labels} - {str(c) for c in classes})
  if unknown:
    raise ValueError(f"probe set: labels {unknown} are not among the task's "
                     f"classes {list(classes)}")
  missing = [c for c in classes if c not in labels]
  if missing:
    raise ValueError(f"probe set: class(es) {missing} have no clip; every "
                     f"class of the task needs at least one labelled clip")
  patches, owner = evaluation.clip_patches(waveforms, frontend)
  return ProbeSet(patches=patches, owner=owner,
                  labels=np.asarray([classes.index(l) for l in labels]),
                  classes=classes)


@dataclasses.dataclass(frozen=True)
class FedSAConfig:
  """The FedSA loop.

  Attributes:
    rounds: Communication rounds.
    selection_period: Rounds between teacher draws and head re-fits.
    top_k: Teachers drawn (with replacement) per period.
    temperature: Divides the normalized scores before the softmax (1 as in
      the reference).
    cam_block: Conv block whose ReLU output Grad-CAM uses (negative counts
      from the last).
    hint_layer: One of :data:`HINT_LAYERS`.
    aggregation: One of :data:`AGGREGATIONS`.
    local_steps: Distillation steps per draw per round.
    batch_size: Patches per distillation step (per teacher for
      ``central``).
    learning_rate: Adam step size of the local distillation (state reset
      every round, as a fresh optimizer).
    probe_steps: Steps training the student (encoder + head) on the probe
      set before the rounds.
    probe_batch_size: Patches per probe-set step.
    seed: Seed of the student's initial weights, translators, draws and
      batches.
  """

  rounds: int = 20
  selection_period: int = 5
  top_k: int = 2
  temperature: float = 1.0
  cam_block: int = -1
  hint_layer: str = "last_block"
  aggregation: str = "selective"
  local_steps: int = 10
  batch_size: int = 16
  learning_rate: float = 1e-3
  probe_steps: int = 100
  probe_batch_size: int = 32
  seed: int = 0

  def __post_init__(self):
    require_positive(self, ("rounds", "selection_period", "top_k",
                            "local_steps", "batch_size", "probe_steps",
                            "probe_batch_size", "temperature",
                            "learning_rate"))
    if self.hint_layer not in HINT_LAYERS:
      raise ValueError(f"FedSAConfig.hint_layer: unknown {self.hint_layer!r}; "
                       f"expected one of {HINT_LAYERS}")
    if self.aggregation not in AGGREGATIONS:
      raise ValueError(f"FedSAConfig.aggregation: unknown "
                       f"{self.aggregation!r}; expected one of {AGGREGATIONS}")


@dataclasses.dataclass(frozen=True)
class FedSATeacher:
  """One client: a teacher encoder and the client's own unlabelled audio.

  Attributes:
    name: Display name.
    model_dir: The teacher's saved model (``model.json`` + ``weights.npz``).
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
    similarities: Mean per-clip similarity (``0.5 + 0.5 cos``) of every
      teacher's Grad-CAM maps to the student's.
    probabilities: Selection probability of every teacher.
    selected: Drawn teacher indices (with replacement, in draw order).
  """

  round: int
  similarities: tuple[float, ...]
  probabilities: tuple[float, ...]
  selected: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class FedSAResult:
  """What :func:`run_fedsa` produced.

  Attributes:
    encoder: The final student encoder.
    head: The student's linear head ``(kernel [d, classes], bias)``,
      re-fitted on the probe set at the end.
    history: Every selection period (empty unless ``selective``).
    round_losses: Per round, the mean hint loss of each draw.
    client_examples: Patches processed by all distillation steps.
    wall_s: Wall time.
  """

  encoder: Encoder
  head: tuple[np.ndarray, np.ndarray]
  history: tuple[SelectionRecord, ...]
  round_losses: tuple[tuple[float, ...], ...]
  client_examples: int
  wall_s: float


def _block_index(config: EncoderConfig, block: int) -> int:
  num_blocks = len(config.channels)
  if not -num_blocks <= block < num_blocks:
    raise ValueError(f"block {block} out of range for encoder "
                     f"{config.name!r} with {num_blocks} blocks")
  return block % num_blocks


def block_activations(config: EncoderConfig, params: Sequence[tf.Tensor],
                      patches: tf.Tensor, block: int = -1) -> tf.Tensor:
  """The ReLU output ``[n, h, w, c]`` of conv block ``block`` (before its pool).

  The same ops as :func:`model.encoders.encode`;
  :func:`forward_from_block` finishes the forward pass.
  """
  block = _block_index(config, block)
  x = tf.convert_to_tensor(patches, tf.float32)[..., tf.newaxis]
  weights = iter(params)
  for i in range(block + 1):
    x = ops.conv_pair(x, next(weights), next(weights), next(weights),
                      next(weights))
    if i < block:
      x = ops.relu_max_pool2x2(x)
  return ops.relu(x)


def forward_from_block(config: EncoderConfig, params: Sequence[tf.Tensor],
                       activations: tf.Tensor, block: int = -1) -> tf.Tensor:
  """The embedding from :func:`block_activations` of the same ``block``."""
  block = _block_index(config, block)
  num_blocks = len(config.channels)
  x = activations
  params = list(params)
  for i in range(block, num_blocks):
    if i > block:
      x = ops.conv_pair(x, *params[4 * i:4 * i + 4])
    if i < num_blocks - 1:
      # ReLU is idempotent: pooling the (already ReLU'd) activations.
      x = ops.relu_max_pool2x2(x)
  return ops.dense(pool_features(x, config.pooling), params[-2], params[-1])


def fit_linear_head(embeddings: np.ndarray, labels: np.ndarray,
                    num_classes: int) -> tuple[np.ndarray, np.ndarray]:
  """A standardized logistic regression folded into ``e @ kernel + bias``.

  Args:
    embeddings: ``[n, d]``.
    labels: int ``[n]`` in ``[0, num_classes)``; at least 2 distinct.
    num_classes: Columns of the head; a class absent from ``labels`` gets
      a very low bias.

  Returns:
    float32 ``kernel [d, num_classes]`` and ``bias [num_classes]``.
  """
  probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
  probe.fit(embeddings, labels)
  scaler, logistic = probe[0], probe[1]
  coef = logistic.coef_ / scaler.scale_
  intercept = logistic.intercept_ - coef @ scaler.mean_
  if len(coef) == 1:  # Binary: one logit z -> (-z / 2, z / 2).
    coef = np.concatenate([-coef, coef]) / 2
    intercept = np.concatenate([-intercept, intercept]) / 2
  kernel = np.zeros((embeddings.shape[1], num_classes), np.float32)
  bias = np.full(num_classes, -1e4, np.float32)
  kernel[:, logistic.classes_] = coef.T
  bias[logistic.classes_] = intercept
  return kernel, bias


def gradcam_maps(config: EncoderConfig, params: Sequence[np.ndarray],
                 head: tuple[np.ndarray, np.ndarray], probe: ProbeSet, *,
                 block: int = -1) -> tuple[np.ndarray, np.ndarray]:
  """Grad-CAM of every probe patch for its model's own predicted class.

  A clip's predicted class is the arg-max of its patches' mean logits under
  ``head``. Channel weights are the spatially averaged gradients of that
  class's logit with respect to block ``block``'s activations ``A``; the map
  ``ReLU(sum_c w_c A_c)`` is bilinearly resized to the patch and min-max
  normalized to [0, 1] (a constant map becomes all zeros).

  Args:
    config: The encoder's architecture.
    params: Its weights, in the order of ``config.layer_shapes()``.
    head: ``(kernel [d, classes], bias [classes])``.
    probe: The probe set.
    block: See :func:`block_activations`.

  Returns:
    float32 maps ``[n_patches, patch_frames, num_mel_bins]`` and int
    ``[n_clips]`` predicted classes.
  """
  params = [tf.convert_to_tensor(p, tf.float32) for p in params]
  kernel, bias = (tf.constant(h, tf.float32) for h in head)
  activations = block_activations(config, params, probe.patches, block)
  with tf.GradientTape() as tape:
    tape.watch(activations)
    logits = tf.matmul(forward_from_block(config, params, activations, block),
                       kernel) + bias
    counts = np.bincount(probe.owner)
    clip_logits = tf.math.unsorted_segment_sum(
        logits, probe.owner, len(counts)) / counts[:, np.newaxis]
    predicted = tf.argmax(clip_logits, axis=1)
    score = tf.reduce_sum(logits * tf.one_hot(
        tf.gather(predicted, probe.owner), kernel.shape[1]))
  weights = tf.reduce_mean(tape.gradient(score, activations), axis=[1, 2],
                           keepdims=True)
  cam = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))
  cam = tf.image.resize(cam[..., tf.newaxis], probe.patches.shape[1:3],
                        method="bilinear")[..., 0]
  low = tf.reduce_min(cam, axis=[1, 2], keepdims=True)
  span = tf.reduce_max(cam, axis=[1, 2], keepdims=True) - low
  cam = tf.math.divide_no_nan(cam - low, span)
  return cam.numpy(), predicted.numpy()


def clip_similarities(student: np.ndarray, teacher: np.ndarray,
                      owner: np.ndarray) -> np.ndarray:
  """``0.5 + 0.5 cos`` of each clip's maps (its patches' maps concatenated).

  A clip whose map is all zero in either stack has cosine 0 (similarity 0.5).

  Raises:
    ValueError: The map stacks differ in shape or ``owner`` in length.
  """
  if student.shape != teacher.shape or len(owner) != len(student):
    raise ValueError(f"saliency maps differ in shape: {student.shape} vs "
                     f"{teacher.shape} (owner: {len(owner)} patches)")
  a = student.reshape(len(student), -1).astype(np.float64)
  b = teacher.reshape(len(teacher), -1).astype(np.float64)
  clips = np.bincount(owner).size
  dot = np.bincount(owner, np.sum(a * b, axis=1), clips)
  norms = np.sqrt(np.bincount(owner, np.sum(a * a, axis=1), clips)
                  * np.bincount(owner, np.sum(b * b, axis=1), clips))
  cosine = np.divide(dot, norms, out=np.zeros(clips), where=norms > 0)
  return 0.5 + 0.5 * cosine


def selection_probabilities(similarities: np.ndarray, temperature: float = 1.0
                            ) -> np.ndarray:
  """Selection probabilities from ``[teachers, clips]`` similarities.

  Transferability ``t_i = n_clips / sum_j s_ij`` (1 for identical maps);
  ``q_i = 2 - t_i`` min-max normalized over teachers (all equal: zeros);
  ``softmax(q / temperature)``.

  Returns:
    float64 ``[teachers]``, sums to 1.
  """
  similarities = np.asarray(similarities, np.float64)
  q = 2.0 - similarities.shape[1] / np.sum(similarities, axis=1)
  span = np.max(q) - np.min(q)
  q = (q - np.min(q)) / span if span > 0 else np.zeros_like(q)
  weights = np.exp((q - np.max(q)) / temperature)
  return weights / np.sum(weights)


def sample_teachers(probabilities: np.ndarray, k: int,
                    rng: np.random.Generator) -> np.ndarray:
  """``k`` teacher indices drawn by probability *with replacement*."""
  return rng.choice(len(probabilities), size=k, replace=True,
                    p=probabilities)


def check_teacher(teacher: FedSATeacher, student: EncoderConfig,
                  frontend: FrontendConfig) -> None:
  """Raises ValueError if the teacher's front-end or input shape differs.

  The teacher's ``model.json`` must record the student's front-end (which
  owns the patch shape, ``patch_frames`` x ``num_mel_bins``) and as many
  conv blocks (so hint feature maps align).
  """
  try:
    spec = SavedModel.read(teacher.model_dir).spec
  except FileNotFoundError as e:
    raise FileNotFoundError(f"teacher {teacher.name!r}: {e}") from e
  got = spec.get("frontend", {})
  expected = dataclasses.asdict(frontend)
  differing = {k: (got.get(k), v) for k, v in expected.items()
               if k in got and got[k] != (list(v) if isinstance(v, tuple)
                                          else v)}
  if differing:
    field, (theirs, ours) = next(iter(differing.items()))
    raise ValueError(f"teacher {teacher.name!r} ({teacher.model_dir}): "
                     f"front-end field {field} is {theirs!r}, the student's "
                     f"is {ours!r}")
  encoder = spec["encoder"]
  blocks = len(encoder["base_channels"])
  if blocks != len(student.channels):
    raise ValueError(f"teacher {teacher.name!r}: {blocks} conv blocks, the "
                     f"student has {len(student.channels)}; hint feature maps "
                     f"would not align")


def _features(config: EncoderConfig, params: Sequence[tf.Tensor],
              patches: tf.Tensor, hint_layer: str) -> tf.Tensor:
  if hint_layer == "embedding":
    return encode(config, params, patches)
  return block_activations(config, params, patches, -1)


@dataclasses.dataclass(frozen=True)
class TeacherSite:
  """What a teacher's client prepares once: its patches and hint targets.

  Attributes:
    name: The teacher's display name.
    teacher_config: The teacher's architecture.
    teacher_params: Its weights.
    patches: float32 ``[n, frames, bins]``: the client's audio as patches.
    targets: The teacher's features of ``patches`` at ``hint_layer``,
      standardized per channel (per dimension for embeddings) over the
      client's patches.
    hint_layer: One of :data:`HINT_LAYERS`.
  """

  name: str
  teacher_config: EncoderConfig
  teacher_params: tuple[np.ndarray, ...]
  patches: np.ndarray
  targets: np.ndarray
  hint_layer: str


def prepare_sites(teachers: Sequence[FedSATeacher], student: EncoderConfig,
                  frontend: FrontendConfig, hint_layer: str
                  ) -> list[TeacherSite]:
  """Checks every teacher and computes its client's hint targets.

  Raises:
    ValueError: A teacher does not fit the student (see
      :func:`check_teacher`) or its client has no audio.
  """
  sites = []
  for teacher in teachers:
    check_teacher(teacher, student, frontend)
    frozen = load_teacher(teacher.model_dir)
    patches, _ = evaluation.clip_patches(teacher.clips, frontend)
    if not len(patches):
      raise ValueError(f"teacher {teacher.name!r}: the client has no audio")
    params = [tf.constant(v) for v in frozen.values]
    compute = tf.function(lambda x, c=frozen.config, p=params: _features(
        c, p, x, hint_layer))
    targets = np.concatenate([compute(patches[i:i + 128]).numpy()
                              for i in range(0, len(patches), 128)])
    axes = tuple(range(targets.ndim - 1))
    std = targets.std(axis=axes)
    targets = (targets - targets.mean(axis=axes)) / np.where(std > 0, std, 1)
    sites.append(TeacherSite(
        name=teacher.name, teacher_config=frozen.config,
        teacher_params=tuple(frozen.values), patches=patches,
        targets=targets.astype(np.float32), hint_layer=hint_layer))
  return sites


class _HintClient:
  """A teacher's client during one run: its site and its own translator.

  The translator (a 1x1 conv, i.e. a dense layer over channels) stays on
  the client across rounds and is trained with the student copy.
  """

  def __init__(self, site: TeacherSite, student: EncoderConfig,
               config: FedSAConfig, index: int):
    self.name = site.name
    self.index = index
    self.teacher_config = site.teacher_config
    self.teacher_params = list(site.teacher_params)
    self.patches, self.targets = site.patches, site.targets
    rng = np.random.default_rng([config.seed, 7, index])
    width_in = (student.embedding_dim if config.hint_layer == "embedding"
                else student.channels[-1])
    self.translator = [
        tf.Variable(glorot_uniform((width_in, self.targets.shape[-1]), rng),
                    name=f"translator{index}/kernel"),
        tf.Variable(np.zeros(self.targets.shape[-1], np.float32),
                    name=f"translator{index}/bias")]

  def batch(self, rng: np.random.Generator, size: int
            ) -> tuple[np.ndarray, np.ndarray]:
    rows = rng.choice(len(self.patches), size=size,
                      replace=size > len(self.patches))
    return self.patches[rows], self.targets[rows]

  def teacher_head_maps(self, probe: ProbeSet, block: int) -> np.ndarray:
    """The teacher's Grad-CAM maps, with a head it fits on the probe set."""
    head = _fit_head(self.teacher_config, self.teacher_params, probe)
    maps, _ = gradcam_maps(self.teacher_config, self.teacher_params, head,
                           probe, block=block)
    return maps


class _Trainer:
  """A student copy distilled from one or more clients (hint loss, Adam)."""

  def __init__(self, student: EncoderConfig, clients: Sequence[_HintClient],
               config: FedSAConfig):
    self.encoder = Encoder(student)
    self.clients = list(clients)
    self.config = config
    # A block hint trains the conv blocks only (the embedding layer gets no
    # gradient from it).
    encoder_variables = self.encoder.weights
    if config.hint_layer != "embedding":
      encoder_variables = encoder_variables[:-2]
    self.variables = encoder_variables + [
        v for c in self.clients for v in c.translator]
    self.optimizer = tf.keras.optimizers.Adam(config.learning_rate)
    self.optimizer.build(self.variables)
    self._step = tf.function(self._train_step)

  def _train_step(self, batches):
    with tf.GradientTape() as tape:
      losses = []
      for client, (patches, targets) in zip(self.clients, batches):
        kernel, bias = client.translator
        student = _features(self.encoder.config, self.encoder.params(),
                            patches, self.config.hint_layer)
        losses.append(tf.reduce_mean(tf.square(
            tf.tensordot(student, kernel, 1) + bias - targets)))
      loss = tf.add_n(losses) / len(losses)
    grads = tape.gradient(loss, self.variables)
    self.optimizer.apply_gradients(zip(grads, self.variables))
    return loss

  def train(self, weights: Sequence[np.ndarray], rng: np.random.Generator
            ) -> tuple[list[np.ndarray], float]:
    """``local_steps`` steps from ``weights`` (fresh optimizer state)."""
    for variable, value in zip(self.encoder.weights, weights):
      variable.assign(value)
    for variable in self.optimizer.variables:
      variable.assign(tf.zeros_like(variable))
    losses = [float(self._step(tuple(
        c.batch(rng, self.config.batch_size) for c in self.clients)))
              for _ in range(self.config.local_steps)]
    return [v.numpy() for v in self.encoder.weights], float(np.mean(losses))


def train_on_probe_set(student: EncoderConfig, probe: ProbeSet,
                       config: FedSAConfig) -> list[np.ndarray]:
  """The student's encoder weights after training encoder + head on the probe
  set (cross-entropy, Adam, ``config.probe_steps`` steps), from seed
  ``config.seed``."""
  classifier, _ = evaluation.train_classifier(
      Encoder(student, seed=config.seed), probe.patches, probe.patch_labels,
      len(probe.classes), trainable_blocks=None, steps=config.probe_steps,
      batch_size=config.probe_batch_size, learning_rate=config.learning_rate,
      seed=config.seed)
  return [v.numpy() for v in classifier.encoder.weights]


def _embed(config: EncoderConfig, weights: Sequence[np.ndarray],
           patches: np.ndarray) -> np.ndarray:
  params = [tf.constant(w) for w in weights]
  return np.concatenate([encode(config, params, patches[i:i + 256]).numpy()
                         for i in range(0, len(patches), 256)])


def _fit_head(config: EncoderConfig, weights: Sequence[np.ndarray],
              probe: ProbeSet) -> tuple[np.ndarray, np.ndarray]:
  """A linear head fitted on the probe set's embeddings by this encoder."""
  return fit_linear_head(_embed(config, weights, probe.patches),
                         probe.patch_labels, len(probe.classes))


def run_fedsa(config: FedSAConfig, student: EncoderConfig,
              teachers: Sequence[FedSATeacher], probe: ProbeSet, *,
              frontend: FrontendConfig = FrontendConfig(),
              initial_weights: Optional[Sequence[np.ndarray]] = None,
              sites: Optional[Sequence[TeacherSite]] = None,
              on_period: Optional[Callable[[int, Encoder], None]] = None,
              show_progress: bool = True) -> FedSAResult:
  """Trains a student for the probe set's task from decentralized teachers.

  See the module docstring for the algorithm. Teachers, their audio and
  their translators never leave their client; the server sees the probe
  set, the student and, per period, each teacher's Grad-CAM maps.

  This is a plain-Python loop rather than a TFF process: each client embeds
  a different frozen teacher (different architectures, so no single
  federated type), the translators are client state kept across rounds, and
  the draws come from a server-side selection.

  Args:
    config: The loop's settings.
    student: The student's architecture.
    teachers: The clients.
    probe: The labelled probe set of the new task.
    frontend: The student's front-end (teachers must share it).
    initial_weights: The student's encoder after probe-set training (see
      :func:`train_on_probe_set`); computed when None.
    sites: :func:`prepare_sites` of ``teachers`` for ``config.hint_layer``
      (reused across runs); computed when None.
    on_period: Called with ``(round, encoder)`` after every
      ``selection_period`` rounds (e.g. to record accuracy by round).
    show_progress: Show a progress bar.

  Returns:
    The student, its head, the selection history and the local losses.

  Raises:
    ValueError: No teacher, a teacher does not fit the student, or
      ``sites`` do not belong to ``teachers``.
  """
  if not teachers:
    raise ValueError("run_fedsa: no teachers")
  start = time.time()
  if sites is None:
    sites = prepare_sites(teachers, student, frontend, config.hint_layer)
  if len(sites) != len(teachers) or any(
      site.hint_layer != config.hint_layer or site.name != t.name
      for site, t in zip(sites, teachers)):
    raise ValueError(f"run_fedsa: sites must be prepare_sites(teachers, ..., "
                     f"{config.hint_layer!r}) of these {len(teachers)} "
                     f"teachers, in order")
  clients = [_HintClient(site, student, config, i)
             for i, site in enumerate(sites)]
  weights = (list(initial_weights) if initial_weights is not None
             else train_on_probe_set(student, probe, config))
  if config.aggregation == "central":
    trainers = [_Trainer(student, clients, config)]
  else:
    trainers = [_Trainer(student, [c], config) for c in clients]
  teacher_maps = {}
  history, round_losses = [], []
  examples = 0
  draws = list(range(len(trainers)))
  encoder = Encoder(student)
  with tqdm(total=config.rounds, unit="round", disable=not show_progress,
            desc=f"fedsa {config.aggregation}", dynamic_ncols=True) as bar:
    for round_num in range(1, config.rounds + 1):
      period_start = (round_num - 1) % config.selection_period == 0
      if period_start and config.aggregation == "selective":
        head = _fit_head(student, weights, probe)
        student_maps, _ = gradcam_maps(student, weights, head, probe,
                                       block=config.cam_block)
        for c in clients:  # Teachers are frozen: their maps never change.
          if c.index not in teacher_maps:
            teacher_maps[c.index] = c.teacher_head_maps(probe,
                                                        config.cam_block)
        similarities = np.stack([clip_similarities(
            student_maps, teacher_maps[c.index], probe.owner)
                                 for c in clients])
        probabilities = selection_probabilities(similarities,
                                                config.temperature)
        draws = sample_teachers(probabilities, config.top_k,
                                np.random.default_rng([config.seed,
                                                       round_num]))
        history.append(SelectionRecord(
            round=round_num,
            similarities=tuple(map(float, similarities.mean(axis=1))),
            probabilities=tuple(map(float, probabilities)),
            selected=tuple(map(int, draws))))
        logging.info("round %d: p %s, drawn %s", round_num,
                     np.round(probabilities, 3),
                     [teachers[i].name for i in draws])
      updates = []
      for j, i in enumerate(draws):
        rng = np.random.default_rng([config.seed, round_num, j, int(i)])
        updates.append(trainers[i].train(weights, rng))
      weights = [np.mean([u[0][w] for u in updates], axis=0).astype(np.float32)
                 for w in range(len(weights))]
      round_losses.append(tuple(loss for _, loss in updates))
      examples += len(updates) * config.local_steps * config.batch_size * len(
          trainers[draws[0]].clients)
      bar.set_postfix(loss=f"{np.mean(round_losses[-1]):.4f}")
      bar.update(1)
      if on_period is not None and round_num % config.selection_period == 0:
        for variable, value in zip(encoder.weights, weights):
          variable.assign(value)
        on_period(round_num, encoder)
  for variable, value in zip(encoder.weights, weights):
    variable.assign(value)
  return FedSAResult(encoder=encoder, head=_fit_head(student, weights,
                                                         probe),
                     history=tuple(history), round_losses=tuple(round_losses),
                     client_examples=examples, wall_s=time.time() - start)
