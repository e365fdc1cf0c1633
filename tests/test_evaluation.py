"""Tests for model.evaluation: embeddings, splits, probes, retrieval, tuning."""

import csv
import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score
import tensorflow as tf

from model import evaluation
from model.datasets.clips import Clip, ClipTable
from model.encoders import ENCODERS, Encoder
from model.features import FrontendConfig, frames_to_patches, log_mel

RATE = 16000
FRONTEND = FrontendConfig()
TINY = ENCODERS["tiny"]
KEYWORD_HZ = {"low": 250.0, "mid": 1000.0, "high": 3500.0}
SPEAKERS = [f"spk{i}" for i in range(6)]
INSTRUMENTS = ("flute", "organ")


def tone(freq, seconds, seed):
  """A sine with a random phase plus a little noise."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * RATE)) / RATE
  x = 0.5 * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
  return (x + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus():
  """Keyword tones by 6 speakers, music by some, one single-class column."""
  clips, waveforms = [], []
  seed = 0
  for s, speaker in enumerate(SPEAKERS):
    for keyword, freq in KEYWORD_HZ.items():
      for take in range(3):
        seed += 1
        clips.append(Clip(
            path=f"{speaker}/{keyword}_{take}.wav", client_id=speaker,
            labels={"keyword": keyword, "speaker": speaker,
                    "content": "speech", "corpus": "fake"}))
        # A second partial per speaker makes speakers separable too.
        seconds = 1.0 + 0.25 * take
        waveforms.append(tone(freq, seconds, seed)
                         + 0.3 * tone(4000.0 + 500.0 * s, seconds, seed + 500))
    for take in range(2):
      seed += 1
      instrument = INSTRUMENTS[(s + take) % 2]
      clips.append(Clip(path=f"{speaker}/music_{take}.wav", client_id=speaker,
                        labels={"content": "music", "instrument": instrument}))
      waveforms.append(tone(440.0, 1.5, seed) + tone(880.0, 1.5, seed + 1000))
  clips.append(Clip(path="nolabel.wav", client_id="spk0"))
  waveforms.append(tone(100.0, 1.0, 9999))
  return ClipTable.from_rows(clips, name="fake"), waveforms


def test_effective_rank():
  rng = np.random.default_rng(0)
  line = rng.standard_normal((50, 1)) * rng.standard_normal((1, 8))
  assert evaluation.effective_rank(line) == pytest.approx(1.0, abs=1e-6)
  # Centered rows with 16 equal singular values.
  isotropic = 3.0 * np.concatenate([np.eye(16), -np.eye(16)])
  assert evaluation.effective_rank(isotropic) == pytest.approx(16.0, rel=1e-6)
  assert evaluation.effective_rank(np.ones((4, 3))) == 0.0
  with pytest.raises(ValueError, match=r"expected \[n >= 2, d\]"):
    evaluation.effective_rank(np.ones(5))
  with pytest.raises(ValueError, match="2 non-finite values"):
    evaluation.effective_rank(np.array([[1.0, np.nan], [np.inf, 0.0]]))


def _embeddings_with_spectrum(singular_values, num_clips=200, offset=0.0,
                              seed=0):
  """``[num_clips, 32]`` centered-then-shifted embeddings whose singular
  values are ``singular_values`` (rotated by a random orthogonal basis)."""
  rng = np.random.default_rng(seed)
  u, _ = np.linalg.qr(rng.standard_normal((num_clips, len(singular_values))))
  u -= u.mean(axis=0)
  u, _ = np.linalg.qr(u)  # Orthonormal columns orthogonal to the ones.
  v, _ = np.linalg.qr(rng.standard_normal((32, 32)))
  x = (u * singular_values) @ v[:, :len(singular_values)].T
  return x + offset


@pytest.mark.parametrize("name, spectrum, collapsed", [
    # Healthy: like random init or a trained encoder (rank ~12 and ~29).
    ("decaying", 0.8 ** np.arange(32), False),
    ("broad", 0.95 ** np.arange(32), False),
    # Collapsed: one direction, or two with a faint rest (rank ~1-2).
    ("line", [1.0] + [0.0] * 31, True),
    ("two directions", [1.0, 0.5] + [1e-3] * 30, True),
])
def test_is_collapsed_on_synthetic_embeddings(name, spectrum, collapsed):
  # A large common offset (as in an encoder whose embeddings blew up) does
  # not change the verdict: the rank is of the centered rows.
  for offset in (0.0, 1e6):
    x = _embeddings_with_spectrum(np.asarray(spectrum), offset=offset)
    assert evaluation.is_collapsed(x) == collapsed, (name, offset)


def test_is_collapsed_threshold_and_constant_embeddings():
  assert evaluation.is_collapsed(np.zeros((10, 32)))
  assert evaluation.is_collapsed(np.full((10, 32), 7.0))
  # Four equal singular values: rank 4.
  assert not evaluation.is_collapsed(
      _embeddings_with_spectrum(np.ones(4)), min_rank=3.5)
  assert evaluation.is_collapsed(
      _embeddings_with_spectrum(np.ones(4)), min_rank=4.5)


def test_clip_embeddings_average_each_clips_patches():
  encoder = Encoder(TINY, seed=1)
  waveforms = [tone(300.0, 2.5, 0), tone(600.0, 0.5, 1), tone(900.0, 0.0125, 2),
               tone(1200.0, 1.0, 3)]
  embeddings = evaluation.clip_embeddings(encoder, waveforms, FRONTEND)
  assert embeddings.shape == (4, TINY.embedding_dim)
  assert embeddings.dtype == np.float32
  patches = frames_to_patches(log_mel(tf.constant(waveforms[0]), FRONTEND),
                              FRONTEND.patch_frames, pad=True)
  assert patches.shape[0] == 3  # 248 frames: 2 patches + a padded tail.
  expected = np.mean(encoder(patches).numpy(), axis=0)
  np.testing.assert_allclose(embeddings[0], expected, rtol=1e-5, atol=1e-5)
  # Batches that straddle clips give the same means.
  np.testing.assert_allclose(
      evaluation.clip_embeddings(encoder, waveforms, FRONTEND, batch_size=2),
      embeddings, rtol=1e-5, atol=1e-5)
  assert evaluation.clip_embeddings(encoder, [], FRONTEND).shape == (0, 32)


def test_clip_patches_pads_short_clips_to_one_patch():
  patches, owner = evaluation.clip_patches(
      [tone(300.0, 2.5, 0), np.zeros(100, np.float32), tone(1.0, 1.0, 1)],
      FRONTEND)
  assert patches.shape == (5, 96, 64)
  np.testing.assert_array_equal(owner, [0, 0, 0, 1, 2])
  assert np.all(np.isfinite(patches))


def test_clip_embeddings_rejects_mismatched_frontend():
  # The encoder takes any patch shape its pools divide (8 for 4 blocks).
  frontend = FrontendConfig(num_mel_bins=36)
  with pytest.raises(ValueError, match=r"divisible by 8; got .*\[96, 36\]"):
    evaluation.clip_embeddings(Encoder(TINY), [tone(300.0, 1.0, 0)], frontend)


@pytest.mark.parametrize("task", ["keyword", "content", "instrument"])
def test_split_keeps_speakers_disjoint(corpus, task):
  table, _ = corpus
  labelled = table.with_label(task)
  labels = np.asarray(labelled.labels_of(task))
  clients = np.asarray([c.client_id for c in labelled])
  for seed in range(5):
    train, test = evaluation.split_for_task(table, task, seed=seed)
    assert len(test) and not set(clients[train]) & set(clients[test])
    assert set(labels[test]) <= set(labels[train])
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    assert set(train).isdisjoint(test)
    assert max(train.max(), test.max()) < len(labelled)


def test_split_for_speaker_is_within_speakers(corpus):
  table, _ = corpus
  speakers = np.asarray(table.with_label("speaker").labels_of("speaker"))
  train, test = evaluation.split_for_task(table, "speaker", test_fraction=0.3)
  assert set(train).isdisjoint(test)
  assert len(train) + len(test) == len(speakers)
  # Every speaker is on both sides, in proportion.
  assert set(speakers[test]) == set(speakers[train]) == set(SPEAKERS)
  assert set(np.unique(speakers[test], return_counts=True)[1]) <= {2, 3}


def test_split_drops_test_labels_unseen_in_train():
  # Class "c" is recorded by one speaker only: it can never be in both sides.
  clips = [Clip(path=f"{s}_{i}", client_id=s, labels={"kind": label})
           for s, labels in [("a", "xy"), ("b", "xy"), ("c", "xyc"),
                             ("d", "xy")]
           for i, label in enumerate(labels)]
  table = ClipTable.from_rows(clips)
  labels = np.asarray(table.labels_of("kind"))
  for seed in range(5):
    train, test = evaluation.split_for_task(table, "kind", test_fraction=0.5,
                                            seed=seed)
    assert set(labels[test]) <= set(labels[train])


def test_split_errors_name_the_task(corpus):
  table, _ = corpus
  with pytest.raises(ValueError, match=r"task 'corpus'.*2 classes, got 1"):
    evaluation.split_for_task(table, "corpus")
  one_speaker = table.filter(lambda c: c.client_id == "spk0")
  with pytest.raises(ValueError, match=r"task 'keyword'.*1 speaker"):
    evaluation.split_for_task(one_speaker, "keyword")
  singletons = ClipTable.from_rows(
      [Clip(path=str(i), client_id=f"s{i}", labels={"speaker": f"s{i}"})
       for i in range(4)])
  with pytest.raises(ValueError, match=r"task 'speaker'.*got 0 such classes"):
    evaluation.split_for_task(singletons, "speaker")
  with pytest.raises(ValueError, match="test_fraction"):
    evaluation.split_for_task(table, "keyword", test_fraction=1.0)


@pytest.mark.parametrize("task", ["keyword", "content", "instrument",
                                  "speaker"])
def test_cross_validation_tests_every_clip_once(corpus, task):
  table, _ = corpus
  labelled = table.with_label(task)
  labels = np.asarray(labelled.labels_of(task))
  clients = np.asarray([c.client_id for c in labelled])
  splits = evaluation.cross_validation_splits(table, task, folds=3, seed=1)
  assert len(splits) == 3
  tested = np.concatenate([test for _, test in splits])
  np.testing.assert_array_equal(np.sort(tested), np.arange(len(labelled)))
  for train, test in splits:
    assert set(train).isdisjoint(test) and len(train) + len(test) == len(
        labelled)
    assert set(labels[test]) <= set(labels[train])
    if task == evaluation.SPEAKER_TASK:
      assert set(labels[test]) == set(labels[train])
    else:
      assert not set(clients[train]) & set(clients[test])


def test_cross_validation_speakers_with_few_clips_train_only():
  clips = [Clip(path=f"{s}_{i}", client_id=s, labels={"speaker": s})
           for s, n in [("a", 4), ("b", 4), ("c", 2)] for i in range(n)]
  table = ClipTable.from_rows(clips)
  splits = evaluation.cross_validation_splits(table, "speaker", folds=3)
  speakers = np.asarray(table.labels_of("speaker"))
  tested = np.concatenate([test for _, test in splits])
  assert sorted(tested) == list(np.flatnonzero(speakers != "c"))
  assert all(set(np.flatnonzero(speakers == "c")) <= set(train)
             for train, _ in splits)
  with pytest.raises(ValueError, match=r"task 'speaker'.*got 0 such classes"):
    evaluation.cross_validation_splits(table, "speaker", folds=5)


def test_cross_validation_errors_name_the_task(corpus):
  table, _ = corpus
  with pytest.raises(ValueError, match=r"task 'keyword'.*7 speakers; got 6"):
    evaluation.cross_validation_splits(table, "keyword", folds=7)
  with pytest.raises(ValueError, match="folds must be >= 1"):
    evaluation.cross_validation_splits(table, "keyword", folds=0)


def test_cross_validation_names_classes_with_fewer_clips_than_folds(caplog):
  # 4 speakers x ("yes", "no") x 2, and one "stop" clip: "stop" cannot be in
  # both folds' test part. The library says so by name instead of sklearn's
  # anonymous warning, and keeps the folds sklearn makes.
  clips = [Clip(path=f"{s}_{w}_{i}", client_id=f"s{s}",
                labels={"keyword": w})
           for s in range(4) for w in ("yes", "no") for i in range(2)]
  clips.append(Clip(path="stop", client_id="s0", labels={"keyword": "stop"}))
  table = ClipTable.from_rows(clips)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    with caplog.at_level("INFO", logger="absl"):
      splits = evaluation.cross_validation_splits(table, "keyword", folds=2,
                                                  seed=0)
  assert any("1 of 3 classes have fewer clips than the 2 folds ('stop' 1)"
             in r.getMessage() for r in caplog.records)
  tested = np.concatenate([test for _, test in splits])
  # The "stop" clip's fold has no "stop" in train: it is dropped there.
  assert len(tested) == len(clips) - 1
  singletons = ClipTable.from_rows(
      [Clip(path=str(i), client_id=f"s{i % 3}", labels={"keyword": f"w{i}"})
       for i in range(6)])
  with pytest.raises(ValueError, match=r"task 'keyword': 2-fold .* needs a "
                     r"class with at least 2 clips; the most frequent of the "
                     r"6 classes has 1"):
    evaluation.cross_validation_splits(singletons, "keyword", folds=2)


def _label_features(table, task, noise, seed=0):
  """Features of every clip: its ``task`` label one-hot, plus noise."""
  rng = np.random.default_rng(seed)
  values = sorted(set(table.with_label(task).labels_of(task)))
  x = np.asarray([[clip.labels.get(task) == v for v in values]
                  for clip in table], np.float32)
  return x + noise * rng.standard_normal(x.shape).astype(np.float32)


def test_probe_folds_one_is_the_single_split(corpus):
  table, _ = corpus
  rows = np.arange(len(table))
  for task in ("keyword", "instrument", "speaker"):
    x = _label_features(table, task, noise=2.0)
    result = evaluation.probe_embeddings(x, rows, table, tasks=[task],
                                         retrieval_task=None)
    assert result.folds == 1
    labels = np.asarray(table.with_label(task).labels_of(task))
    task_x = x[[i for i, c in enumerate(table) if task in c.labels]]
    train, test = evaluation.split_for_task(table, task)
    assert result.accuracy[task] == evaluation.linear_probe(
        task_x[train], labels[train], task_x[test], labels[test])
    assert result.num_test[task] == len(test)
    assert result.stderr[task] == pytest.approx(math.sqrt(
        result.accuracy[task] * (1 - result.accuracy[task]) / len(test)))


def test_probe_folds_pool_every_labelled_clip(corpus):
  table, _ = corpus
  rows = np.arange(len(table))
  for task in ("content", "instrument", "keyword", "speaker"):
    separable = evaluation.probe_embeddings(
        _label_features(table, task, noise=0.05), rows, table, probe_folds=3,
        tasks=[task], retrieval_task=None)
    assert separable.folds == 3
    assert separable.num_test[task] == len(table.with_label(task))
    assert separable.accuracy[task] == 1.0 and separable.stderr[task] == 0.0
  x = _label_features(table, "keyword", noise=1.0)
  noisy = evaluation.probe_embeddings(x, rows, table, probe_folds=3,
                                      tasks=["keyword"], retrieval_task=None)
  labels = np.asarray(table.with_label("keyword").labels_of("keyword"))
  task_x = x[[i for i, c in enumerate(table) if "keyword" in c.labels]]
  correct = sum(
      len(test) * evaluation.linear_probe(task_x[train], labels[train],
                                          task_x[test], labels[test])
      for train, test in evaluation.cross_validation_splits(
          table, "keyword", folds=3))
  assert noisy.accuracy["keyword"] == pytest.approx(correct / len(labels))
  assert 0.0 < noisy.stderr["keyword"] < 0.5


def test_linear_probe_separable_and_random():
  rng = np.random.default_rng(0)
  centers = 10.0 * rng.standard_normal((4, 16))
  y = rng.integers(0, 4, 800)
  x = centers[y] + rng.standard_normal((800, 16))
  assert evaluation.linear_probe(x[:400], y[:400], x[400:], y[400:]) == 1.0
  noise = rng.standard_normal((2000, 16))
  random_y = rng.integers(0, 4, 2000)
  accuracy = evaluation.linear_probe(noise[:1000], random_y[:1000],
                                     noise[1000:], random_y[1000:])
  assert 0.15 < accuracy < 0.35


def test_retrieval_map_perfect_clusters():
  rng = np.random.default_rng(0)
  labels = np.repeat(["a", "b", "c"], 12)
  directions = np.eye(8)[:3] * 5.0
  embeddings = directions[np.repeat([0, 1, 2], 12)] + 0.1 * rng.random((36, 8))
  scores = evaluation.retrieval_map(embeddings, labels, k=5)
  assert scores == {"map": pytest.approx(1.0),
                    "precision@5": pytest.approx(1.0)}


def test_retrieval_map_matches_brute_force(monkeypatch):
  # Small chunks exercise the chunked ranking too.
  monkeypatch.setattr(evaluation, "_RETRIEVAL_CHUNK", 7)
  rng = np.random.default_rng(1)
  embeddings = rng.standard_normal((40, 6))
  labels = rng.integers(0, 4, 40)
  labels[-1] = 9  # A label without any other clip: no AP, precision 0.
  unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
  average_precisions, precisions = [], []
  for q in range(40):
    others = np.delete(np.arange(40), q)
    similarity = unit[others] @ unit[q]
    relevant = labels[others] == labels[q]
    if relevant.any():
      average_precisions.append(average_precision_score(relevant, similarity))
    precisions.append(relevant[np.argsort(-similarity)[:10]].mean())
  scores = evaluation.retrieval_map(embeddings, labels, k=10)
  assert scores["map"] == pytest.approx(np.mean(average_precisions), abs=1e-6)
  assert scores["precision@10"] == pytest.approx(np.mean(precisions), abs=1e-6)
  with pytest.raises(ValueError, match="occurs twice"):
    evaluation.retrieval_map(embeddings[:3], [1, 2, 3])


def test_evaluate_encoder_probes_every_multiclass_task(corpus):
  table, waveforms = corpus
  result = evaluation.probe_encoder(Encoder(TINY, seed=0), table, waveforms,
                                    FRONTEND)
  assert evaluation.default_tasks(table) == ("content", "instrument",
                                             "keyword", "speaker")
  assert set(result.accuracy) == {"content", "instrument", "keyword",
                                  "speaker"}
  assert result.retrieval_task == "keyword"
  assert all(0.0 <= v <= 1.0 for v in result.as_dict().values())
  assert result.num_train["keyword"] + result.num_test["keyword"] == 54
  # Tones 4x apart in frequency are easy even for a random encoder.
  assert result.accuracy["keyword"] > 0.8
  assert result.accuracy["content"] > 0.8
  scores = evaluation.evaluate_encoder(Encoder(TINY, seed=0), table, waveforms,
                                       FRONTEND, tasks=["keyword"])
  assert set(scores) == {"keyword", "retrieval_map", "retrieval_precision@10"}
  assert scores["keyword"] == result.accuracy["keyword"]
  assert scores["retrieval_map"] == result.retrieval["map"]
  no_retrieval = evaluation.evaluate_encoder(
      Encoder(TINY), table, waveforms, FRONTEND, tasks=["content"],
      retrieval_task="language")
  assert set(no_retrieval) == {"content"}


def _snapshot(encoder):
  return {n: v.numpy().copy() for n, v in zip(encoder.weight_names,
                                              encoder.weights)}


@pytest.mark.parametrize("trainable_blocks", [0, 1, 2])
def test_fine_tuning_changes_only_unfrozen_layers(trainable_blocks):
  encoder = Encoder(TINY, seed=3)
  before = _snapshot(encoder)
  rng = np.random.default_rng(0)
  patches = rng.standard_normal((16, 96, 64)).astype(np.float32)
  labels = rng.integers(0, 3, 16)
  classifier, losses = evaluation.train_classifier(
      encoder, patches, labels, 3, trainable_blocks=trainable_blocks, steps=3,
      batch_size=8)
  assert losses.shape == (3,) and np.all(np.isfinite(losses))
  after = _snapshot(classifier.encoder)
  num_blocks = len(TINY.channels)
  unfrozen = {f"block{i}" for i in range(num_blocks - trainable_blocks,
                                         num_blocks)} | {"embedding"}
  for name, value in before.items():
    layer = name.split("/")[1]
    changed = not np.array_equal(after[name], value)
    assert changed == (layer in unfrozen), name
    # The caller's encoder is untouched.
    np.testing.assert_array_equal(encoder.weights[
        encoder.weight_names.index(name)].numpy(), value)
  assert classifier.encoder is not encoder
  with pytest.raises(ValueError, match="trainable_blocks"):
    evaluation.train_classifier(encoder, patches, labels, 3,
                                trainable_blocks=5, steps=1)
  with pytest.raises(ValueError, match=r"labels must be integers in \[0, 2\)"):
    evaluation.train_classifier(encoder, patches, labels, 2,
                                trainable_blocks=None, steps=1)


def test_supervised_and_fine_tuned_classifiers_learn_tones(corpus):
  table, waveforms = corpus
  split = evaluation.split_for_task(table, "keyword", seed=0)
  supervised = evaluation.supervised_baseline(
      TINY, table, waveforms, FRONTEND, "keyword", split, steps=60,
      batch_size=32, learning_rate=3e-3)
  assert supervised > 0.8  # Chance is 1/3.
  tuned = evaluation.fine_tune(
      Encoder(TINY, seed=5), table, waveforms, FRONTEND, "keyword", split,
      trainable_blocks=1, steps=30, batch_size=32, learning_rate=3e-3)
  assert 0.0 <= tuned <= 1.0


def test_gap_recovered():
  assert evaluation.gap_recovered(0.5, 0.8, 0.9) == pytest.approx(0.75)
  assert evaluation.gap_recovered(0.5, 0.4, 0.9) == pytest.approx(-0.25)
  assert math.isnan(evaluation.gap_recovered(0.7, 0.8, 0.7))
  assert math.isnan(evaluation.gap_recovered(math.nan, 0.8, 0.9))


def test_quality_table_outputs(tmp_path):
  rows = {"ssl": {"keyword": 0.83, "speaker": 0.61},
          "supervised": {"keyword": 0.95, "content": 0.99}}
  png = tmp_path / "plots" / "quality.png"
  figure = evaluation.plot_quality_table(rows, str(png))
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert not figure.axes[0].get_lines()
  figure = evaluation.plot_quality_table(rows, str(png), goal=0.9)
  (line,) = figure.axes[0].get_lines()
  assert list(line.get_ydata()) == [0.9, 0.9]
  assert line.get_label() == "goal 0.9"
  table = evaluation.format_markdown_table(rows)
  assert table.splitlines() == [
      "| model | keyword | speaker | content |",
      "|---|---:|---:|---:|",
      "| ssl | 0.830 | 0.610 | - |",
      "| supervised | 0.950 | - | 0.990 |"]
  path = tmp_path / "quality.csv"
  evaluation.write_csv(rows, str(path))
  with open(path, newline="") as f:
    read = list(csv.DictReader(f))
  assert read[0] == {"model": "ssl", "keyword": "0.83", "speaker": "0.61",
                     "content": ""}
  assert float(read[1]["content"]) == 0.99
  with pytest.raises(ValueError, match="no rows"):
    evaluation.format_markdown_table({})
