"""The exported ``tf.Module`` s: the on-device training model, embed-only model.

The training model has the signatures of the on-device contract:
``train``, ``embed``, ``get_weights``, ``set_weights``, plus
``save``/``restore`` in ``flex`` mode. Inputs are raw waveforms at the
front-end's sample rate; the log-mel front-end runs inside the model.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import tensorflow as tf

from export.naming import signature_keys
from export.optimizers import OptimizerConfig, make_optimizer
from model import ops
from model.ssl_model import SSLModel

__all__ = ["MODES", "TRAINING_SIGNATURES", "FLEX_SIGNATURES",
           "IMAGE_SIGNATURES", "FRONTEND_SCOPE", "OnDeviceModule",
           "EmbedModule"]

_ConcreteFunction = tf.types.experimental.ConcreteFunction

#: Export modes: ``builtin`` (custom builtin-only gradients, TFLITE_BUILTINS
#: only) and ``flex`` (TF's own gradients, SELECT_TF_OPS, save/restore).
MODES = ("builtin", "flex")
#: Signatures of every training model.
TRAINING_SIGNATURES = ("train", "embed", "get_weights", "set_weights")
#: Signatures added in ``flex`` mode (checkpoints via tf.raw_ops.Save/Restore).
FLEX_SIGNATURES = ("save", "restore")
#: Signatures added for a multimodal model (``ModelSpec.multimodal``).
IMAGE_SIGNATURES = ("embed_image", "train_image")
#: Name scope of the log-mel front-end in ``embed`` (its tensors' name prefix).
FRONTEND_SCOPE = "frontend"


def _all_finite(tensors: list[tf.Tensor]) -> tf.Tensor:
  """One scalar bool: every element of every tensor is finite."""
  return tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(t))
                                 for t in tensors]))


def _embed(model: SSLModel, waveform: tf.Tensor, *,
           dft_by_matmul: bool = False) -> dict[str, tf.Tensor]:
  """``{"embedding": model.embed_patches(waveform)}`` for a dynamic batch.

  The features are reshaped to ``[-1, patch_frames, bins]`` before the
  encoder: the converter loses their static frame count under a dynamic
  batch, and the encoder's new-axis slice then needs a Select-TF op.
  ``dft_by_matmul`` traces the front-end (only) in the ``delegate``
  formulation: its STFT becomes matmuls that XNNPACK runs instead of RFFT2D.
  """
  frontend = model.spec.frontend
  front_end_ops = (ops.formulation("delegate") if dft_by_matmul
                   else contextlib.nullcontext())
  with tf.name_scope(FRONTEND_SCOPE), front_end_ops:
    features = tf.reshape(model.features(waveform),
                          [-1, frontend.patch_frames, frontend.num_mel_bins])
  return {"embedding": model.encoder(features)}


def _embed_spec(model: SSLModel) -> tf.TensorSpec:
  """``waveform`` float32 ``[N, patch_samples]`` with a dynamic ``N``."""
  return tf.TensorSpec([None, model.spec.frontend.patch_samples], tf.float32,
                       name="waveform")


class OnDeviceModule(tf.Module):
  """An :class:`SSLModel` with an optimizer, exposing the on-device signatures.

  Signatures (traced by :meth:`concrete_functions`):

  * ``train(waveform float32 [B, S]) -> {"loss"}``: one optimizer step of the
    task loss (``B`` static, ``S = model.example_samples``).
  * ``embed(waveform float32 [N, patch_samples]) -> {"embedding" [N, D]}``
    (``N`` dynamic).
  * ``get_weights(request int32 []) -> {key: tensor}`` for every model
    weight and optimizer variable (:attr:`variable_names`, keyed by
    :attr:`keys`). ``request`` is ignored: TFLite's Java
    ``Interpreter.runSignature`` refuses a signature without inputs, so the
    contract's input-less ``get_weights`` carries one dummy scalar.
  * ``set_weights(**{key: tensor}) -> {"ok" int32}``: assigns all tensors if
    every one is finite (ok=1), else changes nothing (ok=0).
  * multimodal models only: ``embed_image(image float32 [N, H, W]) ->
    {"embedding" [N, D]}`` (``N`` dynamic) and ``train_image(image float32
    [B, H, W]) -> {"loss"}``, one optimizer step of the task's image loss
    (``[H, W]`` = ``[patch_frames, num_mel_bins]``).
  * ``flex`` mode only: ``save(checkpoint_path string) ->
    {"checkpoint_path"}`` and ``restore(checkpoint_path string) -> {"ok"}``
    (a tf.raw_ops.Save checkpoint keyed by :attr:`variable_names`).

  Attributes:
    model: The model (its variables are trained in place).
    optimizer: The optimizer with its state variables.
    batch_size: Static batch size ``B`` of ``train``.
    mode: One of :data:`MODES`.
    seed: TF global seed set before ``train`` is traced; it fixes the seeds
      of the in-graph random ops, so a fresh interpreter draws the same crops
      and augmentations as a freshly traced TF function.
    variable_names: Model weights (wire order), then the optimizer state.
    keys: Signature key of each name (:func:`export.naming.signature_keys`).
    state: The variables, in the order of :attr:`variable_names`.
  """

  def __init__(self, model: SSLModel, optimizer: OptimizerConfig,
               batch_size: int, *, mode: str = "builtin", seed: int = 0,
               formulation: Optional[str] = None):
    """Wraps ``model``.

    Args:
      model: The model to train on the device.
      optimizer: Optimizer and hyper-parameters.
      batch_size: Static batch size of ``train``.
      mode: ``builtin`` or ``flex``.
      seed: Seed of the in-graph random ops.
      formulation: How the ops are traced (:data:`model.ops.FORMULATIONS`);
        default ``tf`` in ``flex`` mode, :data:`model.ops.EXPORT` in
        ``builtin`` mode (``tf`` needs Flex ops, so ``builtin`` rejects it).

    Raises:
      ValueError: Unknown mode or formulation, non-positive batch size, or
        two variable names map to the same signature key.
    """
    super().__init__(name="ondevice_module")
    if mode not in MODES:
      raise ValueError(f"OnDeviceModule: unknown mode {mode!r}; expected one "
                       f"of {MODES}")
    if batch_size <= 0:
      raise ValueError(f"OnDeviceModule: batch_size must be positive, got "
                       f"{batch_size}")
    if formulation is None:
      formulation = "tf" if mode == "flex" else ops.EXPORT
    if formulation not in ops.FORMULATIONS or (mode == "builtin"
                                               and formulation == "tf"):
      choices = [f for f in ops.FORMULATIONS if mode == "flex" or f != "tf"]
      raise ValueError(f"OnDeviceModule: formulation {formulation!r} does "
                       f"not fit mode {mode!r}; expected one of {choices}")
    self.formulation = formulation
    self.model = model
    self.optimizer = make_optimizer(optimizer, model.weights,
                                    model.weight_names)
    self.batch_size = batch_size
    self.mode = mode
    self.seed = seed
    self.variable_names = model.weight_names + [
        name for name, _ in self.optimizer.state]
    self.keys = signature_keys(self.variable_names)
    self.state = model.weights + [v for _, v in self.optimizer.state]

  @property
  def multimodal(self) -> bool:
    return self.model.spec.multimodal

  @property
  def signature_names(self) -> tuple[str, ...]:
    return (TRAINING_SIGNATURES
            + (IMAGE_SIGNATURES if self.multimodal else ())
            + (FLEX_SIGNATURES if self.mode == "flex" else ()))

  @contextlib.contextmanager
  def _tracing(self) -> Iterator[None]:
    """Traces the ops in :attr:`formulation`."""
    with ops.formulation(self.formulation):
      yield

  def _train(self, waveform: tf.Tensor) -> dict[str, tf.Tensor]:
    with tf.GradientTape() as tape:
      loss = self.model.loss(waveform)
    self.optimizer.apply(tape.gradient(loss, self.model.weights))
    return {"loss": loss}

  def _embed(self, waveform: tf.Tensor) -> dict[str, tf.Tensor]:
    return _embed(self.model, waveform)

  def _train_image(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
    with tf.GradientTape() as tape:
      loss = self.model.image_loss(image)
    self.optimizer.apply(tape.gradient(loss, self.model.weights))
    return {"loss": loss}

  def _embed_image(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
    return {"embedding": self.model.embed_image(image)}

  def _get_weights(self, request: tf.Tensor) -> dict[str, tf.Tensor]:
    del request  # Only there so that the Java API can call the signature.
    # A scalar variable read straight into an output is not arena-allocated,
    # which LiteRT's CompiledModel rejects; a one-element SUM gives the same
    # value from an ordinary tensor.
    return {key: (tf.reduce_sum(tf.reshape(v, [1])) if v.shape.rank == 0
                  else tf.identity(v))
            for key, v in zip(self.keys, self.state)}

  def _set_weights(self, **tensors: tf.Tensor) -> dict[str, tf.Tensor]:
    values = [tensors[key] for key in self.keys]
    ok = _all_finite(values)
    for variable, value in zip(self.state, values):
      variable.assign(tf.where(ok, value, variable))
    return {"ok": tf.cast(ok, tf.int32)}

  def _save(self, checkpoint_path: tf.Tensor) -> dict[str, tf.Tensor]:
    tf.raw_ops.Save(filename=checkpoint_path,
                    tensor_names=self.variable_names,
                    data=[tf.identity(v) for v in self.state])
    return {"checkpoint_path": checkpoint_path}

  def _restore(self, checkpoint_path: tf.Tensor) -> dict[str, tf.Tensor]:
    values = [tf.reshape(tf.raw_ops.Restore(file_pattern=checkpoint_path,
                                            tensor_name=name, dt=tf.float32),
                         v.shape)
              for name, v in zip(self.variable_names, self.state)]
    ok = _all_finite(values)
    for variable, value in zip(self.state, values):
      variable.assign(tf.where(ok, value, variable))
    return {"ok": tf.cast(ok, tf.int32)}

  def train_function(self) -> _ConcreteFunction:
    """A freshly traced ``train`` (sets TF's global seed to :attr:`seed`).

    Every trace has the same random-op seeds, and its random streams start
    afresh: a fresh trace's first call draws what a fresh TFLite
    interpreter's first ``train`` call draws.
    """
    spec = tf.TensorSpec([self.batch_size, self.model.example_samples],
                         tf.float32, name="waveform")
    tf.random.set_seed(self.seed)
    with self._tracing():
      return tf.function(self._train).get_concrete_function(spec)

  def embed_function(self) -> _ConcreteFunction:
    """A freshly traced ``embed``."""
    with self._tracing():
      return tf.function(self._embed).get_concrete_function(
          _embed_spec(self.model))

  def train_image_function(self) -> _ConcreteFunction:
    """A freshly traced ``train_image`` (sets TF's global seed, as ``train``).

    Raises:
      ValueError: The model is not multimodal.
    """
    self._require_images("train_image")
    spec = tf.TensorSpec([self.batch_size, *self.model.image_shape],
                         tf.float32, name="image")
    tf.random.set_seed(self.seed)
    with self._tracing():
      return tf.function(self._train_image).get_concrete_function(spec)

  def embed_image_function(self) -> _ConcreteFunction:
    """A freshly traced ``embed_image``.

    Raises:
      ValueError: The model is not multimodal.
    """
    self._require_images("embed_image")
    with self._tracing():
      return tf.function(self._embed_image).get_concrete_function(
          tf.TensorSpec([None, *self.model.image_shape], tf.float32,
                        name="image"))

  def _require_images(self, signature: str) -> None:
    if not self.multimodal:
      raise ValueError(f"OnDeviceModule.{signature}: the model is not "
                       f"multimodal (ModelSpec.multimodal=False)")

  def concrete_functions(self) -> dict[str, _ConcreteFunction]:
    """Freshly traced concrete functions of every signature, by name."""
    with self._tracing():
      functions = {
          "train": self.train_function(),
          "embed": self.embed_function(),
          "get_weights": tf.function(self._get_weights).get_concrete_function(
              tf.TensorSpec([], tf.int32, name="request")),
          "set_weights": tf.function(self._set_weights).get_concrete_function(
              **{key: tf.TensorSpec(v.shape, tf.float32, name=key)
                 for key, v in zip(self.keys, self.state)}),
      }
      if self.multimodal:
        functions["train_image"] = self.train_image_function()
        functions["embed_image"] = self.embed_image_function()
      if self.mode == "flex":
        path = tf.TensorSpec([], tf.string, name="checkpoint_path")
        functions["save"] = tf.function(self._save).get_concrete_function(path)
        functions["restore"] = tf.function(
            self._restore).get_concrete_function(path)
    return functions


class EmbedModule(tf.Module):
  """Only ``embed``: the inference model that quantization variants start from.

  Its variables are only read, so the converter freezes them into constants
  (which post-training quantization needs).
  """

  def __init__(self, model: SSLModel, *, dft_by_matmul: bool = True):
    """Wraps ``model``.

    Args:
      model: The model whose encoder embeds.
      dft_by_matmul: The front-end's STFT as matmuls (XNNPACK) instead of
        RFFT2D (a reference kernel); same features to float32 rounding,
        measured faster (``python -m benchmarks.train_step_main``).
    """
    super().__init__(name="embed_module")
    self.model = model
    self.dft_by_matmul = dft_by_matmul

  def _embed(self, waveform: tf.Tensor) -> dict[str, tf.Tensor]:
    return _embed(self.model, waveform, dft_by_matmul=self.dft_by_matmul)

  def embed_function(self) -> _ConcreteFunction:
    """A freshly traced ``embed``."""
    return tf.function(self._embed).get_concrete_function(
        _embed_spec(self.model))

  def concrete_functions(self) -> dict[str, _ConcreteFunction]:
    """``{"embed": ...}``, freshly traced."""
    return {"embed": self.embed_function()}
