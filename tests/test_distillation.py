"""Distillation task: frozen teachers, translators, builtin-only training."""

import numpy as np
import pytest

from model.encoders import ENCODERS, FrozenEncoder
from model.ssl_model import ModelSpec, SSLModel, save_model
from model.tasks import TaskConfig
from model.tflite_compat import convert, select_tf_ops, sgd_train_module
from model.train import TrainConfig, train_centralized


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
  dirs = []
  for i, preset in enumerate(("small", "tiny")):
    d = str(tmp_path_factory.mktemp(f"teacher{i}"))
    save_model(SSLModel(ModelSpec(task="triplet", encoder=ENCODERS[preset],
                                  seed=10 + i)), d)
    dirs.append(d)
  return tuple(dirs)


def _spec(teachers, **kw):
  return ModelSpec(task="distillation", encoder=ENCODERS["tiny"],
                   task_config=TaskConfig(teacher_dirs=teachers, **kw))


def _waveforms(spec, n=8):
  samples = spec.example_samples
  rng = np.random.default_rng(0)
  t = np.arange(samples) / 16000.0
  return np.stack([0.3 * np.sin(2 * np.pi * f * t) + 0.05 *
                   rng.standard_normal(samples)
                   for f in rng.uniform(150, 2000, n)]).astype(np.float32)


def test_teachers_are_frozen_and_translated(teachers):
  model = SSLModel(_spec(teachers))
  assert all(isinstance(t, FrozenEncoder) for t in model.task.teachers)
  # Student weights + one translator (kernel, bias) per teacher, no teacher.
  assert len(model.weights) == len(model.encoder.weights) + 4
  assert model.task.translators[0].dims == (32, 128)


def test_distillation_lowers_the_regression_loss(teachers, tmp_path):
  spec = _spec(teachers)
  x = _waveforms(spec)
  result = train_centralized(
      spec, TrainConfig(steps=40, batch_size=4, learning_rate=3e-3,
                        log_every=5), x, str(tmp_path), show_progress=False)
  losses = [l for _, l in result.losses]
  assert np.mean(losses[-2:]) < 0.7 * np.mean(losses[:2])


@pytest.mark.slow
def test_with_own_ssl_loss_converts_to_builtins(teachers):
  spec = _spec(teachers, distill_ssl_task="triplet", distill_ssl_weight=0.5)
  model = SSLModel(spec)
  assert not select_tf_ops(convert(sgd_train_module(model, 2), ["train"]))


def test_clear_errors(tmp_path):
  with pytest.raises(ValueError, match="teacher_dirs"):
    SSLModel(_spec(()))
  with pytest.raises(FileNotFoundError, match="model.json"):
    SSLModel(_spec((str(tmp_path),)))
