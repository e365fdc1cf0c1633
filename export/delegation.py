"""How much of each signature runs in the XNNPACK delegate.

The signature's subgraph is promoted to the primary one
(:func:`export.tflite_flops.promote_signature`; the Python interpreters list
the nodes of the primary subgraph only) and loaded in the runtime's
interpreter with its default XNNPACK delegate applied. The delegate appends
one ``DELEGATE`` node per partition; the operators it replaced are found by
walking back from each ``DELEGATE`` node's outputs to its inputs. Each
operator's FLOPs come from :func:`export.tflite_flops.op_costs`.

``ai_edge_litert`` runs files through ``CompiledModel`` with XNNPACK flags
:data:`export.litert_runtime.XNNPACK_FLAGS` (the defaults plus ``0x08``),
which its Python interpreter cannot set: the interpreter's partition (default flags) is taken
and the float32 FULLY_CONNECTED nodes with non-constant weights, which only
that flag admits, are added to it. ``tflite_runtime`` is reported with the
delegate :mod:`export.runtime` gives it (:mod:`export.xnnpack`, flags
:data:`export.xnnpack.TFLITE_RUNTIME_FLAGS`).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from export import tflite_flops
from export import xnnpack
from export.runtime import DEFAULT_RUNTIME, resolve_runtime

__all__ = ["Delegation", "delegated_nodes", "delegation", "model_delegation"]

_INTERPRETERS = {"ai_edge_litert": "ai_edge_litert.interpreter",
                 "tflite_runtime": "tflite_runtime.interpreter"}


@dataclasses.dataclass(frozen=True)
class Delegation:
  """XNNPACK's share of one signature.

  Attributes:
    signature: Signature key.
    runtime: The runtime it was measured for.
    nodes: Operators of the signature's subgraph.
    delegated_nodes: Of those, the ones XNNPACK runs.
    partitions: ``DELEGATE`` nodes of the interpreter's default delegate.
    flops: FLOPs of one call (``CALL_ONCE`` initialization excluded).
    delegated_flops: Of those, the delegated operators' FLOPs.
    not_delegated: Operator types left to the runtime's own kernels, with
      their FLOPs, costliest first.
  """

  signature: str
  runtime: str
  nodes: int
  delegated_nodes: int
  partitions: int
  flops: int
  delegated_flops: int
  not_delegated: tuple[tuple[str, int], ...] = ()

  @property
  def flops_fraction(self) -> float:
    """Delegated share of the FLOPs (1.0 for a signature without FLOPs)."""
    return self.delegated_flops / self.flops if self.flops else 1.0

  def to_dict(self) -> dict[str, Any]:
    return {"runtime": self.runtime, "nodes": self.nodes,
            "delegated_nodes": self.delegated_nodes,
            "partitions": self.partitions, "flops": self.flops,
            "delegated_flops": self.delegated_flops,
            "delegated_flops_fraction": round(self.flops_fraction, 4),
            "not_delegated": [list(x) for x in self.not_delegated[:6]]}


def _replaced(ops: list[dict[str, Any]]) -> set[int]:
  """Indices of the original nodes that ``DELEGATE`` nodes replaced."""
  producer = {}
  for op in ops:
    if op["op_name"] != "DELEGATE":
      for tensor in op["outputs"]:
        producer[int(tensor)] = op["index"]
  replaced: set[int] = set()
  for op in ops:
    if op["op_name"] != "DELEGATE":
      continue
    boundary = {int(t) for t in op["inputs"]}
    stack = [int(t) for t in op["outputs"]]
    while stack:
      tensor = stack.pop()
      if tensor in boundary or tensor not in producer:
        continue
      node = producer[tensor]
      if node in replaced:
        continue
      replaced.add(node)
      stack.extend(int(t) for t in ops[node]["inputs"] if t >= 0)
  return replaced


def delegated_nodes(content: bytes, signature: str, *,
                    runtime: str = DEFAULT_RUNTIME) -> tuple[set[int], int]:
  """Indices of the signature's operators that XNNPACK runs under ``runtime``.

  Args:
    content: A builtin ``.tflite`` flatbuffer.
    signature: Signature key.
    runtime: ``ai_edge_litert`` or ``tflite_runtime``.

  Returns:
    The operator indices (in the signature subgraph's order) and the number
    of ``DELEGATE`` partitions.

  Raises:
    KeyError: The model has no such signature.
    ValueError: Unknown runtime, or ``tensorflow`` (Flex files).
  """
  runtime = resolve_runtime(runtime)
  if runtime not in _INTERPRETERS:
    raise ValueError(f"delegation: runtime {runtime!r} not supported; "
                     f"expected one of {sorted(_INTERPRETERS)}")
  promoted = tflite_flops.promote_signature(content, signature)
  if runtime == "tflite_runtime":
    # The delegate export.runtime runs (flags TFLITE_RUNTIME_FLAGS).
    interpreter = xnnpack.tflite_runtime_interpreter(model_content=promoted)
  else:
    interpreter = importlib.import_module(_INTERPRETERS[runtime]).Interpreter(
        model_content=promoted, num_threads=1)
    interpreter.allocate_tensors()  # Applies the default delegate.
  ops = interpreter._get_ops_details()  # pylint: disable=protected-access
  delegated = _replaced(ops)
  if runtime == "ai_edge_litert":
    # Flag 0x08: FULLY_CONNECTED with float32 non-constant weights.
    dtype = lambda t: interpreter._get_tensor_details(  # pylint: disable=protected-access
        t, 0)["dtype"].__name__
    for op in ops:
      if (op["op_name"] == "FULLY_CONNECTED" and op["index"] not in delegated
          and all(dtype(t) == "float32" for t in op["inputs"][:2])):
        delegated.add(op["index"])
  return delegated, sum(op["op_name"] == "DELEGATE" for op in ops)


def delegation(content: bytes, signature: str, *,
               runtime: str = DEFAULT_RUNTIME, batch: int = 1) -> Delegation:
  """XNNPACK's share of ``signature`` under ``runtime``.

  Args:
    content: A builtin ``.tflite`` flatbuffer.
    signature: Signature key.
    runtime: ``ai_edge_litert`` or ``tflite_runtime``.
    batch: Value of dynamic input dimensions (for the FLOP count).

  Raises:
    KeyError: The model has no such signature.
    ValueError: Unknown runtime, or ``tensorflow`` (Flex files).
  """
  runtime = resolve_runtime(runtime)
  delegated, partitions = delegated_nodes(content, signature, runtime=runtime)
  costs = tflite_flops.op_costs(content, signature, batch=batch)
  delegated = {i for i in delegated if i < len(costs)}
  left: dict[str, int] = {}
  for index, (name, flops) in enumerate(costs):
    if index not in delegated and flops:
      left[name] = left.get(name, 0) + flops
  return Delegation(
      signature=signature, runtime=runtime, nodes=len(costs),
      delegated_nodes=len(delegated),
      partitions=partitions,
      flops=sum(f for _, f in costs),
      delegated_flops=sum(f for i, (_, f) in enumerate(costs)
                          if i in delegated),
      not_delegated=tuple(sorted(left.items(), key=lambda x: -x[1])))


def model_delegation(content: bytes, *, runtime: str = DEFAULT_RUNTIME,
                     batch: int = 1) -> dict[str, Delegation]:
  """:func:`delegation` of every signature, by key."""
  interpreter_signatures = sorted(tflite_flops.signature_keys(content))
  return {key: delegation(content, key, runtime=runtime, batch=batch)
          for key in interpreter_signatures}
