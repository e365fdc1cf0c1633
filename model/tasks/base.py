"""The self-supervised task interface and helpers to cut views from examples.

A task is (a) how an example's log-mel frames are turned into the task's
inputs and targets, (b) a head, and (c) a loss. All three are TF ops with
builtin-only gradients, used unchanged by centralized training, the federated
simulation and the exported on-device ``train`` signature. Randomness (crop
offsets, augmentations) is drawn inside the graph through
:mod:`model.randomness`, so the device needs nothing but waveforms and hosts
can make every draw a function of a seed.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import numpy as np
import tensorflow as tf

from model import randomness
from model.config_checks import require_non_negative, require_positive
from model.encoders import Encoder, EncoderConfig
from model.features import FrontendConfig, PatchShape
from model.modules import WeightModule

__all__ = ["TaskConfig", "SSLTask", "random_offsets", "crop_frames",
           "static_batch", "check_batch_size"]


@dataclasses.dataclass(frozen=True)
class TaskConfig:
  """Hyper-parameters of the self-supervised tasks (each uses a subset).

  The frames of one slice fed to the encoder are not a task field: every
  slice is one front-end patch (``FrontendConfig.patch_frames``). The
  ``*_frames`` fields below are spans in frames with their own meaning.

  Attributes:
    num_neighbors: Audio2Vec: slices on each side of the middle one (N).
    max_gap_frames: TemporalGap: largest gap between the two slices' starts.
    positive_span_frames: Triplet: largest offset between anchor and positive.
    margin: Triplet: margin on squared distances of unit-norm embeddings.
    temperature: NT-Xent: softmax temperature.
    max_shift_frames: NT-Xent: time-shift range of the two views.
    gain_db: NT-Xent: views get a random gain in [-gain_db, gain_db].
    noise_std: NT-Xent: std of Gaussian noise added to log-mel views.
    max_mask_bins: NT-Xent: widest frequency mask (SpecAugment).
    max_mask_frames: NT-Xent: widest time mask (SpecAugment).
    projection_dim: NT-Xent, Barlow Twins, SimSiam: output size of the
      projection head.
    hidden_dim: Width of the MLP heads' hidden layer.
    barlow_lambda: Barlow Twins: weight of the off-diagonal (redundancy)
      terms. The reference's 5e-3 is for 8192 projector dimensions; the
      default ~1/projection_dim (Tsai et al., 2021) suits small projectors.
    predictor_hidden_dim: SimSiam: bottleneck width of the predictor.
    teacher_dirs: Distillation: saved teacher models (``model.json`` +
      ``weights.npz`` directories), frozen.
    distill_ssl_task: Distillation: an SSL task whose loss is added to the
      embedding regression ("" for none).
    distill_ssl_weight: Distillation: weight of that SSL loss.
    image_max_shift: Image views: largest shift, as a fraction of the image
      size (tasks that accept images).
    image_scale: Image views: largest relative zoom.
    image_brightness: Image views: largest brightness offset (standardized
      pixel units).
    image_noise_std: Image views: std of additive Gaussian noise.
  """

  num_neighbors: int = 2
  max_gap_frames: int = 288
  positive_span_frames: int = 96
  margin: float = 0.5
  temperature: float = 0.1
  max_shift_frames: int = 48
  gain_db: float = 6.0
  noise_std: float = 0.2
  max_mask_bins: int = 8
  max_mask_frames: int = 12
  projection_dim: int = 64
  hidden_dim: int = 128
  barlow_lambda: float = 1.0 / 64
  predictor_hidden_dim: int = 32
  teacher_dirs: tuple[str, ...] = ()
  distill_ssl_task: str = ""
  distill_ssl_weight: float = 0.0
  image_max_shift: float = 0.1
  image_scale: float = 0.15
  image_brightness: float = 0.3
  image_noise_std: float = 0.2

  def __post_init__(self):
    object.__setattr__(self, "teacher_dirs", tuple(self.teacher_dirs))
    require_positive(self, ("num_neighbors", "max_gap_frames",
                            "positive_span_frames", "projection_dim",
                            "hidden_dim", "predictor_hidden_dim",
                            "temperature"))
    for field in ("image_max_shift", "image_scale"):
      if not 0.0 <= getattr(self, field) < 1.0:
        raise ValueError(f"TaskConfig.{field} must be in [0, 1), got "
                         f"{getattr(self, field)}")
    require_non_negative(self, ("image_brightness", "image_noise_std",
                                "barlow_lambda"))


class SSLTask(WeightModule, abc.ABC):
  """Base class of the self-supervised tasks (registry: ``SSL_TASKS``).

  Subclasses create their head weights in ``__init__`` and implement
  :meth:`frames_per_example` and :meth:`loss`.

  A task that can also learn from images (patch-shaped, see
  :mod:`model.datasets.images`) sets :attr:`accepts_images` and implements
  :meth:`image_views` and :meth:`views_loss`; :meth:`image_loss` is then its
  objective on an image batch, through the same encoder and head.
  """

  #: Smallest (static) batch size the loss works with; tasks that contrast
  #: examples or standardize over the batch raise it.
  min_batch_size: int = 1

  #: Whether the task can train on images (:meth:`image_loss`).
  accepts_images: ClassVar[bool] = False

  def __init__(self, config: TaskConfig, encoder_config: EncoderConfig,
               frontend: FrontendConfig, *, seed: int = 0, name: str = "head"):
    """Creates the head.

    Args:
      config: Task hyper-parameters.
      encoder_config: The encoder's architecture.
      frontend: The front-end; its patch shape is the shape of every slice
        the task feeds the encoder.
      seed: Seed of the head's initial weights.
      name: Prefix of the head's weight names.
    """
    super().__init__(name=name)
    self.config = config
    self.encoder_config = encoder_config
    self.frontend = frontend
    self.rng = np.random.default_rng(seed + 1_000_003)

  @property
  def patch_shape(self) -> PatchShape:
    """``(frames, bins)`` of one slice fed to the encoder."""
    return self.frontend.patch_shape

  @classmethod
  @abc.abstractmethod
  def frames_per_example(cls, config: TaskConfig, patch_frames: int) -> int:
    """Log-mel frames of one training example, without building the task.

    Args:
      config: Task hyper-parameters.
      patch_frames: Frames of one patch (``FrontendConfig.patch_frames``).
    """

  @property
  def example_frames(self) -> int:
    """Log-mel frames of one training example."""
    return self.frames_per_example(self.config, self.patch_shape.frames)

  @property
  @abc.abstractmethod
  def patches_per_example(self) -> int:
    """Encoder forward passes (patches) per training example (cost model)."""

  @abc.abstractmethod
  def loss(self, encoder: Encoder, features: tf.Tensor) -> tf.Tensor:
    """Mean loss of a batch.

    Args:
      encoder: The encoder being trained.
      features: float32 ``[batch, example_frames, num_mel_bins]`` log-mel
        (static batch when exported).

    Returns:
      A float32 scalar.
    """

  def image_views(self, images: tf.Tensor) -> tf.Tensor:
    """The views the task compares, built from an image batch.

    Args:
      images: float32 ``[batch, patch_frames, num_mel_bins]`` (static batch).

    Returns:
      float32 ``[views * batch, patch_frames, num_mel_bins]``.

    Raises:
      NotImplementedError: The task does not accept images.
    """
    raise NotImplementedError(f"{type(self).__name__} does not accept images")

  def views_loss(self, encoder: Encoder, views: tf.Tensor) -> tf.Tensor:
    """The task's loss on views from :meth:`image_views` (a float32 scalar).

    Raises:
      NotImplementedError: The task does not accept images.
    """
    raise NotImplementedError(f"{type(self).__name__} does not accept images")

  def image_loss(self, encoder: Encoder, images: tf.Tensor) -> tf.Tensor:
    """Mean loss of an image batch ``[batch, patch_frames, num_mel_bins]``.

    Raises:
      ValueError: The task does not accept images, or the images do not have
        the encoder's patch shape.
    """
    if not self.accepts_images:
      raise ValueError(f"task {type(self).__name__} does not accept images")
    expected = tuple(self.patch_shape)
    if images.shape.rank != 3 or tuple(images.shape[1:]) != expected:
      raise ValueError(f"{type(self).__name__}.image_loss: expected images "
                       f"[batch, {expected[0]}, {expected[1]}], got "
                       f"{images.shape}")
    static_batch(images)
    return self.views_loss(encoder, self.image_views(images))


def random_offsets(batch: int, max_offset: int) -> tf.Tensor:
  """Uniform int32 offsets in ``[0, max_offset]``, one per example."""
  u = randomness.uniform([batch])
  return tf.minimum(tf.cast(u * (max_offset + 1), tf.int32), max_offset)


def crop_frames(features: tf.Tensor, offsets: tf.Tensor, length: int
                ) -> tf.Tensor:
  """Per-example time crops: ``features[i, offsets[i]:offsets[i]+length]``.

  Args:
    features: ``[batch, frames, bins]``.
    offsets: int32 ``[batch]``.
    length: Frames per crop (static).

  Returns:
    ``[batch, length, bins]``.
  """
  index = offsets[:, tf.newaxis] + tf.range(length)[tf.newaxis, :]
  return tf.gather(features, index, axis=1, batch_dims=1)


def check_batch_size(task: type[SSLTask], batch_size: int, field: str
                     ) -> None:
  """Checks a configured batch size against ``task.min_batch_size``.

  Args:
    task: The task class.
    batch_size: The configured (static) batch size.
    field: The config field that set it, quoted in the error.

  Raises:
    ValueError: ``batch_size`` is below the task's minimum.
  """
  if batch_size < task.min_batch_size:
    raise ValueError(
        f"{field} is {batch_size}, but task {task.__name__} needs a batch "
        f"size >= {task.min_batch_size} (its loss compares or standardizes "
        f"the examples of a batch)")


def static_batch(features: tf.Tensor) -> int:
  """The static batch size of ``features`` (tasks need one, as TFLite does).

  Raises:
    ValueError: The batch dimension is unknown (batch with drop_remainder).
  """
  batch = features.shape[0]
  if batch is None:
    raise ValueError("SSL tasks need a static batch size: batch the dataset "
                     "with drop_remainder=True")
  return int(batch)
