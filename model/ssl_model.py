"""Front-end + encoder + self-supervised task: the unit that is trained.

``SSLModel.loss(waveforms)`` is the one training objective used by the
centralized trainer, the federated client update and the exported ``train``
signature; ``SSLModel.embed`` is the one inference path. A multimodal model
(FSSUAVL: Rehman et al., 2025) also has ``image_loss(images)`` and
``embed_image(images)``: images shaped like log-mel patches go through the
same encoder and task head.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, Optional

import numpy as np
import tensorflow as tf

from model.encoders import ENCODERS, Encoder, EncoderConfig
from model.errors import NonFiniteWeightsError, WeightsMismatchError
from model.features import FrontendConfig, PatchShape, log_mel
from model.saved_model import (OUTDATED_HINT, SPEC_FILE, WEIGHTS_FILE,
                               SavedModel, weight_differences)
from model.tasks import TASKS, SSLTask, TaskConfig, require_image_task

__all__ = ["ModelSpec", "SSLModel", "save_model", "load_model", "read_spec",
           "assign_weights", "upgrade_model_section"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Everything needed to rebuild an :class:`SSLModel` (saved as JSON).

  Attributes:
    task: Key of ``model.tasks.TASKS``.
    encoder: Encoder architecture.
    frontend: Log-mel front-end parameters; the only owner of the patch
      shape (the encoder's input, the tasks' slices, the exported tensors).
    task_config: Task hyper-parameters.
    seed: Seed of the initial weights.
    multimodal: The model also trains on and embeds images (the task must
      accept images, see ``model.tasks.IMAGE_TASKS``).
  """

  task: str = "audio2vec_cbow"
  encoder: EncoderConfig = ENCODERS["small"]
  frontend: FrontendConfig = FrontendConfig()
  task_config: TaskConfig = TaskConfig()
  seed: int = 0
  multimodal: bool = False

  def __post_init__(self):
    if self.task not in TASKS:
      raise ValueError(f"ModelSpec.task: unknown task {self.task!r}; expected "
                       f"one of {sorted(TASKS)}")
    if self.multimodal:
      try:
        require_image_task(self.task)
      except ValueError as e:
        raise ValueError(f"ModelSpec.multimodal: {e}") from None
    self.encoder.check_patch_shape(
        self.frontend.patch_shape, source="the front-end's patch shape")

  @property
  def example_frames(self) -> int:
    """Log-mel frames of one training example of the task."""
    return TASKS[self.task].frames_per_example(self.task_config,
                                               self.frontend.patch_frames)

  @property
  def example_samples(self) -> int:
    """Samples ``S`` of one training example at the front-end's rate.

    Computed from the spec alone: no model is built, no teacher loaded.
    """
    return self.frontend.samples_for_frames(self.example_frames)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "ModelSpec":
    """Inverse of :meth:`to_dict` (unknown fields are an error).

    Specs saved before the front-end became the only owner of the patch
    shape also carry ``encoder.patch_frames``, ``encoder.num_mel_bins`` and
    ``task_config.slice_frames``: they are accepted and dropped when they
    agree with the front-end.

    Raises:
      ValueError: Such a legacy field contradicts the front-end (the message
        names both fields and values), or a field is invalid.
    """
    frontend = FrontendConfig(**d["frontend"])
    encoder = dict(d["encoder"])
    encoder["base_channels"] = tuple(encoder["base_channels"])
    task_config = dict(d["task_config"])
    for section, values, key, owner in (
        ("encoder", encoder, "patch_frames", "patch_frames"),
        ("encoder", encoder, "num_mel_bins", "num_mel_bins"),
        ("task_config", task_config, "slice_frames", "patch_frames")):
      if key in values:
        value = values.pop(key)
        if value != getattr(frontend, owner):
          raise ValueError(
              f"model spec: {section}.{key} is {value} but "
              f"frontend.{owner} is {getattr(frontend, owner)}; the "
              f"front-end owns the patch shape, so they must agree")
    return cls(task=d["task"], encoder=EncoderConfig(**encoder),
               frontend=frontend, task_config=TaskConfig(**task_config),
               seed=d["seed"], multimodal=bool(d.get("multimodal", False)))


def upgrade_model_section(config: dict) -> dict:
  """``config`` with its ``"model"`` spec in the current form.

  For ``model.run_dir.write_or_check_config(upgrade=...)``: a run directory
  written before the front-end became the only owner of the patch shape
  resumes (see :meth:`ModelSpec.from_dict`).
  """
  if "model" not in config:
    return config
  return {**config, "model": ModelSpec.from_dict(config["model"]).to_dict()}


class SSLModel(tf.Module):
  """An encoder with a self-supervised task head and the log-mel front-end."""

  def __init__(self, spec: ModelSpec, *, encoder: Optional[Encoder] = None):
    """Builds the model.

    Args:
      spec: Architecture, task and seed.
      encoder: Reuse this encoder (e.g. a teacher's, or one being fine-tuned)
        instead of creating a fresh one from ``spec.seed``.
    """
    super().__init__(name="ssl_model")
    self.spec = spec
    self.encoder = encoder or Encoder(spec.encoder, seed=spec.seed)
    self.task: SSLTask = TASKS[spec.task](
        spec.task_config, spec.encoder, spec.frontend, seed=spec.seed)

  @property
  def example_frames(self) -> int:
    return self.spec.example_frames

  @property
  def example_samples(self) -> int:
    """Samples ``S`` of one training example (``ModelSpec.example_samples``)."""
    return self.spec.example_samples

  @property
  def weights(self) -> list[tf.Variable]:
    """Encoder weights, then head weights (the model's wire order)."""
    return self.encoder.weights + self.task.weights

  @property
  def weight_names(self) -> list[str]:
    return self.encoder.weight_names + self.task.weight_names

  def features(self, waveforms: tf.Tensor) -> tf.Tensor:
    """``[b, samples]`` -> ``[b, frames, bins]`` log-mel."""
    return log_mel(waveforms, self.spec.frontend)

  def loss(self, waveforms: tf.Tensor) -> tf.Tensor:
    """Task loss of a batch of ``[b, example_samples]`` waveforms."""
    if waveforms.shape[-1] != self.example_samples:
      raise ValueError(f"SSLModel.loss: expected waveforms [batch, "
                       f"{self.example_samples}], got {waveforms.shape}")
    return self.task.loss(self.encoder, self.features(waveforms))

  def embed_patches(self, waveforms: tf.Tensor) -> tf.Tensor:
    """Embeds ``[n, patch_samples]`` waveforms (one 0.96 s patch each)."""
    features = self.features(waveforms)
    return self.encoder(features[:, :self.spec.frontend.patch_frames])

  @property
  def image_shape(self) -> PatchShape:
    """``(patch_frames, num_mel_bins)``: the shape of one image."""
    return self.spec.frontend.patch_shape

  def _check_images(self, images: tf.Tensor, method: str) -> None:
    if not self.spec.multimodal:
      raise ValueError(f"SSLModel.{method}: the model is not multimodal "
                       f"(ModelSpec.multimodal=False)")
    if images.shape.rank != 3 or tuple(images.shape[1:]) != self.image_shape:
      raise ValueError(f"SSLModel.{method}: expected images [n, "
                       f"{self.image_shape[0]}, {self.image_shape[1]}], got "
                       f"{images.shape}")

  def image_loss(self, images: tf.Tensor) -> tf.Tensor:
    """Task loss of a batch of images ``[b, patch_frames, num_mel_bins]``."""
    self._check_images(images, "image_loss")
    return self.task.image_loss(self.encoder, images)

  def embed_image(self, images: tf.Tensor) -> tf.Tensor:
    """Embeds images ``[n, patch_frames, num_mel_bins]`` -> ``[n, D]``."""
    self._check_images(images, "embed_image")
    return self.encoder(images)


def save_model(model: SSLModel, directory: str) -> None:
  """Saves ``model.json`` (the spec) and ``weights.npz`` (weights by name).

  This is the form the export package and the federated simulation load.
  Files are written to temporaries and renamed, so a killed run never leaves
  a half-written model.
  """
  os.makedirs(directory, exist_ok=True)
  weights = {name: v.numpy() for name, v in zip(model.weight_names,
                                                 model.weights)}
  tmp = os.path.join(directory, WEIGHTS_FILE + ".tmp.npz")
  np.savez(tmp, **weights)
  os.replace(tmp, os.path.join(directory, WEIGHTS_FILE))
  tmp = os.path.join(directory, SPEC_FILE + ".tmp")
  with open(tmp, "w") as f:
    json.dump(model.spec.to_dict(), f, indent=2)
  os.replace(tmp, os.path.join(directory, SPEC_FILE))


def assign_weights(model: SSLModel, weights: Mapping[str, np.ndarray], *,
                   source: str = "weights", encoder_only: bool = False) -> None:
  """Checks then assigns weights by name; nothing is assigned on error.

  Args:
    model: Target model.
    weights: Arrays by weight name.
    source: Where the weights came from (quoted in errors).
    encoder_only: Assign only the encoder's weights (the head keeps its own).

  Raises:
    WeightsMismatchError: (a ``ValueError``) Weights are missing,
      unexpected or of the wrong shape: the message lists each, expected vs
      saved, says whether the encoder or the head differs, and what to do.
    ValueError: A weight has the wrong dtype;
      :class:`model.errors.NonFiniteWeightsError` (a ``ValueError``) if one
      is not finite. The message names it.
  """
  names = model.encoder.weight_names if encoder_only else model.weight_names
  variables = model.encoder.weights if encoder_only else model.weights
  shapes = {n: tuple(v.shape) for n, v in zip(names, variables)}
  differences = weight_differences(shapes, weights, allow_extra=encoder_only)
  if differences:
    differing = [n for n in weights if n not in shapes and not encoder_only]
    differing += [n for n, shape in shapes.items()
                  if n not in weights or np.shape(weights[n]) != shape]
    encoder_names = set(model.encoder.weight_names)
    parts = [p for p in ("encoder", "head")
             if any((n in encoder_names or n.startswith("encoder/"))
                    == (p == "encoder") for n in differing)]
    raise WeightsMismatchError(
        f"{source}: the saved weights do not fit task {model.spec.task!r} "
        f"with encoder {model.spec.encoder.name!r} as this version builds it "
        f"(its {' and '.join(parts)} differ{'s' if len(parts) == 1 else ''}"
        f"): " + "; ".join(differences) + f". {OUTDATED_HINT}"
        + ("; its encoder fits, and loads under another task's fresh head "
           "(load_model(..., task=...), python -m export --task ...)"
           if parts == ["head"] else ""))
  for name, variable in zip(names, variables):
    value = np.asarray(weights[name])
    if value.dtype != np.float32:
      raise ValueError(f"{source}: weight {name!r} has dtype {value.dtype}, "
                       f"expected float32")
    if not np.all(np.isfinite(value)):
      raise NonFiniteWeightsError(f"{source}: weight {name!r} has "
                       f"{int(np.sum(~np.isfinite(value)))} non-finite values")
  for name, variable in zip(names, variables):
    variable.assign(weights[name])


def read_spec(directory: str, *, what: str = "") -> ModelSpec:
  """The :class:`ModelSpec` of a model saved by :func:`save_model`.

  Args:
    directory: Holds ``model.json``.
    what: What the directory is (e.g. ``"teacher 'dir'"``), quoted in errors.

  Raises:
    FileNotFoundError: ``model.json`` is missing (the message names it).
    ValueError: ``model.json`` is not a valid spec (the message names the
      file and the field).
  """
  prefix = f"{what}: " if what else ""
  try:
    saved = SavedModel.read(directory)
  except (FileNotFoundError, ValueError) as e:
    raise type(e)(f"{prefix}{e}") from e
  try:
    return ModelSpec.from_dict(dict(saved.spec))
  except KeyError as e:
    raise ValueError(f"{prefix}{saved.spec_path}: missing field {e}") from e
  except (TypeError, ValueError) as e:
    raise ValueError(f"{prefix}{saved.spec_path}: {e}") from e


def load_model(directory: str, *, task: Optional[str] = None) -> SSLModel:
  """Loads a model saved by :func:`save_model`.

  Args:
    directory: Holds ``model.json`` and ``weights.npz`` (or a run directory
      holding them in ``model/``).
    task: Use the saved encoder under a different SSL task (the new head is
      freshly initialized); default: the saved task with its head.

  Raises:
    FileNotFoundError: A file is missing (the message names it).
    ValueError: ``model.json`` is not a spec, or the weights do not match it.
  """
  saved = SavedModel.read(directory)
  spec = read_spec(saved.directory)
  same_task = task is None or task == spec.task
  if not same_task:
    spec = dataclasses.replace(spec, task=task)
  model = SSLModel(spec)
  assign_weights(model, saved.weights(), source=saved.weights_path,
                 encoder_only=not same_task)
  return model
