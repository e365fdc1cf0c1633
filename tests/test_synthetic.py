"""Tests of the built-in synthetic corpus (model/datasets/synthetic.py)."""

import collections
import dataclasses
import itertools
import os
import re
import shutil
import time

import numpy as np
import pytest
import soundfile as sf

from model.datasets import synthetic
from model.datasets.clips import ClipTable

TINY = synthetic.CORPUS_PRESETS["tiny"]
# Even smaller, for the tests of the directory handling.
MINI = synthetic.CorpusConfig(num_speakers=2, keyword_clips_per_speaker=2,
                              utterances_per_speaker=1,
                              music_clips_per_client=0.5,
                              noise_clips_per_client=0.5)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[ClipTable, float]:
  """The tiny corpus and the seconds its generation took."""
  out_dir = str(tmp_path_factory.mktemp("tiny"))
  start = time.perf_counter()
  table = synthetic.generate_corpus(out_dir, TINY, show_progress=False)
  return table, time.perf_counter() - start


def _read(table: ClipTable, clip) -> np.ndarray:
  audio, sr = sf.read(table.resolve(clip), dtype="float64")
  assert sr == 16000
  return audio


def _mean_log_spectrum(audio: np.ndarray, frame: int = 512) -> np.ndarray:
  frames = audio[:len(audio) // frame * frame].reshape(-1, frame)
  power = np.abs(np.fft.rfft(frames * np.hanning(frame), axis=1)) ** 2
  return np.log(power.mean(axis=0) + 1e-10)


def test_tiny_generates_fast(tiny):
  table, seconds = tiny
  assert 40 <= len(table) <= 60
  assert seconds < 10.0


def test_files_and_manifest(tiny):
  table, _ = tiny
  root = table.root
  assert os.path.isfile(os.path.join(root, "manifest.csv"))
  assert os.path.isfile(os.path.join(root, "corpus.json"))
  for clip in table:
    assert not os.path.isabs(clip.path)
    info = sf.info(table.resolve(clip))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert info.frames == round(clip.duration_s * 16000)


def test_label_sets(tiny):
  table, _ = tiny
  assert set(table.label_columns) == {"content", "instrument", "keyword",
                                      "speaker"}
  assert set(table.labels_of("content")) == {"speech", "music", "noise"}
  assert set(table.with_label("keyword").labels_of("keyword")) == set(
      synthetic.VOCABULARY)
  assert set(table.with_label("instrument").labels_of("instrument")) == set(
      synthetic.INSTRUMENTS)
  for clip in table:
    content = clip.labels["content"]
    assert ("speaker" in clip.labels) == (content == "speech")
    assert ("instrument" in clip.labels) == (content == "music")
    if "keyword" in clip.labels:
      assert content == "speech"


def test_durations(tiny):
  table, _ = tiny
  keywords = table.with_label("keyword")
  assert len(keywords) == TINY.num_speakers * TINY.keyword_clips_per_speaker
  assert all(c.duration_s == 1.0 for c in keywords)
  others = table.filter(lambda c: "keyword" not in c.labels)
  assert all(5.5 <= c.duration_s <= 8.0 for c in others)


def test_clients(tiny):
  table, _ = tiny
  assert len(table.client_ids) == TINY.num_speakers
  assert all(re.fullmatch(r"spk\d{3}", c) for c in table.client_ids)
  for clip in table.with_label("speaker"):
    assert clip.client_id == clip.labels["speaker"]
  per_client = table.filter(lambda c: c.labels["content"] != "speech")
  assert set(per_client.client_ids) <= set(table.client_ids)


def test_audio_is_finite_and_audible(tiny):
  table, _ = tiny
  for clip in table:
    audio = _read(table, clip)
    assert np.all(np.isfinite(audio)), clip.path
    assert 0.1 < np.max(np.abs(audio)) < 1.0, clip.path
    assert np.sqrt(np.mean(audio ** 2)) > 1e-3, clip.path


def test_speakers_are_separable(tiny):
  table, _ = tiny
  utterances = table.filter(lambda c: c.labels["content"] == "speech"
                            and "keyword" not in c.labels)
  spectra = {c.path: _mean_log_spectrum(_read(table, c)) for c in utterances}
  same, different = [], []
  for a, b in itertools.combinations(utterances, 2):
    distance = np.sqrt(np.mean((spectra[a.path] - spectra[b.path]) ** 2))
    (same if a.client_id == b.client_id else different).append(distance)
  assert same and different
  assert np.mean(same) < 0.7 * np.mean(different)


def test_deterministic(tiny, tmp_path):
  table, _ = tiny
  again = synthetic.generate_corpus(str(tmp_path / "again"), TINY,
                                    show_progress=False)
  with open(os.path.join(table.root, "manifest.csv"), "rb") as f:
    manifest = f.read()
  with open(os.path.join(again.root, "manifest.csv"), "rb") as f:
    assert f.read() == manifest
  for clip in table.clips[::10]:
    with open(table.resolve(clip), "rb") as f, open(again.resolve(clip), "rb") as g:
      assert f.read() == g.read(), clip.path


def test_other_seed_differs(tiny, tmp_path):
  table, _ = tiny
  other = synthetic.generate_corpus(
      str(tmp_path), dataclasses.replace(TINY, seed=1), show_progress=False)
  assert [c.path for c in other] != [c.path for c in table]
  first, other_first = _read(table, table[0]), _read(other, other[0])
  assert not np.array_equal(first, other_first)


def test_reuses_complete_corpus(tmp_path):
  out_dir = str(tmp_path)
  table = synthetic.generate_corpus(out_dir, MINI, show_progress=False)
  first_wav = table.resolve(table[0])
  mtime = os.stat(first_wav).st_mtime_ns
  again = synthetic.generate_corpus(out_dir, MINI, show_progress=False)
  assert again == table
  assert os.stat(first_wav).st_mtime_ns == mtime


def test_regenerates_incomplete_corpus(tmp_path):
  out_dir = str(tmp_path)
  table = synthetic.generate_corpus(out_dir, MINI, show_progress=False)
  os.remove(os.path.join(out_dir, "corpus.json"))  # As if killed before the end.
  os.remove(table.resolve(table[0]))
  again = synthetic.generate_corpus(out_dir, MINI, show_progress=False)
  assert again == table
  assert os.path.isfile(table.resolve(table[0]))


def test_config_mismatch_raises(tmp_path):
  synthetic.generate_corpus(str(tmp_path), MINI, show_progress=False)
  with pytest.raises(ValueError, match="noise_mix_prob"):
    synthetic.generate_corpus(
        str(tmp_path), dataclasses.replace(MINI, noise_mix_prob=0.9),
        show_progress=False)


def test_invalid_config_raises():
  with pytest.raises(ValueError, match="snr_db"):
    synthetic.CorpusConfig(snr_db=(30.0, 5.0))
  with pytest.raises(ValueError, match="noise_mix_prob"):
    synthetic.CorpusConfig(noise_mix_prob=1.5)


def test_presets_grow():
  sizes = [synthetic.CORPUS_PRESETS[name].num_speakers
           for name in ("tiny", "demo", "full")]
  assert sizes == sorted(sizes)


def test_tts_without_espeak_raises(tmp_path, monkeypatch):
  monkeypatch.setattr(synthetic.shutil, "which", lambda name: None)
  with pytest.raises(RuntimeError, match="espeak-ng"):
    synthetic.generate_corpus(str(tmp_path), dataclasses.replace(MINI, tts=True),
                              show_progress=False)
  assert not os.path.exists(tmp_path / "manifest.csv")


@pytest.mark.skipif(shutil.which("espeak-ng") is None,
                    reason="espeak-ng is not installed")
def test_tts(tmp_path):
  config = dataclasses.replace(MINI, num_speakers=4, tts=True)
  table = synthetic.generate_corpus(str(tmp_path), config, show_progress=False)
  speech = table.with_label("speaker")
  assert set(speech.labels_of("language")) == {"en", "de", "fr", "es"}
  assert "language" not in table.filter(
      lambda c: c.labels["content"] != "speech").label_columns
  for clip in speech:
    audio = _read(table, clip)
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) > 0.1
    if "keyword" in clip.labels:
      assert len(audio) == 16000


@pytest.mark.slow
def test_fl_preset_has_over_100_clients(tmp_path):
  table = synthetic.generate_corpus(str(tmp_path),
                                    synthetic.CORPUS_PRESETS["fl"],
                                    show_progress=False)
  assert len(table.client_ids) >= 100
  clips = collections.Counter(clip.client_id for clip in table)
  assert min(clips.values()) >= 7  # Every client has data for local steps.
