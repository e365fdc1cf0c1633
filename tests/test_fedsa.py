"""FedSA: saliency, teacher selection, and the benchmark on the tiny corpus."""

import csv
import os

import numpy as np
import pytest

from model.encoders import ENCODERS, Encoder, encode
from model.evaluation import clip_patches
from model.features import FrontendConfig
from tff_sim.fedsa import (FULL_SPLIT, PROBE_SET, SALIENCY_METHODS,
                           FedSABenchmarkConfig, FedSAConfig, ProbeSet,
                           embedding_from_activations, last_block_activations,
                           run_fedsa_benchmark, saliency_maps,
                           saliency_similarity, sample_teachers,
                           selection_probabilities)

TINY = ENCODERS["tiny"]


@pytest.fixture(scope="module")
def probe():
  """Patches of tones in three frequency bands, labelled by band."""
  rng = np.random.default_rng(0)
  t = np.arange(16000) / 16000.0
  waveforms, labels = [], []
  for label, (low, high) in enumerate(((200, 400), (900, 1400), (3000, 5000))):
    for f in rng.uniform(low, high, 4):
      waveforms.append((0.3 * np.sin(2 * np.pi * f * t)
                        + 0.02 * rng.standard_normal(t.size)).astype(
                            np.float32))
      labels.append(label)
  patches, owner = clip_patches(waveforms, FrontendConfig())
  return ProbeSet(patches=patches, labels=np.asarray(labels)[owner])


def _values(encoder):
  return [v.numpy() for v in encoder.weights]


def test_split_forward_pass_is_the_encoder(probe):
  params = _values(Encoder(TINY, seed=3))
  activations = last_block_activations(TINY, params, probe.patches)
  assert activations.shape[1:] == (12, 8, TINY.channels[-1])
  np.testing.assert_allclose(
      embedding_from_activations(params, activations),
      encode(TINY, params, probe.patches), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", SALIENCY_METHODS)
def test_identical_teacher_scores_highest(probe, method):
  student = _values(Encoder(TINY, seed=0))
  teachers = [_values(Encoder(TINY, seed=s)) for s in (1, 2)] + [student]
  student_maps = saliency_maps(TINY, student, probe, method=method)
  assert student_maps.shape == probe.patches.shape
  assert np.all(student_maps >= 0) and np.all(np.isfinite(student_maps))
  scores = [saliency_similarity(student_maps,
                                saliency_maps(TINY, t, probe, method=method))
            for t in teachers]
  assert np.all(np.isfinite(scores))
  assert int(np.argmax(scores)) == 2 and scores[2] == pytest.approx(
      np.mean(np.any(student_maps.reshape(len(student_maps), -1) > 0, 1)))
  probabilities = selection_probabilities(scores, temperature=0.05)
  assert probabilities.sum() == pytest.approx(1.0)
  assert int(np.argmax(probabilities)) == 2


def test_selection_helpers():
  p = selection_probabilities([0.2, 0.5, 0.4], temperature=0.1)
  assert p.sum() == pytest.approx(1.0) and np.all(np.diff(p[[0, 2, 1]]) > 0)
  assert selection_probabilities([1.0, 1.0], 1e-3).tolist() == [0.5, 0.5]
  rng = np.random.default_rng(0)
  chosen = sample_teachers(p, 2, rng)
  assert len(set(chosen.tolist())) == 2 and list(chosen) == sorted(chosen)
  assert sample_teachers(np.array([0.0, 1.0, 0.0]), 2, rng).tolist() == [1]
  with pytest.raises(ValueError, match="shape"):
    saliency_similarity(np.zeros((2, 3)), np.zeros((3, 3)))


def test_configs_reject_bad_values():
  with pytest.raises(ValueError, match="saliency"):
    FedSAConfig(saliency="occlusion")
  with pytest.raises(ValueError, match="top_k"):
    FedSAConfig(top_k=0)
  with pytest.raises(ValueError, match="teacher_tasks"):
    FedSABenchmarkConfig(teacher_tasks=("triplet", "nope"))


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
  """Two rounds of FedSA with three teachers, and the baselines."""
  config = FedSABenchmarkConfig(
      corpus="tiny", teacher_tasks=("triplet", "temporal_gap",
                                    "audio2vec_cbow"),
      teacher_encoder="tiny", teacher_steps=2, student_encoder="tiny",
      probe_clips_per_class=2, supervised_steps=2,
      fedsa=FedSAConfig(rounds=2, selection_period=1, top_k=2, local_steps=2,
                        batch_size=2),
      out_dir=str(tmp_path_factory.mktemp("fedsa")))
  rows, result = run_fedsa_benchmark(config, show_progress=False)
  return config, rows, result


def test_fedsa_run_completes_with_a_selection_per_period(benchmark):
  config, _, result = benchmark
  assert [r.round for r in result.history] == [1, 2]
  for record in result.history:
    assert len(record.selected) == 2
    assert sum(record.probabilities) == pytest.approx(1.0)
    assert np.all(np.isfinite(record.scores))
  assert all(len(losses) == 2 and np.all(np.isfinite(list(losses.values())))
             for losses in result.round_losses)
  assert result.client_examples == 2 * 2 * 2 * 2
  initial = Encoder(ENCODERS[config.student_encoder], seed=0).weights
  assert any(not np.allclose(a, b) for a, b in
             zip(_values(result.encoder), [v.numpy() for v in initial]))


def test_benchmark_table_and_files(benchmark):
  config, rows, _ = benchmark
  names = list(rows)
  assert len([n for n in names if n.startswith("teacher ")]) == 3
  assert names[3:] == [
      "student at random init",
      "student from scratch, supervised on the probe set",
      "distillation from all teachers (central)",
      "FedAvg triplet on the teachers' clients",
      "FedSA (top 2 of 3, gradcam)"]
  for row in rows.values():
    assert 0 <= row[PROBE_SET] <= 1 and 0 <= row[FULL_SPLIT] <= 1
  with open(os.path.join(config.out_dir, "selection.csv")) as f:
    assert len(list(csv.reader(f))) == 3
  with open(os.path.join(config.out_dir, "report.md")) as f:
    report = f.read()
  assert "## Teacher selection" in report and "| FedSA (top 2 of 3" in report
  with open(os.path.join(config.out_dir, "results.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
