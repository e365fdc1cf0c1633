"""The saved-model reader: run and model directories, and errors that name
the file and the field."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from model.encoders import ENCODERS
from model.errors import UserError, WeightsMismatchError
from model.heads import StandardizedMLP
from model.saved_model import (RUN_MODEL_DIR, SPEC_FILE, WEIGHTS_FILE,
                               SavedModel, is_saved_model, saved_model_dir,
                               weight_differences)
from model.ssl_model import ModelSpec, SSLModel, load_model, save_model
from model.tasks.distillation import load_teacher
from model.train import TrainConfig, train_centralized


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """A run directory holding a tiny model in ``model/``."""
  root = tmp_path_factory.mktemp("run")
  model = SSLModel(ModelSpec(task="triplet", encoder=ENCODERS["tiny"], seed=3))
  save_model(model, str(root / RUN_MODEL_DIR))
  return root, model


def test_reads_a_run_or_a_model_directory(run_dir):
  root, model = run_dir
  model_dir = os.path.join(root, RUN_MODEL_DIR)
  assert saved_model_dir(str(root)) == saved_model_dir(model_dir) == model_dir
  assert is_saved_model(model_dir) and not is_saved_model(str(root))
  saved = SavedModel.read(str(root))
  assert saved.directory == model_dir
  assert saved.spec == json.loads(json.dumps(model.spec.to_dict()))
  assert saved.task == "triplet"
  assert saved.encoder["name"] == "tiny"
  weights = saved.weights()
  assert list(weights) == model.weight_names
  np.testing.assert_array_equal(weights[model.weight_names[0]],
                                model.weights[0].numpy())
  assert load_model(str(root)).spec == model.spec
  assert load_teacher(model_dir).config == model.spec.encoder


def test_missing_directories_and_files_are_named(run_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match=f"{tmp_path}: no saved model; "
                     f"expected .*{RUN_MODEL_DIR}/{SPEC_FILE}"):
    SavedModel.read(str(tmp_path))
  with pytest.raises(FileNotFoundError, match=f"teacher '{tmp_path}'"):
    load_teacher(str(tmp_path))
  (tmp_path / SPEC_FILE).write_text(
      (run_dir[0] / RUN_MODEL_DIR / SPEC_FILE).read_text())
  with pytest.raises(FileNotFoundError, match=f"{WEIGHTS_FILE}: not found"):
    SavedModel.read(str(tmp_path))


@pytest.mark.parametrize("content, pattern", [
    ("{", r"model\.json: expected JSON, got"),
    ("[]", r"model\.json: expected an object, got list"),
    ('{"encoder": {}, "frontend": {}, "task_config": {}, "seed": 0}',
     r"model\.json: task: expected a str, got nothing \(missing\)"),
    ('{"task": "triplet", "encoder": [], "frontend": {}, "task_config": {}, '
     '"seed": 0}', r"model\.json: encoder: expected a dict, got list \[\]"),
])
def test_a_malformed_spec_names_file_and_field(run_dir, tmp_path, content,
                                               pattern):
  (tmp_path / WEIGHTS_FILE).write_bytes(
      (run_dir[0] / RUN_MODEL_DIR / WEIGHTS_FILE).read_bytes())
  (tmp_path / SPEC_FILE).write_text(content)
  with pytest.raises(ValueError, match=pattern):
    SavedModel.read(str(tmp_path))


def _earlier_simsiam_projector():
  """The weights of SimSiam's projector before it had 3 layers
  (``embedding -> 128 -> 64``, hidden bias, output standardized)."""
  projector = StandardizedMLP(
      (ENCODERS["tiny"].embedding_dim, 128, 64), standardize_hidden=False,
      standardize_output=True, output_bias=False,
      rng=np.random.default_rng(0), name="head/projector")
  return {n: w.numpy() for n, w in zip(projector.weight_names,
                                       projector.weights)}


@pytest.fixture(scope="module")
def outdated_simsiam(tmp_path_factory):
  """A saved SimSiam model whose head is the earlier 2-layer projector."""
  directory = str(tmp_path_factory.mktemp("outdated") / RUN_MODEL_DIR)
  model = SSLModel(ModelSpec(task="simsiam", encoder=ENCODERS["tiny"]))
  save_model(model, directory)
  path = os.path.join(directory, WEIGHTS_FILE)
  weights = {k: v for k, v in np.load(path).items() if "projector" not in k}
  np.savez(path, **weights, **_earlier_simsiam_projector())
  return directory, weights


def test_an_outdated_head_names_file_weights_and_remedy(outdated_simsiam):
  directory, _ = outdated_simsiam
  with pytest.raises(WeightsMismatchError) as error:
    load_model(os.path.dirname(directory))
  message = str(error.value)
  assert isinstance(error.value, ValueError) and isinstance(error.value,
                                                            UserError)
  assert message.startswith(os.path.join(directory, WEIGHTS_FILE) + ": ")
  assert "task 'simsiam' with encoder 'tiny'" in message
  assert "(its head differs)" in message
  assert ("'head/projector/dense1/kernel': saved (128, 64), expected "
          "(128, 128)") in message
  assert ("'head/projector/dense2/kernel': missing (expected shape "
          "(128, 64))") in message
  assert "'head/projector/dense0/bias': unexpected (saved (128,))" in message
  assert "re-train it with this version" in message
  assert "its encoder fits" in message
  # The encoder alone (e.g. under another task's head) still loads.
  model = load_model(directory, task="nt_xent")
  assert model.spec.task == "nt_xent"


def test_an_outdated_encoder_is_named_for_models_and_teachers(run_dir,
                                                              tmp_path):
  root, model = run_dir
  directory = str(tmp_path / RUN_MODEL_DIR)
  save_model(model, directory)
  path = os.path.join(directory, WEIGHTS_FILE)
  weights = dict(np.load(path))
  name = model.encoder.weight_names[0]
  weights[name] = weights[name][..., :1]
  np.savez(path, **weights)
  expected = tuple(model.encoder.weights[0].shape)
  line = (f"{name!r}: saved {expected[:-1] + (1,)}, expected {expected}")
  with pytest.raises(WeightsMismatchError, match="its encoder differs") as e:
    load_model(directory)
  assert line in str(e.value) and "its encoder fits" not in str(e.value)
  with pytest.raises(WeightsMismatchError,
                     match="saved encoder weights do not fit encoder 'tiny'"
                     ) as e:
    load_teacher(directory)
  assert line in str(e.value) and str(e.value).startswith(path)


def test_weight_differences_lists_each_and_caps_the_list():
  expected = {f"w{i}": (2, 3) for i in range(10)}
  assert weight_differences(expected, {k: np.zeros(s)
                                       for k, s in expected.items()}) == []
  found = {"w0": np.zeros((3, 2)), "extra": np.zeros(4)}
  lines = weight_differences(expected, found)
  assert lines[0] == "'w0': saved (3, 2), expected (2, 3)"
  assert lines[1] == "'w1': missing (expected shape (2, 3))"
  assert lines[-1] == "... and 3 more"  # 9 missing + 1 unexpected, 8 listed.
  assert all("extra" not in line
             for line in weight_differences(expected, found,
                                            allow_extra=True))


def test_resuming_an_outdated_run_names_the_checkpoint(outdated_simsiam,
                                                       tmp_path):
  """A run directory whose checkpoint holds the earlier SimSiam head."""
  _, saved = outdated_simsiam
  spec = ModelSpec(task="simsiam", encoder=ENCODERS["tiny"])
  model = SSLModel(spec)
  old = [tf.Variable(v) for k, v in saved.items() if k.startswith("encoder/")]
  old += [tf.Variable(v) for v in _earlier_simsiam_projector().values()]
  old += [tf.Variable(v) for k, v in saved.items() if "predictor" in k]
  run_dir = tmp_path / "run"
  tf.train.CheckpointManager(
      tf.train.Checkpoint(step=tf.Variable(5, dtype=tf.int64), weights=old),
      str(run_dir / "checkpoints"), max_to_keep=2).save()
  waveforms = np.zeros((4, model.example_samples), np.float32)
  with pytest.raises(WeightsMismatchError) as error:
    train_centralized(spec, TrainConfig(steps=6, batch_size=4), waveforms,
                      str(run_dir), show_progress=False)
  message = str(error.value)
  assert message.startswith(str(run_dir / "checkpoints" / "ckpt-1") + ": ")
  assert (f"checkpoint's {len(old)} weights do not fit task 'simsiam' with "
          f"encoder 'tiny' as this version builds it "
          f"({len(model.weights)} weights") in message
  assert ("'head/projector/dense1/kernel': saved (128,), expected "
          "(128, 128)") in message
  assert "train into a new run directory" in message
