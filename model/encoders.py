"""Small convolutional audio encoders (Tagliasacchi et al., "Pre-training audio
representations with self-supervision", IEEE SPL 2020).

Each block is a 1x3 conv, a 3x1 conv, ReLU and 2x2 max-pool; channels are
8-16-32-64 times a width multiplier; a global max-pool over time-frequency and
a dense layer give the embedding. No batch normalization: it does not fit
on-device training (batch statistics, train/eval modes) or non-IID federated
averaging. All ops come from :mod:`model.ops`, so training steps convert to
TFLite builtin ops.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from model import ops
from model.errors import WeightsMismatchError
from model.modules import WeightModule
from model.saved_model import OUTDATED_HINT, weight_differences

__all__ = ["EncoderConfig", "ENCODERS", "POOLINGS", "Encoder", "FrozenEncoder",
           "encode", "glorot_uniform", "pool_features"]

#: Pooling of the last block's feature map into one vector, and the number
#: of values per channel it gives: global max (the paper's); statistics
#: pooling (mean and std, as in x-vectors: keeps the clip statistics that
#: speaker identity lives in); both concatenated.
POOLINGS: dict[str, int] = {"max": 1, "stats": 2, "max_stats": 3}


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """Architecture of a conv encoder.

  The weights do not depend on the input's size (the last feature map is
  pooled globally), so the config holds no input shape: the patch shape is
  the front-end's (``FrontendConfig.patch_shape``) and is passed to what
  needs it (:meth:`check_patch_shape`, :meth:`forward_macs`).

  Attributes:
    name: Preset name (informational).
    width: Channel multiplier applied to ``base_channels``.
    base_channels: Output channels of each block at width 1.
    embedding_dim: Size of the output embedding.
    pooling: Key of :data:`POOLINGS`: how the last feature map becomes a
      vector before the embedding layer.
  """

  name: str = "small"
  width: float = 1.0
  base_channels: tuple[int, ...] = (8, 16, 32, 64)
  embedding_dim: int = 128
  pooling: str = "max"

  def __post_init__(self):
    object.__setattr__(self, "base_channels", tuple(self.base_channels))
    if self.pooling not in POOLINGS:
      raise ValueError(f"EncoderConfig {self.name!r}: unknown pooling "
                       f"{self.pooling!r}; expected one of {sorted(POOLINGS)}")
    if not self.base_channels:
      raise ValueError(f"EncoderConfig {self.name!r}: base_channels is empty")
    if self.width <= 0 or self.embedding_dim <= 0:
      raise ValueError(f"EncoderConfig {self.name!r}: width and embedding_dim "
                       f"must be positive")

  @property
  def downsampling(self) -> int:
    """Factor by which the 2x2 pools shrink each axis of the input."""
    return 2 ** (len(self.base_channels) - 1)

  def check_patch_shape(self, patch_shape: Sequence[Optional[int]], *,
                        source: str = "patch shape") -> None:
    """Raises ValueError unless the encoder can take patches of this shape.

    Args:
      patch_shape: ``(frames, bins)`` of one patch (static sizes).
      source: What has that shape (quoted in the error).

    Raises:
      ValueError: A size is unknown, not positive or not divisible by
        :attr:`downsampling`; the message names the shape and the factor.
    """
    pools = self.downsampling
    shape = tuple(patch_shape)
    if len(shape) != 2 or any(n is None or n <= 0 or n % pools
                              for n in shape):
      raise ValueError(
          f"encoder {self.name!r} ({len(self.base_channels)} blocks) needs "
          f"patches [n, frames, bins] with static frames and bins divisible "
          f"by {pools}; got {source} {list(shape)}")

  @property
  def channels(self) -> tuple[int, ...]:
    """Output channels of each block."""
    return tuple(max(1, int(round(c * self.width))) for c in self.base_channels)

  @property
  def pooled_dim(self) -> int:
    """Size of the pooled vector fed to the embedding layer."""
    return POOLINGS[self.pooling] * self.channels[-1]

  def layer_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of every weight, in a fixed order."""
    shapes = []
    cin = 1
    for i, cout in enumerate(self.channels):
      shapes += [(f"block{i}/conv_1x3/kernel", (1, 3, cin, cout)),
                 (f"block{i}/conv_1x3/bias", (cout,)),
                 (f"block{i}/conv_3x1/kernel", (3, 1, cout, cout)),
                 (f"block{i}/conv_3x1/bias", (cout,))]
      cin = cout
    shapes += [("embedding/kernel", (self.pooled_dim, self.embedding_dim)),
               ("embedding/bias", (self.embedding_dim,))]
    return shapes

  @property
  def num_params(self) -> int:
    return sum(math.prod(s) for _, s in self.layer_shapes())

  def forward_macs(self, patch_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass on one patch (convs + dense).

    As computed: the first block's 1x3 and 3x1 convs of the one-channel
    patch are one composed 3x3 conv (:func:`model.ops.conv_pair`), ``9 *
    cout`` per position instead of ``3 * cout + 3 * cout * cout``.

    Args:
      patch_shape: ``(frames, bins)`` of the patch
        (``FrontendConfig.patch_shape``).
    """
    self.check_patch_shape(patch_shape)
    macs = 0
    (height, width), cin = patch_shape, 1
    for i, cout in enumerate(self.channels):
      if cin == 1:
        macs += height * width * 9 * cout     # composed 3x3 conv
      else:
        macs += height * width * 3 * cin * cout   # 1x3 conv
        macs += height * width * 3 * cout * cout  # 3x1 conv
      cin = cout
      if i < len(self.channels) - 1:
        height, width = height // 2, width // 2
    return macs + self.pooled_dim * self.embedding_dim

  def forward_mflops(self, patch_shape: Sequence[int]) -> float:
    """Forward MFLOPs per patch (2 FLOPs per multiply-accumulate)."""
    return 2 * self.forward_macs(patch_shape) / 1e6


#: Named presets. ``small`` is the paper's encoder; ``large`` is 4x wider.
ENCODERS: dict[str, EncoderConfig] = {
    "tiny": EncoderConfig(name="tiny", width=0.5, embedding_dim=32),
    "small": EncoderConfig(name="small", width=1.0, embedding_dim=128),
    "medium": EncoderConfig(name="medium", width=2.0, embedding_dim=128),
    "large": EncoderConfig(name="large", width=4.0, embedding_dim=128),
}


def glorot_uniform(shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
  """Glorot-uniform initial values for a dense or conv kernel."""
  receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
  fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
  limit = math.sqrt(6.0 / (fan_in + fan_out))
  return rng.uniform(-limit, limit, size=shape).astype(np.float32)


class Encoder(WeightModule):
  """The conv encoder: log-mel patches ``[n, frames, bins]`` -> ``[n, dim]``.

  Weights are plain ``tf.Variable``s in the fixed order of
  :meth:`EncoderConfig.layer_shapes` (``self.weights``), so the federated
  simulation and the exported model address them by position and name.
  """

  def __init__(self, config: EncoderConfig, *, seed: int = 0,
               name: str = "encoder"):
    super().__init__(name=name)
    self.config = config
    rng = np.random.default_rng(seed)
    for weight_name, shape in config.layer_shapes():
      self.add_weight(weight_name,
                      glorot_uniform(shape, rng) if weight_name.endswith("kernel")
                      else np.zeros(shape, np.float32))

  def __call__(self, patches: tf.Tensor) -> tf.Tensor:
    """Embeds patches.

    Args:
      patches: float32 ``[n, patch_frames, num_mel_bins]`` log-mel.

    Returns:
      float32 ``[n, embedding_dim]``.
    """
    return encode(self.config, self.params(), patches)


class FrozenEncoder:
  """An encoder with constant weights (e.g. a distillation teacher).

  Its weights are graph constants, not variables: nothing trains them, and a
  TFF ``model_fn`` or an exported ``.tflite`` carries them as data.
  """

  def __init__(self, config: EncoderConfig,
               weights: Mapping[str, np.ndarray], *, name: str = "encoder",
               source: str = "weights"):
    """Checks and keeps the weights.

    Args:
      config: Architecture.
      weights: Arrays by weight name (``<name>/<layer>/kernel``...); extra
        entries (e.g. a task head) are ignored.
      name: Prefix of the encoder's weight names.
      source: Where the weights came from (quoted in errors).

    Raises:
      WeightsMismatchError: (a ``ValueError``) Weights are missing or
        misshapen (the message lists each, expected vs saved, and what to
        do).
      ValueError: A weight is not finite.
    """
    self.config = config
    self.values = []
    shapes = {f"{name}/{layer}": tuple(shape)
              for layer, shape in config.layer_shapes()}
    differences = weight_differences(shapes, weights, allow_extra=True)
    if differences:
      raise WeightsMismatchError(
          f"{source}: the saved encoder weights do not fit encoder "
          f"{config.name!r} as this version builds it: "
          + "; ".join(differences) + f". {OUTDATED_HINT}")
    for key in shapes:
      value = np.asarray(weights[key], np.float32)
      if not np.all(np.isfinite(value)):
        raise ValueError(f"{source}: weight {key!r} is not finite")
      self.values.append(value)

  def __call__(self, patches: tf.Tensor) -> tf.Tensor:
    """Embeds ``[n, frames, bins]`` patches (no gradient to the weights)."""
    return encode(self.config, [tf.constant(v) for v in self.values], patches)


def encode(config: EncoderConfig, params: Sequence[tf.Tensor],
           patches: tf.Tensor) -> tf.Tensor:
  """The encoder's forward pass with explicit weights.

  Args:
    config: Architecture.
    params: Weights in the order of :meth:`EncoderConfig.layer_shapes`.
    patches: float32 ``[n, patch_frames, num_mel_bins]`` log-mel (the
      front-end's patch shape; any static shape that
      :meth:`EncoderConfig.check_patch_shape` accepts).

  Returns:
    float32 ``[n, embedding_dim]``.

  Raises:
    ValueError: ``patches`` has a shape the encoder cannot take (the message
      gives it).
  """
  shape = tf.TensorShape(patches.shape)  # Also for numpy arrays.
  if shape.rank != 3:
    raise ValueError(f"encoder {config.name!r}: expected patches "
                     f"[n, frames, bins], got shape {shape}")
  config.check_patch_shape(shape[1:],
                           source=f"patches {shape.as_list()}, i.e.")
  x = patches[..., tf.newaxis]
  w = iter(params)
  num_blocks = len(config.channels)
  # Name scopes name the layers of exported ops (per-op profiles).
  for i in range(num_blocks):
    with tf.name_scope(f"block{i}"):
      x = ops.conv_pair(x, next(w), next(w), next(w), next(w),
                        scopes=("conv_1x3", "conv_3x1"))
      if i < num_blocks - 1:
        with tf.name_scope("relu_pool"):
          x = ops.relu_max_pool2x2(x)
  # The last 2x2 pool is left out: the max of maxes is the max, and the
  # statistics keep more of the map at that size.
  with tf.name_scope("pool"):
    x = pool_features(x, config.pooling)
  with tf.name_scope("embedding"):
    return ops.dense(x, next(w), next(w))


def pool_features(x: tf.Tensor, pooling: str) -> tf.Tensor:
  """The last block's pre-activation map ``[b, h, w, c]`` -> ``[b, k * c]``
  by ``pooling`` (a key of :data:`POOLINGS`; ReLU'd maps pool the same)."""
  if pooling == "max":
    return ops.relu_global_max(x)
  stats = ops.statistics_pool(ops.relu(x))
  if pooling == "stats":
    return stats
  return tf.concat([ops.relu_global_max(x), stats], axis=-1)
