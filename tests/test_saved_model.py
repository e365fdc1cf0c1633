"""The saved-model reader: run and model directories, and errors that name
the file and the field."""

import json
import os

import numpy as np
import pytest

from model.encoders import ENCODERS
from model.saved_model import (RUN_MODEL_DIR, SPEC_FILE, WEIGHTS_FILE,
                               SavedModel, is_saved_model, saved_model_dir)
from model.ssl_model import ModelSpec, SSLModel, load_model, save_model
from model.tasks.distillation import load_teacher


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
