"""Conversion of the exported modules to ``.tflite``, quantized or not."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from typing import Any, Callable, Iterator, Mapping, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from export.ondevice_module import FRONTEND_SCOPE, EmbedModule, OnDeviceModule
from model.tflite_compat import FlexOpsError, operator_names, select_tf_ops

__all__ = ["QUANTIZATIONS", "Conversion", "convert_training_model",
           "convert_embed_model", "operator_input_types"]

#: Variants of the embed-only model: float32, float16 weights, dynamic-range
#: int8 (int8 weights, float activations) and int8 (int8 weights and
#: activations in the encoder, calibrated on a representative dataset; the
#: log-mel front-end and a conv with one input channel stay float32).
QUANTIZATIONS = ("float32", "float16", "dynamic_int8", "int8")

_OPS_SET_NAMES = {tf.lite.OpsSet.TFLITE_BUILTINS: "TFLITE_BUILTINS",
                  tf.lite.OpsSet.TFLITE_BUILTINS_INT8: "TFLITE_BUILTINS_INT8",
                  tf.lite.OpsSet.SELECT_TF_OPS: "SELECT_TF_OPS"}


@dataclasses.dataclass(frozen=True)
class Conversion:
  """A converted model.

  Attributes:
    content: The ``.tflite`` flatbuffer.
    operators: Distinct operator names in the file.
    flex_ops: The Select-TF (Flex) ops among them.
    ops_sets: Op sets the converter was allowed to use.
    notes: For embed models: the quantization route taken and which
      operators run on int8, hybrid and float32 kernels (for the manifest).
  """

  content: bytes
  operators: tuple[str, ...]
  flex_ops: tuple[str, ...]
  ops_sets: tuple[str, ...]
  notes: str = ""


def operator_input_types(tflite_model: bytes
                         ) -> dict[str, dict[tuple[str, ...], int]]:
  """How often each operator runs on each combination of input tensor types.

  For example ``{"CONV_2D": {("INT8", "INT8", "INT32"): 8}}`` for a fully
  int8-quantized conv stack, or ``("FLOAT32", "INT8", "FLOAT32")`` for
  dynamic-range (hybrid) convs. Operators of every subgraph count.

  Args:
    tflite_model: A ``.tflite`` flatbuffer.

  Returns:
    Counts by input types by operator name.
  """
  from tensorflow.lite.python import schema_py_generated as schema
  from tensorflow.lite.tools import flatbuffer_utils
  model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_model))
  type_names = {v: k for k, v in vars(schema.TensorType).items()
                if not k.startswith("_")}
  counts: dict[str, dict[tuple[str, ...], int]] = {}
  for subgraph in model.subgraphs:
    for op in subgraph.operators:
      name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
      types = tuple(type_names[subgraph.tensors[i].type] if i >= 0 else "NONE"
                    for i in op.inputs)
      by_types = counts.setdefault(name, {})
      by_types[types] = by_types.get(types, 0) + 1
  return counts


@contextlib.contextmanager
def _converter(functions: Mapping[str, tf.types.experimental.ConcreteFunction],
               module: tf.Module) -> Iterator[tf.lite.TFLiteConverter]:
  """A converter from a SavedModel of ``functions`` (keeps signature keys).

  SavedModel writing and conversion log at INFO level on every call; while
  the converter is in use, absl logging is kept at WARNING or quieter.
  """
  directory = tempfile.mkdtemp(prefix="export_saved_model_")
  verbosity = logging.get_verbosity()
  logging.set_verbosity(min(verbosity, logging.WARNING))
  try:
    tf.saved_model.save(module, directory, signatures=dict(functions))
    yield tf.lite.TFLiteConverter.from_saved_model(
        directory, signature_keys=list(functions))
  finally:
    logging.set_verbosity(verbosity)
    shutil.rmtree(directory, ignore_errors=True)


def _int8_frontend_tensors(content: bytes) -> list[str]:
  """Names of int8 tensors under :data:`FRONTEND_SCOPE` (e.g. mel matrix)."""
  from tensorflow.lite.python import schema_py_generated as schema
  from tensorflow.lite.tools import flatbuffer_utils
  model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
  names = set()
  for subgraph in model.subgraphs:
    for tensor in subgraph.tensors:
      name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(
          tensor.name)
      if (tensor.type == schema.TensorType.INT8
          and name.startswith(FRONTEND_SCOPE + "/")):
        names.add(name)
  return sorted(names)


def _kernel_precision(content: bytes) -> str:
  """Which operators run on int8 / hybrid / float32 inputs, with counts."""
  kinds: dict[str, dict[str, int]] = {"int8": {}, "hybrid (int8 weights)": {},
                                      "float32": {}}
  for op, by_types in operator_input_types(content).items():
    if op in ("QUANTIZE", "DEQUANTIZE"):
      continue
    for types, count in by_types.items():
      if not types:
        continue
      if types[0] == "INT8":
        kind = "int8"
      elif "INT8" in types[1:]:
        kind = "hybrid (int8 weights)"
      elif types[0] == "FLOAT32":
        kind = "float32"
      else:
        continue
      kinds[kind][op] = kinds[kind].get(op, 0) + count
  parts = [f"{kind} kernels: " + ", ".join(f"{op} x{n}" for op, n in
                                           sorted(ops.items()))
           for kind, ops in kinds.items() if ops]
  if frontend := _int8_frontend_tensors(content):
    parts.append(f"int8 front-end tensors: {', '.join(frontend)}")
  return "; ".join(parts) + "."


def _run(converter: tf.lite.TFLiteConverter, ops_sets: list[tf.lite.OpsSet],
         notes: str = "",
         convert: Optional[Callable[[], bytes]] = None) -> Conversion:
  """Converts with ``ops_sets`` (by ``convert``, default the converter)."""
  converter.target_spec.supported_ops = ops_sets
  content = convert() if convert else converter.convert()
  return Conversion(content=content,
                    operators=tuple(operator_names(content)),
                    flex_ops=tuple(select_tf_ops(content)),
                    ops_sets=tuple(_OPS_SET_NAMES[s] for s in ops_sets),
                    notes=notes)


def convert_training_model(module: OnDeviceModule) -> Conversion:
  """Converts the on-device training model.

  ``builtin`` mode allows ``TFLITE_BUILTINS`` only and then reads the
  operator codes of the file: a Select-TF op is an error. ``flex`` mode also
  allows ``SELECT_TF_OPS``.

  Args:
    module: The module (traced afresh here).

  Returns:
    The conversion.

  Raises:
    FlexOpsError: ``builtin`` mode and the graph needs Select-TF ops (the
      message lists them).
  """
  builtin = module.mode == "builtin"
  ops_sets = [tf.lite.OpsSet.TFLITE_BUILTINS]
  if not builtin:
    ops_sets.append(tf.lite.OpsSet.SELECT_TF_OPS)
  with _converter(module.concrete_functions(), module) as converter:
    converter.experimental_enable_resource_variables = True
    try:
      conversion = _run(converter, ops_sets)
    except Exception as e:  # The converter raises a bare ConverterError.
      message = str(e)
      if builtin and "TF Select ops:" in message:
        needed = message.split("TF Select ops:", 1)[1].split("\n", 1)[0]
        raise FlexOpsError(f"builtin export of {module.model.spec.task!r}: "
                           f"the graph needs Select-TF ops:{needed}") from e
      raise
  if builtin and conversion.flex_ops:
    raise FlexOpsError(f"builtin export of {module.model.spec.task!r}: the "
                       f"converted file contains Select-TF ops "
                       f"{list(conversion.flex_ops)}")
  return conversion


def convert_embed_model(
    module: EmbedModule, quantization: str, *,
    representative: Optional[Callable[[], Iterator[dict[str, np.ndarray]]]]
    = None) -> Conversion:
  """Converts the embed-only model in one of :data:`QUANTIZATIONS`.

  ``int8`` quantizes the encoder's weights and activations to int8,
  calibrated on ``representative``, and keeps the log-mel front-end in
  float32 (selective quantization: the tensors under
  :data:`export.ondevice_module.FRONTEND_SCOPE` are denylisted): an int8
  waveform and an int8 mel filterbank lose the quiet bins, and RFFT2D and
  LOG have no int8 kernels. A conv with one input channel (the encoder's
  first) and the ADD of its per-row bias stay float32 as well: they are
  faster so under XNNPACK. It first allows ``TFLITE_BUILTINS_INT8`` only
  and, if that conversion fails, converts again with ``TFLITE_BUILTINS`` as
  float fallback. Model inputs and outputs stay float32 in every variant.
  :attr:`Conversion.notes` says which route was taken and which operators
  run on int8, hybrid (int8 weights, float activations) and float32 kernels.

  Args:
    module: The embed-only module.
    quantization: One of :data:`QUANTIZATIONS`.
    representative: For ``int8``: a callable returning an iterator of
      ``{"waveform": float32 [n, patch_samples]}`` calibration inputs.

  Returns:
    The conversion.

  Raises:
    ValueError: Unknown quantization, or ``int8`` without ``representative``.
  """
  if quantization not in QUANTIZATIONS:
    raise ValueError(f"unknown quantization {quantization!r}; expected one of "
                     f"{QUANTIZATIONS}")
  if quantization == "int8" and representative is None:
    raise ValueError("int8 quantization needs a representative dataset")
  conversion = _convert_embed(module, quantization, representative)
  return dataclasses.replace(conversion, notes=" ".join(filter(None, [
      conversion.notes, _kernel_precision(conversion.content)])))


def _single_channel_conv_ops(content: bytes) -> list[str]:
  """Output tensor names of the CONV_2D operators with one input channel and
  of the ADD operators that take such a conv's output (the per-row bias of
  :func:`model.ops.conv_pair`'s composed conv)."""
  from tensorflow.lite.tools import flatbuffer_utils
  model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
  names = []
  for subgraph in model.subgraphs:
    conv_outputs = set()
    for op in subgraph.operators:
      kind = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
      shape = subgraph.tensors[op.inputs[0]].shape
      single = (kind == "CONV_2D" and shape is not None and len(shape)
                and int(shape[-1]) == 1)
      if single or (kind == "ADD" and conv_outputs.intersection(op.inputs)):
        if single:
          conv_outputs.add(op.outputs[0])
        name = subgraph.tensors[op.outputs[0]].name
        names.append(name.decode() if isinstance(name, bytes) else str(name))
  return names


def _frontend_float_int8(converter: tf.lite.TFLiteConverter,
                         representative: Callable[[], Iterator[Any]]) -> bytes:
  """Calibrates, then quantizes everything but the front-end to int8.

  A conv with one input channel (the encoder's first) stays float too:
  XNNPACK's int8 conv of one input channel ran slower than its float32 conv
  (0.030 vs 0.014 ms on the ``small`` encoder's 96x64 patch), more than the
  QUANTIZE it moves behind the conv costs (one embed call measured
  0.325 -> 0.314 ms, LiteRT, 1 thread). So does the ADD of its per-row bias
  (:func:`model.ops.conv_pair`): as int8 it needs the bias's scale, which
  an all-zero bias (a freshly initialized encoder) makes ~4e-9, and XNNPACK
  then refuses the ADD: TFLite's reference broadcast ADD took 0.17 of a
  0.63 ms call (``small``); float32 in XNNPACK it takes ~0.02 ms.
  """
  debugger = tf.lite.experimental.QuantizationDebugger(
      converter=converter, debug_dataset=representative)
  calibrated = tf.lite.Interpreter(model_content=debugger.calibrated_model)
  frontend = [t["name"] for t in calibrated.get_tensor_details()
              if t["name"].startswith(FRONTEND_SCOPE + "/")]
  debugger.options = tf.lite.experimental.QuantizationDebugOptions(
      denylisted_nodes=frontend + _single_channel_conv_ops(
          debugger.calibrated_model))
  return debugger.get_nondebug_quantized_model()


def _convert_embed(
    module: EmbedModule, quantization: str,
    representative: Optional[Callable[[], Iterator[dict[str, np.ndarray]]]]
) -> Conversion:
  with _converter(module.concrete_functions(), module) as converter:
    if quantization != "float32":
      converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
      converter.target_spec.supported_types = [tf.float16]
    if quantization != "int8":
      return _run(converter, [tf.lite.OpsSet.TFLITE_BUILTINS])
    converter.representative_dataset = representative
    route = ("Selective int8: encoder int8 (weights and activations), "
             "log-mel front-end and one-input-channel convs (with their bias) "
             "float32.")
    try:
      return _run(converter, [tf.lite.OpsSet.TFLITE_BUILTINS_INT8],
                  notes=f"{route} Ops set TFLITE_BUILTINS_INT8.",
                  convert=lambda: _frontend_float_int8(converter,
                                                       representative))
    except Exception as e:  # The converter raises a bare ConverterError.
      reason = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
      return _run(converter, [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                              tf.lite.OpsSet.TFLITE_BUILTINS],
                  notes=f"{route} Ops sets TFLITE_BUILTINS_INT8 + "
                        f"TFLITE_BUILTINS (float fallback): the int8-only "
                        f"conversion failed ({reason}).",
                  convert=lambda: _frontend_float_int8(converter,
                                                       representative))
