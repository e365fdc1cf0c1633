"""Tests for model.datasets.audio: decoding, resampling and scanning."""

import logging
import os

import numpy as np
import pytest
import soundfile as sf

from model.datasets import audio
from model.datasets.audio import (AudioDecodeError, EmptyDatasetError,
                                  ScanReport, load_audio, load_waveforms,
                                  scan_clips)
from model.datasets.clips import Clip, ClipTable


def tone(seconds, rate, freq=440.0, channels=1, seed=0):
  """A sine plus a little noise, shape (frames,) or (frames, channels)."""
  t = np.arange(int(round(seconds * rate))) / rate
  rng = np.random.default_rng(seed)
  x = 0.5 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
  x = x.astype(np.float32)
  if channels == 1:
    return x
  # Channel c has amplitude 1/(c+1), so the mono mix is mean(1/(c+1)) * x.
  return np.stack([x / (c + 1) for c in range(channels)], axis=1)


def peak_hz(x, rate):
  spectrum = np.abs(np.fft.rfft(x))
  return np.fft.rfftfreq(x.size, 1 / rate)[np.argmax(spectrum)]


def rms(x):
  return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


@pytest.fixture
def folder(tmp_path):
  """Three good files (16 kHz, 44.1 kHz stereo, 8 kHz) and six bad ones."""
  sf.write(tmp_path / "mono16k.wav", tone(1.0, 16000), 16000)
  sf.write(tmp_path / "stereo44k.wav", tone(1.0, 44100, channels=2), 44100)
  sf.write(tmp_path / "narrow8k.flac", tone(0.75, 8000), 8000)
  sf.write(tmp_path / "short.wav", tone(0.4, 16000), 16000)
  (tmp_path / "corrupt.wav").write_bytes(
      np.random.default_rng(1).bytes(4096))
  (tmp_path / "empty.wav").write_bytes(b"")
  sf.write(tmp_path / "noframes.wav", np.zeros(0, np.float32), 16000)
  sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
  nan = tone(1.0, 16000)
  nan[100:110] = np.nan
  sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
  return tmp_path


GOOD = ("mono16k.wav", "stereo44k.wav", "narrow8k.flac")
BAD = {
    "short.wav": "too short: 0.40 s < 0.50 s",
    "corrupt.wav": "unreadable: ",
    "empty.wav": "empty: file has 0 bytes",
    "noframes.wav": "empty: 0 samples",
    "silent.wav": "silent: rms 0 < 0.0001",
    "nan.wav": "non-finite: 10 of 16000 samples are NaN or inf",
}


def make_table(names, root, name="toy"):
  return ClipTable.from_rows(
      [Clip(path=n, client_id=f"c{i % 2}", labels={"file": n})
       for i, n in enumerate(names)], root=str(root), name=name)


def test_load_audio_16k_mono_unchanged(folder):
  x = load_audio(str(folder / "mono16k.wav"))
  assert x.dtype == np.float32 and x.shape == (16000,)
  # 16-bit PCM round trip.
  np.testing.assert_allclose(x, tone(1.0, 16000), atol=1e-4)


def test_load_audio_stereo_44k_to_16k_mono(folder):
  x = load_audio(str(folder / "stereo44k.wav"))
  assert x.dtype == np.float32 and x.shape == (16000,)
  assert peak_hz(x, 16000) == pytest.approx(440, abs=1.5)
  # Mono = average of channels with amplitudes 1 and 1/2.
  assert rms(x) == pytest.approx(0.75 * rms(tone(1.0, 16000)), rel=0.02)


def test_load_audio_8k_to_16k(folder):
  x = load_audio(str(folder / "narrow8k.flac"))
  assert x.dtype == np.float32 and x.shape == (12000,)
  assert peak_hz(x, 16000) == pytest.approx(440, abs=1.5)
  assert rms(x) == pytest.approx(rms(tone(0.75, 8000)), rel=0.02)


def test_load_audio_other_target_rate(folder):
  x = load_audio(str(folder / "mono16k.wav"), sample_rate=8000)
  assert x.shape == (8000,)
  assert peak_hz(x, 8000) == pytest.approx(440, abs=1.5)


@pytest.mark.parametrize("name", sorted(set(BAD) - {"short.wav"}))
def test_load_audio_errors_name_path_and_reason(folder, name):
  path = str(folder / name)
  with pytest.raises(AudioDecodeError) as info:
    load_audio(path)
  assert info.value.path == path
  assert info.value.reason.startswith(BAD[name])
  assert path in str(info.value) and info.value.reason in str(info.value)
  assert isinstance(info.value, ValueError)


def test_load_audio_missing_file(tmp_path):
  with pytest.raises(AudioDecodeError, match="missing: no such file"):
    load_audio(str(tmp_path / "nope.wav"))


def test_min_rms_threshold(folder):
  x = load_audio(str(folder / "silent.wav"), min_rms=0.0)
  assert x.shape == (16000,) and not x.any()
  with pytest.raises(AudioDecodeError, match="silent"):
    load_audio(str(folder / "mono16k.wav"), min_rms=1.0)


def test_librosa_fallback_when_soundfile_fails(folder, monkeypatch):
  def refuse(*args, **kwargs):
    raise sf.LibsndfileError(0, prefix="refused: ")
  monkeypatch.setattr(audio.sf, "read", refuse)
  x = load_audio(str(folder / "stereo44k.wav"))
  assert x.dtype == np.float32 and x.shape == (16000,)
  assert rms(x) == pytest.approx(0.75 * rms(tone(1.0, 16000)), rel=0.02)
  with pytest.raises(AudioDecodeError, match="unreadable: refused"):
    load_audio(str(folder / "corrupt.wav"))


def test_scan_clips_keeps_good_skips_bad(folder, caplog):
  table = make_table([*GOOD, *BAD], folder)
  with caplog.at_level(logging.INFO):
    kept, report = scan_clips(table, min_duration_s=0.5)
  assert [c.path for c in kept] == list(GOOD)
  assert kept.root == table.root and kept.name == "toy"
  assert [c.duration_s for c in kept] == pytest.approx([1.0, 1.0, 0.75])
  assert [c.labels for c in kept] == [{"file": n} for n in GOOD]
  assert (report.total, report.usable) == (len(GOOD) + len(BAD), len(GOOD))
  assert len(report.skipped) == len(BAD)
  for (path, reason), (name, expected) in zip(report.skipped, BAD.items()):
    assert path == os.path.join(str(folder), name)
    assert reason.startswith(expected)
  assert report.summary() == (
      "3 of 9 clips usable, 6 skipped (empty: 2, non-finite: 1, silent: 1, "
      "too short: 1, unreadable: 1)")
  messages = [r.getMessage() for r in caplog.records]
  for name in BAD:
    assert any(name in m and "skipping" in m for m in messages), name
  assert any("6 skipped" in m for m in messages)


def test_scan_then_load_waveforms(folder):
  kept, _ = scan_clips(make_table([*BAD, *GOOD], folder))
  waves = load_waveforms(kept)
  # short.wav is kept without a minimum duration.
  assert [w.shape for w in waves] == [(6400,), (16000,), (16000,), (12000,)]
  assert all(w.dtype == np.float32 and w.ndim == 1 for w in waves)
  assert [c.duration_s for c in kept] == pytest.approx(
      [len(w) / 16000 for w in waves])


def test_scan_report_summary_without_skips():
  assert ScanReport(total=2, usable=2).summary() == (
      "2 of 2 clips usable, 0 skipped")


def test_no_usable_clip_raises(folder):
  table = make_table(["corrupt.wav", "silent.wav"], folder, name="broken_set")
  with pytest.raises(EmptyDatasetError) as info:
    scan_clips(table)
  message = str(info.value)
  assert "broken_set" in message
  assert "corrupt.wav: unreadable" in message
  assert "silent.wav: silent" in message


def test_empty_table_raises(tmp_path):
  with pytest.raises(EmptyDatasetError, match="'nothing' has no clips"):
    scan_clips(make_table([], tmp_path, name="nothing"))
