"""FLOPs per signature of a ``.tflite``, with cross-checks.

The counter itself (per-operator costs, subgraph walking, dynamic shapes)
is :mod:`export.tflite_flops`, re-exported here. :func:`cross_check`
compares a count with two independent ones: ``tf.profiler``'s
float-operation count of the same TF function rebuilt from the manifest
(``OnDeviceModule.train_function`` for ``train``,
``SSLModel.embed_patches`` for ``embed``) and the analytic count of the
encoder config (``EncoderConfig.forward_macs``; for ``train`` the federated
simulation's cost model, ``tff_sim.costs.CostModel``: 3 x forward, encoder
only).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

# The flatbuffer counter lives in export (exports report delegated FLOPs);
# this module adds the front-end model and the cross-checks.
from export.tflite_flops import (
    ELEMENTWISE_FLOPS, MAC_OPS, POOL_OPS, REDUCTION_OPS, TF_DATA_OPS, WAVEFORM,
    ZERO_FLOP_OPS, OpCount, SignatureFlops, count_flops, count_model_flops,
    fft_complex_macs, op_costs, promote_signature, signature_subgraph)
from export.manifest import Manifest
from model.features import FrontendConfig, dft_matrices

__all__ = [
    "MAC_OPS", "ELEMENTWISE_FLOPS", "REDUCTION_OPS", "POOL_OPS",
    "ZERO_FLOP_OPS", "WAVEFORM", "OpCount", "SignatureFlops", "count_flops",
    "count_model_flops", "frontend_macs", "CrossCheck", "cross_check",
    "profiler_flops", "analytic_flops", "signature_subgraph",
    "promote_signature", "op_costs",
]


def frontend_macs(frontend: FrontendConfig, frames: int, *,
                  dft_by_matmul: bool = False) -> int:
  """Analytic MACs of the log-mel front-end for ``frames`` frames.

  Per frame: one real FFT of ``fft_length`` in the convention of this module
  (``4 (n / 2) log2 n`` real MACs) and the mel matmul
  (``(n / 2 + 1) x num_mel_bins``). With ``dft_by_matmul`` (the ``delegate``
  formulation's front-end, :func:`model.features.dft_matrices`): the two DFT
  stages' matmuls, the ``[2 n1, n1]`` matmul that sums ``re^2 + im^2``, and
  the mel matmul over their ``(n2 / 2 + 1) n1`` bins.
  Windowing, magnitude and log are elementwise and not included.
  """
  n = frontend.fft_length
  if dft_by_matmul:
    stage1, stage2, mel = dft_matrices(frontend)
    half, width = stage2.shape[0], stage2.shape[1]
    n1 = width // 2
    per_frame = (n1 * stage1.shape[0] * stage1.shape[1] + half * width ** 2
                 + half * width * n1 + mel.shape[0] * mel.shape[1])
  else:
    per_frame = 4 * fft_complex_macs(n) + (n // 2 + 1) * frontend.num_mel_bins
  return int(round(frames * per_frame))


@dataclasses.dataclass(frozen=True)
class CrossCheck:
  """A file count next to an independent one.

  Attributes:
    signature: Signature key.
    reference: ``tf.profiler`` or ``analytic``.
    file_flops: FLOPs counted from the ``.tflite``.
    reference_flops: The independent count.
    excluded_flops: The file's FLOPs in what the reference does not model
      (ops ``tf.profiler`` has no count for; the front-end and elementwise
      ops for the analytic count).
    explanation: Where the two differ and why.
  """

  signature: str
  reference: str
  file_flops: int
  reference_flops: int
  excluded_flops: int
  explanation: str

  @property
  def difference(self) -> float:
    """``file / reference - 1``."""
    return self.file_flops / self.reference_flops - 1

  @property
  def residual(self) -> float:
    """The difference once :attr:`excluded_flops` are left out."""
    return (self.file_flops - self.excluded_flops) / self.reference_flops - 1


def _model_from_manifest(manifest: Manifest) -> Any:
  """A freshly initialized :class:`SSLModel` of the manifest's architecture."""
  ssl_model = importlib.import_module("model.ssl_model")
  entry = manifest.model
  spec = ssl_model.ModelSpec.from_dict({
      "task": entry.task, "encoder": dict(entry.encoder.config),
      "frontend": dict(entry.frontend), "task_config": dict(entry.task_config),
      "seed": 0})
  return ssl_model.SSLModel(spec)


def _tf_function(manifest: Manifest, signature: str,
                 batch: int) -> Any:
  """The TF concrete function the signature was converted from."""
  tf = importlib.import_module("tensorflow")
  model = _model_from_manifest(manifest)
  if signature == "train":
    ondevice = importlib.import_module("export.ondevice_module")
    optimizers = importlib.import_module("export.optimizers")
    optimizer = optimizers.OptimizerConfig(
        manifest.optimizer.name, **manifest.optimizer.hyperparameters)
    module = ondevice.OnDeviceModule(model, optimizer, manifest.batch_size,
                                     mode=manifest.mode)
    return module.train_function()
  spec = tf.TensorSpec([batch, manifest.model.patch_samples],
                       tf.float32, name=WAVEFORM)
  ops = importlib.import_module("model.ops")
  # Traced as the file's embed signature was (builtin: the delegate
  # formulation, whose front-end is matmuls).
  formulation = ops.EXPORT if manifest.mode == "builtin" else "tf"

  def embed(waveform):
    with ops.formulation(formulation):
      return model.embed_patches(waveform)

  return tf.function(embed).get_concrete_function(spec)


def profiler_flops(manifest: Manifest, signature: str, *,
                   batch: int = 1) -> tuple[int, tuple[str, ...]]:
  """``tf.profiler``'s float-operation count of the signature's TF function.

  Args:
    manifest: The exported model's manifest (architecture, task, optimizer,
      batch).
    signature: ``train`` or ``embed``.
    batch: ``N`` of ``embed``.

  Returns:
    The total, and the arithmetic TF op types the profiler has no FLOP
    count for (e.g. ``RFFT``, ``Relu``).

  Raises:
    ValueError: Another signature.
  """
  if signature not in ("train", "embed"):
    raise ValueError(f"no TF reference function for signature {signature!r}")
  tf = importlib.import_module("tensorflow")
  tf_ops = importlib.import_module("tensorflow.python.framework.ops")
  graph = _tf_function(manifest, signature, batch).graph
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options["output"] = "none"
  total = tf.compat.v1.profiler.profile(graph=graph,
                                        options=options).total_float_ops
  skipped = set()
  for op in graph.get_operations():
    if op.type in TF_DATA_OPS:
      continue
    if tf_ops.get_stats_for_node_def(graph, op.node_def,
                                     "flops").value is None:
      skipped.add(op.type)
  return int(total), tuple(sorted(skipped))


def analytic_flops(manifest: Manifest, signature: str, *,
                   batch: int = 1) -> int:
  """The analytic count: encoder convs + dense only.

  ``embed``: ``2 x EncoderConfig.forward_macs(patch_shape) x N``. ``train``: the
  federated simulation's per-example cost (``tff_sim.costs.CostModel``:
  3 x the encoder's forward FLOPs x patches per example) x ``B``.

  Raises:
    ValueError: Another signature.
  """
  model = _model_from_manifest(manifest)
  if signature == "embed":
    return (2 * model.spec.encoder.forward_macs(model.spec.frontend.patch_shape)
            * batch)
  if signature == "train":
    costs = importlib.import_module("tff_sim.costs")
    return int(costs.CostModel.for_model(model).flops_per_example
               * manifest.batch_size)
  raise ValueError(f"no analytic count for signature {signature!r}")


def _tflite_name(tf_op: str) -> str:
  """TFLite operator name of a TF op type (``FloorDiv`` -> ``FLOOR_DIV``)."""
  special = {"RFFT": "RFFT2D", "Max": "REDUCE_MAX", "Min": "REDUCE_MIN",
             "Prod": "REDUCE_PROD"}
  return special.get(tf_op) or "".join(
      f"_{c}" if c.isupper() and i and not tf_op[i - 1].isupper() else c
      for i, c in enumerate(tf_op)).upper()


def _share(part: float, whole: float) -> str:
  return f"{100 * part / whole:.0f}%"


def cross_check(counted: SignatureFlops, manifest: Manifest, *,
                tolerance: float = 0.10) -> list[CrossCheck]:
  """Compares a file count with ``tf.profiler`` and the analytic count.

  Args:
    counted: The file count of ``train`` or ``embed``.
    manifest: The manifest of the file it was counted from.
    tolerance: Relative difference above which the explanation itemizes the
      gap.

  Returns:
    One :class:`CrossCheck` per reference (empty for other signatures).
  """
  if counted.signature not in ("train", "embed"):
    return []
  batch = counted.examples
  total = counted.flops
  checks = []
  profiled, skipped = profiler_flops(manifest, counted.signature, batch=batch)
  uncounted = counted.op_flops(*(_tflite_name(t) for t in skipped))
  explanation = "tf.profiler counts every arithmetic op"
  if skipped:
    explanation = (f"tf.profiler counts no FLOPs for {', '.join(skipped)} "
                   f"({_share(uncounted, total)} of the file's count)")
  if abs(total / profiled - 1) > tolerance:
    explanation += (f"; without those ops the file counts "
                    f"{(total - uncounted) / profiled - 1:+.1%} (conv bias "
                    f"adds, fused activations and elementwise conventions)")
  checks.append(CrossCheck(counted.signature, "tf.profiler", total, profiled,
                           uncounted, explanation))
  analytic = analytic_flops(manifest, counted.signature, batch=batch)
  frontend = FrontendConfig(**manifest.model.frontend)
  samples = (manifest.model.patch_samples if counted.signature == "embed"
             else manifest.example_samples)
  frontend_flops = 2 * frontend_macs(
      frontend, frontend.num_frames(samples),
      dft_by_matmul=not counted.op_flops("RFFT2D")) * batch
  elementwise = total - 2 * counted.macs
  explanation = ("analytic: encoder convs + dense only"
                 + (", 3 x forward (tff_sim cost model)"
                    if counted.signature == "train" else ""))
  if abs(total / analytic - 1) > tolerance:
    explanation += (
        f"; the file also counts the log-mel front-end "
        f"({_share(frontend_flops, total)}: FFT or DFT matmuls + mel matmul, forward only), "
        f"elementwise, reduction, pooling and bias ops "
        f"({_share(elementwise, total)})")
    if counted.signature == "train":
      other = total - elementwise - frontend_flops - analytic
      explanation += (f" and {_share(other, total)} further multiply-adds "
                      f"(task head forward and backward, gradients beyond "
                      f"2 x forward)")
  checks.append(CrossCheck(counted.signature, "analytic", total, analytic,
                           frontend_flops + elementwise, explanation))
  return checks
