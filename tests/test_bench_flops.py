"""FLOP counting on small hand-built TFLite models whose exact costs are known:
convs, matmuls and FFTs with static and dynamic batches, control-flow
subgraphs, and signature promotion."""

import math

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import flops


def _convert(module: tf.Module, functions: dict) -> bytes:
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      list(functions.values()), module)
  return converter.convert()


def _saved_model_convert(module: tf.Module, functions: dict, tmp_path) -> bytes:
  """Converts with signature keys (the SavedModel route, as the exporter)."""
  directory = str(tmp_path / "saved_model")
  tf.saved_model.save(module, directory, signatures=functions)
  return tf.lite.TFLiteConverter.from_saved_model(
      directory, signature_keys=list(functions)).convert()


@pytest.fixture(scope="module")
def conv_model(tmp_path_factory):
  """``conv``: 3x3 conv 2->4 channels on [N, 8, 8, 2] then a dense 256->5;
  ``spectrum``: rfft of [3, 512] with |.| (static)."""
  rng = np.random.default_rng(0)
  kernel = tf.constant(rng.standard_normal((3, 3, 2, 4)), tf.float32)
  dense = tf.constant(rng.standard_normal((256, 5)), tf.float32)
  module = tf.Module()

  @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 2], tf.float32)])
  def conv(x):
    y = tf.nn.conv2d(x, kernel, 1, "SAME")
    return {"y": tf.matmul(tf.reshape(y, [-1, 256]), dense)}

  @tf.function(input_signature=[tf.TensorSpec([3, 512], tf.float32)])
  def spectrum(waveform):
    return {"power": tf.abs(tf.signal.rfft(waveform))}

  module.conv, module.spectrum = conv, spectrum
  return _saved_model_convert(
      module, {"conv": conv.get_concrete_function(),
               "spectrum": spectrum.get_concrete_function()},
      tmp_path_factory.mktemp("conv"))


@pytest.mark.parametrize("batch", [1, 3])
def test_conv_and_dense_macs_exact_at_dynamic_batch(conv_model, batch):
  counted = flops.count_flops(conv_model, "conv", batch=batch)
  by_op = {o.op: o for o in counted.by_op}
  assert by_op["CONV_2D"].macs == batch * 8 * 8 * 4 * 3 * 3 * 2
  matmul = by_op.get("FULLY_CONNECTED") or by_op["BATCH_MATMUL"]
  assert matmul.macs == batch * 256 * 5
  assert counted.macs == batch * (8 * 8 * 4 * 18 + 256 * 5)
  assert counted.flops >= 2 * counted.macs
  assert counted.shapes.startswith("dynamic dimensions resolved")
  assert counted.examples == 1  # No ``waveform`` input.


def test_rfft_convention_and_waveform_examples(conv_model):
  counted = flops.count_flops(conv_model, "spectrum")
  by_op = {o.op: o for o in counted.by_op}
  # 3 rows of a 512-point real FFT: (n / 2) log2 n complex MACs, 4 real each.
  assert by_op["RFFT2D"].macs == 3 * 4 * 256 * 9
  assert by_op["COMPLEX_ABS"].flops == 3 * 257 * 4
  assert counted.shapes == "static"
  assert counted.examples == 3
  assert counted.flops_per_example == counted.flops / 3


def test_frontend_macs_matches_the_rfft_convention():
  frontend = flops.FrontendConfig()
  per_frame = 4 * 256 * math.log2(512) + 257 * 64
  assert flops.frontend_macs(frontend, 96) == round(96 * per_frame)


def test_unknown_signature_lists_the_available_ones(conv_model):
  with pytest.raises(KeyError, match="conv.*spectrum"):
    flops.count_flops(conv_model, "train")


def test_while_body_is_followed_and_noted():
  module = tf.Module()

  @tf.function(input_signature=[tf.TensorSpec([4, 16], tf.float32)])
  def loop(x):
    _, y = tf.while_loop(lambda i, v: i < 3,
                         lambda i, v: (i + 1, tf.matmul(v, tf.eye(16))),
                         (tf.constant(0), x))
    return y

  module.loop = loop
  counted = flops.count_flops(
      _convert(module, {"serving_default": loop.get_concrete_function()}),
      "serving_default")
  names = {o.op for o in counted.by_op}
  assert names & {"FULLY_CONNECTED", "BATCH_MATMUL"}
  assert counted.macs == 4 * 16 * 16
  assert any("WHILE" in note for note in counted.notes)


def test_promote_signature_keeps_the_model_working(conv_model):
  promoted = flops.promote_signature(conv_model, "spectrum")
  assert flops.signature_subgraph(promoted, "spectrum") == 0
  assert (flops.signature_subgraph(promoted, "conv")
          == flops.signature_subgraph(conv_model, "spectrum"))
  x = np.random.default_rng(1).standard_normal((3, 512)).astype(np.float32)
  outputs = []
  for content in (conv_model, promoted):
    interpreter = tf.lite.Interpreter(model_content=content)
    interpreter.allocate_tensors()
    outputs.append(interpreter.get_signature_runner("spectrum")(
        waveform=x)["power"])
  np.testing.assert_array_equal(*outputs)


def test_frontend_macs_of_the_matmul_dft():
  frontend = flops.FrontendConfig()
  # n1 = 16, 25 taps, 17 stage-1 bins: [16 x 25] x [25 x 34], 17 x [32 x 32],
  # re^2 + im^2 as 17 x [32 x 16], then the mel matmul over 17 x 16 bins.
  per_frame = 16 * 25 * 34 + 17 * 32 * 32 + 17 * 32 * 16 + 17 * 16 * 64
  assert flops.frontend_macs(frontend, 96, dft_by_matmul=True) == 96 * per_frame
