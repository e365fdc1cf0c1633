"""MACs and FLOPs of each signature, counted from the ``.tflite`` file itself.

Every signature of an exported model runs its own subgraph (``signatureDefs``
-> ``subgraphIndex``). :func:`count_flops` walks that subgraph's operators,
follows ``CALL_ONCE`` / ``WHILE`` / ``IF`` / ``CALL`` subgraph references, and
costs each operator from its tensor shapes:

* ``CONV_2D``, ``DEPTHWISE_CONV_2D``, ``TRANSPOSE_CONV``, ``FULLY_CONNECTED``,
  ``BATCH_MATMUL``: multiply-accumulates (MACs) of the contraction; FLOPs are
  ``2 x MACs`` plus one FLOP per output for a bias and one for a fused
  activation. Integer (int8) kernels count integer MACs the same way.
* ``RFFT2D``: a radix-2 FFT convention. One complex FFT of length ``n`` costs
  ``(n / 2) log2 n`` complex MACs (butterflies); one complex MAC is 4 real
  MACs. An ``[m, n]`` real 2-D FFT runs ``m`` row FFTs of length ``n`` and
  ``n / 2 + 1`` column FFTs of length ``m`` (free for ``m = 1``, as in the
  log-mel front-end). A real-input FFT needs about half of this in practice,
  so the front-end's FFT share is an upper estimate.
* Elementwise ops: :data:`ELEMENTWISE_FLOPS` FLOPs per output element;
  reductions one FLOP per input element; pooling one FLOP per window element
  of every output.
* Data movement, shape, variable and random ops (:data:`ZERO_FLOP_OPS`): no
  FLOPs.
* Anything else (custom and Select-TF ops, ops without a cost model) is
  listed in :attr:`SignatureFlops.uncounted` and not counted.

Shapes come from the flatbuffer when every tensor of the subgraph is static
(``train`` has a static batch). A subgraph with dynamic dimensions (``embed``:
``[N, samples]``) is run once in an interpreter with ``N = batch`` and the
resolved shapes are read back, so dynamic dimensions are counted as the
signature actually executes.

Cross-checks against ``tf.profiler`` and the analytic count live in
:mod:`benchmarks.flops`; this counter has no TensorFlow runtime dependency
beyond the flatbuffer schema, so exports can report delegated FLOPs.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Any, Optional, Sequence

import numpy as np


__all__ = [
    "MAC_OPS", "ELEMENTWISE_FLOPS", "REDUCTION_OPS", "POOL_OPS",
    "ZERO_FLOP_OPS", "WAVEFORM", "OpCount", "SignatureFlops", "count_flops",
    "count_model_flops", "signature_subgraph", "promote_signature",
    "op_costs", "signature_keys", "TF_DATA_OPS", "fft_complex_macs",
]

#: Ops costed as multiply-accumulates.
MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED",
           "BATCH_MATMUL", "RFFT2D")
#: FLOPs per output element (transcendentals count as one FLOP, as in
#: ``tf.profiler``; ``ADD_N`` costs ``inputs - 1``).
ELEMENTWISE_FLOPS: dict[str, int] = {
    **dict.fromkeys(
        ("ADD", "SUB", "MUL", "DIV", "FLOOR_DIV", "FLOOR_MOD", "MAXIMUM",
         "MINIMUM", "POW", "SQUARE", "SQRT", "RSQRT", "EXP", "LOG", "SIN",
         "COS", "TANH", "LOGISTIC", "RELU", "RELU6", "RELU_N1_TO_1",
         "LEAKY_RELU", "PRELU", "ABS", "NEG", "SIGN", "FLOOR", "CEIL",
         "ROUND", "EQUAL", "NOT_EQUAL", "LESS", "LESS_EQUAL", "GREATER",
         "GREATER_EQUAL", "LOGICAL_AND", "LOGICAL_OR", "LOGICAL_NOT",
         "SELECT", "SELECT_V2"), 1),
    "SQUARED_DIFFERENCE": 2,
    "QUANTIZE": 2,
    "DEQUANTIZE": 2,
    "HARD_SWISH": 3,
    "SOFTMAX": 3,
    "LOG_SOFTMAX": 3,
    "L2_NORMALIZATION": 3,
    "COMPLEX_ABS": 4,
}
#: One FLOP per input element.
REDUCTION_OPS = ("SUM", "MEAN", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD",
                 "REDUCE_ANY", "REDUCE_ALL")
#: One FLOP per window element of every output.
POOL_OPS = ("MAX_POOL_2D", "AVERAGE_POOL_2D", "L2_POOL_2D")
#: Data movement, shapes, variables, casts, random draws: no FLOPs.
ZERO_FLOP_OPS = (
    "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "PAD", "PADV2",
    "MIRROR_PAD", "GATHER", "GATHER_ND", "SCATTER_ND", "CONCATENATION", "PACK",
    "UNPACK", "SPLIT", "SPLIT_V", "SLICE", "STRIDED_SLICE", "TILE",
    "BROADCAST_TO", "BROADCAST_ARGS", "REVERSE_V2", "RESIZE_NEAREST_NEIGHBOR",
    "SHAPE", "RANK", "RANGE", "FILL", "ZEROS_LIKE", "ONES_LIKE", "CAST",
    "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "DEPTH_TO_SPACE",
    "SPACE_TO_DEPTH", "RANDOM_UNIFORM", "RANDOM_STANDARD_NORMAL",
    "MULTINOMIAL")
#: Input name of the examples in the on-device contract (``train``, ``embed``).
WAVEFORM = "waveform"
_CONTROL_FLOW = ("CALL_ONCE", "WHILE", "IF", "CALL")
#: TF op types without arithmetic (for explaining ``tf.profiler`` gaps).
TF_DATA_OPS = frozenset((
    "Placeholder", "Const", "ConcatV2", "Fill", "StridedSlice", "Reshape",
    "Range", "Pack", "GatherV2", "Cast", "Pad", "ReadVariableOp", "Identity",
    "IdentityN", "ResizeNearestNeighbor", "Squeeze", "Tile",
    "BroadcastGradientArgs", "ReverseV2", "Transpose", "AssignAddVariableOp",
    "AssignSubVariableOp", "AssignVariableOp", "NoOp", "Shape", "ExpandDims",
    "Split", "SplitV", "VarHandleOp", "Slice", "ConcatOffset",
    "RandomUniform", "RandomStandardNormal"))


@dataclasses.dataclass(frozen=True)
class OpCount:
  """Cost of every operator of one type in a signature.

  Attributes:
    op: Operator name (``CONV_2D``).
    count: Operators of this type executed per call.
    macs: Their multiply-accumulates.
    flops: Their FLOPs.
  """

  op: str
  count: int
  macs: int
  flops: int


@dataclasses.dataclass(frozen=True)
class SignatureFlops:
  """Cost of one call of a signature.

  Attributes:
    signature: Signature key.
    subgraph: Index of the subgraph it runs.
    examples: Examples per call: the ``waveform`` input's batch (the static
      ``B`` of ``train``, the chosen ``N`` of ``embed``), 1 without one.
    macs: Multiply-accumulates per call.
    flops: FLOPs per call.
    by_op: The cost by operator type, costliest first.
    init_flops: FLOPs of ``CALL_ONCE`` initialization subgraphs (run on the
      interpreter's first call only; not in :attr:`flops`).
    uncounted: Operator types without a cost model (not counted).
    shapes: ``"static"``, or how dynamic dimensions were resolved.
    notes: Caveats (loops with unknown trip counts, branches).
  """

  signature: str
  subgraph: int
  examples: int
  macs: int
  flops: int
  by_op: tuple[OpCount, ...]
  init_flops: int = 0
  uncounted: tuple[str, ...] = ()
  shapes: str = "static"
  notes: tuple[str, ...] = ()

  @property
  def macs_per_example(self) -> float:
    return self.macs / self.examples

  @property
  def flops_per_example(self) -> float:
    return self.flops / self.examples

  def op_flops(self, *ops: str) -> int:
    """FLOPs of the given operator types."""
    return sum(o.flops for o in self.by_op if o.op in ops)


def _schema() -> Any:
  return importlib.import_module("tensorflow.lite.python.schema_py_generated")


def _read_model(content: bytes) -> Any:
  flatbuffer_utils = importlib.import_module(
      "tensorflow.lite.tools.flatbuffer_utils")
  return flatbuffer_utils.convert_bytearray_to_object(bytearray(content))


def _op_names(model: Any) -> list[str]:
  """Name of every operator code (custom ops by their custom code)."""
  schema = _schema()
  by_code = {v: k for k, v in vars(schema.BuiltinOperator).items()
             if not k.startswith("_")}
  names = []
  for opcode in model.operatorCodes:
    code = max(opcode.builtinCode, opcode.deprecatedBuiltinCode)
    if code == schema.BuiltinOperator.CUSTOM:
      custom = opcode.customCode
      names.append(custom.decode() if isinstance(custom, bytes)
                   else str(custom))
    else:
      names.append(by_code.get(code, f"BUILTIN_{code}"))
  return names


def _text(value: Any) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def _signature_def(model: Any, signature: str) -> Any:
  definitions = {_text(d.signatureKey): d for d in model.signatureDefs or []}
  if signature not in definitions:
    raise KeyError(f"model has no {signature!r} signature; it has "
                   f"{sorted(definitions)}")
  return definitions[signature]


def signature_keys(content: bytes) -> list[str]:
  """The model's signature keys, sorted."""
  return sorted(_text(d.signatureKey)
                for d in _read_model(content).signatureDefs or [])


def signature_subgraph(content: bytes, signature: str) -> int:
  """Index of the subgraph a signature runs.

  Raises:
    KeyError: The model has no such signature.
  """
  return _signature_def(_read_model(content), signature).subgraphIndex


def promote_signature(content: bytes, signature: str) -> bytes:
  """The same model with the signature's subgraph moved to index 0.

  The Python interpreters list the nodes of the primary subgraph only (e.g.
  the ``DELEGATE`` nodes an applied delegate adds); promoting a signature's
  subgraph makes its nodes visible. Signature definitions and subgraph
  references are renumbered; nothing else changes.

  Raises:
    KeyError: The model has no such signature.
  """
  flatbuffer_utils = importlib.import_module(
      "tensorflow.lite.tools.flatbuffer_utils")
  model = _read_model(content)
  first = _signature_def(model, signature).subgraphIndex
  order = [first] + [i for i in range(len(model.subgraphs)) if i != first]
  renumber = {old: new for new, old in enumerate(order)}
  model.subgraphs = [model.subgraphs[i] for i in order]
  for definition in model.signatureDefs:
    definition.subgraphIndex = renumber[definition.subgraphIndex]
  for subgraph in model.subgraphs:
    for op in subgraph.operators or []:
      for field, index in _references(op).items():
        setattr(op.builtinOptions, field, renumber[index])
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _references(op: Any) -> dict[str, int]:
  """Subgraph indices an operator refers to, by option field."""
  options = op.builtinOptions
  fields = ("initSubgraphIndex", "condSubgraphIndex", "bodySubgraphIndex",
            "thenSubgraphIndex", "elseSubgraphIndex", "subgraph")
  return {f: getattr(options, f) for f in fields
          if options is not None and hasattr(options, f)}


def _reachable(model: Any, root: int) -> list[int]:
  """``root`` and every subgraph its operators refer to, transitively."""
  seen, stack = [], [root]
  while stack:
    index = stack.pop()
    if index in seen:
      continue
    seen.append(index)
    for op in model.subgraphs[index].operators or []:
      stack.extend(_references(op).values())
  return seen


Shapes = dict[tuple[int, int], tuple[int, ...]]


def _static_shapes(model: Any, subgraphs: Sequence[int]) -> Optional[Shapes]:
  """Shapes from the flatbuffer, or None if any dimension is dynamic."""
  shapes = {}
  for index in subgraphs:
    for t, tensor in enumerate(model.subgraphs[index].tensors or []):
      signature = tensor.shapeSignature
      if signature is not None and any(int(d) < 0 for d in signature):
        return None
      shapes[(index, t)] = tuple(int(d) for d in (
          tensor.shape if tensor.shape is not None else ()))
  return shapes


def _interpreter(content: bytes, runtime: str) -> Any:
  """An interpreter without default delegates (every kernel runs as written)."""
  if runtime == "tensorflow":
    lite = importlib.import_module("tensorflow").lite
    interpreter_class = lite.Interpreter
    resolver = lite.experimental.OpResolverType
  else:
    module = importlib.import_module(
        {"tflite_runtime": "tflite_runtime.interpreter",
         "ai_edge_litert": "ai_edge_litert.interpreter"}[runtime])
    interpreter_class, resolver = module.Interpreter, module.OpResolverType
  interpreter = interpreter_class(
      model_content=content,
      experimental_op_resolver_type=(
          resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
  interpreter.allocate_tensors()
  return interpreter


def _resolved_shapes(content: bytes, model: Any, signature: str,
                     subgraphs: Sequence[int], batch: int,
                     runtime: str) -> Shapes:
  """Shapes after one call with every dynamic input dimension = ``batch``."""
  interpreter = _interpreter(content, runtime)
  runner = interpreter.get_signature_runner(signature)
  inputs = {}
  for name, details in runner.get_input_details().items():
    shape = [batch if d < 0 else int(d) for d in details["shape_signature"]]
    inputs[name] = np.zeros(shape, details["dtype"])
  runner(**inputs)
  shapes = {}
  for index in subgraphs:
    for t in range(len(model.subgraphs[index].tensors or [])):
      # The public API lists the primary subgraph's tensors only.
      # pylint: disable-next=protected-access
      details = interpreter._get_tensor_details(t, index)
      shapes[(index, t)] = tuple(int(d) for d in details["shape"])
  return shapes


def _numel(shape: Sequence[int]) -> int:
  return int(np.prod(shape, dtype=np.int64)) if shape else 1


def fft_complex_macs(length: int) -> float:
  """Complex multiply-accumulates of a radix-2 FFT of ``length`` points."""
  return length / 2 * math.log2(length) if length > 1 else 0.0


def _op_cost(name: str, op: Any, inputs: list[Optional[tuple[int, ...]]],
             outputs: list[tuple[int, ...]]) -> Optional[tuple[int, int]]:
  """``(macs, flops)`` of one operator, or None without a cost model."""
  out = outputs[0] if outputs else ()
  options = op.builtinOptions
  activation = int(getattr(options, "fusedActivationFunction", 0) or 0) != 0
  has_bias = len(inputs) > 2 and inputs[2] is not None
  if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED",
              "BATCH_MATMUL", "TRANSPOSE_CONV"):
    if name == "CONV_2D":
      kh, kw, cin = inputs[1][1:4]
      macs = _numel(out) * kh * kw * cin
    elif name == "DEPTHWISE_CONV_2D":
      macs = _numel(out) * inputs[1][1] * inputs[1][2]
    elif name == "FULLY_CONNECTED":
      macs = _numel(out) * inputs[1][-1]
    elif name == "BATCH_MATMUL":
      x = inputs[0]
      macs = _numel(out) * (x[-2] if getattr(options, "adjX", False)
                            else x[-1])
    else:  # TRANSPOSE_CONV: inputs are output_shape, weights, input[, bias].
      has_bias = len(inputs) > 3 and inputs[3] is not None
      cout, kh, kw = inputs[1][0:3]
      macs = _numel(inputs[2]) * kh * kw * cout
    extra = _numel(out) * (int(has_bias) + int(activation))
    return macs, 2 * macs + extra
  if name == "RFFT2D":
    rows, cols = out[-2], 2 * (out[-1] - 1)
    batch = _numel(out[:-2])
    complex_macs = batch * (rows * fft_complex_macs(cols)
                            + out[-1] * fft_complex_macs(rows))
    macs = int(round(4 * complex_macs))
    return macs, 2 * macs
  if name == "ADD_N":
    return 0, _numel(out) * (len(inputs) - 1)
  if name in ELEMENTWISE_FLOPS:
    return 0, _numel(out) * (ELEMENTWISE_FLOPS[name] + int(activation))
  if name in REDUCTION_OPS:
    return 0, _numel(inputs[0])
  if name in POOL_OPS:
    window = options.filterHeight * options.filterWidth
    return 0, _numel(out) * (window + int(activation))
  if name in ZERO_FLOP_OPS:
    return 0, 0
  return None


@dataclasses.dataclass
class _Tally:
  """Running totals while walking subgraphs."""

  by_op: dict[str, list[int]] = dataclasses.field(default_factory=dict)
  init_flops: int = 0
  uncounted: set[str] = dataclasses.field(default_factory=set)
  notes: list[str] = dataclasses.field(default_factory=list)

  def add(self, name: str, macs: int, flops: int, count: int = 1) -> None:
    entry = self.by_op.setdefault(name, [0, 0, 0])
    entry[0] += count
    entry[1] += macs
    entry[2] += flops

  @property
  def flops(self) -> int:
    return sum(e[2] for e in self.by_op.values())


def _walk(model: Any, names: list[str], shapes: Shapes, index: int,
          tally: _Tally, stack: tuple[int, ...] = ()) -> None:
  """Adds the cost of one call of subgraph ``index`` to ``tally``."""
  if index in stack:
    tally.notes.append(f"recursive call of subgraph {index} not followed")
    return
  stack = stack + (index,)
  subgraph = model.subgraphs[index]
  shape = lambda t: shapes[(index, t)] if t >= 0 else None
  for op in subgraph.operators or []:
    name = names[op.opcodeIndex]
    if name in _CONTROL_FLOW:
      refs = _references(op)
      if name == "CALL_ONCE":
        init = _Tally()
        _walk(model, names, shapes, refs["initSubgraphIndex"], init, stack)
        tally.init_flops += init.flops + init.init_flops
        tally.uncounted |= init.uncounted
        continue
      if name == "WHILE":
        tally.notes.append(
            f"WHILE in subgraph {index}: loop trip count unknown; "
            f"condition and body counted once")
        targets = [refs["condSubgraphIndex"], refs["bodySubgraphIndex"]]
      elif name == "IF":
        branches = []
        for key in ("thenSubgraphIndex", "elseSubgraphIndex"):
          branch = _Tally()
          _walk(model, names, shapes, refs[key], branch, stack)
          branches.append(branch)
        costliest = max(branches, key=lambda b: b.flops)
        for op_name, (count, macs, flops) in costliest.by_op.items():
          tally.add(op_name, macs, flops, count)
        tally.uncounted |= costliest.uncounted
        tally.notes.append(f"IF in subgraph {index}: the costlier branch "
                           f"counted")
        continue
      else:
        targets = [refs["subgraph"]]
      for target in targets:
        _walk(model, names, shapes, target, tally, stack)
      continue
    cost = _op_cost(name, op, [shape(t) for t in op.inputs],
                    [shape(t) for t in op.outputs])
    if cost is None:
      tally.uncounted.add(name)
      tally.add(name, 0, 0)
    else:
      tally.add(name, *cost)


def _examples(definition: Any, shapes: Shapes) -> int:
  """The ``waveform`` input's batch dimension, 1 without one."""
  for tensor in definition.inputs or []:
    if _text(tensor.name) == WAVEFORM:
      return int(shapes[(definition.subgraphIndex, tensor.tensorIndex)][0])
  return 1


def _prepare(content: bytes, signature: str, batch: int, runtime: str
             ) -> tuple[Any, list[str], Any, Shapes, str]:
  """The model, op names, signature definition, shapes and how they came."""
  model = _read_model(content)
  names = _op_names(model)
  definition = _signature_def(model, signature)
  subgraphs = _reachable(model, definition.subgraphIndex)
  shapes = _static_shapes(model, subgraphs)
  how = "static"
  if shapes is None:
    shapes = _resolved_shapes(content, model, signature, subgraphs, batch,
                              runtime)
    how = f"dynamic dimensions resolved by one call at batch {batch}"
  return model, names, definition, shapes, how


def count_flops(content: bytes, signature: str, *, batch: int = 1,
                runtime: str = "tflite_runtime") -> SignatureFlops:
  """Counts the MACs and FLOPs of one call of a signature.

  Args:
    content: A ``.tflite`` flatbuffer.
    signature: Signature key.
    batch: Value of every dynamic input dimension (``N`` of ``embed``).
    runtime: Interpreter that resolves dynamic shapes: ``tflite_runtime``,
      ``ai_edge_litert`` or ``tensorflow`` (needed for Select-TF models).

  Returns:
    The count.

  Raises:
    KeyError: The model has no such signature.
  """
  model, names, definition, shapes, how = _prepare(content, signature,
                                                   batch, runtime)
  root = definition.subgraphIndex
  tally = _Tally()
  _walk(model, names, shapes, root, tally)
  ops = sorted((OpCount(op=name, count=c, macs=m, flops=f)
                for name, (c, m, f) in tally.by_op.items()),
               key=lambda o: (-o.flops, o.op))
  return SignatureFlops(
      signature=signature, subgraph=root,
      examples=_examples(definition, shapes),
      macs=sum(o.macs for o in ops), flops=sum(o.flops for o in ops),
      by_op=tuple(ops), init_flops=tally.init_flops,
      uncounted=tuple(sorted(tally.uncounted)), shapes=how,
      notes=tuple(dict.fromkeys(tally.notes)))


def op_costs(content: bytes, signature: str, *, batch: int = 1,
             runtime: str = "tflite_runtime") -> list[tuple[str, int]]:
  """``(op name, FLOPs)`` of every operator of a signature's subgraph.

  In operator order (= the interpreter's node order). A control-flow
  operator carries the cost of the subgraphs it calls, except
  ``CALL_ONCE`` (initialization, not part of a call: 0).

  Args:
    content: A ``.tflite`` flatbuffer.
    signature: Signature key.
    batch: Value of every dynamic input dimension.
    runtime: Interpreter that resolves dynamic shapes.

  Raises:
    KeyError: The model has no such signature.
  """
  model, names, definition, shapes, _ = _prepare(content, signature, batch,
                                                 runtime)
  root = definition.subgraphIndex
  costs = []
  for op in model.subgraphs[root].operators or []:
    name = names[op.opcodeIndex]
    if name == "CALL_ONCE":
      costs.append((name, 0))
    elif name in _CONTROL_FLOW:
      tally = _Tally()
      for target in _references(op).values():
        _walk(model, names, shapes, target, tally, (root,))
      costs.append((name, tally.flops))
    else:
      shape = lambda t: shapes[(root, t)] if t >= 0 else None
      cost = _op_cost(name, op, [shape(t) for t in op.inputs],
                      [shape(t) for t in op.outputs])
      costs.append((name, cost[1] if cost else 0))
  return costs


def count_model_flops(content: bytes, *, batch: int = 1,
                      runtime: str = "tflite_runtime"
                      ) -> dict[str, SignatureFlops]:
  """:func:`count_flops` of every signature, by key."""
  model = _read_model(content)
  keys = sorted(_text(d.signatureKey) for d in model.signatureDefs or [])
  return {key: count_flops(content, key, batch=batch, runtime=runtime)
          for key in keys}
