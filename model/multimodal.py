"""Unpaired audio + image self-supervised training of one encoder (FSSUAVL:
Rehman et al., 2025).

Audio batches and image batches are never paired: each optimizer step trains
on one modality, and the modalities take turns ("one after the other")
through the same encoder and task head. :func:`modality_loss` is the one
per-batch objective used by centralized training here and by the federated
client update in ``tff_sim.multimodal``; :func:`probe_images` scores an
encoder on labelled images (linear probe and retrieval).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Optional

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split
import tensorflow as tf
from tqdm import tqdm

from model import evaluation
from model import randomness
from model.config_checks import require_non_negative, require_positive
from model.datasets.images import ImageSet
from model.datasets.pipeline import batch_plan
from model.ssl_model import ModelSpec, SSLModel
from model.train import OPTIMIZERS, TrainConfig

__all__ = ["AUDIO", "IMAGE", "MODALITIES", "modality_loss",
           "modality_schedule", "MultimodalTrainConfig", "MultimodalResult",
           "train_multimodal", "image_embeddings", "image_probe_splits",
           "probe_image_features", "probe_images", "pixel_features"]

#: Modality codes of a batch.
AUDIO, IMAGE = 0, 1
#: Modality names -> codes.
MODALITIES: dict[str, int] = {"audio": AUDIO, "image": IMAGE}


def modality_loss(model: SSLModel, waveform: tf.Tensor, image: tf.Tensor,
                  modality: tf.Tensor) -> tf.Tensor:
  """The task loss of the batch of ``modality`` (the other input is ignored).

  Args:
    model: A multimodal model.
    waveform: ``[B, example_samples]`` audio (used when ``modality`` is
      :data:`AUDIO`).
    image: ``[B, patch_frames, num_mel_bins]`` images (used when
      :data:`IMAGE`).
    modality: int32 scalar, :data:`AUDIO` or :data:`IMAGE`.

  Returns:
    A float32 scalar.
  """
  return tf.cond(tf.equal(modality, AUDIO), lambda: model.loss(waveform),
                 lambda: model.image_loss(image))


def modality_schedule(audio_steps: int, image_steps: int) -> np.ndarray:
  """Modality of each step: the two kinds spread evenly, audio first.

  Returns:
    int32 ``[audio_steps + image_steps]`` of :data:`AUDIO` / :data:`IMAGE`.
  """
  if audio_steps < 0 or image_steps < 0:
    raise ValueError(f"modality_schedule: step counts must be >= 0, got "
                     f"{audio_steps} and {image_steps}")
  total = audio_steps + image_steps
  # Step i is audio while audio is behind its share of the steps so far.
  schedule, done_audio = [], 0
  for i in range(total):
    if done_audio < audio_steps and (
        image_steps == 0 or done_audio * total <= i * audio_steps):
      schedule.append(AUDIO)
      done_audio += 1
    else:
      schedule.append(IMAGE)
  return np.asarray(schedule, np.int32)


@dataclasses.dataclass(frozen=True)
class MultimodalTrainConfig:
  """A centralized multimodal run.

  Attributes:
    audio_steps: Optimizer steps on audio batches.
    image_steps: Optimizer steps on image batches (interleaved evenly with
      the audio steps, see :func:`modality_schedule`).
    batch_size: Examples per step (static).
    optimizer: Key of ``model.train.OPTIMIZERS``.
    learning_rate: Step size.
    seed: Seed of the batch order and of the in-graph draws.
  """

  audio_steps: int = 100
  image_steps: int = 100
  batch_size: int = 16
  optimizer: str = "adam"
  learning_rate: float = 1e-3
  seed: int = 0

  def __post_init__(self):
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f"MultimodalTrainConfig.optimizer: unknown "
                       f"{self.optimizer!r}; expected one of "
                       f"{sorted(OPTIMIZERS)}")
    require_non_negative(self, ("audio_steps", "image_steps"))
    require_positive(self, ("batch_size", "learning_rate"))


@dataclasses.dataclass(frozen=True)
class MultimodalResult:
  """A trained model and what it saw.

  Attributes:
    model: The trained model.
    examples: Training examples seen per modality (``audio``, ``image``).
    losses: ``(step, modality, loss)`` of every step.
    wall_s: Training wall time.
  """

  model: SSLModel
  examples: dict[str, int]
  losses: tuple[tuple[int, int, float], ...]
  wall_s: float


def train_multimodal(spec: ModelSpec, config: MultimodalTrainConfig,
                     waveforms: Optional[np.ndarray],
                     images: Optional[np.ndarray], *,
                     show_progress: bool = False) -> MultimodalResult:
  """Centralized training on unpaired audio and images, one encoder.

  Args:
    spec: A multimodal model (``spec.multimodal``) for image steps; any
      model for audio-only training.
    config: Steps per modality and optimization.
    waveforms: float32 ``[n, example_samples]`` audio segments (None when
      ``config.audio_steps`` is 0).
    images: float32 ``[m, patch_frames, num_mel_bins]`` (None when
      ``config.image_steps`` is 0).
    show_progress: Show a tqdm bar.

  Returns:
    The model, examples seen per modality and the loss log.

  Raises:
    ValueError: Data missing for a modality that has steps, or of the wrong
      shape.
    FloatingPointError: The loss became NaN/inf.
  """
  model = SSLModel(spec)
  if config.audio_steps and (waveforms is None or waveforms.ndim != 2 or
                             waveforms.shape[1] != model.example_samples):
    raise ValueError(f"train_multimodal: audio steps need waveforms "
                     f"[n, {model.example_samples}], got "
                     f"{None if waveforms is None else list(waveforms.shape)}")
  if config.image_steps and (images is None or images.ndim != 3 or
                             tuple(images.shape[1:]) != model.image_shape):
    raise ValueError(f"train_multimodal: image steps need images "
                     f"[m, {model.image_shape[0]}, {model.image_shape[1]}], "
                     f"got {None if images is None else list(images.shape)}")
  optimizer = OPTIMIZERS[config.optimizer](TrainConfig(
      optimizer=config.optimizer, learning_rate=config.learning_rate))
  optimizer.build(model.weights)

  def make_step(loss_fn):
    @tf.function
    def step(batch, seed):
      with tf.GradientTape() as tape, randomness.stateless_seed(seed):
        loss = loss_fn(batch)
      optimizer.apply_gradients(zip(tape.gradient(loss, model.weights),
                                    model.weights))
      return loss
    return step

  steps = {AUDIO: make_step(model.loss), IMAGE: make_step(model.image_loss)}
  data = {AUDIO: waveforms, IMAGE: images}
  plans = {
      modality: batch_plan(len(data[modality]), config.batch_size,
                           seed=config.seed + 7919 * modality, start_step=0,
                           num_steps=count)
      for modality, count in ((AUDIO, config.audio_steps),
                              (IMAGE, config.image_steps)) if count}
  used = {AUDIO: 0, IMAGE: 0}
  losses = []
  start = time.perf_counter()
  schedule = modality_schedule(config.audio_steps, config.image_steps)
  for i, modality in enumerate(tqdm(schedule, desc="multimodal training",
                                    unit="step", disable=not show_progress)):
    modality = int(modality)
    batch = data[modality][plans[modality][used[modality]]]
    used[modality] += 1
    loss = float(steps[modality](tf.constant(batch), tf.constant(
        [config.seed, i], tf.int64)))
    if not np.isfinite(loss):
      raise FloatingPointError(f"train_multimodal: loss {loss} at step {i} "
                               f"({'audio' if modality == AUDIO else 'image'}"
                               f"); lower the learning rate")
    losses.append((i, modality, loss))
  return MultimodalResult(
      model=model,
      examples={"audio": config.audio_steps * config.batch_size,
                "image": config.image_steps * config.batch_size},
      losses=tuple(losses), wall_s=time.perf_counter() - start)


def image_embeddings(encoder, images: np.ndarray, *,
                     batch_size: int = 256) -> np.ndarray:
  """``[m, D]`` embeddings of ``[m, patch_frames, num_mel_bins]`` images."""
  return np.concatenate([
      encoder(tf.constant(images[i:i + batch_size])).numpy()
      for i in range(0, len(images), batch_size)]).astype(np.float32)


def image_probe_splits(labels, *, folds: int = 1, test_fraction: float = 0.3,
                       seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
  """Train/test splits of labelled images, stratified by label.

  The splits are random over images (the digits' writers are unknown).

  Args:
    labels: ``[m]`` labels.
    folds: 1: one split with ``test_fraction`` of the images in test; k > 1:
      stratified k-fold (``sklearn`` ``StratifiedKFold``), every image in
      the test part of exactly one fold.
    test_fraction: Test fraction of the single split.
    seed: Seed of the split(s).

  Returns:
    ``(train, test)`` index pairs, one per fold.

  Raises:
    ValueError: ``folds`` < 1, or a class has fewer images than ``folds``.
  """
  labels = np.asarray(labels)
  index = np.arange(len(labels))
  if folds < 1:
    raise ValueError(f"image_probe_splits: folds must be >= 1, got {folds}")
  if folds == 1:
    return [tuple(train_test_split(index, test_size=test_fraction,
                                   random_state=seed, stratify=labels))]
  smallest = int(np.unique(labels, return_counts=True)[1].min())
  if smallest < folds:
    raise ValueError(f"image_probe_splits: {folds} folds need at least "
                     f"{folds} images of every class; the smallest class has "
                     f"{smallest}")
  splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
  return list(splitter.split(index, labels))


def probe_image_features(features: np.ndarray, labels, *, folds: int = 1,
                         test_fraction: float = 0.3, seed: int = 0
                         ) -> dict[str, float]:
  """Linear probe and retrieval on given features of labelled images.

  Args:
    features: ``[m, d]``.
    labels: ``[m]`` labels.
    folds: As in :func:`image_probe_splits`.
    test_fraction: As in :func:`image_probe_splits`.
    seed: Seed of the split(s).

  Returns:
    ``accuracy`` (pooled over the folds' test predictions),
    ``accuracy_stderr`` (``model.evaluation.binomial_stderr``),
    ``num_test`` (test predictions), ``retrieval_map`` and
    ``retrieval_precision@10``.
  """
  y = np.asarray(labels)
  if len(features) != len(y):
    raise ValueError(f"probe_image_features: {len(features)} feature rows "
                     f"for {len(y)} labels")
  accuracy, num_test = evaluation.pooled_probe(
      features, y, image_probe_splits(y, folds=folds,
                                      test_fraction=test_fraction, seed=seed))
  scores = {"accuracy": accuracy,
            "accuracy_stderr": evaluation.binomial_stderr(accuracy, num_test),
            "num_test": float(num_test)}
  retrieval = evaluation.retrieval_map(features, y)
  scores.update({f"retrieval_{k}": v for k, v in retrieval.items()})
  return scores


def probe_images(encoder, images: ImageSet, *, test_fraction: float = 0.3,
                 seed: int = 0, folds: int = 1) -> dict[str, float]:
  """Linear probe and retrieval of an encoder on labelled images.

  Args:
    encoder: Maps ``[m, patch_frames, num_mel_bins]`` to ``[m, D]``.
    images: Labelled images.
    test_fraction: Fraction of the images in the single test split.
    seed: Seed of the split(s).
    folds: As in :func:`image_probe_splits`.

  Returns:
    :func:`probe_image_features`' scores of the encoder's embeddings.
  """
  return probe_image_features(image_embeddings(encoder, images.images),
                              images.labels, folds=folds,
                              test_fraction=test_fraction, seed=seed)


def pixel_features(images: ImageSet) -> np.ndarray:
  """The non-learned image baseline: each standardized image, flattened.

  Returns:
    float32 ``[m, patch_frames * num_mel_bins]``.
  """
  return images.images.reshape(len(images), -1).astype(np.float32)
