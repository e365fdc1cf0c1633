"""Custom gradients agree with TensorFlow's own on random inputs."""

from model.gradcheck import gradient_errors

# The target; measured max is ~1e-6 (conv filter gradients).
TOLERANCE = 1e-4


def test_custom_gradients_match_tensorflow():
  errors = gradient_errors(seed=0)
  assert len(errors) == 13
  worst = max(errors, key=errors.get)
  assert errors[worst] <= TOLERANCE, f"{worst}: {errors[worst]}"


def test_other_seed_and_batch():
  errors = gradient_errors(seed=7, batch=1)
  assert max(errors.values()) <= TOLERANCE
