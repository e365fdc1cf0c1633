"""Custom gradients agree with TensorFlow's own on random inputs."""

import pytest
import tensorflow as tf

from model import ops
from model.gradcheck import gradient_errors

# The target; measured max is ~1e-6 (conv filter gradients).
TOLERANCE = 1e-4
# Forward outputs and gradients of the XNNPACK-friendly formulation.
DELEGATE_TOLERANCE = 1e-5


def test_custom_gradients_match_tensorflow():
  errors = gradient_errors(seed=0)
  assert len(errors) == 34
  worst = max(errors, key=errors.get)
  assert errors[worst] <= TOLERANCE, f"{worst}: {errors[worst]}"


def test_other_seed_and_batch():
  errors = gradient_errors(seed=7, batch=1)
  assert max(errors.values()) <= TOLERANCE


@pytest.mark.parametrize("seed,batch", [(0, 4), (3, 1)])
def test_delegate_formulation_matches_tensorflow(seed, batch):
  errors = gradient_errors(seed=seed, batch=batch, formulation="delegate",
                           outputs=True)
  assert len(errors) == 34 + 18
  worst = max(errors, key=errors.get)
  assert errors[worst] <= DELEGATE_TOLERANCE, f"{worst}: {errors[worst]}"


def test_formulation_switch():
  assert ops.current_formulation() == ops.TRAINING
  with ops.formulation("delegate"):
    assert ops.current_formulation() == "delegate"
    with ops.tf_gradients():
      assert ops.current_formulation() == "tf"
    assert ops.current_formulation() == "delegate"
  with pytest.raises(ValueError, match="expected one of"):
    with ops.formulation("im2col"):
      pass


def test_delegate_conv_has_no_conv2d_or_masks_ops():
  """The traced delegate conv + pool step uses no CONV_2D/EQUAL/CAST/SELECT."""
  x = tf.random.normal([2, 8, 6, 3])
  kernel = tf.Variable(tf.random.normal([3, 1, 3, 4]))

  @tf.function
  def step(x):
    with ops.formulation("delegate"), tf.GradientTape() as tape:
      loss = tf.reduce_sum(ops.relu_max_pool2x2(
          ops.conv2d(x, kernel, tf.zeros([4]))))
    return tape.gradient(loss, kernel)

  graph_ops = {op.type for op in
               step.get_concrete_function(x).graph.get_operations()}
  assert not graph_ops & {"Conv2D", "Conv2DBackpropInput", "Equal", "Cast",
                          "Select", "SelectV2", "ReverseV2"}, graph_ops
  assert "MatMul" in graph_ops


def test_tf_formulation_composes_the_one_channel_pair_exactly():
  """TF-side training composes the pair too, against TF's two convs."""
  errors = gradient_errors(seed=1, formulation="tf", outputs=True)
  pair = {k: v for k, v in errors.items() if k.startswith("conv_pair_")}
  assert len(pair) == 2 * 6  # 2 shapes x (output + 5 inputs)
  worst = max(pair, key=pair.get)
  assert pair[worst] <= DELEGATE_TOLERANCE, f"{worst}: {pair[worst]}"


@pytest.mark.parametrize("channels,convs", [(1, 1), (2, 2)])
def test_conv_pair_is_one_conv_for_a_one_channel_input(channels, convs):
  first = tf.random.normal([1, 3, channels, 4])
  second = tf.random.normal([3, 1, 4, 5])

  @tf.function
  def pair(x):
    return ops.conv_pair(x, first, tf.zeros([4]), second, tf.zeros([5]))

  graph = pair.get_concrete_function(
      tf.TensorSpec([2, 8, 6, channels])).graph
  assert sum(op.type == "Conv2D" for op in graph.get_operations()) == convs
