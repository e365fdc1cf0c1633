"""Tests for model.datasets.loaders on tiny folders in each dataset layout."""

import logging
import os

import numpy as np
import pytest
import soundfile as sf

from model.datasets.audio import load_waveforms, scan_clips
from model.datasets.clips import Clip, ClipTable
from model.datasets.loaders import (DATASETS, load_dataset, load_librispeech,
                                    load_manifest, load_speech_commands,
                                    load_synthetic)


def write_tone(path, seconds=0.25, rate=16000, channels=1, freq=440.0):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  t = np.arange(int(seconds * rate)) / rate
  noise = np.random.default_rng(0).standard_normal(t.size)
  x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * noise
  if channels > 1:
    x = np.stack([x] * channels, axis=1)
  sf.write(path, x.astype(np.float32), rate)


SC_FILES = {
    # path: (speaker, split)
    "yes/0a7c2a8d_nohash_0.wav": ("0a7c2a8d", "train"),
    "yes/0a7c2a8d_nohash_1.wav": ("0a7c2a8d", "validation"),
    "yes/b5c4e3f2_nohash_0.wav": ("b5c4e3f2", "test"),
    "no/b5c4e3f2_nohash_0.wav": ("b5c4e3f2", "train"),
    "no/c1d2e3f4_nohash_12.wav": ("c1d2e3f4", "validation"),
}


@pytest.fixture
def speech_commands(tmp_path):
  root = tmp_path / "speech_commands_v0.02"
  for rel in SC_FILES:
    write_tone(str(root / rel))
  # 44.1 kHz stereo and 8 kHz variants of the layout.
  write_tone(str(root / "go" / "d00dd00d_nohash_0.wav"), rate=44100, channels=2)
  write_tone(str(root / "go" / "e11ee11e_nohash_0.wav"), rate=8000)
  write_tone(str(root / "_background_noise_" / "white_noise.wav"))
  write_tone(str(root / "yes" / "not-a-speech-command.wav"))
  (root / "yes" / "README.txt").write_text("notes")
  (root / "validation_list.txt").write_text(
      "yes/0a7c2a8d_nohash_1.wav\nno/c1d2e3f4_nohash_12.wav\n")
  (root / "testing_list.txt").write_text("yes/b5c4e3f2_nohash_0.wav\n\n")
  (root / "LICENSE").write_text("CC-BY-4.0")
  return root


def test_speech_commands_layout(speech_commands, caplog):
  with caplog.at_level(logging.WARNING):
    table = load_speech_commands(str(speech_commands))
  assert table.name == "speech_commands"
  assert table.root == str(speech_commands)
  by_path = {c.path: c for c in table}
  assert set(by_path) == {*SC_FILES, "go/d00dd00d_nohash_0.wav",
                          "go/e11ee11e_nohash_0.wav"}
  for rel, (speaker, split) in SC_FILES.items():
    clip = by_path[rel]
    assert clip.client_id == speaker
    assert clip.labels == {"keyword": rel.split("/")[0], "speaker": speaker}
    assert clip.split == split
  assert by_path["go/d00dd00d_nohash_0.wav"].split == "train"
  assert table.client_ids == ("0a7c2a8d", "b5c4e3f2", "c1d2e3f4", "d00dd00d",
                              "e11ee11e")
  assert table.label_columns == ("keyword", "speaker")
  assert sorted(set(table.labels_of("keyword"))) == ["go", "no", "yes"]
  assert all(os.path.isfile(table.resolve(c)) for c in table)
  skipped = [r.getMessage() for r in caplog.records
             if "skipped 2 files" in r.getMessage()]
  assert len(skipped) == 1 and "yes/README.txt" in skipped[0]


def test_speech_commands_decode_to_16k_mono(speech_commands):
  table = load_speech_commands(str(speech_commands)).filter(
      lambda c: c.labels["keyword"] == "go")
  kept, report = scan_clips(table)
  assert report.usable == 2 and not report.skipped
  waves = load_waveforms(kept)
  assert [w.shape for w in waves] == [(4000,), (4000,)]
  assert [c.duration_s for c in kept] == pytest.approx([0.25, 0.25])


def test_speech_commands_without_lists_is_all_train(tmp_path, caplog):
  write_tone(str(tmp_path / "up" / "aa_nohash_0.wav"))
  with caplog.at_level(logging.WARNING):
    table = load_speech_commands(str(tmp_path))
  assert [c.split for c in table] == ["train"]
  assert sum("not found" in r.getMessage() for r in caplog.records) == 2


def test_speech_commands_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="missing_dir"):
    load_speech_commands(str(tmp_path / "missing_dir"))
  write_tone(str(tmp_path / "_background_noise_" / "noise.wav"))
  write_tone(str(tmp_path / "yes" / "random.wav"))
  with pytest.raises(ValueError) as info:
    load_speech_commands(str(tmp_path))
  message = str(info.value)
  assert str(tmp_path) in message
  assert "<keyword>/<speaker>_nohash_<n>.wav" in message
  assert "1 keyword folders ['yes'] and 1 files" in message


@pytest.fixture
def librispeech(tmp_path):
  subset = tmp_path / "LibriSpeech" / "train-clean-100"
  for speaker, chapter, n in (("19", "198", 2), ("19", "227", 1),
                              ("103", "1240", 2)):
    folder = subset / speaker / chapter
    for i in range(n):
      write_tone(str(folder / f"{speaker}-{chapter}-{i:04d}.flac"))
    (folder / f"{speaker}-{chapter}.trans.txt").write_text(
        f"{speaker}-{chapter}-0000 HELLO\n")
  return subset


def test_librispeech_layout(librispeech):
  table = load_librispeech(str(librispeech))
  assert table.name == "librispeech" and table.root == str(librispeech)
  assert [c.path for c in table] == [
      "103/1240/103-1240-0000.flac", "103/1240/103-1240-0001.flac",
      "19/198/19-198-0000.flac", "19/198/19-198-0001.flac",
      "19/227/19-227-0000.flac"]
  assert table.client_ids == ("103", "19")
  assert all(c.labels == {"speaker": c.client_id} for c in table)
  assert all(c.path.startswith(c.client_id + "/") for c in table)
  kept, report = scan_clips(table)
  assert report.usable == 5
  assert all(w.shape == (4000,) for w in load_waveforms(kept))


def test_librispeech_errors(librispeech):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    load_librispeech(str(librispeech / "nope"))
  with pytest.raises(ValueError, match=r"\['train-clean-100'\].*subset folder"):
    load_librispeech(str(librispeech.parent))


def write_manifest(folder, rows, name="manifest.csv"):
  path = folder / name
  path.write_text("path,client_id,keyword\n" +
                  "".join(",".join(r) + "\n" for r in rows))
  return str(path)


def test_manifest(tmp_path):
  write_tone(str(tmp_path / "audio" / "a.wav"))
  write_tone(str(tmp_path / "audio" / "b.wav"))
  path = write_manifest(tmp_path, [("audio/a.wav", "alice", "yes"),
                                   ("audio/b.wav", "bob", "")])
  table = load_manifest(path)
  assert table.name == "manifest.csv" and table.root == str(tmp_path)
  assert [(c.path, c.client_id, dict(c.labels)) for c in table] == [
      ("audio/a.wav", "alice", {"keyword": "yes"}), ("audio/b.wav", "bob", {})]
  assert load_dataset("manifest", path) == table


def test_manifest_missing_files(tmp_path):
  write_tone(str(tmp_path / "a.wav"))
  path = write_manifest(tmp_path, [("a.wav", "alice", "yes"),
                                   ("gone1.wav", "bob", "no"),
                                   ("gone2.wav", "bob", "no")])
  with pytest.raises(FileNotFoundError,
                     match=r"2 of 3 listed audio files do not exist.*"
                     r"gone1\.wav, gone2\.wav"):
    load_manifest(path)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    load_manifest(str(tmp_path / "absent.csv"))
  with pytest.raises(ValueError, match="lists no clips"):
    load_manifest(write_manifest(tmp_path, [], name="empty.csv"))


def test_synthetic(tmp_path):
  corpus = tmp_path / "corpus"
  write_tone(str(corpus / "clips" / "0.wav"))
  write_tone(str(corpus / "clips" / "1.wav"))
  ClipTable.from_rows(
      [Clip("clips/0.wav", "dev0", {"pitch": "low"}, 0.25, "train"),
       Clip("clips/1.wav", "dev1", {"pitch": "high"}, 0.25, "test")]
  ).to_csv(str(corpus / "manifest.csv"))
  table = load_synthetic(str(corpus))
  assert table.name == "synthetic" and table.root == str(corpus)
  assert [(c.client_id, c.split, c.labels["pitch"], c.duration_s)
          for c in table] == [("dev0", "train", "low", 0.25),
                              ("dev1", "test", "high", 0.25)]
  assert load_dataset("synthetic", str(corpus)) == table


@pytest.mark.parametrize("make", [lambda p: p / "absent", lambda p: p])
def test_synthetic_without_manifest_says_how_to_generate(tmp_path, make):
  with pytest.raises(FileNotFoundError,
                     match="python -m model.datasets.generate_main --out DIR"):
    load_synthetic(str(make(tmp_path)))


def test_registry(speech_commands, librispeech):
  assert set(DATASETS) == {"synthetic", "speech_commands", "librispeech",
                           "manifest"}
  assert load_dataset("speech_commands", str(speech_commands)) == (
      load_speech_commands(str(speech_commands)))
  assert len(load_dataset("librispeech", str(librispeech))) == 5
  with pytest.raises(ValueError, match=(
      "unknown dataset kind 'timit'; known kinds: "
      "librispeech, manifest, speech_commands, synthetic")):
    load_dataset("timit", str(librispeech))
