"""Checks that a training step lowers to TFLite builtin ops and runs on-device.

The export package builds the full on-device model (``train``, ``embed``,
``get_weights``, ``set_weights``); this module holds the pieces the model
package itself needs to prove its ops are builtin-only: a minimal SGD
``train`` signature, conversion with ``TFLITE_BUILTINS`` only, and a reader of
the operator codes in a ``.tflite`` flatbuffer. :func:`presets_report` is
the table ``python -m model`` prints.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from typing import Callable, Optional, Sequence

import tensorflow as tf

from model import ops
from model.encoders import ENCODERS
from model.errors import UserError
from model.features import FrontendConfig
from model.gradcheck import gradient_errors
from model.ssl_model import ModelSpec, SSLModel
from model.tasks import SSL_TASKS

__all__ = [
    "FlexOpsError", "operator_names", "select_tf_ops", "sgd_train_module",
    "convert", "BuiltinCheck", "check_builtin_training", "presets_report",
]


class FlexOpsError(RuntimeError):
  """A graph needs Select-TF (Flex) ops but builtin-only was requested."""


def operator_names(tflite_model: bytes) -> list[str]:
  """Names of the distinct operators used by a ``.tflite`` flatbuffer.

  Builtin ops are named by their ``BuiltinOperator`` enum name (``CONV_2D``);
  custom ops, including Select-TF ops (``FlexConv2DBackpropFilter``), by their
  custom code.
  """
  from tensorflow.lite.python import schema_py_generated as schema
  from tensorflow.lite.tools import flatbuffer_utils
  model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_model))
  by_code = {v: k for k, v in vars(schema.BuiltinOperator).items()
             if not k.startswith("_")}
  names = set()
  for opcode in model.operatorCodes:
    code = max(opcode.builtinCode, opcode.deprecatedBuiltinCode)
    if code == schema.BuiltinOperator.CUSTOM:
      custom = opcode.customCode
      names.add(custom.decode() if isinstance(custom, bytes) else str(custom))
    else:
      names.add(by_code.get(code, f"BUILTIN_{code}"))
  return sorted(names)


def select_tf_ops(tflite_model: bytes) -> list[str]:
  """The Select-TF (Flex) ops in a ``.tflite`` flatbuffer (empty if none)."""
  return [name for name in operator_names(tflite_model)
          if name.startswith("Flex")]


def sgd_train_module(model: SSLModel, batch_size: int,
                     learning_rate: float = 0.01) -> tf.Module:
  """A module whose ``train(waveform) -> {"loss"}`` runs one SGD step.

  Args:
    model: The model to train (its variables are updated in place).
    batch_size: Static batch size of the signature.
    learning_rate: SGD step size.
  """
  spec = tf.TensorSpec([batch_size, model.example_samples], tf.float32,
                       name="waveform")

  class _TrainStep(tf.Module):

    def __init__(self):
      super().__init__(name="train_step")
      self.model = model

    @tf.function(input_signature=[spec])
    def train(self, waveform):
      with ops.formulation(ops.EXPORT):
        with tf.GradientTape() as tape:
          loss = self.model.loss(waveform)
        grads = tape.gradient(loss, self.model.weights)
      for variable, grad in zip(self.model.weights, grads):
        variable.assign_sub(learning_rate * grad)
      return {"loss": loss}

  return _TrainStep()


def convert(module: tf.Module, signatures: Sequence[str], *,
            builtin_only: bool = True) -> bytes:
  """Converts ``module``'s tf.function ``signatures`` to a ``.tflite``.

  Args:
    module: A module whose named attributes are tf.functions with input
      signatures.
    signatures: Attribute names to export as signatures.
    builtin_only: Allow only ``TFLITE_BUILTINS``; otherwise also
      ``SELECT_TF_OPS`` (Flex).

  Returns:
    The flatbuffer bytes.

  Raises:
    FlexOpsError: ``builtin_only`` and the graph needs Flex ops (the message
      lists them), either reported by the converter or found in the file.
  """
  # Signature keys survive only the SavedModel route (the documented one for
  # on-device training models).
  saved_model_dir = tempfile.mkdtemp(prefix="tflite_convert_")
  try:
    tf.saved_model.save(module, saved_model_dir, signatures={
        name: getattr(module, name).get_concrete_function()
        for name in signatures})
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=list(signatures))
    return _convert(converter, builtin_only)
  finally:
    shutil.rmtree(saved_model_dir, ignore_errors=True)


def _convert(converter: tf.lite.TFLiteConverter, builtin_only: bool) -> bytes:
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  if not builtin_only:
    converter.target_spec.supported_ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
  converter.experimental_enable_resource_variables = True
  try:
    tflite_model = converter.convert()
  except Exception as e:  # The converter raises a bare ConverterError.
    message = str(e)
    if builtin_only and "TF Select ops:" in message:
      ops = message.split("TF Select ops:", 1)[1].split("\n", 1)[0].strip()
      raise FlexOpsError(f"graph needs Select-TF ops: {ops}") from e
    raise
  if builtin_only and (flex := select_tf_ops(tflite_model)):
    raise FlexOpsError(f"converted file contains Select-TF ops: {flex}")
  return tflite_model


@dataclasses.dataclass(frozen=True)
class BuiltinCheck:
  """Outcome of :func:`check_builtin_training`."""

  ok: bool
  operators: tuple[str, ...] = ()
  error: str = ""


def check_builtin_training(model: SSLModel, batch_size: int = 2
                           ) -> BuiltinCheck:
  """Whether one SGD step of ``model`` converts with builtin ops only (at
  ``batch_size``, or the task's ``min_batch_size`` if larger)."""
  batch_size = max(batch_size, type(model.task).min_batch_size)
  logging.getLogger("absl").disabled = True  # The converter is very chatty.
  try:
    tflite_model = convert(sgd_train_module(model, batch_size), ["train"])
  except FlexOpsError as e:
    return BuiltinCheck(ok=False, error=str(e))
  finally:
    logging.getLogger("absl").disabled = False
  return BuiltinCheck(ok=True, operators=tuple(operator_names(tflite_model)))


def presets_report(presets: Sequence[str], tasks: Sequence[str], *,
                   check_conversion: bool = True,
                   progress: Optional[Callable[[str], None]] = None) -> str:
  """Each encoder preset's size and cost, and whether one SGD step of each
  task converts with builtin ops only; then the custom gradients' error.

  Args:
    presets: Keys of :data:`model.encoders.ENCODERS`.
    tasks: Keys of :data:`model.tasks.SSL_TASKS` whose step is converted.
    check_conversion: Convert every preset x task (slow).
    progress: Called with each line of the Markdown table as it is ready.

  Returns:
    The gradient check's line.

  Raises:
    UserError: An unknown preset or task.
  """
  say = progress or (lambda line: None)
  for name in [*presets, *tasks]:
    if name not in ENCODERS and name not in SSL_TASKS:
      raise UserError(f"unknown preset or task {name!r}; presets: "
                      f"{sorted(ENCODERS)}, tasks: {sorted(SSL_TASKS)}")
  header = ["preset", "channels", "embedding", "params", "MFLOPs/patch"]
  if check_conversion:
    header.append("builtin-only train step")
  say("| " + " | ".join(header) + " |")
  say("|" + "---|" * len(header))
  for preset in presets:
    config = ENCODERS[preset]
    row = [preset, "-".join(map(str, config.channels)),
           str(config.embedding_dim), f"{config.num_params:,}",
           f"{config.forward_mflops(FrontendConfig().patch_shape):.2f}"]
    if check_conversion:
      failed = []
      for task in tasks:
        result = check_builtin_training(
            SSLModel(ModelSpec(task=task, encoder=config)))
        if not result.ok:
          failed.append(f"{task}: {result.error}")
      row.append(f"yes ({len(tasks)} tasks)" if not failed
                 else "NO: " + "; ".join(failed))
    say("| " + " | ".join(row) + " |")
  errors = gradient_errors()
  worst = max(errors, key=errors.get)
  return (f"\nCustom gradients vs TensorFlow's own (random inputs): max "
          f"relative error {errors[worst]:.2e} ({worst}) over {len(errors)} "
          f"checks")
