"""Tests of the feature-matching validation sweep."""

import csv
import os

import numpy as np
import pytest

from benchmarks import fm_validation as fmv
from model.tasks import TaskConfig


def test_parse_variant_overrides_and_errors():
  task, config = fmv.parse_variant("barlow_twins:barlow_lambda=1/16")
  assert task == "barlow_twins"
  assert config == TaskConfig(barlow_lambda=0.0625)
  task, config = fmv.parse_variant("simsiam:predictor_hidden_dim=64")
  assert (task, config.predictor_hidden_dim) == ("simsiam", 64)
  assert fmv.parse_variant("nt_xent") == ("nt_xent", TaskConfig())
  with pytest.raises(ValueError, match="'triplet' is not one of the feature"):
    fmv.parse_variant("triplet")
  with pytest.raises(ValueError, match="TaskConfig field, got 'no_such=1'"):
    fmv.parse_variant("simsiam:no_such=1")
  with pytest.raises(ValueError, match="predictor_hidden_dim expects an "
                     "integer, got '1.5'"):
    fmv.parse_variant("simsiam:predictor_hidden_dim=1.5")
  with pytest.raises(ValueError, match="barlow_lambda expects a number"):
    fmv.parse_variant("barlow_twins:barlow_lambda=big")
  with pytest.raises(ValueError, match="variant 'simsiam:projection_dim=0'.*"
                     "projection_dim must be positive"):
    fmv.parse_variant("simsiam:projection_dim=0")
  with pytest.raises(ValueError, match="variants must be distinct"):
    fmv.SweepConfig(variants=("simsiam", "simsiam"))


@pytest.mark.slow
def test_sweep_writes_validation_rows(tiny_corpus_dir, tmp_path):
  config = fmv.SweepConfig(
      corpus="tiny", corpus_dir=tiny_corpus_dir, encoder="tiny",
      variants=("simsiam", "barlow_twins:barlow_lambda=1/16"), seeds=(0,),
      steps=2, batch_size=4, out_dir=str(tmp_path))
  rows = fmv.run_fm_validation(config, show_progress=False)
  assert list(rows) == [fmv.RANDOM_INIT, "simsiam",
                        "barlow_twins:barlow_lambda=1/16"]
  probes = [c for c in rows[fmv.RANDOM_INIT]
            if c not in (fmv.VALIDATION_MEAN, fmv.EFFECTIVE_RANK)]
  assert probes
  for name, columns in rows.items():
    assert all(0 <= columns[p].mean <= 1 for p in probes), name
    assert columns[fmv.VALIDATION_MEAN].mean == pytest.approx(
        np.mean([columns[p].mean for p in probes]))
    assert 0 < columns[fmv.EFFECTIVE_RANK].mean <= 128
    assert (fmv.FINAL_LOSS in columns) == (name != fmv.RANDOM_INIT)
  with open(os.path.join(config.out_dir, "results.csv")) as f:
    assert len(list(csv.DictReader(f))) == sum(len(c) for c in rows.values())
  for name in ("report.md", "fm_validation.png"):
    assert os.path.getsize(os.path.join(config.out_dir, name)) > 0
  # Rerun: every training run is reused, the scores are the same.
  again = fmv.run_fm_validation(config, show_progress=False)
  assert again["simsiam"][fmv.VALIDATION_MEAN].values == rows["simsiam"][
      fmv.VALIDATION_MEAN].values
