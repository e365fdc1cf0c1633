"""Best global model per downstream metric: staging, commit, crash recovery,
and export of a chosen one with ``python -m export --best_for``."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from export import manifest as manifest_lib
from export.exporter import TRAINING_DIR
from model.best_models import (BestModels, best_model_dir, read_best_index)
from model.encoders import ENCODERS
from model.ssl_model import ModelSpec, SSLModel, load_model

SPEC = ModelSpec(task="triplet", encoder=ENCODERS["tiny"])


def _model(seed):
  return SSLModel(ModelSpec(task=SPEC.task, encoder=SPEC.encoder, seed=seed))


def _seed_of(directory):
  with open(os.path.join(directory, "model.json")) as f:
    return json.load(f)["seed"]


def test_stage_commit_and_lookup(tmp_path):
  run = str(tmp_path)
  best = BestModels(run)
  best.stage(2, "keyword", 0.5, _model(2))
  best.stage(2, "speaker", 0.4, _model(2))
  best.commit(2, {"keyword": (2, 0.5), "speaker": (2, 0.4)})
  best.stage(4, "keyword", 0.7, _model(4))
  best.commit(4, {"keyword": (4, 0.7), "speaker": (2, 0.4)})
  assert read_best_index(run) == {"keyword": {"round": 4, "value": 0.7},
                                  "speaker": {"round": 2, "value": 0.4}}
  assert _seed_of(best_model_dir(run, "keyword")) == 4
  assert _seed_of(best_model_dir(run, "speaker")) == 2
  np.testing.assert_array_equal(
      load_model(best_model_dir(run, "keyword")).weights[0].numpy(),
      _model(4).weights[0].numpy())
  assert not os.path.exists(os.path.join(run, "best", ".staging"))
  with pytest.raises(ValueError, match=r"'content'.*\['keyword', 'speaker'\]"):
    best_model_dir(run, "content")
  with pytest.raises(FileNotFoundError, match="best.json"):
    best_model_dir(str(tmp_path / "elsewhere"), "keyword")


def test_recovery_matches_the_saved_state(tmp_path):
  run = str(tmp_path)
  best = BestModels(run)
  best.stage(2, "keyword", 0.5, _model(2))
  best.commit(2, {"keyword": (2, 0.5)})
  # Killed after staging round 4 but before its state was saved: the state
  # says round 2, and round 4's model must not replace it.
  best.stage(4, "keyword", 0.7, _model(4))
  BestModels(run).recover(2, {"keyword": (2, 0.5)})
  assert _seed_of(best_model_dir(run, "keyword")) == 2
  assert read_best_index(run)["keyword"]["round"] == 2
  # Killed after round 4's state was saved but before the commit.
  best.stage(4, "keyword", 0.7, _model(4))
  BestModels(run).recover(4, {"keyword": (4, 0.7)})
  assert _seed_of(best_model_dir(run, "keyword")) == 4
  assert read_best_index(run)["keyword"] == {"round": 4, "value": 0.7}
  # A model that disagrees with the state is reported, not silently kept.
  with pytest.raises(RuntimeError, match="round 4.*says round 6"):
    BestModels(run).recover(6, {"keyword": (6, 0.8)})


@pytest.mark.slow
def test_export_best_for_metric(tmp_path):
  run = tmp_path / "run"
  best = BestModels(str(run))
  best.stage(3, "speaker", 0.6, _model(3))
  best.commit(3, {"speaker": (3, 0.6)})
  out = tmp_path / "export"
  command = [sys.executable, "-m", "export", f"--model_dir={run}",
             "--best_for=speaker", f"--out_dir={out}", "--quantization=",
             "--batch_size=2", "--verify_steps=4"]
  env = {**os.environ, "PYTHONPATH": os.getcwd()}
  done = subprocess.run(command, env=env, capture_output=True, text=True,
                        timeout=600)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "round 3" in done.stdout
  source = manifest_lib.Manifest.read(str(out / TRAINING_DIR)).source
  assert source["best_for"] == {"metric": "speaker", "round": 3, "value": 0.6}
  assert source["path"] == os.path.abspath(run / "best" / "speaker")
