"""Embedding distillation from frozen teachers (as in on-device speech
embedding distillation, e.g. Peng et al., "Shrinking Bigfoot", 2021; and
FRILL, Peplinski et al., 2021).

The student's embedding of a random patch is mapped by one learned linear
projection per teacher ("translator") onto that teacher's embedding of the
same patch; the loss is the mean squared error averaged over teachers,
optionally plus the student's own self-supervised loss. Teachers are
:class:`~model.encoders.FrozenEncoder` constants, so the same task trains
centrally, as a federated client objective and inside an exported ``train``
signature.
"""

from __future__ import annotations

import tensorflow as tf

from model.encoders import Encoder, EncoderConfig, FrozenEncoder
from model.heads import MLPHead
from model.saved_model import SavedModel
from model.tasks.base import (SSLTask, TaskConfig, crop_frames, random_offsets,
                              static_batch)

__all__ = ["Distillation", "load_teacher"]


def load_teacher(directory: str) -> FrozenEncoder:
  """A frozen encoder from a model saved by ``model.ssl_model.save_model``.

  Raises:
    FileNotFoundError: ``model.json`` or ``weights.npz`` is missing.
    ValueError: ``model.json`` is not a spec, or the weights do not match the
      saved encoder config.
  """
  try:
    saved = SavedModel.read(directory)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"teacher {directory!r}: {e}") from e
  encoder = dict(saved.encoder)
  encoder["base_channels"] = tuple(encoder["base_channels"])
  return FrozenEncoder(EncoderConfig(**encoder), saved.weights(),
                       source=saved.weights_path)


class Distillation(SSLTask):
  """Regress the student's embedding onto each teacher's, via translators."""

  patches_per_example = 1

  def __init__(self, config: TaskConfig, encoder_config: EncoderConfig, *,
               seed: int = 0):
    super().__init__(config, encoder_config, seed=seed)
    if not config.teacher_dirs:
      raise ValueError("Distillation needs TaskConfig.teacher_dirs (saved "
                       "teacher model directories)")
    self.teachers = [load_teacher(d) for d in config.teacher_dirs]
    for directory, teacher in zip(config.teacher_dirs, self.teachers):
      if (teacher.config.patch_frames, teacher.config.num_mel_bins) != (
          encoder_config.patch_frames, encoder_config.num_mel_bins):
        raise ValueError(f"teacher {directory!r} takes patches "
                         f"{teacher.config.patch_frames}x"
                         f"{teacher.config.num_mel_bins}, the student "
                         f"{encoder_config.patch_frames}x"
                         f"{encoder_config.num_mel_bins}")
    self.translators = [
        MLPHead((encoder_config.embedding_dim, t.config.embedding_dim),
                rng=self.rng, name=f"head/translator{i}")
        for i, t in enumerate(self.teachers)]
    self.ssl_task = None
    if config.distill_ssl_task:
      from model.tasks import SSL_TASKS  # pylint: disable=g-import-not-at-top
      if config.distill_ssl_task not in SSL_TASKS:
        raise ValueError(f"TaskConfig.distill_ssl_task: unknown "
                         f"{config.distill_ssl_task!r}; expected one of "
                         f"{sorted(SSL_TASKS)}")
      self.ssl_task = SSL_TASKS[config.distill_ssl_task](
          config, encoder_config, seed=seed)
    parts = self.translators + ([self.ssl_task] if self.ssl_task else [])
    self.weights = [w for p in parts for w in p.weights]
    self.weight_names = [n for p in parts for n in p.weight_names]

  @property
  def example_frames(self) -> int:
    frames = self.config.slice_frames + self.config.max_shift_frames
    return max(frames, self.ssl_task.example_frames if self.ssl_task else 0)

  def teacher_embeddings(self, patches: tf.Tensor) -> list[tf.Tensor]:
    """Each teacher's embedding of ``[n, frames, bins]`` patches."""
    return [teacher(patches) for teacher in self.teachers]

  def loss(self, encoder: Encoder, features: tf.Tensor) -> tf.Tensor:
    batch = static_batch(features)
    patches = crop_frames(
        features, random_offsets(batch, self.example_frames
                                 - self.config.slice_frames),
        self.config.slice_frames)
    student = encoder(patches)
    losses = [tf.reduce_mean(tf.square(translate(student) - target))
              for translate, target in zip(self.translators,
                                           self.teacher_embeddings(patches))]
    loss = tf.add_n(losses) / len(losses)
    if self.ssl_task is not None and self.config.distill_ssl_weight:
      # Features are inputs (no gradient flows into them), so slicing is fine.
      own = features[:, :self.ssl_task.example_frames]
      loss += self.config.distill_ssl_weight * self.ssl_task.loss(encoder, own)
    return loss
