"""Per-operator profile of one ``.tflite`` signature on LiteRT.

LiteRT's Python API has no op profiler, so every operator of the signature's
subgraph is cut out into a model of its own (the flatbuffer object API of
``tensorflow.lite.tools.flatbuffer_utils``): its non-constant inputs become
the one-op model's inputs, fed with the real intermediate values of one call
of the whole signature (an interpreter with
``experimental_preserve_all_tensors``); constant inputs stay constants, so
XNNPACK sees the same static operands as in the whole graph. Each one-op model
is timed under the same runtime and flags as the whole signature
(:class:`export.litert_runtime.CompiledInterpreter`'s ``CompiledModel``,
XNNPACK flags :data:`export.litert_runtime.XNNPACK_FLAGS`), and the per-call
overhead of a one-element ``ADD`` model is subtracted.

A signature with a dynamic batch (``embed``) is profiled at the batch of the
inputs given (default 1): each one-op model gets the actual shapes of that
call, not the file's placeholders.

Resource-variable operators (``VAR_HANDLE``, ``READ_VARIABLE``,
``ASSIGN_VARIABLE``) and ``CALL_ONCE`` cannot run without their variables:
they are listed with no time (they copy the weights only). What is timed is
the pure compute between the reads and the assignments. An operator whose
inputs the interpreter did not keep (shape arithmetic of a dynamic batch) or
that the runtime cannot load alone is listed untimed too, with a warning.

Caveats of the method: an operator alone runs with its inputs warm in the
cache and outside its XNNPACK partition (no fusion with neighbours, its own
input/output copies); the sum of the rows is therefore an estimate, compared
with the whole signature's measured time in :attr:`Profile.whole_ms`.

Each row carries the bytes read and written (all input and output tensors),
the FLOPs (:func:`export.tflite_flops.op_costs`) and whether the whole graph's
XNNPACK partition holds the operator (:func:`export.delegation.delegated_nodes`).
Rows are aggregated by operator kind and by model layer (the TF name scope of
the operator's output tensor, ``gradient_tape/`` marking the backward pass).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import importlib
import os
import re
import time
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from absl import logging
import numpy as np

from benchmarks.latency import host_machine
from export import delegation as delegation_lib
from export import tflite_flops
from export.litert_runtime import XNNPACK_FLAGS, CompiledInterpreter

__all__ = ["NOT_TIMED", "OpRow", "Profile", "Group", "profile", "format_report",
           "write_csv", "plot", "by_op", "by_layer", "run_profile",
           "training_model"]

#: Operators that are listed but not timed (they need resource variables).
NOT_TIMED = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE")

_KEY = "op"


class _Rates:
  """Bandwidth and arithmetic rate of something with bytes, flops and ms."""

  bytes: int
  flops: int
  ms: Optional[float]

  @property
  def gbytes_per_s(self) -> float:
    return self.bytes / (self.ms * 1e6) if self.ms else 0.0

  @property
  def gflops_per_s(self) -> float:
    return self.flops / (self.ms * 1e6) if self.ms else 0.0


@dataclasses.dataclass(frozen=True)
class OpRow(_Rates):
  """One operator of the signature.

  Attributes:
    index: Position in the signature's subgraph (interpreter node order).
    op: Operator type.
    layer: Model layer (name scope of the output tensor, ``-`` if none).
    backward: The operator belongs to the gradient (``gradient_tape/``).
    inputs: Input shapes (constant ones marked ``c``).
    outputs: Output shapes.
    ms: Time of one call without the per-call overhead (None: not timed).
    bytes: Bytes of every input and output tensor.
    flops: FLOPs of one call.
    delegated: XNNPACK runs it in the whole graph.
  """

  index: int
  op: str
  layer: str
  backward: bool
  inputs: str
  outputs: str
  ms: Optional[float]
  bytes: int
  flops: int
  delegated: bool


@dataclasses.dataclass(frozen=True)
class Profile:
  """A signature's per-operator profile.

  Attributes:
    signature: Signature key.
    rows: One per operator, in node order.
    whole_ms: Measured time of one call of the whole signature (median).
    overhead_ms: Per-call overhead subtracted from every row.
    threads: Threads of the runtime.
    xnnpack_flags: XNNPACK flags of the runtime.
    clock: ``cpu`` (process CPU time) or ``wall``.
  """

  signature: str
  rows: tuple[OpRow, ...]
  whole_ms: float
  overhead_ms: float
  threads: int
  xnnpack_flags: int
  clock: str

  @property
  def timed_ms(self) -> float:
    """Sum of the timed rows."""
    return sum(r.ms for r in self.rows if r.ms is not None)


def _flatbuffer_utils() -> Any:
  return importlib.import_module("tensorflow.lite.tools.flatbuffer_utils")


def _schema() -> Any:
  return importlib.import_module("tensorflow.lite.python.schema_py_generated")


def _intermediates(promoted: bytes, signature: str,
                   inputs: Mapping[str, np.ndarray]) -> Callable[[int], Any]:
  """Value getter of subgraph 0's tensors after one call of ``signature``."""
  module = importlib.import_module("ai_edge_litert.interpreter")
  interpreter = module.Interpreter(
      model_content=promoted, experimental_preserve_all_tensors=True,
      experimental_op_resolver_type=(
          module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
  interpreter.allocate_tensors()
  interpreter.get_signature_runner(signature)(**inputs)

  def value(index: int) -> Optional[np.ndarray]:
    try:
      return np.array(interpreter.get_tensor(index))
    except ValueError:
      return None

  return value


def _is_constant(model: Any, tensor: Any) -> bool:
  buffer = model.buffers[tensor.buffer] if tensor.buffer else None
  return buffer is not None and buffer.data is not None and len(buffer.data)


def _one_op_model(model: Any, subgraph: Any, op: Any,
                  shapes: Optional[Mapping[int, Sequence[int]]] = None
                  ) -> tuple[bytes, list[int]]:
  """``op`` alone as a model; returns it and its runtime inputs' indices.

  ``shapes`` gives the actual shape of non-constant tensors (by index) in
  the call profiled: a signature with a dynamic batch has placeholder
  shapes in the file, which the one-op model must not keep.
  """
  schema = _schema()
  shapes = shapes or {}
  tensors, buffers, remap, runtime_inputs = [], [schema.BufferT()], {}, []

  def add(index: int) -> int:
    if index < 0:
      return index
    if index not in remap:
      tensor = copy.copy(subgraph.tensors[index])
      if _is_constant(model, tensor):
        buffer = schema.BufferT()
        buffer.data = model.buffers[tensor.buffer].data
        buffers.append(buffer)
        tensor.buffer = len(buffers) - 1
      else:
        tensor.buffer = 0
        if index in shapes:
          tensor.shape = np.array(shapes[index], np.int32)
          tensor.shapeSignature = None
        if index not in op.outputs:
          runtime_inputs.append(index)
      tensor.name = f"t{len(tensors)}".encode()
      remap[index] = len(tensors)
      tensors.append(tensor)
    return remap[index]

  new_op = copy.copy(op)
  new_op.inputs = [add(int(t)) for t in op.inputs]
  new_op.outputs = [add(int(t)) for t in op.outputs]
  new_op.opcodeIndex = 0
  new_op.intermediates = None
  graph = schema.SubGraphT()
  graph.tensors = tensors
  graph.operators = [new_op]
  graph.inputs = [remap[t] for t in runtime_inputs]
  graph.outputs = list(new_op.outputs)
  graph.name = b"op"
  definition = schema.SignatureDefT()
  definition.signatureKey = _KEY.encode()
  definition.subgraphIndex = 0
  definition.inputs, definition.outputs = [], []
  for kind, indices in (("inputs", graph.inputs), ("outputs", graph.outputs)):
    for i, t in enumerate(indices):
      entry = schema.TensorMapT()
      entry.name = f"{kind[0]}{i}".encode()
      entry.tensorIndex = t
      getattr(definition, kind).append(entry)
  one = schema.ModelT()
  one.version = 3
  one.description = b"one operator"
  one.operatorCodes = [model.operatorCodes[op.opcodeIndex]]
  one.subgraphs = [graph]
  one.buffers = buffers
  one.signatureDefs = [definition]
  return bytes(_flatbuffer_utils().convert_object_to_bytearray(one)), \
      runtime_inputs


def _add_model() -> bytes:
  """A one-element ``ADD`` model: the per-call overhead's yardstick."""
  schema = _schema()
  tensors = []
  for name in (b"a", b"b", b"c"):
    tensor = schema.TensorT()
    tensor.shape = [1]
    tensor.type = schema.TensorType.FLOAT32
    tensor.buffer = 0
    tensor.name = name
    tensors.append(tensor)
  op = schema.OperatorT()
  op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1], [2]
  op.builtinOptionsType = schema.BuiltinOptions.AddOptions
  op.builtinOptions = schema.AddOptionsT()
  code = schema.OperatorCodeT()
  code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.ADD
  code.version = 1
  model = schema.ModelT()
  model.version = 3
  model.operatorCodes = [code]
  graph = schema.SubGraphT()
  graph.tensors, graph.operators = tensors, [op]
  graph.inputs, graph.outputs = [0, 1], [2]
  model.subgraphs = [graph]
  model.buffers = [schema.BufferT()]
  definition = schema.SignatureDefT()
  definition.signatureKey = _KEY.encode()
  definition.subgraphIndex = 0
  definition.inputs, definition.outputs = [], []
  for name, index, kind in ((b"i0", 0, "inputs"), (b"i1", 1, "inputs"),
                            (b"o0", 2, "outputs")):
    entry = schema.TensorMapT()
    entry.name, entry.tensorIndex = name, index
    getattr(definition, kind).append(entry)
  model.signatureDefs = [definition]
  return bytes(_flatbuffer_utils().convert_object_to_bytearray(model))


class _Clock:
  def __init__(self, clock: str):
    self.now = time.process_time if clock == "cpu" else time.perf_counter


def _time_call(call: Callable[[], Any], clock: _Clock, repeats: int,
               min_sample_s: float = 2e-3) -> float:
  """Median milliseconds of one call (samples of >= ``min_sample_s``)."""
  call()
  start = time.perf_counter()
  call()
  once = max(time.perf_counter() - start, 1e-6)
  inner = max(1, min(1000, int(min_sample_s / once)))
  samples = []
  for _ in range(repeats):
    start = clock.now()
    for _ in range(inner):
      call()
    samples.append(1e3 * (clock.now() - start) / inner)
  return float(np.median(samples))


def _compiled_call(content: bytes, feeds: Sequence[np.ndarray], threads: int,
                   flags: int) -> Callable[[], Any]:
  """A no-argument call that runs ``content``'s one signature on ``feeds``."""
  compiled_model = importlib.import_module("ai_edge_litert.compiled_model")
  options = importlib.import_module("ai_edge_litert.options")
  cpu_options = importlib.import_module("ai_edge_litert.cpu_options")
  model = compiled_model.CompiledModel.from_buffer(
      content, options=options.Options(cpu_options=cpu_options.CpuOptions(
          num_threads=threads, xnnpack_flags=flags)))
  inputs = {}
  for i, value in enumerate(feeds):
    buffer = model.create_input_buffer_by_name(_KEY, f"i{i}")
    value = np.ascontiguousarray(value)
    if value.dtype == np.complex64:  # Not a TensorBuffer dtype: same bytes.
      value = value.view(np.float32)
    buffer.write(value)
    inputs[f"i{i}"] = buffer
  outputs = {name: model.create_output_buffer_by_name(_KEY, name)
             for name in model.get_output_tensor_details(_KEY)}
  return lambda: model.run_by_name(_KEY, inputs, outputs)


def _actual_shape(tensor: Any, value: Optional[np.ndarray]) -> Sequence[int]:
  """The shape in the call profiled, else the file's (placeholder) shape."""
  if value is not None and value.dtype != object:
    return value.shape
  return tensor.shape if tensor.shape is not None else ()


def _layer(name: str) -> tuple[str, bool]:
  """``(layer, backward)`` from a tensor name's TF name scopes.

  ``model.ops`` puts a custom gradient under ``<forward scope>/backward``;
  TF's own gradients live under ``gradient_tape/``.
  """
  name = name.split(";")[0]
  parts = name.split("/")
  backward = bool({"gradient_tape", "gradients", "backward"} & set(parts[:-1]))
  scopes = [p for p in parts[:-1] if p not in (
      "gradient_tape", "gradients", "backward") and not re.fullmatch(
          r"(StatefulPartitionedCall|PartitionedCall|IdentityN|add|mul|sub|"
          r"Reshape|MatMul|Relu)(_\d+)?", p)]
  return ("/".join(scopes[:2]) or "-"), backward


def _shape_text(shape: Iterable[int], constant: bool = False) -> str:
  text = "x".join(str(int(d)) for d in shape) or "scalar"
  return f"c{text}" if constant else text


def _default_inputs(interpreter: CompiledInterpreter, signature: str,
                    seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  runner = interpreter.get_signature_runner(signature)
  inputs = {}
  for name, details in runner.get_input_details().items():
    shape = [max(1, int(d)) for d in details["shape"]]
    if np.issubdtype(details["dtype"], np.floating):
      inputs[name] = (0.1 * rng.standard_normal(shape)).astype(
          details["dtype"])
    else:
      inputs[name] = np.zeros(shape, details["dtype"])
  return inputs


def profile(content: bytes, signature: str, *,
            inputs: Optional[Mapping[str, np.ndarray]] = None,
            threads: int = 1, xnnpack_flags: int = XNNPACK_FLAGS,
            repeats: int = 7, whole_repeats: int = 10, clock: str = "cpu",
            progress: Optional[Callable[[int, int], None]] = None) -> Profile:
  """Times every operator of ``signature`` on its own.

  Args:
    content: A builtin ``.tflite`` flatbuffer (float or quantized).
    signature: Signature key.
    inputs: Inputs of one call (default: seeded normal noise times 0.1, a
      dynamic dimension as 1).
    threads: Runtime threads.
    xnnpack_flags: XNNPACK flags of the runtime.
    repeats: Timed samples per operator (median).
    whole_repeats: Timed calls of the whole signature (median).
    clock: ``cpu`` (process CPU time, steadier on a busy host) or ``wall``.
    progress: Called with (done, total) after each operator.

  Returns:
    The profile.

  Raises:
    KeyError: The model has no such signature (the message lists them).
    ValueError: Unknown clock.
  """
  if clock not in ("cpu", "wall"):
    raise ValueError(f"op_profile: clock must be 'cpu' or 'wall', got "
                     f"{clock!r}")
  timer = _Clock(clock)
  whole = CompiledInterpreter(content, num_threads=threads,
                              xnnpack_flags=xnnpack_flags)
  if signature not in whole.get_signature_list():
    raise KeyError(f"op_profile: model has no {signature!r} signature; it "
                   f"has {sorted(whole.get_signature_list())}")
  inputs = dict(inputs) if inputs is not None else _default_inputs(
      whole, signature)
  runner = whole.get_signature_runner(signature)
  # Values first: a train call changes the weights of the next one.
  promoted = tflite_flops.promote_signature(content, signature)
  value = _intermediates(promoted, signature, inputs)
  model = _flatbuffer_utils().convert_bytearray_to_object(bytearray(promoted))
  graph = model.subgraphs[0]
  opaque = (_schema().TensorType.RESOURCE, _schema().TensorType.VARIANT)
  raw_value = value
  # Reading a resource tensor's value crashes the interpreter.
  value = lambda t: (None if graph.tensors[t].type in opaque
                     else raw_value(t))
  names = tflite_flops._op_names(model)  # pylint: disable=protected-access
  costs = tflite_flops.op_costs(content, signature)
  delegated, _ = delegation_lib.delegated_nodes(content, signature,
                                                runtime="ai_edge_litert")
  whole_ms = _time_call(lambda: runner(**inputs), timer, whole_repeats,
                        min_sample_s=0.0)
  overhead_ms = _time_call(_compiled_call(
      _add_model(), [np.ones(1, np.float32)] * 2, threads, xnnpack_flags),
                           timer, repeats)
  rows = []
  operators = graph.operators or []
  for index, op in enumerate(operators):
    name = names[op.opcodeIndex]
    tensor_bytes, in_shapes, out_shapes = 0, [], []
    for t in op.inputs:
      if t >= 0:
        tensor = graph.tensors[t]
        constant = bool(_is_constant(model, tensor))
        v = value(int(t))
        in_shapes.append(_shape_text(_actual_shape(tensor, v), constant))
        tensor_bytes += v.nbytes if v is not None and v.dtype != object else 0
    for t in op.outputs:
      tensor = graph.tensors[t]
      v = value(int(t))
      out_shapes.append(_shape_text(_actual_shape(tensor, v)))
      tensor_bytes += v.nbytes if v is not None and v.dtype != object else 0
    ms = None
    if name not in NOT_TIMED:
      shapes = {int(t): v.shape for t in list(op.inputs) + list(op.outputs)
                if t >= 0 and (v := value(int(t))) is not None
                and v.dtype != object}
      one, runtime_inputs = _one_op_model(model, graph, op, shapes)
      feeds = [value(t) for t in runtime_inputs]
      try:
        call = _compiled_call(one, feeds, threads, xnnpack_flags)
        ms = max(0.0, _time_call(call, timer, repeats) - overhead_ms)
      except (ValueError, RuntimeError) as e:  # No value kept, or no kernel.
        logging.warning("node %d (%s) not timed: %s", index, name, e)
    layer, backward = _layer(tflite_flops._text(  # pylint: disable=protected-access
        graph.tensors[op.outputs[0]].name) if len(op.outputs) else "")
    rows.append(OpRow(index=index, op=name, layer=layer, backward=backward,
                      inputs=" ".join(in_shapes), outputs=" ".join(out_shapes),
                      ms=ms, bytes=int(tensor_bytes),
                      flops=int(costs[index][1]), delegated=index in delegated))
    if progress:
      progress(index + 1, len(operators))
  whole_ms = float(np.median([whole_ms, _time_call(
      lambda: runner(**inputs), timer, whole_repeats, min_sample_s=0.0)]))
  logging.info("profiled %d operators of %r: sum %.1f ms, whole %.1f ms",
               len(rows), signature, sum(r.ms or 0 for r in rows), whole_ms)
  return Profile(signature=signature, rows=tuple(rows), whole_ms=whole_ms,
                 overhead_ms=overhead_ms, threads=threads,
                 xnnpack_flags=xnnpack_flags, clock=clock)


@dataclasses.dataclass(frozen=True)
class Group(_Rates):
  """Totals of a set of rows."""

  key: str
  count: int
  ms: float
  bytes: int
  flops: int
  delegated: int


def _group(rows: Iterable[OpRow], key: Callable[[OpRow], str]) -> list[Group]:
  groups: dict[str, list[OpRow]] = {}
  for row in rows:
    groups.setdefault(key(row), []).append(row)
  return sorted((Group(key=k, count=len(v), ms=sum(r.ms or 0 for r in v),
                       bytes=sum(r.bytes for r in v),
                       flops=sum(r.flops for r in v),
                       delegated=sum(r.delegated for r in v))
                 for k, v in groups.items()), key=lambda g: -g.ms)


def by_op(result: Profile) -> list[Group]:
  """Totals per operator type, costliest first."""
  return _group(result.rows, lambda r: r.op)


def by_layer(result: Profile) -> list[Group]:
  """Totals per layer and pass (forward / backward), costliest first."""
  return _group(result.rows, lambda r: f"{r.layer} "
                f"({'backward' if r.backward else 'forward'})")


def _group_table(title: str, groups: Sequence[Group], total: float
                 ) -> list[str]:
  lines = [f"| {title} | nodes | XNNPACK nodes | ms | share | MB moved | "
           "GB/s | MFLOP | GFLOP/s |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for g in groups:
    lines.append(f"| {g.key} | {g.count} | {g.delegated} | {g.ms:.2f} | "
                 f"{g.ms / total if total else 0:.0%} | {g.bytes / 1e6:.1f} | "
                 f"{g.gbytes_per_s:.1f} | {g.flops / 1e6:.1f} | "
                 f"{g.gflops_per_s:.1f} |")
  return lines + [""]


def format_report(result: Profile, *, title: str = "",
                  top: int = 40) -> str:
  """Markdown: summary, per op type, per layer, the ``top`` costliest nodes."""
  load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
  total = result.timed_ms
  flops = sum(r.flops for r in result.rows)
  untimed = [r for r in result.rows if r.ms is None]
  lines = [
      f"# Operator profile{': ' + title if title else ''}", "",
      f"Signature `{result.signature}`, LiteRT CompiledModel, XNNPACK flags "
      f"0x{result.xnnpack_flags:02X}, {result.threads} thread(s), {result.clock} "
      f"time; host {host_machine().label}, load average {load}.", "",
      f"- whole signature, measured: **{result.whole_ms:.2f} ms** "
      f"({flops / 1e6:.0f} MFLOP, {flops / (result.whole_ms * 1e6):.1f} "
      f"GFLOP/s)",
      f"- sum of {len(result.rows) - len(untimed)} operators timed alone: "
      f"**{total:.2f} ms** ({total / result.whole_ms:.2f}x the whole; "
      f"per-call overhead {result.overhead_ms * 1e3:.0f} us subtracted from "
      f"each)",
      f"- not timed ({len(untimed)} nodes: "
      f"{', '.join(sorted({r.op for r in untimed})) or 'none'}): variable "
      f"handles, reads and assignments, "
      f"{sum(r.bytes for r in untimed) / 1e6:.1f} MB moved", ""]
  lines += ["## By operator type", ""] + _group_table(
      "op", by_op(result), total)
  lines += ["## By layer", ""] + _group_table("layer", by_layer(result), total)
  lines += [f"## The {top} costliest nodes", "",
            "| node | op | layer | pass | inputs | outputs | ms | MB | GB/s | "
            "MFLOP | GFLOP/s | XNNPACK |",
            "|---:|---|---|---|---|---|---:|---:|---:|---:|---:|---|"]
  for r in sorted((r for r in result.rows if r.ms is not None),
                  key=lambda r: -r.ms)[:top]:
    lines.append(
        f"| {r.index} | {r.op} | {r.layer} | "
        f"{'bwd' if r.backward else 'fwd'} | {r.inputs} | {r.outputs} | "
        f"{r.ms:.3f} | {r.bytes / 1e6:.2f} | {r.gbytes_per_s:.1f} | "
        f"{r.flops / 1e6:.2f} | {r.gflops_per_s:.1f} | "
        f"{'yes' if r.delegated else 'no'} |")
  return "\n".join(lines) + "\n"


def write_csv(path: str, result: Profile) -> None:
  """One line per operator."""
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["index", "op", "layer", "backward", "inputs", "outputs",
                     "ms", "bytes", "gbytes_per_s", "flops", "gflops_per_s",
                     "delegated"])
    for r in result.rows:
      writer.writerow([r.index, r.op, r.layer, int(r.backward), r.inputs,
                       r.outputs, "" if r.ms is None else f"{r.ms:.4f}",
                       r.bytes, f"{r.gbytes_per_s:.2f}", r.flops,
                       f"{r.gflops_per_s:.2f}", int(r.delegated)])


def plot(path: str, result: Profile, *, title: str = "") -> None:
  """Horizontal bars: ms per operator type and per layer."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  ops_, layers = by_op(result)[:15], by_layer(result)[:15]
  fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
  for ax, groups, label in ((axes[0], ops_, "operator type"),
                            (axes[1], layers, "layer (pass)")):
    keys = [g.key for g in groups][::-1]
    ax.barh(keys, [g.ms for g in groups][::-1],
            color=["tab:blue" if g.delegated == g.count else "tab:orange"
                   for g in groups][::-1])
    ax.set_xlabel("ms per call (sum of the operators timed alone)")
    ax.set_title(f"by {label}")
    ax.tick_params(axis="y", labelsize=7)
  fig.suptitle(f"{title} `{result.signature}`: whole {result.whole_ms:.1f} ms, "
               f"sum of ops {result.timed_ms:.1f} ms (orange: not all in "
               f"XNNPACK)", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def training_model(preset: str, task: str, batch_size: int,
                   formulation: str = "delegate") -> tuple[bytes, str]:
  """The builtin ``train`` model of a fresh (untrained) module, SGD.

  Returns:
    The ``.tflite`` content and a title naming what it is.
  """
  # pylint: disable=import-outside-toplevel
  from export.conversion import convert_training_model
  from export.exporter import fresh_source
  from export.ondevice_module import OnDeviceModule
  from export.optimizers import OptimizerConfig
  module = OnDeviceModule(fresh_source(preset, task).model,
                          OptimizerConfig("sgd", learning_rate=0.01),
                          batch_size, mode="builtin", formulation=formulation)
  return convert_training_model(module).content, (
      f"{preset} / {task} / batch {batch_size} / {formulation}")


def run_profile(content: bytes, signature: str, out_dir: str, *,
                title: str = "", show_progress: bool = True,
                **profile_args: Any) -> tuple[Profile, str]:
  """Profiles ``signature`` and writes ``op_profile.{md,csv,png}``.

  Args:
    content: A builtin ``.tflite`` flatbuffer (float or quantized).
    signature: Signature key.
    out_dir: Where the report, CSV and plot go (created).
    title: Title of the report and the plot.
    show_progress: A tqdm bar over the operators.
    **profile_args: Passed to :func:`profile` (threads, repeats, clock, ...).

  Returns:
    The profile and its Markdown report.

  Raises:
    KeyError: The model has no such signature (the message lists them).
  """
  from tqdm import tqdm  # pylint: disable=import-outside-toplevel
  bar = tqdm(desc="operators", unit="op", disable=not show_progress)

  def progress(done: int, total: int) -> None:
    bar.total = total
    bar.update(done - bar.n)

  try:
    result = profile(content, signature, progress=progress, **profile_args)
  finally:
    bar.close()
  report = format_report(result, title=title)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "op_profile.md"), "w",
            encoding="utf-8") as f:
    f.write(report)
  write_csv(os.path.join(out_dir, "op_profile.csv"), result)
  plot(os.path.join(out_dir, "op_profile.png"), result, title=title)
  return result, report
