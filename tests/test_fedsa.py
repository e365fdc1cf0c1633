"""FedSA: Grad-CAM, selection with replacement, hint distillation, the study."""

import dataclasses
import os
import shlex

import numpy as np
import pytest

from benchmarks import fedsa_main
from benchmarks.fedsa import (FEDAVG, FEDSA, KA, LOG_MEL, SCRATCH, TRANSFER,
                              FedSAStudyConfig, labelled_subset,
                              run_fedsa_study)
from model import cli
from model.encoders import ENCODERS, Encoder, encode
from model.features import FrontendConfig
from model.ssl_model import ModelSpec, SSLModel, save_model
from tff_sim.fedsa import (FedSAConfig, FedSATeacher, block_activations,
                           check_teacher, clip_similarities, fit_linear_head,
                           forward_from_block, gradcam_maps, make_probe_set,
                           run_fedsa, sample_teachers,
                           selection_probabilities)

TINY = ENCODERS["tiny"]


def _tones(rng, bands, per_band, seconds=1.0):
  t = np.arange(int(16000 * seconds)) / 16000.0
  waveforms, labels = [], []
  for name, (low, high) in bands.items():
    for f in rng.uniform(low, high, per_band):
      waveforms.append((0.3 * np.sin(2 * np.pi * f * t)
                        + 0.02 * rng.standard_normal(t.size)).astype(
                            np.float32))
      labels.append(name)
  return waveforms, labels


_BANDS = {"low": (200, 400), "mid": (900, 1400), "high": (3000, 5000)}


@pytest.fixture(scope="module")
def probe():
  """Tones in three frequency bands, labelled by band (two 1.9 s clips each
  so that clips have two patches)."""
  waveforms, labels = _tones(np.random.default_rng(0), _BANDS, 2, 1.95)
  return make_probe_set(waveforms, labels, tuple(_BANDS), FrontendConfig())


def _values(encoder):
  return [v.numpy() for v in encoder.weights]


@pytest.mark.parametrize("block, pooling", [
    (-4, "max"), (-1, "max"), (0, "max"), (2, "max"), (-1, "stats"),
    (1, "max_stats")])
def test_split_forward_pass_is_the_encoder(probe, block, pooling):
  config = dataclasses.replace(TINY, pooling=pooling)
  params = _values(Encoder(config, seed=3))
  activations = block_activations(config, params, probe.patches, block)
  assert activations.shape[-1] == config.channels[block]
  np.testing.assert_allclose(
      forward_from_block(config, params, activations, block),
      encode(config, params, probe.patches), rtol=1e-5, atol=1e-6)


def test_gradcam_maps_are_min_max_normalized_per_patch(probe):
  assert len(probe.patches) == 2 * len(probe.labels)
  params = _values(Encoder(TINY, seed=0))
  head = fit_linear_head(encode(TINY, params, probe.patches).numpy(),
                         probe.patch_labels, 3)
  maps, predicted = gradcam_maps(TINY, params, head, probe, block=-2)
  assert maps.shape == probe.patches.shape
  assert predicted.shape == probe.labels.shape and set(predicted) <= {0, 1, 2}
  flat = maps.reshape(len(maps), -1)
  assert np.all(flat >= 0) and np.all(flat <= 1 + 1e-6)
  nonzero = flat.max(axis=1) > 0
  assert nonzero.any()
  np.testing.assert_allclose(flat[nonzero].max(axis=1), 1.0, atol=1e-6)
  np.testing.assert_allclose(flat[nonzero].min(axis=1), 0.0, atol=1e-6)
  # A model compared with itself is perfectly similar on every clip whose
  # maps are not all zero.
  same = clip_similarities(maps, maps, probe.owner)
  clip_nonzero = np.bincount(probe.owner, nonzero) > 0
  np.testing.assert_allclose(same[clip_nonzero], 1.0)


def test_clip_similarity_is_half_plus_half_cosine():
  a = np.zeros((3, 2, 2), np.float32)
  b = np.zeros((3, 2, 2), np.float32)
  a[0, 0, 0] = b[0, 0, 0] = 1      # clip 0 (patches 0, 1): identical
  a[1, 0, 0] = 1
  b[1, 0, 0] = 1
  a[2, 0, 0] = 1                   # clip 1 (patch 2): orthogonal
  b[2, 1, 1] = 1
  owner = np.array([0, 0, 1])
  np.testing.assert_allclose(clip_similarities(a, b, owner), [1.0, 0.5])
  b[2] = 0                         # an all-zero map: cosine 0
  np.testing.assert_allclose(clip_similarities(a, b, owner), [1.0, 0.5])
  c = a.copy()
  c[2, 1, 1] = 1                   # cos 45 degrees
  np.testing.assert_allclose(clip_similarities(a, c, owner)[1],
                             0.5 + 0.5 / np.sqrt(2))
  with pytest.raises(ValueError, match="shape"):
    clip_similarities(a, a[:2], owner)


def test_selection_probabilities_follow_the_reference_formula():
  similarities = np.array([[1.0, 1.0], [0.5, 0.5], [0.75, 0.75]])
  # transferability 1, 2, 4/3 -> 2 - t = 1, 0, 2/3 -> min-max 1, 0, 2/3.
  q = np.array([1.0, 0.0, 2 / 3])
  expected = np.exp(q) / np.exp(q).sum()
  np.testing.assert_allclose(selection_probabilities(similarities), expected)
  np.testing.assert_allclose(selection_probabilities(similarities, 0.5),
                             np.exp(2 * q) / np.exp(2 * q).sum())
  np.testing.assert_allclose(selection_probabilities(np.full((4, 3), 0.7)),
                             0.25)


def test_sampling_is_with_replacement_and_follows_probabilities():
  rng = np.random.default_rng(0)
  assert sample_teachers(np.array([0.0, 1.0, 0.0]), 3, rng).tolist() == [1] * 3
  draws = sample_teachers(np.array([0.8, 0.2]), 4000, rng)
  assert set(draws.tolist()) == {0, 1}
  assert np.mean(draws == 0) == pytest.approx(0.8, abs=0.03)
  # k larger than the number of teachers is fine: draws repeat.
  assert len(sample_teachers(np.array([0.5, 0.5]), 5, rng)) == 5


def test_probe_set_needs_a_clip_of_every_class():
  waveforms, labels = _tones(np.random.default_rng(1), _BANDS, 1)
  with pytest.raises(ValueError, match=r"\['extra'\] have no clip"):
    make_probe_set(waveforms, labels, (*_BANDS, "extra"), FrontendConfig())
  with pytest.raises(ValueError, match="not among"):
    make_probe_set(waveforms, labels, ("low", "mid"), FrontendConfig())


def _save_teacher(directory, encoder, task="triplet", seed=1, **frontend):
  spec = ModelSpec(task=task, encoder=encoder, seed=seed,
                   frontend=dataclasses.replace(FrontendConfig(), **frontend))
  save_model(SSLModel(spec), directory)
  return directory


def test_teacher_with_another_front_end_or_input_is_named(tmp_path):
  clips = (np.zeros(16000, np.float32),)
  odd = FedSATeacher("odd", _save_teacher(str(tmp_path / "a"), TINY,
                                          fft_length=1024), clips)
  with pytest.raises(ValueError, match="'odd'.*fft_length is 1024.*512"):
    check_teacher(odd, TINY, FrontendConfig())
  other = FedSATeacher("narrow", _save_teacher(
      str(tmp_path / "b"), TINY, num_mel_bins=32), clips)
  with pytest.raises(ValueError, match="'narrow'"):
    check_teacher(other, TINY, FrontendConfig())


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
  """Two untrained teachers of different presets, each with its own audio."""
  root = tmp_path_factory.mktemp("teachers")
  rng = np.random.default_rng(2)
  result = []
  for i, preset in enumerate(("tiny", "small")):
    clips, _ = _tones(rng, {"a": (100 + 2000 * i, 1500 + 2000 * i)}, 3, 1.5)
    result.append(FedSATeacher(
        f"T{i}", _save_teacher(str(root / preset), ENCODERS[preset],
                               seed=i), tuple(clips)))
  return result


@pytest.mark.slow
def test_fedsa_run_end_to_end(probe, teachers):
  config = FedSAConfig(rounds=2, selection_period=1, top_k=3, local_steps=2,
                       batch_size=4, probe_steps=3, probe_batch_size=4)
  periods = []
  result = run_fedsa(config, TINY, teachers, probe, show_progress=False,
                     on_period=lambda r, e: periods.append(r))
  assert periods == [1, 2]
  assert [r.round for r in result.history] == [1, 2]
  for record in result.history:
    assert len(record.selected) == 3 and set(record.selected) <= {0, 1}
    assert sum(record.probabilities) == pytest.approx(1.0)
    assert all(0.5 <= s <= 1.0 for s in record.similarities)
  assert all(len(l) == 3 and np.all(np.isfinite(l))
             for l in result.round_losses)
  assert result.client_examples == 2 * 3 * 2 * 4
  kernel, bias = result.head
  assert kernel.shape == (TINY.embedding_dim, 3) and bias.shape == (3,)
  initial = _values(Encoder(TINY, seed=0))
  assert any(not np.allclose(a, b) for a, b in
             zip(_values(result.encoder), initial))
  for aggregation, copies in (("all", 2), ("central", 1)):
    other = run_fedsa(dataclasses.replace(config, aggregation=aggregation,
                                          hint_layer="embedding", rounds=1),
                      TINY, teachers, probe, show_progress=False,
                      initial_weights=initial)
    assert not other.history and len(other.round_losses[0]) == copies


def test_labelled_subset_keeps_every_class():
  labels = np.array(["a"] * 50 + ["b"] * 10 + ["c"] * 3)
  train = np.arange(0, 63)
  subset = labelled_subset(labels, train, 0.01, seed=0)
  assert sorted(labels[subset]) == ["a", "b", "c"]
  assert len(labelled_subset(labels, train, 0.1, seed=0)) == 5 + 1 + 1
  assert len(labelled_subset(labels, train, 1.0, seed=0)) == 63
  assert not np.array_equal(labelled_subset(labels, train, 0.1, seed=0),
                            labelled_subset(labels, train, 0.1, seed=1))


def test_study_config_rejects_bad_values():
  with pytest.raises(ValueError, match="preset:task"):
    FedSAStudyConfig(teachers=("small:nope",))
  with pytest.raises(ValueError, match="ablation_fractions"):
    FedSAStudyConfig(label_fractions=(0.1,), ablation_fractions=(0.05,))
  with pytest.raises(ValueError, match="hint_layer"):
    FedSAConfig(hint_layer="block9")


@pytest.mark.slow
def test_quick_study_writes_the_table(tmp_path):
  config = FedSAStudyConfig(
      corpus="tiny", corpus_dir=str(tmp_path / "corpus"),
      teachers=("tiny:triplet", "small:temporal_gap"), teacher_steps=2,
      teacher_batch_size=4, label_fractions=(1.0,), seeds=(0,),
      ablation_fractions=(), fine_tune_steps=2,
      fedsa=FedSAConfig(rounds=2, selection_period=1, top_k=2, local_steps=2,
                        batch_size=4, probe_steps=2, probe_batch_size=4),
      out_dir=str(tmp_path / "out"))
  study = run_fedsa_study(config, show_progress=False)
  for row in (LOG_MEL, SCRATCH, TRANSFER, KA, FEDAVG, FEDSA):
    mean, std = study.table[row][1.0]
    assert 0 <= mean <= 1 and std == 0
  assert len(study.selections[(1.0, 0)]) == 2
  with open(os.path.join(config.out_dir, "report.md")) as f:
    report = f.read()
  assert f"| {FEDSA} |" in report
  for name in ("selection.png", "results.png"):
    with open(os.path.join(config.out_dir, name), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with open(os.path.join(config.out_dir, "selection.csv")) as f:
    assert len(f.readlines()) == 1 + 2 * 2
  command = next(line for line in report.splitlines()
                 if line.startswith("python -m benchmarks.fedsa_main"))
  cli.parse(fedsa_main.FLAGS, ["fedsa_main", *shlex.split(command)[3:]])
  assert repr(fedsa_main.config_from_flags()) == repr(config)
