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

import dataclasses
from typing import Optional

import tensorflow as tf

from model.encoders import Encoder, EncoderConfig, FrozenEncoder
from model.features import FrontendConfig
from model.heads import MLPHead
from model.saved_model import SavedModel
from model.tasks.base import (SSLTask, TaskConfig, crop_frames, random_offsets,
                              static_batch)

__all__ = ["Distillation", "load_teacher"]


def load_teacher(directory: str, *,
                 frontend: Optional[FrontendConfig] = None) -> FrozenEncoder:
  """A frozen encoder from a model saved by ``model.ssl_model.save_model``.

  Args:
    directory: The saved model (``model.json`` + ``weights.npz``).
    frontend: If given, the teacher's front-end must equal it (its
      embeddings are only meaningful on the features it was trained on).

  Raises:
    FileNotFoundError: ``model.json`` or ``weights.npz`` is missing.
    ValueError: ``model.json`` is invalid, the front-ends differ (the message
      names the first differing field and both values), or the weights do
      not match the saved encoder config.
  """
  # Imported here: model.ssl_model imports this package.
  from model.ssl_model import read_spec  # pylint: disable=g-import-not-at-top
  spec = read_spec(directory, what=f"teacher {directory!r}")
  if frontend is not None and spec.frontend != frontend:
    field = next(f.name for f in dataclasses.fields(frontend)
                 if getattr(spec.frontend, f.name) != getattr(frontend, f.name))
    raise ValueError(
        f"teacher {directory!r}: front-end field {field} is "
        f"{getattr(spec.frontend, field)!r}, the student's is "
        f"{getattr(frontend, field)!r}")
  saved = SavedModel.read(directory)
  return FrozenEncoder(spec.encoder, saved.weights(),
                       source=saved.weights_path)


def _ssl_task_class(config: TaskConfig) -> Optional[type[SSLTask]]:
  """The class of ``config.distill_ssl_task`` (None for "").

  Raises:
    ValueError: The name is not a self-supervised task.
  """
  if not config.distill_ssl_task:
    return None
  from model.tasks import SSL_TASKS  # pylint: disable=g-import-not-at-top
  if config.distill_ssl_task not in SSL_TASKS:
    raise ValueError(f"TaskConfig.distill_ssl_task: unknown "
                     f"{config.distill_ssl_task!r}; expected one of "
                     f"{sorted(SSL_TASKS)}")
  return SSL_TASKS[config.distill_ssl_task]


class Distillation(SSLTask):
  """Regress the student's embedding onto each teacher's, via translators."""

  patches_per_example = 1

  def __init__(self, config: TaskConfig, encoder_config: EncoderConfig,
               frontend: FrontendConfig, *, seed: int = 0):
    super().__init__(config, encoder_config, frontend, seed=seed)
    if not config.teacher_dirs:
      raise ValueError("Distillation needs TaskConfig.teacher_dirs (saved "
                       "teacher model directories)")
    self.teachers = [load_teacher(d, frontend=frontend)
                     for d in config.teacher_dirs]
    self.translators = [
        MLPHead((encoder_config.embedding_dim, t.config.embedding_dim),
                rng=self.rng, name=f"head/translator{i}")
        for i, t in enumerate(self.teachers)]
    ssl_task = _ssl_task_class(config)
    self.ssl_task = (ssl_task(config, encoder_config, frontend, seed=seed)
                     if ssl_task else None)
    parts = self.translators + ([self.ssl_task] if self.ssl_task else [])
    self.weights = [w for p in parts for w in p.weights]
    self.weight_names = [n for p in parts for n in p.weight_names]

  @classmethod
  def frames_per_example(cls, config: TaskConfig, patch_frames: int) -> int:
    """A patch plus ``max_shift_frames``, or the own SSL task's example."""
    ssl_task = _ssl_task_class(config)
    return max(patch_frames + config.max_shift_frames,
               ssl_task.frames_per_example(config, patch_frames)
               if ssl_task else 0)

  def teacher_embeddings(self, patches: tf.Tensor) -> list[tf.Tensor]:
    """Each teacher's embedding of ``[n, frames, bins]`` patches."""
    return [teacher(patches) for teacher in self.teachers]

  def loss(self, encoder: Encoder, features: tf.Tensor) -> tf.Tensor:
    batch = static_batch(features)
    patches = crop_frames(
        features, random_offsets(batch, self.example_frames
                                 - self.patch_shape.frames),
        self.patch_shape.frames)
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
