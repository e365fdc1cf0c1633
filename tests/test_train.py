"""Centralized trainer: resume, run-directory checks, NaN handling, saving."""

import json
import os

import numpy as np
import pytest

from model.encoders import ENCODERS
from model.ssl_model import ModelSpec, load_model
from model.run_dir import RunConfigMismatch
from model.train import TrainConfig, train_centralized

SPEC = ModelSpec(task="audio2vec_cbow", encoder=ENCODERS["tiny"])
# A task with random crops and augmentations: resuming must still be exact.
NT_XENT = ModelSpec(task="nt_xent", encoder=ENCODERS["tiny"])


def _waveforms(n: int = 6, spec: ModelSpec = SPEC) -> np.ndarray:
  rng = np.random.default_rng(0)
  samples = spec.example_samples
  t = np.arange(samples) / 16000.0
  return np.stack([0.3 * np.sin(2 * np.pi * f * t)
                   + 0.05 * rng.standard_normal(samples)
                   for f in rng.uniform(200, 1500, n)]).astype(np.float32)


def _config(steps: int, **kw) -> TrainConfig:
  return TrainConfig(steps=steps, batch_size=2, checkpoint_every=2,
                     log_every=1, **kw)


@pytest.mark.parametrize(
    "spec", [SPEC, pytest.param(NT_XENT, marks=pytest.mark.slow)],
    ids=lambda s: s.task)
def test_resume_matches_uninterrupted_run(tmp_path, spec):
  x = _waveforms(spec=spec)
  full = train_centralized(spec, _config(6), x, str(tmp_path / "a"),
                           show_progress=False)
  first = train_centralized(spec, _config(3), x, str(tmp_path / "b"),
                            show_progress=False)
  assert first.resumed_from == 0
  # The checkpoint at step 2 is the last periodic one; step 3 is the final.
  resumed = train_centralized(spec, _config(6), x, str(tmp_path / "b"),
                              show_progress=False)
  assert resumed.resumed_from == 3
  assert [s for s, _ in resumed.losses] == [1, 2, 3, 4, 5, 6]
  np.testing.assert_allclose([l for _, l in resumed.losses],
                             [l for _, l in full.losses], rtol=1e-5)
  for a, b in zip(full.model.weights, resumed.model.weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_run_dir_contents_and_saved_model(tmp_path):
  result = train_centralized(SPEC, _config(4), _waveforms(), str(tmp_path),
                             show_progress=False)
  with open(tmp_path / "config.json") as f:
    config = json.load(f)
  assert config["model"]["task"] == "audio2vec_cbow"
  assert config["train"]["steps"] == 4
  assert os.listdir(tmp_path / "tensorboard")
  loaded = load_model(result.model_dir)
  for a, b in zip(loaded.weights, result.model.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  # The encoder can be reused under another task with a fresh head.
  other = load_model(result.model_dir, task="triplet")
  np.testing.assert_array_equal(other.encoder.weights[0].numpy(),
                                result.model.encoder.weights[0].numpy())


def test_other_config_in_same_dir_is_refused(tmp_path):
  train_centralized(SPEC, _config(2), _waveforms(), str(tmp_path),
                    show_progress=False)
  with pytest.raises(RunConfigMismatch, match="train"):
    train_centralized(SPEC, _config(2, learning_rate=0.5), _waveforms(),
                      str(tmp_path), show_progress=False)


def test_a_run_that_went_further_is_not_reused_as_a_shorter_one(tmp_path):
  train_centralized(SPEC, _config(3), _waveforms(), str(tmp_path),
                    show_progress=False)
  with pytest.raises(RunConfigMismatch, match=r"train.steps = 3, past the 2 "
                     r"asked for"):
    train_centralized(SPEC, _config(2), _waveforms(), str(tmp_path),
                      show_progress=False)
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["train"]["steps"] == 3  # Left as it was.


def test_wrong_example_length_is_clear(tmp_path):
  with pytest.raises(ValueError, match="needs waveforms"):
    train_centralized(SPEC, _config(2), np.zeros((4, 1000), np.float32),
                      str(tmp_path), show_progress=False)


def test_divergence_raises_and_keeps_last_good_checkpoint(tmp_path):
  with pytest.raises(FloatingPointError, match="loss is"):
    train_centralized(SPEC, _config(6, optimizer="sgd", learning_rate=1e12),
                      _waveforms(), str(tmp_path), show_progress=False)
  assert not os.path.exists(tmp_path / "model")


def test_nan_weights_are_rejected_on_load(tmp_path):
  result = train_centralized(SPEC, _config(1), _waveforms(), str(tmp_path),
                             show_progress=False)
  path = os.path.join(result.model_dir, "weights.npz")
  with np.load(path) as data:
    weights = dict(data)
  name = sorted(weights)[0]
  weights[name] = np.full_like(weights[name], np.nan)
  np.savez(path, **weights)
  with pytest.raises(ValueError, match=f"{name}.*non-finite"):
    load_model(result.model_dir)


def _legacy(path, **changes):
  """Rewrites a saved spec as written before the front-end owned the patch
  shape: the encoder and task config repeat it."""
  with open(path) as f:
    stored = json.load(f)
  model = stored.get("model", stored)
  model["encoder"].update(patch_frames=96, num_mel_bins=64)
  model["task_config"]["slice_frames"] = 96
  for dotted, value in changes.items():
    section, field = dotted.split("__")
    model[section][field] = value
  with open(path, "w") as f:
    json.dump(stored, f)


def test_model_json_from_before_the_front_end_owned_the_shape(tmp_path):
  result = train_centralized(SPEC, _config(2), _waveforms(), str(tmp_path),
                             show_progress=False)
  spec_path = os.path.join(result.model_dir, "model.json")
  with open(spec_path) as f:
    stored = json.load(f)
  assert "patch_frames" not in stored["encoder"]
  assert "slice_frames" not in stored["task_config"]
  _legacy(spec_path)
  assert load_model(result.model_dir).spec == SPEC
  # An old run directory resumes (its config.json has the old keys too).
  _legacy(os.path.join(tmp_path, "config.json"))
  resumed = train_centralized(SPEC, _config(3), _waveforms(), str(tmp_path),
                              show_progress=False)
  assert resumed.resumed_from == 2
  _legacy(spec_path, encoder__num_mel_bins=32)
  with pytest.raises(ValueError, match=r"model.json: .*encoder.num_mel_bins "
                     r"is 32 but frontend.num_mel_bins is 64"):
    load_model(result.model_dir)
  _legacy(spec_path, task_config__slice_frames=48)
  with pytest.raises(ValueError, match=r"task_config.slice_frames is 48 but "
                     r"frontend.patch_frames is 96"):
    load_model(result.model_dir)


def test_run_training_on_a_dataset_on_disk(tiny_corpus_dir, tmp_path):
  """What `python -m model.train_main` runs: decode, segment, train, probe."""
  from model.datasets.loaders import DatasetSource  # pylint: disable=g-import-not-at-top
  from model.train import run_training  # pylint: disable=g-import-not-at-top
  spec = ModelSpec(task="temporal_gap", encoder=ENCODERS["tiny"])
  lines = []
  run = run_training(spec, _config(2), DatasetSource("synthetic",
                                                     tiny_corpus_dir),
                     str(tmp_path), progress=lines.append)
  assert lines[0].startswith("54 of 54 clips usable")
  assert lines[1].startswith(f"{run.num_examples} training examples of ")
  assert run.num_examples > 0 and len(run.result.losses) >= 1
  assert run.report.startswith(f"loss {run.result.losses[0][1]:.4f} -> ")
  assert set(run.probes) == {"random init", "temporal_gap"}
  assert "| temporal_gap |" in run.report
  with open(tmp_path / "probe.csv") as f:
    assert f.readline().startswith("model,")
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["data"] == {"kind": "synthetic",
                                    "path": os.path.abspath(tiny_corpus_dir),
                                    "clips": 54}
