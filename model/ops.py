"""Differentiable ops whose gradients lower to TFLite builtin ops.

TensorFlow's own gradients for Conv2D, ReLU, MaxPool, Softplus, Rsqrt, Sqrt
and nearest-neighbour resize become Select-TF (Flex) ops
(``Conv2DBackpropFilter``, ``ReluGrad``, ``MaxPoolGrad``, ``RsqrtGrad``, ...)
that ``tflite_runtime`` cannot run. The
ops below have custom gradients written with builtin ops only, so one
definition serves centralized training, the federated simulation and the
on-device ``train`` signature. Formulations follow measured fastest variants
(conv filter gradient as a conv with batch and channel roles swapped, ReLU
gradient from the output, a fused ReLU + 2x2 max-pool gradient).

Every op needs static shapes (a static batch) when converted to TFLite.
Callers never strided-slice a differentiable tensor (``StridedSliceGrad`` is
a Flex op): they use ``tf.split``/``tf.reshape``/``tf.squeeze`` instead.

Inside ``with tf_gradients():`` the same ops are built from plain TF ops with
TF's own gradients (the ``flex`` export mode, and the reference that the
custom gradients are checked against).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Iterator

import numpy as np
import tensorflow as tf

__all__ = [
    "conv2d", "conv_pair", "relu", "relu_max_pool2x2", "relu_global_max",
    "dense", "upsample2x", "softplus", "l2_normalize", "statistics_pool",
    "batch_standardize", "FORMULATIONS", "TRAINING", "EXPORT", "formulation",
    "current_formulation", "tf_gradients",
]

#: How the ops are built (chosen at trace time, see :func:`formulation`):
#: ``tf``: plain TF ops with TF's own gradients (fastest in TensorFlow; its
#: gradients need Flex ops in TFLite); ``custom``: TF's forward ops with
#: builtin-only custom gradients (conv gradients as convs); ``delegate``:
#: builtin-only ops that LiteRT's XNNPACK delegate runs: convs and their
#: input gradients as sums over kernel offsets of FULLY_CONNECTED on shifted
#: slices (``[out, in]`` weights; one FULLY_CONNECTED on the patches of a
#: one-channel input), filter gradients per offset as per-example
#: BATCH_MATMULs of channels-first ``x`` with the input gradient's shifted
#: slices of ``dy`` (a first conv: of the patches of ``x``, or one
#: FULLY_CONNECTED), gradient masks from CEIL/SUB/RELU arithmetic instead
#: of EQUAL/CAST/SELECT; the front-end's STFT as a
#: two-stage DFT of matmuls (``model.features``).
FORMULATIONS = ("tf", "custom", "delegate")
#: The formulation of TF-side training (centralized, federated).
TRAINING = "tf"
#: The formulation of builtin-only exports.
EXPORT = "delegate"

_state = threading.local()


@contextlib.contextmanager
def formulation(name: str) -> Iterator[None]:
  """Builds the ops in formulation ``name`` while active (at trace time).

  Args:
    name: One of :data:`FORMULATIONS`.

  Raises:
    ValueError: Unknown name.
  """
  if name not in FORMULATIONS:
    raise ValueError(f"ops.formulation: unknown formulation {name!r}; "
                     f"expected one of {FORMULATIONS}")
  previous = getattr(_state, "formulation", None)
  _state.formulation = name
  try:
    yield
  finally:
    _state.formulation = previous


def current_formulation() -> str:
  """The formulation in effect (:data:`TRAINING` outside any context)."""
  return getattr(_state, "formulation", None) or TRAINING


def tf_gradients() -> contextlib.AbstractContextManager[None]:
  """Builds the ops with TensorFlow's own gradients while active."""
  return formulation("tf")


def _use_tf_gradients() -> bool:
  return current_formulation() == "tf"


def _delegate() -> bool:
  return current_formulation() == "delegate"


def _flip_spatial(kernel: tf.Tensor) -> tf.Tensor:
  """Flips a [kh, kw, ci, co] kernel spatially, one axis at a time.

  A multi-axis ``tf.reverse`` on a variable is silently wrong in TFLite 2.14
  (only the first axis is reversed), so each axis of size > 1 is reversed on
  its own.
  """
  for axis in (0, 1):
    if kernel.shape[axis] > 1:
      kernel = tf.reverse(kernel, [axis])
  return kernel


@tf.custom_gradient
def _conv2d_same(x, kernel):
  y = tf.nn.conv2d(x, kernel, strides=1, padding="SAME")

  def grad(dy):
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    # Input gradient: conv of dy with the flipped kernel, in/out swapped.
    flipped = tf.transpose(_flip_spatial(kernel), [0, 1, 3, 2])
    dx = tf.nn.conv2d(dy, flipped, strides=1, padding="SAME")
    # Filter gradient: one VALID conv with batch and channel roles swapped.
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    xt = tf.transpose(x, [3, 1, 2, 0])  # [ci, h, w, b]
    if ph or pw:
      xt = tf.pad(xt, [[0, 0], [ph, kh - 1 - ph], [pw, kw - 1 - pw], [0, 0]])
    dyt = tf.transpose(dy, [1, 2, 0, 3])  # [h, w, b, co]
    dk = tf.nn.conv2d(xt, dyt, strides=1, padding="VALID")  # [ci, kh, kw, co]
    return dx, tf.transpose(dk, [1, 2, 0, 3])

  return y, grad


def _in_backward_scope(grad: Callable[..., Any]) -> Callable[..., Any]:
  """``grad``, run in the forward op's name scope plus ``backward/``.

  Gradient functions run where the tape's gradient is taken; re-entering the
  forward scope keeps the layer in the names of the exported gradient ops
  (read by ``benchmarks.op_profile``). Wrap at forward time:
  ``return y, _in_backward_scope(grad)``.
  """
  scope = tf.get_current_name_scope()
  name = f"{scope}/backward/" if scope else "backward/"

  def scoped(*dys: tf.Tensor) -> Any:
    with tf.name_scope(name):
      return grad(*dys)

  return scoped


def _offsets(kh: int, kw: int) -> list[tuple[int, int]]:
  return [(i, j) for i in range(kh) for j in range(kw)]


def _fully_connected(x: tf.Tensor, weights_oi: tf.Tensor) -> tf.Tensor:
  """``x @ weights_oi^T``: ``[m, k] x [n, k] -> [m, n]`` as FULLY_CONNECTED.

  XNNPACK runs FULLY_CONNECTED with variable weights (flag 0x08), not
  BATCH_MATMUL on 2.14; the converter keeps ``transpose_b`` matmuls as
  FULLY_CONNECTED when the weights are not a plain transpose of a tensor.
  """
  return tf.matmul(x, weights_oi, transpose_b=True)


def _kernel_oi(kernel: tf.Tensor) -> tf.Tensor:
  """``[kh, kw, ci, co]`` -> ``[co, kh * kw * ci]`` (4-D transpose + reshape)."""
  kh, kw, ci, co = (int(d) for d in kernel.shape)
  return tf.reshape(tf.transpose(kernel, [3, 0, 1, 2]), [co, kh * kw * ci])


def _flip_spatial_slices(kernel: tf.Tensor) -> tf.Tensor:
  """Spatial flip of ``[kh, kw, ci, co]`` from SPLIT + CONCATENATION.

  REVERSE_V2 is neither delegated nor correct on several axes in TFLite 2.14.
  """
  for axis in (0, 1):
    if kernel.shape[axis] > 1:
      parts = tf.split(kernel, int(kernel.shape[axis]), axis=axis)
      kernel = tf.concat(parts[::-1], axis=axis)
  return kernel


def _channels_first_2d(x: tf.Tensor) -> tf.Tensor:
  """``[b, h, w, c]`` or ``[n, c]`` -> ``[c, n]`` through a 4-D transpose."""
  if len(x.shape) == 2:
    x = tf.reshape(x, [1, 1, -1, int(x.shape[-1])])
  return tf.reshape(tf.transpose(x, [3, 0, 1, 2]), [int(x.shape[-1]), -1])


def _im2col_t(x: tf.Tensor, kh: int, kw: int) -> tf.Tensor:
  """``[b, h, w, c]`` -> ``[kh * kw * c, b * h * w]`` SAME patches.

  Channels first: one TRANSPOSE of ``x``, PAD, one SLICE per offset (runs of
  ``w`` or ``h * w`` floats) and a CONCATENATION along the first axis (whole
  blocks), rows ordered as ``reshape(kernel, [kh * kw * c, -1])``. The batch
  may be dynamic.
  """
  _, h, w, c = x.shape
  xt = tf.transpose(x, [3, 0, 1, 2])  # [c, b, h, w]
  if kh == kw == 1:
    return tf.reshape(xt, [c, -1])
  ph, pw = (kh - 1) // 2, (kw - 1) // 2
  xp = tf.pad(xt, [[0, 0], [0, 0], [ph, kh - 1 - ph], [pw, kw - 1 - pw]])
  pieces = [_shifted(xp, [0, 0, i, j], [c, x.shape[0], h, w]) for i, j in
            _offsets(kh, kw)]
  return tf.reshape(tf.concat(pieces, axis=0), [kh * kw * c, -1])


def _im2col_per_example(x: tf.Tensor, kh: int, kw: int) -> tf.Tensor:
  """``[b, h, w, c]`` -> ``[b, kh * kw * c, h * w]`` SAME patches per example.

  Channels first within each example: one TRANSPOSE of ``x`` (a RESHAPE for
  one channel), PAD, one SLICE per offset (the centre offset is ``x``
  itself) and a CONCATENATION along the channels (runs of ``h * w``
  floats), rows ordered as ``reshape(kernel, [kh * kw * c, -1])``. The
  batch may be dynamic.
  """
  _, h, w, c = x.shape
  batch = x.shape[0] if x.shape[0] is not None else -1
  if c == 1:
    xt = tf.reshape(x, [batch, 1, h, w])
  else:
    xt = tf.transpose(x, [0, 3, 1, 2])  # [b, c, h, w]
  ph, pw = (kh - 1) // 2, (kw - 1) // 2
  if kh > 1 or kw > 1:
    xp = tf.pad(xt, [[0, 0], [0, 0], [ph, kh - 1 - ph], [pw, kw - 1 - pw]])
    xt = tf.concat([xt if (i, j) == (ph, pw) else
                    _shifted(xp, [0, 0, i, j], [x.shape[0], c, h, w])
                    for i, j in _offsets(kh, kw)], axis=1)
  return tf.reshape(xt, [batch, kh * kw * c, h * w])


def _filter_gradient(x: tf.Tensor, dy: tf.Tensor, dy_slices: list[tf.Tensor],
                     kh: int, kw: int) -> tf.Tensor:
  """Gradient of a SAME conv's filter, ``[kh * kw * ci, co]``.

  ``dy_slices``: :func:`_offset_slices` of ``dy`` (those of the input
  gradient). Per-example BATCH_MATMULs with ``dy`` in its own layout (no
  transpose of ``dy``; each example's block fits in cache), then a SUM
  over the batch:

  * Patches of ``x`` wider than ``dy`` (``kh * kw * ci > co``) of a
    several-channel ``x`` (every conv but a first one): one product per
    offset of the channels-first ``x``, ``[ci, h * w] x [h * w, co]``,
    with the input gradient's slice of ``dy`` for the mirrored offset (no
    patches of ``x`` at all).
  * Otherwise (a thin input whose input gradient is not needed: the
    slices of ``dy`` would be made for this alone), one product of the
    per-example channels-first patches of ``x``,
    ``[kh * kw * ci, h * w] x [h * w, co]``, if the map is large and
    ``dy`` wide (``h * w > kh * kw * ci``, ``co >= 32``); else one
    FULLY_CONNECTED over all positions, ``[kh * kw * ci, n] x [co, n]``
    (channels-first patches of ``x``, the transposed ``dy`` as the
    weights).

  Measured under LiteRT on batch-64 maps, the filter gradient alone
  (slices of ``dy`` given) vs one FULLY_CONNECTED: 96x64 with 32 channels
  81 -> 28 ms, 24x16 with 128 38 -> 14 ms, 12x8 with 256 30 -> 12 ms,
  96x64 with 8 21 -> 12 ms; the first conv (1 -> 32 channels, 96x64)
  26 -> 7 ms with the patches of ``x``, but 7 -> 9 ms with 8 channels.
  tflite-runtime 2.14's XNNPACK has no BATCH_MATMUL: there these run in
  its own kernel.
  """
  _, h, w, ci = x.shape
  co = int(dy.shape[-1])
  batch = x.shape[0] if x.shape[0] is not None else -1
  if ci > 1 and kh * kw * ci > co:
    # dk[offset] = sum_m x[m + offset - centre] dy[m]
    #            = sum_m x[m] dy[m + centre - offset]: the mirrored slice.
    xt = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [batch, ci, h * w])
    return tf.concat([
        tf.reduce_sum(tf.matmul(xt, tf.reshape(piece, [batch, h * w, co])),
                      axis=0) for piece in dy_slices[::-1]], axis=0)
  if co >= 32 and h * w > kh * kw * ci:
    patches = _im2col_per_example(x, kh, kw)
    return tf.reduce_sum(
        tf.matmul(patches, tf.reshape(dy, [batch, h * w, co])), axis=0)
  return _fully_connected(_im2col_t(x, kh, kw), _channels_first_2d(dy))


def _offset_slices(x: tf.Tensor, kh: int, kw: int) -> list[tf.Tensor]:
  """The SAME-padded ``x`` ``[b, h, w, c]`` shifted by every kernel offset.

  ``kh * kw`` tensors ``[b, h, w, c]`` in offset order: one PAD, one SLICE
  per offset but the centre (runs of ``w * c`` or ``h * w * c`` floats; a
  one-channel ``x`` is padded as ``[b, h, w]``). The batch may be dynamic.
  """
  _, h, w, c = x.shape
  if kh == kw == 1:
    return [x]
  ph, pw = (kh - 1) // 2, (kw - 1) // 2
  batch = x.shape[0] if x.shape[0] is not None else -1
  if c == 1:
    xp = tf.reshape(tf.pad(tf.reshape(x, [batch, h, w]),
                           [[0, 0], [ph, kh - 1 - ph], [pw, kw - 1 - pw]]),
                    [batch, h + kh - 1, w + kw - 1, 1])
  else:
    xp = tf.pad(x, [[0, 0], [ph, kh - 1 - ph], [pw, kw - 1 - pw], [0, 0]])
  # The centre offset is x itself.
  return [x if (i, j) == (ph, pw) else
          _shifted(xp, [0, i, j, 0], [x.shape[0], h, w, c])
          for i, j in _offsets(kh, kw)]


def _sum_of_products(slices: list[tf.Tensor],
                     weights_oi: tf.Tensor) -> tf.Tensor:
  """SAME conv from :func:`_offset_slices`: ``[b * h * w, co]``.

  ``weights_oi``: ``[co, kh * kw * ci]`` (offset-major). A sum over
  offsets of FULLY_CONNECTED on the shifted slices (each moves runs of
  ``w * ci`` or ``h * w * ci`` floats, where im2col's CONCATENATION along
  channels moves runs of ``ci`` floats). One channel: one
  FULLY_CONNECTED on the ``kh * kw`` columns (an im2col as small as the
  input times ``kh * kw``; a sum would write ``kh * kw`` outputs of
  ``[b * h * w, co]`` and add them up).
  """
  c = int(slices[0].shape[-1])
  if c == 1 and len(slices) > 1:
    columns = tf.concat(slices, axis=-1)
    return _fully_connected(tf.reshape(columns, [-1, len(slices)]),
                            weights_oi)
  parts = tf.split(weights_oi, len(slices), axis=1)
  y = None
  for piece, part in zip(slices, parts):
    term = _fully_connected(tf.reshape(piece, [-1, c]), part)
    y = term if y is None else y + term
  return y


def _shifted(x: tf.Tensor, begin: list[int], size: list) -> tf.Tensor:
  """``x[begin : begin + size]``; a ``None`` or ``-1`` size is the rest of
  the axis (the dynamic batch).

  With a fully known size this is a SLICE (XNNPACK takes SLICE only with a
  known size); with a dynamic batch a STRIDED_SLICE, whose output
  tflite-runtime sizes when the graph is prepared (a SLICE with a ``-1``
  size gets a dynamic-sized output there, which keeps tflite-runtime's
  XNNPACK delegate off the whole file).
  """
  if all(d is not None and d >= 0 for d in size):
    return tf.slice(x, begin, size)
  return x[tuple(slice(b, None if d is None or d < 0 else b + d)
                 for b, d in zip(begin, size))]


def _one_channel_patches(x: tf.Tensor, kh: int, kw: int) -> tf.Tensor:
  """SAME patches of a one-channel ``[b, h, w, 1]``: ``[b * h * w, kh * kw]``.

  Columns in offset order, from two CONCATENATIONs along the last axis:
  the ``kw`` column shifts of the padded map (single floats, over
  ``h + kh - 1`` rows), then ``kh`` row shifts of that (runs of ``kw``
  floats). One CONCATENATION of ``kh * kw`` inputs is not delegated (14 vs
  about 4 ms on a batch-64 96x64 map under LiteRT).
  """
  _, h, w, _ = x.shape
  batch = x.shape[0] if x.shape[0] is not None else -1
  ph, pw = (kh - 1) // 2, (kw - 1) // 2
  xp = tf.reshape(tf.pad(tf.reshape(x, [batch, h, w]),
                         [[0, 0], [ph, kh - 1 - ph], [pw, kw - 1 - pw]]),
                  [batch, h + kh - 1, w + kw - 1, 1])
  columns = tf.concat([_shifted(xp, [0, 0, j, 0],
                                [x.shape[0], h + kh - 1, w, 1])
                       for j in range(kw)], axis=-1)
  rows = tf.concat([_shifted(columns, [0, i, 0, 0], [x.shape[0], h, w, kw])
                    for i in range(kh)], axis=-1)
  return tf.reshape(rows, [-1, kh * kw])


def _one_channel_output(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
  """SAME conv of ``[b, h, w, ci]`` to one channel: ``[b * h * w, 1]``.

  One FULLY_CONNECTED gives every offset's product at every position,
  ``[b * h * w, kh * kw]`` (reading ``x`` once); the output sums those
  maps shifted by their offsets (TRANSPOSE to ``[kh * kw, b, h, w]``, PAD,
  one SLICE and ADD per offset on one-channel maps) instead of shifting
  ``x`` itself ``kh * kw - 1`` times.
  """
  _, h, w, ci = x.shape
  kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
  batch = x.shape[0] if x.shape[0] is not None else -1
  taps = kh * kw
  products = _fully_connected(tf.reshape(x, [-1, ci]),
                              tf.reshape(_kernel_oi(kernel), [taps, ci]))
  maps = tf.transpose(tf.reshape(products, [batch, h, w, taps]), [3, 0, 1, 2])
  ph, pw = (kh - 1) // 2, (kw - 1) // 2
  padded = tf.pad(maps, [[0, 0], [0, 0], [ph, kh - 1 - ph],
                         [pw, kw - 1 - pw]])
  # y[t, f] = sum over offsets (i, j) of products_ij[t + i - ph, f + j - pw].
  y = None
  for o, (i, j) in enumerate(_offsets(kh, kw)):
    term = _shifted(padded, [o, 0, i, j], [1, x.shape[0], h, w])
    y = term if y is None else y + term
  return tf.reshape(y, [-1, 1])


def _one_channel_output_gradients(x: tf.Tensor, dy: tf.Tensor,
                                  flipped: tf.Tensor, kh: int, kw: int
                                  ) -> tuple[tf.Tensor, tf.Tensor]:
  """Input and filter gradients of a SAME conv with one output channel.

  Both from the patches of the one-channel ``dy``, ``[n, kh * kw]``
  (:func:`_one_channel_patches`): the input gradient is one
  FULLY_CONNECTED with the flipped kernel ``[ci, kh * kw]``; the filter
  gradient one per-example BATCH_MATMUL of the channels-first ``x``,
  ``[ci, h * w] x [h * w, kh * kw]`` (offset ``o`` of the kernel pairs
  with the mirrored column), instead of ``kh * kw`` products that each
  read ``x``.
  """
  _, h, w, ci = x.shape
  batch = x.shape[0] if x.shape[0] is not None else -1
  taps = kh * kw
  patches = _one_channel_patches(dy, kh, kw)
  dx = tf.reshape(_fully_connected(patches, flipped), [-1, h, w, ci])
  xt = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [batch, ci, h * w])
  products = tf.reduce_sum(
      tf.matmul(xt, tf.reshape(patches, [batch, h * w, taps])), axis=0)
  mirrored = tf.split(tf.transpose(products), taps, axis=0)[::-1]
  return dx, tf.reshape(tf.concat(mirrored, axis=0), [kh, kw, ci, 1])


@tf.custom_gradient
def _conv2d_shifted(x, kernel):
  _, h, w, _ = x.shape
  kh, kw, ci, co = (int(d) for d in kernel.shape)
  if ci == 1 and kh > 1 and kw > 1:
    y = _fully_connected(_one_channel_patches(x, kh, kw), _kernel_oi(kernel))
  elif co == 1 and kh > 1 and kw > 1:
    y = _one_channel_output(x, kernel)
  else:
    y = _sum_of_products(_offset_slices(x, kh, kw), _kernel_oi(kernel))
  y = tf.reshape(y, [-1, h, w, co])

  def grad(dy):
    # Input gradient: the same shifted sum over dy with the flipped kernel,
    # in/out swapped: [ci, kh * kw * co] weights.
    flipped = _kernel_oi(tf.transpose(_flip_spatial_slices(kernel),
                                      [0, 1, 3, 2]))
    if co == 1 and kh > 1 and kw > 1:
      return _one_channel_output_gradients(x, dy, flipped, kh, kw)
    dy_slices = _offset_slices(dy, kh, kw)
    dx = tf.reshape(_sum_of_products(dy_slices, flipped), [-1, h, w, ci])
    dk = tf.reshape(_filter_gradient(x, dy, dy_slices, kh, kw),
                    [kh, kw, ci, co])
    return dx, dk

  return y, _in_backward_scope(grad)


def conv2d(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor) -> tf.Tensor:
  """Stride-1 SAME convolution plus bias, with builtin-only gradients.

  Args:
    x: ``[batch, height, width, in_channels]``.
    kernel: ``[kh, kw, in_channels, out_channels]`` with odd ``kh``, ``kw``.
    bias: ``[out_channels]``.

  Returns:
    ``[batch, height, width, out_channels]``.
  """
  if kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
    raise ValueError(f"conv2d: kernel must have odd spatial size, got "
                     f"{kernel.shape[:2]}")
  return _conv_no_bias(x, kernel) + bias


def _conv_no_bias(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
  """Stride-1 SAME convolution in the current formulation."""
  if _use_tf_gradients():
    return tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
  if _delegate():
    return _conv2d_shifted(x, kernel)
  return _conv2d_same(x, kernel)


def conv_pair(x: tf.Tensor, first: tf.Tensor, first_bias: tf.Tensor,
              second: tf.Tensor, second_bias: tf.Tensor, *,
              scopes: tuple[str, str] = ("first", "second")) -> tf.Tensor:
  """``conv2d(conv2d(x, first, first_bias), second, second_bias)``.

  Two stride-1 SAME convolutions with no activation between them (an
  encoder block's 1xk and kx1 convs). In every formulation, a
  one-channel ``x`` under a ``1 x kw`` then a ``kh x 1`` kernel is computed
  as one ``kh x kw`` convolution of ``x`` with the composed kernel
  ``K[i, j] = first[0, j] @ second[i, 0]`` (``kh * kw * co``
  multiply-accumulates per position instead of ``kw * m + kh * m * co``,
  and no intermediate map: no input gradient of the second conv, no filter
  gradient over it), plus a per-row bias: ``second_bias`` and
  ``first_bias @ second[i, 0]`` summed over the taps ``i`` that fall inside
  the map (the second conv zero-pads the first one's output, bias
  included, at the top and bottom rows). The same function, weights and
  gradients (up to rounding) as the two convs, which every other case
  builds; composing it in TF too keeps centralized and federated training,
  the flex export and the builtin export on the same arithmetic (and makes
  TF's step faster: 288 instead of 3,168 multiply-accumulates per position
  for the ``large`` encoder's first block).

  Args:
    x: ``[batch, height, width, in_channels]``.
    first: ``[kh1, kw1, in_channels, mid_channels]`` kernel (odd sizes).
    first_bias: ``[mid_channels]``.
    second: ``[kh2, kw2, mid_channels, out_channels]`` kernel (odd sizes).
    second_bias: ``[out_channels]``.
    scopes: Name scopes of the two convs (names of the exported ops); the
      composed conv takes ``"<first>_<second>"``.

  Returns:
    ``[batch, height, width, out_channels]``.
  """
  if (x.shape[-1] == 1 and first.shape[0] == 1 and second.shape[1] == 1
      and first.shape[1] % 2 and second.shape[0] % 2):
    with tf.name_scope(f"{scopes[0]}_{scopes[1]}"):
      return _composed_pair(x, first, first_bias, second, second_bias)
  with tf.name_scope(scopes[0]):
    x = conv2d(x, first, first_bias)
  with tf.name_scope(scopes[1]):
    return conv2d(x, second, second_bias)


def _composed_pair(x: tf.Tensor, first: tf.Tensor, first_bias: tf.Tensor,
                   second: tf.Tensor, second_bias: tf.Tensor) -> tf.Tensor:
  """:func:`conv_pair` of a one-channel ``x``, ``1 x kw`` then ``kh x 1``,
  as one ``kh x kw`` conv and a per-row bias (small weight-side ops with
  TF's own, builtin, gradients)."""
  height = int(x.shape[1])
  kw, mid = int(first.shape[1]), int(first.shape[3])
  kh, co = int(second.shape[0]), int(second.shape[3])
  taps = [tf.reshape(t, [mid, co]) for t in tf.split(second, kh, axis=0)]
  first_2d = tf.reshape(first, [kw, mid])
  kernel = tf.reshape(tf.concat([tf.matmul(first_2d, t) for t in taps],
                                axis=0), [kh, kw, 1, co])
  # Tap i of the second conv reads row t + i - ph of the first's output:
  # zero padding (no bias) outside the map.
  tap_bias = [tf.matmul(tf.reshape(first_bias, [1, mid]), t) for t in taps]
  ph = (kh - 1) // 2
  rows = tf.reshape(second_bias, [1, co])
  for i, bias in enumerate(tap_bias):
    inside = np.array([[1.0 if 0 <= t + i - ph < height else 0.0]
                       for t in range(height)], np.float32)
    rows = rows + (bias if inside.all() else tf.constant(inside) * bias)
  return _conv_no_bias(x, kernel) + tf.reshape(rows, [1, -1, 1, co])


@tf.custom_gradient
def _relu(x):
  y = tf.nn.relu(x)
  return y, lambda dy: dy * tf.sign(y)


def _positive(y: tf.Tensor) -> tf.Tensor:
  """1 where ``y > 0``, 0 where ``y == 0``, for ``y >= 0`` (MINIMUM, CEIL)."""
  return tf.minimum(tf.math.ceil(y), 1.0)


def _is_max(x: tf.Tensor, window_max: tf.Tensor) -> tf.Tensor:
  """1 where ``x == window_max`` (``x <= window_max``) from delegable ops.

  ``relu(1 - ceil(max - x))``: SUB, CEIL and a SUB with a fused ReLU.
  """
  return tf.nn.relu(1.0 - tf.math.ceil(window_max - x))


@tf.custom_gradient
def _relu_arith(x):
  y = tf.nn.relu(x)
  return y, _in_backward_scope(lambda dy: dy * _positive(y))


def relu(x: tf.Tensor) -> tf.Tensor:
  """ReLU whose gradient ``dy * [y > 0]`` is computed from the output."""
  if _use_tf_gradients():
    return tf.nn.relu(x)
  return _relu_arith(x) if _delegate() else _relu(x)


def _upsample_nearest(x: tf.Tensor) -> tf.Tensor:
  height, width = int(x.shape[1]), int(x.shape[2])
  return tf.image.resize(x, [2 * height, 2 * width], method="nearest")


def relu_max_pool2x2(x: tf.Tensor) -> tf.Tensor:
  """``max_pool2x2(relu(x))`` with a fused, builtin-only gradient.

  The gradient routes ``dy`` to the position(s) that hold the maximum of each
  window (``equal(x, up(y))``), and to none where the window is all negative.
  Height and width of ``x`` must be even.
  """
  if x.shape[1] % 2 or x.shape[2] % 2:
    raise ValueError(f"relu_max_pool2x2: height and width must be even, "
                     f"got {x.shape}")
  if _use_tf_gradients():
    return tf.nn.max_pool2d(tf.nn.relu(x), ksize=2, strides=2, padding="VALID")
  if _delegate():
    return _relu_max_pool2x2_arith(x)
  return _relu_max_pool2x2(x)


@tf.custom_gradient
def _relu_max_pool2x2_arith(x):
  # Pool, then ReLU on the pooled map (the same values, a quarter of the
  # ReLU's work).
  y = tf.nn.relu(tf.nn.max_pool2d(x, ksize=2, strides=2, padding="VALID"))

  def grad(dy):
    # Window pairs in the last axis keep every tensor 4-D: x as
    # [b * h / 2, 2, w / 2, 2 * c], the pooled values broadcast over axis 1.
    _, h, w, c = x.shape
    pairs = tf.reshape(x, [-1, 2, w // 2, 2 * c])
    up = lambda t: tf.concat([tf.reshape(t, [-1, 1, w // 2, c])] * 2, axis=-1)
    routed = _is_max(pairs, up(y)) * up(dy * _positive(y))
    return tf.reshape(routed, [-1, h, w, c])

  return y, _in_backward_scope(grad)


@tf.custom_gradient
def _relu_max_pool2x2(x):
  y = tf.nn.max_pool2d(tf.nn.relu(x), ksize=2, strides=2, padding="VALID")

  def grad(dy):
    mask = tf.cast(tf.equal(x, _upsample_nearest(y)), x.dtype)
    return mask * _upsample_nearest(dy * tf.sign(y))

  return y, grad


def relu_global_max(x: tf.Tensor) -> tf.Tensor:
  """``reduce_max(relu(x), axis=[1, 2])``: [b, h, w, c] -> [b, c]."""
  if _use_tf_gradients():
    return tf.reduce_max(tf.nn.relu(x), axis=[1, 2])
  if _delegate():
    return _relu_global_max_arith(x)
  return _relu_global_max(x)


@tf.custom_gradient
def _relu_global_max_arith(x):
  y = tf.nn.relu(tf.reduce_max(x, axis=[1, 2]))

  def grad(dy):
    y4 = y[:, tf.newaxis, tf.newaxis, :]
    return _is_max(x, y4) * (dy * _positive(y))[:, tf.newaxis, tf.newaxis, :]

  return y, _in_backward_scope(grad)


@tf.custom_gradient
def _relu_global_max(x):
  y = tf.reduce_max(tf.nn.relu(x), axis=[1, 2])

  def grad(dy):
    y4 = y[:, tf.newaxis, tf.newaxis, :]
    mask = tf.cast(tf.equal(x, y4), x.dtype)
    return mask * (dy * tf.sign(y))[:, tf.newaxis, tf.newaxis, :]

  return y, grad


def dense(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor) -> tf.Tensor:
  """``x @ kernel + bias`` (TF's own gradients are builtin: MatMul, Sum).

  In the ``delegate`` formulation every matmul of the step, forward and
  gradients, is a FULLY_CONNECTED with ``[out, in]`` weights.
  """
  if _delegate():
    return _dense_fc(x, kernel) + bias
  return tf.matmul(x, kernel) + bias


@tf.custom_gradient
def _dense_fc(x, kernel):
  y = _fully_connected(x, _channels_first_2d(kernel))

  def grad(dy):
    dx = _fully_connected(dy, kernel)
    dk = _fully_connected(_channels_first_2d(x), _channels_first_2d(dy))
    return dx, dk

  return y, _in_backward_scope(grad)


def upsample2x(x: tf.Tensor) -> tf.Tensor:
  """Nearest-neighbour x2 upsampling of [b, h, w, c]; gradient = 2x2 sum-pool."""
  if _use_tf_gradients():
    return _upsample_nearest(x)
  return _upsample2x(x)


@tf.custom_gradient
def _upsample2x(x):
  def grad(dy):
    return 4.0 * tf.nn.avg_pool2d(dy, ksize=2, strides=2, padding="VALID")
  return _upsample_nearest(x), _in_backward_scope(grad)


def softplus(x: tf.Tensor) -> tf.Tensor:
  """``log(1 + exp(x))``, stable, with gradient ``sigmoid(x)``."""
  return tf.nn.softplus(x) if _use_tf_gradients() else _softplus(x)


@tf.custom_gradient
def _softplus(x):
  y = tf.maximum(x, 0.0) + tf.math.log(1.0 + tf.exp(-tf.abs(x)))
  return y, lambda dy: dy * tf.sigmoid(x)


def l2_normalize(x: tf.Tensor, epsilon: float = 1e-12) -> tf.Tensor:
  """Normalizes the last axis to unit L2 norm (builtin-only gradient)."""
  if _use_tf_gradients():
    return tf.math.l2_normalize(x, axis=-1, epsilon=epsilon)

  @tf.custom_gradient
  def _normalize(v):
    inv_norm = tf.math.rsqrt(tf.reduce_sum(v * v, axis=-1, keepdims=True)
                             + epsilon)
    y = v * inv_norm

    def grad(dy):
      return inv_norm * (dy - y * tf.reduce_sum(dy * y, axis=-1, keepdims=True))

    return y, grad

  return _normalize(x)


_STATS_EPSILON = 1e-5


def statistics_pool(x: tf.Tensor) -> tf.Tensor:
  """Mean and standard deviation over height and width, per channel.

  ``[b, h, w, c] -> [b, 2c]`` (means, then stds); the std is
  ``sqrt(var + 1e-5)``. The gradient, ``dmean / n + dstd * (x - mean) /
  (n * std)``, uses builtin ops only (TF's ``SqrtGrad`` would be Flex).
  """
  if _use_tf_gradients():
    mean, variance = tf.nn.moments(x, axes=[1, 2])
    return tf.concat([mean, tf.sqrt(variance + _STATS_EPSILON)], axis=-1)
  return _statistics_pool(x)


@tf.custom_gradient
def _statistics_pool(x):
  count = float(int(x.shape[1]) * int(x.shape[2]))
  mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
  centered = x - mean
  std = tf.sqrt(tf.reduce_mean(centered * centered, axis=[1, 2],
                               keepdims=True) + _STATS_EPSILON)
  channels = int(x.shape[3])
  y = tf.concat([tf.reshape(mean, [-1, channels]),
                 tf.reshape(std, [-1, channels])], axis=-1)

  def grad(dy):
    d_mean, d_std = tf.split(dy, 2, axis=-1)
    d_mean = tf.reshape(d_mean, [-1, 1, 1, channels])
    d_std = tf.reshape(d_std, [-1, 1, 1, channels])
    return (d_mean + d_std * centered / std) / count

  return y, grad
def batch_standardize(x: tf.Tensor, epsilon: float = 1e-5) -> tf.Tensor:
  """Standardizes every column of ``[batch, dim]`` over the batch.

  ``(x - mean) / sqrt(var + epsilon)`` with the biased (1/batch) variance:
  batch normalization in training mode without scale, shift or running
  statistics. TF's gradient of ``rsqrt`` is a Flex op; this one is the
  closed form ``inv_std * (dy - mean(dy) - y * mean(dy * y))``. A column that
  is constant over the batch (e.g. batch 1) maps to zeros with zero gradient.

  Args:
    x: float32 ``[batch, dim]`` (static batch when exported).
    epsilon: Added to the variance.

  Returns:
    ``[batch, dim]``.
  """
  if _use_tf_gradients():
    mean, variance = tf.nn.moments(x, axes=[0], keepdims=True)
    return (x - mean) * tf.math.rsqrt(variance + epsilon)

  @tf.custom_gradient
  def _standardize(v):
    centered = v - tf.reduce_mean(v, axis=0, keepdims=True)
    inv_std = tf.math.rsqrt(
        tf.reduce_mean(centered * centered, axis=0, keepdims=True) + epsilon)
    y = centered * inv_std

    def grad(dy):
      return inv_std * (dy - tf.reduce_mean(dy, axis=0, keepdims=True)
                        - y * tf.reduce_mean(dy * y, axis=0, keepdims=True))

    return y, grad

  return _standardize(x)
