"""LiteRT's ``CompiledModel`` behind the TFLite interpreter's signature API.

``CompiledModel`` is the only Python entry of ai-edge-litert that takes
XNNPACK delegate flags; with :data:`XNNPACK_FLAGS` its XNNPACK runs
FULLY_CONNECTED with variable weights, i.e. every matmul of a builtin
training step. :class:`CompiledInterpreter` offers the part of the
interpreter API that the project uses (``get_signature_list``,
``get_signature_runner``, runners with ``get_input_details`` /
``get_output_details``). This module imports only numpy and ai-edge-litert,
so a benchmark worker can load it by file path without TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping, Optional

import numpy as np

__all__ = ["XNNPACK_FLAGS", "CompiledInterpreter"]

#: XNNPACK delegate flags of the LiteRT runtime: ``0x08``
#: (``TFLITE_XNNPACK_DELEGATE_FLAG_DYNAMIC_FULLY_CONNECTED``) lets XNNPACK
#: run FULLY_CONNECTED with variable weights, i.e. every matmul of a
#: builtin training step; ``0x01 | 0x02`` (QS8, QU8) keep the quantized ops
#: that the default flags delegate (flags replace the defaults: with 0x08
#: alone an int8 embed ran 1.5x slower). Measured: ``0x10`` (variable ops)
#: gains nothing.
XNNPACK_FLAGS = 0x0B


def _signature_shapes(model_content: bytes
                      ) -> dict[str, dict[str, dict[str, tuple[int, ...]]]]:
  """``{signature: {"inputs"|"outputs": {name: shape signature}}}``."""
  schema = importlib.import_module("ai_edge_litert.schema_py_generated")
  model = schema.Model.GetRootAs(model_content, 0)
  table = {}
  for i in range(model.SignatureDefsLength()):
    definition = model.SignatureDefs(i)
    subgraph = model.Subgraphs(definition.SubgraphIndex())
    entry = {}
    for kind, count, get in (
        ("inputs", definition.InputsLength(), definition.Inputs),
        ("outputs", definition.OutputsLength(), definition.Outputs)):
      shapes = {}
      for j in range(count):
        tensor_map = get(j)
        tensor = subgraph.Tensors(tensor_map.TensorIndex())
        shape = (tensor.ShapeSignatureAsNumpy()
                 if tensor.ShapeSignatureLength() else tensor.ShapeAsNumpy())
        shapes[tensor_map.Name().decode()] = tuple(
            int(d) for d in (shape if not isinstance(shape, int) else ()))
      entry[kind] = shapes
    table[definition.SignatureKey().decode()] = entry
  return table


class _CompiledSignature:
  """A LiteRT ``CompiledModel`` signature behind the signature-runner API."""

  def __init__(self, compiled: Any, key: str,
               shapes: Mapping[str, Mapping[str, tuple[int, ...]]]):
    self._compiled = compiled
    self._key = key
    self._index = compiled.get_signature_index(key)
    self._shapes = shapes
    self._inputs: dict[str, Any] = {}
    self._outputs: dict[str, Any] = {}
    self._output_shapes: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    self._current: Optional[dict[str, tuple[int, ...]]] = None
    self._capacity: dict[str, int] = {}
    self._dtypes: dict[str, np.dtype] = {}

  def _details(self, kind: str) -> dict[str, dict[str, Any]]:
    details = (self._compiled.get_input_tensor_details(self._key)
               if kind == "inputs" else
               self._compiled.get_output_tensor_details(self._key))
    return {name: {"dtype": np.dtype(d["dtype"]),
                   "shape": np.asarray(d["shape"], np.int32),
                   "shape_signature": np.asarray(
                       self._shapes[kind].get(name, d["shape"]), np.int32)}
            for name, d in details.items()}

  def get_input_details(self) -> dict[str, dict[str, Any]]:
    return self._details("inputs")

  def get_output_details(self) -> dict[str, dict[str, Any]]:
    return self._details("outputs")

  def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
    shapes = {name: tuple(np.shape(value)) for name, value in inputs.items()}
    if shapes != self._current:
      details = self.get_input_details()
      self._dtypes = {name: d["dtype"] for name, d in details.items()}
      # Dynamic dimensions (``N`` of ``embed``): resize, then size the
      # outputs' dynamic dimensions alike (LiteRT reports output shapes
      # only after a run, so the output buffers are host arrays).
      dynamic = None
      for name, shape in shapes.items():
        signature = tuple(details[name]["shape_signature"])
        if tuple(details[name]["shape"]) != shape:
          self._compiled.resize_input_tensor_by_name(self._key, name, shape,
                                                     strict=True)
        dynamic = next((s for s, d in zip(shape, signature) if d < 0),
                       dynamic)
      tensor_buffer = importlib.import_module("ai_edge_litert.tensor_buffer")
      self._inputs = {name: self._compiled.create_input_buffer_by_name(
          self._key, name) for name in details}
      self._outputs, self._output_shapes = {}, {}
      for name, d in self.get_output_details().items():
        shape = tuple(dynamic if s < 0 and dynamic is not None else int(n)
                      for s, n in zip(d["shape_signature"], d["shape"]))
        self._output_shapes[name] = (shape, d["dtype"])
        if dynamic is None:
          self._outputs[name] = self._compiled.create_output_buffer_by_name(
              self._key, name)
          continue
        # A shrunk output keeps its previous size until the run, so the
        # host buffer never shrinks (only the leading elements are read).
        size = max(int(np.prod(shape, dtype=np.int64)),
                   self._capacity.get(name, 0))
        self._capacity[name] = size
        self._outputs[name] = (
            tensor_buffer.TensorBuffer.create_from_host_memory(
                np.zeros(size, d["dtype"])))
      self._current = shapes
    for name, value in inputs.items():
      self._inputs[name].write(np.ascontiguousarray(
          value, dtype=self._dtypes[name]))
    self._compiled.run_by_name(self._key, self._inputs, self._outputs)
    return {name: self._outputs[name].read(
        int(np.prod(shape, dtype=np.int64)), dtype).reshape(shape)
            for name, (shape, dtype) in self._output_shapes.items()}


class CompiledInterpreter:
  """LiteRT's ``CompiledModel`` (XNNPACK with flags) as an interpreter.

  Offers what :class:`OnDeviceModel` and the benchmarks use of the
  interpreter API: ``get_signature_list`` and ``get_signature_runner``.
  """

  def __init__(self, model_content: bytes, *, num_threads: int = 1,
               xnnpack_flags: int = XNNPACK_FLAGS):
    compiled_model = importlib.import_module("ai_edge_litert.compiled_model")
    options = importlib.import_module("ai_edge_litert.options")
    cpu_options = importlib.import_module("ai_edge_litert.cpu_options")
    self.xnnpack_flags = xnnpack_flags
    self._compiled = compiled_model.CompiledModel.from_buffer(
        model_content, options=options.Options(
            cpu_options=cpu_options.CpuOptions(num_threads=num_threads,
                                               xnnpack_flags=xnnpack_flags)))
    self._shapes = _signature_shapes(model_content)

  def get_signature_list(self) -> dict[str, dict[str, list[str]]]:
    return {key: {"inputs": list(v["inputs"]), "outputs": list(v["outputs"])}
            for key, v in self._shapes.items()}

  def get_signature_runner(self, signature_key: str) -> _CompiledSignature:
    if signature_key not in self._shapes:
      raise ValueError(f"Invalid signature_key {signature_key!r}")
    return _CompiledSignature(self._compiled, signature_key,
                              self._shapes[signature_key])
