"""Checks that an exported file behaves like the TF model it came from.

Every export ends here: the written ``.tflite`` is run under the on-device
runtime and compared with TensorFlow running the same module. A failed check
raises :class:`VerificationError` listing every failure.

Random crops and augmentations: TFLite and TF start each seeded random op at
the same draws (the first call of a fresh interpreter equals the first call
of a freshly traced function) but advance the streams differently, so later
calls diverge. ``train`` is therefore compared one step at a time from
identical weights: before each step TF's variables are set to the file's,
then both take the step on the same batch. For tasks with random ops each
step runs in a fresh interpreter (given the weights with ``set_weights``)
and a freshly traced TF function, so both streams restart; tasks without
random ops train in one interpreter. Comparing per step keeps the check
independent of how fast two free-running trajectories drift apart (they
do, chaotically, under Adam on a trained model).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from export.conversion import operator_input_types
from export.ondevice_module import EmbedModule, OnDeviceModule
from export.runtime import DEFAULT_RUNTIME, RUNTIMES, OnDeviceModel
from model.config_checks import require_positive
from model.tflite_compat import operator_names

__all__ = ["VerifyConfig", "VerificationError", "RANDOM_OPS",
           "verify_training_model", "embedding_fidelity", "EmbedVerification",
           "verify_embed_model"]

#: TFLite operators that draw random numbers.
RANDOM_OPS = ("RANDOM_UNIFORM", "RANDOM_STANDARD_NORMAL", "MULTINOMIAL")
#: Patches per ``embed`` call when embedding many.
_EMBED_CHUNK = 64


@dataclasses.dataclass(frozen=True)
class VerifyConfig:
  """How exported files are checked.

  Attributes:
    train_steps: ``train`` steps run on the file and on TF.
    num_batches: Distinct corpus batches, cycled through the steps; the mean
      loss of the last cycle must be below the first's (or zero).
    embed_patches: Corpus patches embedded by the file and by TF.
    embed_atol: Largest allowed absolute embedding error of float32 files,
      scaled by the reference embeddings' largest magnitude where that
      exceeds 1 (TF's own float32 STFT is off by up to ~6e-3 in the log-mel
      of quiet bins, TFLite's RFFT2D by ~2e-4, against float64).
    loss_rtol: Largest allowed relative difference between the file's and
      TF's loss at any step (the forward pass). TFLite's MEAN sums float32
      sequentially, so a loss averaged over many elements is off by up to a
      few 1e-3 (estimated ~2e-3 for skip-gram at batch 32); TF sums
      pairwise.
    gradient_rtol: Largest allowed relative L2 error, at any step and in any
      variable, of the update of the optimizer slot that is linear in the
      gradient (Adam's ``m``, SGD's momentum; the weights for plain SGD).
      ReLU and max-pool gradients are routed by the activations, and where
      TF's and TFLite's activations differ by rounding (TF's STFT alone is
      ~1e-4 off) a few units route differently: correct files differ by up
      to ~5% in some variable (tiny preset, every task); a wrong gradient
      formula (e.g. a multi-axis REVERSE_V2) is off by O(1).
    runtime: Interpreter for ``builtin`` files (``flex`` files always use
      ``tensorflow``, the only runtime with Select-TF kernels).
    num_threads: Interpreter threads.
  """

  train_steps: int = 24
  num_batches: int = 2
  embed_patches: int = 32
  embed_atol: float = 1e-4
  loss_rtol: float = 1e-2
  gradient_rtol: float = 0.2
  runtime: str = DEFAULT_RUNTIME
  num_threads: int = 1

  def __post_init__(self):
    require_positive(self, ("train_steps", "num_batches", "embed_patches",
                            "num_threads"))
    if self.runtime not in RUNTIMES:
      raise ValueError(f"VerifyConfig.runtime: unknown {self.runtime!r}; "
                       f"expected one of {RUNTIMES}")
    if self.train_steps < 2 * self.num_batches:
      raise ValueError(f"VerifyConfig: train_steps ({self.train_steps}) must "
                       f"cover at least two cycles of {self.num_batches} "
                       f"batches")


class VerificationError(RuntimeError):
  """An exported file failed its checks (the message lists every failure)."""


def _same(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
  return list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)


def embedding_fidelity(got: np.ndarray, want: np.ndarray) -> dict[str, float]:
  """Fidelity of embeddings ``got`` to ``want`` (both ``[n, d]``).

  Returns:
    ``max_abs_error``, ``reference_max_abs`` (largest ``|want|``),
    ``mean_cosine`` and ``min_cosine`` (cosine similarity per row).
  """
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  norms = np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
  cosine = np.sum(got * want, axis=1) / np.maximum(norms, 1e-12)
  return {"max_abs_error": float(np.max(np.abs(got - want))),
          "reference_max_abs": float(np.max(np.abs(want))),
          "mean_cosine": float(np.mean(cosine)),
          "min_cosine": float(np.min(cosine))}


def _embed_tolerance(fidelity: Mapping[str, float], atol: float) -> float:
  return atol * max(1.0, fidelity["reference_max_abs"])


def _reference_embeddings(module: OnDeviceModule | EmbedModule,
                          patches: np.ndarray) -> np.ndarray:
  embed = module.embed_function()
  return embed(waveform=tf.constant(patches))["embedding"].numpy()


def _open(content: bytes, module: OnDeviceModule,
          config: VerifyConfig) -> OnDeviceModel:
  return OnDeviceModel(
      content,
      runtime="tensorflow" if module.mode == "flex" else config.runtime,
      num_threads=config.num_threads,
      variables=list(zip(module.variable_names, module.keys)))


def _check_signatures(lite: OnDeviceModel, module: OnDeviceModule,
                      failures: list[str]) -> None:
  signatures = lite.signatures()
  if sorted(signatures) != sorted(module.signature_names):
    failures.append(f"signatures are {sorted(signatures)}, expected "
                    f"{sorted(module.signature_names)}")
    return
  train = signatures["train"]["inputs"]["waveform"].shape
  if train != (module.batch_size, module.model.example_samples):
    failures.append(f"train waveform has shape {train}")
  embed = signatures["embed"]["inputs"]["waveform"].shape
  if embed != (-1, module.model.spec.frontend.patch_samples):
    failures.append(f"embed waveform has shape {embed}")
  if module.multimodal:
    image_shape = tuple(module.model.image_shape)
    train_image = signatures["train_image"]["inputs"]["image"].shape
    if train_image != (module.batch_size, *image_shape):
      failures.append(f"train_image image has shape {train_image}")
    embed_image = signatures["embed_image"]["inputs"]["image"].shape
    if embed_image != (-1, *image_shape):
      failures.append(f"embed_image image has shape {embed_image}")
  outputs = signatures["get_weights"]["outputs"]
  for key, variable in zip(module.keys, module.state):
    if outputs[key].shape != tuple(variable.shape):
      failures.append(f"get_weights {key!r} has shape {outputs[key].shape}, "
                      f"expected {tuple(variable.shape)}")


def _update_errors(before: Mapping[str, np.ndarray],
                   after: Mapping[str, np.ndarray],
                   reference: OnDeviceModule,
                   names: Sequence[str]) -> dict[str, float]:
  """Relative L2 error of the named variables' updates against TF's.

  ``||(after - before) - (tf - before)|| / ||tf - before||`` per variable
  (0 where both updates are zero).
  """
  tf_values = dict(zip(reference.variable_names, reference.state))
  errors = {}
  for name in names:
    old = before[name].astype(np.float64)
    ours, theirs = after[name] - old, tf_values[name].numpy() - old
    difference = float(np.linalg.norm(ours - theirs))
    errors[name] = difference / max(float(np.linalg.norm(theirs)), 1e-30)
  return errors


def _gradient_variables(module: OnDeviceModule) -> list[str]:
  """Variables whose update is linear in the gradients (``gradient_slot``)."""
  slot = module.optimizer.gradient_slot()
  names = module.model.weight_names
  return [f"optimizer/{name}/{slot}" for name in names] if slot else names


#: Input tensor of each training signature.
_TRAIN_INPUTS = {"train": "waveform", "train_image": "image"}


def _train_step_by_step(lite: OnDeviceModel, reference: OnDeviceModule,
                        batches: np.ndarray, steps: int,
                        reopen: Optional[Callable[[], OnDeviceModel]], *,
                        signature: str = "train"
                        ) -> tuple[list[float], list[float], tuple[float, str]]:
  """Trains the file, comparing every step with TF from identical weights.

  Before each step TF's variables are set to the file's; then both take the
  step on the same batch. Without ``reopen`` the file trains in ``lite``
  and TF in one traced function (no random ops: nothing to restart). With
  ``reopen`` each step runs in a fresh interpreter (from ``reopen``, given
  the weights with ``set_weights``) and a freshly traced TF function, so
  both random streams start afresh; ``lite`` gets the final weights.

  Returns:
    The file's losses, TF's losses (stopping after the first non-finite
    loss), and the largest relative gradient error at any step with the
    variable it occurred in: the relative L2 error of the update of the
    optimizer slot that is linear in the gradient (the weights themselves
    for plain SGD), against TF's update.
  """
  trace = getattr(reference, f"{signature}_function")
  name_in = _TRAIN_INPUTS[signature]
  train = None if reopen else trace()
  checked = _gradient_variables(reference)
  weights = lite.get_weights()
  ours, theirs = [], []
  worst = (0.0, "")
  for step in range(steps):
    batch = batches[step % len(batches)]
    for variable, value in zip(reference.state, weights.values()):
      variable.assign(value)
    model = lite
    if reopen:
      model = reopen()
      model.set_weights(weights)
    ours.append(getattr(model, signature)(batch))
    theirs.append(float((train or trace())(
        **{name_in: tf.constant(batch)})["loss"]))
    if not np.isfinite(ours[-1]):
      break
    updated = model.get_weights()
    errors = _update_errors(weights, updated, reference, checked)
    name = max(errors, key=errors.get)
    worst = max(worst, (errors[name], name))
    weights = updated
  if reopen:
    lite.set_weights(weights)
  return ours, theirs, worst


def _verify_images(lite: OnDeviceModel, reference: OnDeviceModule,
                   images: np.ndarray, config: VerifyConfig,
                   reopen: Optional[Callable[[], OnDeviceModel]],
                   failures: list[str]) -> dict[str, Any]:
  """Checks ``embed_image`` and ``train_image`` against TF (as ``embed`` and
  ``train``); ``lite`` keeps training from its current weights."""
  flat = images.reshape(-1, *images.shape[2:])
  want = reference.embed_image_function()(image=tf.constant(flat))[
      "embedding"].numpy()
  embed = embedding_fidelity(lite.embed_image(flat), want)
  embed["tolerance"] = _embed_tolerance(embed, config.embed_atol)
  if not embed["max_abs_error"] <= embed["tolerance"]:
    failures.append(f"embed_image max abs error {embed['max_abs_error']:.3g} "
                    f"> {embed['tolerance']:.3g}")
  steps = config.train_steps
  ours, theirs, (gradient_error, worst_variable) = _train_step_by_step(
      lite, reference, images, steps, reopen, signature="train_image")
  if not np.isfinite(ours[-1]):
    failures.append(f"train_image loss became {ours[-1]} at step {len(ours)}")
    return {"embed_image": {"images": len(flat), **embed}}
  cycle = len(images)
  first, last = float(np.mean(ours[:cycle])), float(np.mean(ours[-cycle:]))
  loss_difference = max(abs(a - b) / max(abs(b), 1e-12)
                        for a, b in zip(ours, theirs))
  if not (last < first or last == 0):
    failures.append(f"train_image did not lower the loss: mean {first:.6g} "
                    f"over the first {cycle} steps, {last:.6g} over the last "
                    f"{cycle}")
  if not loss_difference <= config.loss_rtol:
    failures.append(f"train_image loss differs from TF's by up to "
                    f"{loss_difference:.3g} (relative) > {config.loss_rtol:g}")
  if not gradient_error <= config.gradient_rtol:
    failures.append(f"train_image's gradient differs from TF's in "
                    f"{worst_variable}: relative error {gradient_error:.3g} > "
                    f"{config.gradient_rtol:g}")
  return {
      "embed_image": {"images": len(flat), **embed},
      "train_image": {
          "steps": steps, "batches": cycle, "losses": ours,
          "reference_losses": theirs, "first_cycle_mean_loss": first,
          "last_cycle_mean_loss": last,
          "max_relative_loss_difference": loss_difference,
          "loss_tolerance": config.loss_rtol,
          "max_relative_gradient_error": gradient_error,
          "max_gradient_error_variable": worst_variable,
          "gradient_tolerance": config.gradient_rtol,
      },
  }


def verify_training_model(content: bytes, reference: OnDeviceModule,
                          batches: np.ndarray, patches: np.ndarray,
                          config: VerifyConfig, *,
                          images: Optional[np.ndarray] = None
                          ) -> dict[str, Any]:
  """Checks a converted training model against TF running the same module.

  Checks: the signatures and their shapes; the file's initial weights equal
  the module's; ``embed`` matches TF within ``config.embed_atol``;
  ``set_weights`` with a NaN returns ok=0 and changes nothing; ``train``
  keeps the loss finite, lowers it (last cycle of batches vs first), and
  matches TF at every step from identical weights: the loss within
  ``config.loss_rtol`` and the gradients within ``config.gradient_rtol``;
  ``get_weights`` -> ``set_weights`` round-trips exactly; in ``flex`` mode
  ``save`` -> ``restore`` round-trips exactly. A multimodal model's
  ``embed_image`` and ``train_image`` are checked like ``embed`` and
  ``train``, on ``images``.

  Args:
    content: The ``.tflite`` file's bytes.
    reference: A module equal to the exported one (same weights, optimizer,
      mode and seed) that has not been run; it is trained here.
    batches: float32 ``[num_batches, B, S]`` corpus batches.
    patches: float32 ``[n, patch_samples]`` corpus patches.
    config: Steps and tolerances.
    images: float32 ``[num_batches, B, H, W]`` image batches (required for
      a multimodal model).

  Returns:
    The measurements, for the manifest.

  Raises:
    VerificationError: A check failed.
    ValueError: A multimodal model without ``images``.
  """
  if reference.multimodal and images is None:
    raise ValueError("verify_training_model: a multimodal model needs image "
                     "batches to check embed_image and train_image")
  failures: list[str] = []
  lite = _open(content, reference, config)
  _check_signatures(lite, reference, failures)
  if failures:
    raise VerificationError("training model: " + "; ".join(failures))
  initial = lite.get_weights()
  expected = {name: v.numpy() for name, v in
              zip(reference.variable_names, reference.state)}
  if not _same(initial, expected):
    failures.append("initial weights differ from the source model's")

  embed = embedding_fidelity(lite.embed(patches),
                             _reference_embeddings(reference, patches))
  embed["tolerance"] = _embed_tolerance(embed, config.embed_atol)
  if not embed["max_abs_error"] <= embed["tolerance"]:
    failures.append(f"embed max abs error {embed['max_abs_error']:.3g} > "
                    f"{embed['tolerance']:.3g}")

  poisoned = {reference.keys[0]: np.full(reference.state[0].shape, np.nan,
                                         np.float32)}
  poisoned.update({key: initial[name] for name, key in
                   zip(reference.variable_names[1:], reference.keys[1:])})
  ok = int(lite.runner("set_weights")(**poisoned)["ok"])
  nan_rejected = ok == 0 and _same(lite.get_weights(), initial)
  if not nan_rejected:
    failures.append(f"set_weights with a NaN returned ok={ok} or changed "
                    f"the weights")

  random_ops = sorted(set(operator_names(content)) & set(RANDOM_OPS))
  steps = config.train_steps
  ours, theirs, (gradient_error, worst_variable) = _train_step_by_step(
      lite, reference, batches, steps,
      (lambda: _open(content, reference, config)) if random_ops else None)
  if not np.isfinite(ours[-1]):
    raise VerificationError(
        f"training model: train loss became {ours[-1]} at step {len(ours)} "
        f"of {steps} (TF: {theirs[-1]}); the optimizer diverges on corpus "
        f"batches: lower the learning rate "
        f"({reference.optimizer.config.learning_rate:g})")
  cycle = len(batches)
  first, last = float(np.mean(ours[:cycle])), float(np.mean(ours[-cycle:]))
  loss_difference = max(abs(a - b) / max(abs(b), 1e-12)
                        for a, b in zip(ours, theirs))
  image_results = {}
  if reference.multimodal:
    image_results = _verify_images(
        lite, reference, images, config,
        (lambda: _open(content, reference, config)) if random_ops else None,
        failures)
  trained = lite.get_weights()
  if not (last < first or last == 0):
    failures.append(f"train did not lower the loss: mean {first:.6g} over the "
                    f"first {cycle} steps, {last:.6g} over the last {cycle}")
  if not loss_difference <= config.loss_rtol:
    failures.append(f"train loss differs from TF's by up to "
                    f"{loss_difference:.3g} (relative) > {config.loss_rtol:g}")
  if not gradient_error <= config.gradient_rtol:
    failures.append(f"train's gradient differs from TF's in "
                    f"{worst_variable}: relative error {gradient_error:.3g} > "
                    f"{config.gradient_rtol:g}")

  lite.set_weights(initial)
  round_trip = _same(lite.get_weights(), initial)
  lite.set_weights(trained)
  round_trip = round_trip and _same(lite.get_weights(), trained)
  if not round_trip:
    failures.append("get_weights -> set_weights does not round-trip exactly")

  results: dict[str, Any] = {
      "runtime": lite.runtime,
      "num_threads": config.num_threads,
      "initial_weights_exact": _same(initial, expected),
      "embed": {"patches": len(patches), **embed},
      "train": {
          "steps": steps, "batches": cycle,
          "random_ops": random_ops,
          "comparison": (
              "each step from identical weights (TF's set to the file's), "
              + ("in a fresh interpreter and a freshly traced TF function "
                 "(random streams restarted)" if random_ops else
                 "the file in one interpreter, TF in one traced function")),
          "losses": ours, "reference_losses": theirs,
          "first_cycle_mean_loss": first, "last_cycle_mean_loss": last,
          "max_relative_loss_difference": loss_difference,
          "loss_tolerance": config.loss_rtol,
          "max_relative_gradient_error": gradient_error,
          "max_gradient_error_variable": worst_variable,
          "gradient_tolerance": config.gradient_rtol,
      },
      "set_weights": {"round_trip_exact": round_trip,
                      "non_finite_rejected": nan_rejected},
      **image_results,
  }
  if reference.mode == "flex":
    with tempfile.TemporaryDirectory(prefix="export_verify_") as directory:
      path = os.path.join(directory, "checkpoint")
      lite.save(path)
      lite.set_weights(initial)
      lite.restore(path)
      restored = _same(lite.get_weights(), trained)
    results["save_restore"] = {"round_trip_exact": restored}
    if not restored:
      failures.append("save -> restore does not round-trip exactly")
  if failures:
    raise VerificationError("training model: " + "; ".join(failures))
  return results


#: Tensor type that must feed some operator of each quantized variant.
_QUANTIZED_TYPES = {"float16": "FLOAT16", "dynamic_int8": "INT8",
                    "int8": "INT8"}


@dataclasses.dataclass(frozen=True)
class EmbedVerification:
  """Outcome of :func:`verify_embed_model`.

  Attributes:
    results: Fidelity measurements and operator input types (manifest).
    embeddings: The file's embeddings of the checked patches.
  """

  results: dict[str, Any]
  embeddings: np.ndarray


def verify_embed_model(content: bytes, quantization: str, patches: np.ndarray,
                       reference: np.ndarray, config: VerifyConfig
                       ) -> EmbedVerification:
  """Checks an embed-only model against TF and that it is really quantized.

  Args:
    content: The ``.tflite`` file's bytes.
    quantization: Its variant (``export.conversion.QUANTIZATIONS``).
    patches: float32 ``[n, patch_samples]`` corpus patches.
    reference: TF float32 embeddings of ``patches``.
    config: Runtime and the float32 tolerance.

  Returns:
    The measurements and the file's embeddings.

  Raises:
    VerificationError: Embeddings are not finite or of the wrong shape, a
      float32 model's error exceeds ``config.embed_atol``, or a quantized
      model holds no tensor of its type (an ``int8`` model: no conv that
      runs on int8 inputs and weights).
  """
  lite = OnDeviceModel(content, runtime=config.runtime,
                       num_threads=config.num_threads)
  got = np.concatenate([lite.embed(patches[i:i + _EMBED_CHUNK])
                        for i in range(0, len(patches), _EMBED_CHUNK)])
  if got.shape != reference.shape or not np.all(np.isfinite(got)):
    raise VerificationError(f"embed model {quantization}: embeddings of shape "
                            f"{got.shape} (expected {reference.shape}) or not "
                            f"finite")
  failures = []
  fidelity = embedding_fidelity(got, reference)
  if quantization == "float32":
    fidelity["tolerance"] = _embed_tolerance(fidelity, config.embed_atol)
    if not fidelity["max_abs_error"] <= fidelity["tolerance"]:
      failures.append(f"max abs error {fidelity['max_abs_error']:.3g} > "
                      f"{fidelity['tolerance']:.3g}")
  types = operator_input_types(content)
  if quantization == "int8" and not any(
      t[:2] == ("INT8", "INT8") for t in types.get("CONV_2D", {})):
    failures.append("no CONV_2D runs on int8 inputs and weights")
  elif quantization in _QUANTIZED_TYPES:
    wanted = _QUANTIZED_TYPES[quantization]
    if not any(wanted in t for by_types in types.values() for t in by_types):
      failures.append(f"no {wanted} tensor feeds any operator")
  if failures:
    raise VerificationError(f"embed model {quantization}: "
                            + "; ".join(failures))
  return EmbedVerification(results={
      "runtime": lite.runtime, "num_threads": config.num_threads,
      "patches": len(patches), **fidelity,
      "operator_input_types": {
          op: {",".join(t): n for t, n in sorted(by_types.items())}
          for op, by_types in sorted(types.items())}}, embeddings=got)
