"""The host-side virtual device: training, atomic persistence with fallbacks,
the weight update, and a microphone folder with bad files, on a real export."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from export.audio_buffers import NotEnoughAudioError, WindowBuffer
from export.device_session import DELTA_FILE, VirtualDevice
from export.exporter import TRAINING_DIR
from export.runtime import OnDeviceModel
from export.tensor_file import (Kind, TensorFile, TensorFileError,
                                decode_tensor_file, encode_tensor_file,
                                read_tensor_file, write_tensor_file)
from export.weight_store import WEIGHTS_FILE

BATCH = 2  # conftest.TINY_EXPORT_BATCH
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: A tensor file the Kotlin library's tests decode and re-encode byte for byte.
FIXTURE = os.path.join(ROOT, "android_demo", "core", "src", "test",
                       "resources", "fixture.odtf")


@pytest.fixture(scope="module")
def model_dir(tiny_cbow_export):
  return os.path.join(tiny_cbow_export.out_dir, TRAINING_DIR)


def _tone(seconds, rate, freq, seed):
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * rate)) / rate
  return (0.3 * np.sin(2 * np.pi * freq * t)
          + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def wav_dir(tmp_path_factory):
  """Two long recordings (one stereo at 22.05 kHz), one too short for a
  window, one silent, one corrupt."""
  directory = tmp_path_factory.mktemp("microphone")
  stereo = _tone(11, 22050, 300, 0)
  sf.write(directory / "a_stereo.wav", np.stack([stereo, stereo], 1), 22050)
  (directory / "nested").mkdir()
  sf.write(directory / "nested" / "b.wav", _tone(10, 16000, 900, 1), 16000)
  sf.write(directory / "c_short.wav", _tone(2, 16000, 500, 2), 16000)
  sf.write(directory / "d_silent.wav", np.zeros(16000 * 6, np.float32), 16000)
  (directory / "e_corrupt.wav").write_bytes(b"RIFF\x00\x01garbage" * 20)
  return str(directory)


def _equal(a, b):
  return list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)


def _trained(model_dir, state_dir, wav_dir, steps=4):
  phone = VirtualDevice(model_dir, str(state_dir))
  phone.listen(wav_dir)
  phone.train(steps)
  return phone


def test_listen_uses_good_files_and_says_why_it_skips_others(model_dir,
                                                             wav_dir,
                                                             tmp_path):
  phone = VirtualDevice(model_dir, str(tmp_path))
  heard = phone.listen(wav_dir)
  names = [os.path.basename(r.path) for r in heard.recordings]
  assert names == ["a_stereo.wav", "c_short.wav", "b.wav"]
  assert [r.windows for r in heard.recordings] == [2, 0, 2]
  assert all(r.tail.shape == (phone.patch_samples,) for r in heard.recordings)
  reasons = {os.path.basename(p): r for p, r in heard.skipped}
  assert reasons["d_silent.wav"].startswith("silent:")
  assert reasons["e_corrupt.wav"].startswith("unreadable:")
  assert len(phone.buffer) == 4


def test_training_lowers_the_loss_and_changes_the_weights(model_dir, wav_dir,
                                                         tmp_path):
  phone = VirtualDevice(model_dir, str(tmp_path), buffer_windows=BATCH)
  phone.listen(wav_dir)  # Keeps the newest two windows: one batch every step.
  before = phone.model.get_weights()
  losses = phone.train(5)
  after = phone.model.get_weights()
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
  assert not np.array_equal(before["encoder/block0/conv_1x3/kernel"],
                            after["encoder/block0/conv_1x3/kernel"])
  assert after["optimizer/step"] == 5 and phone.examples == 5 * BATCH


def test_persist_restart_restore_gives_identical_weights(model_dir, wav_dir,
                                                        tmp_path):
  phone = _trained(model_dir, tmp_path, wav_dir)
  phone.persist()
  saved = phone.model.get_weights()

  restarted = VirtualDevice(model_dir, str(tmp_path))
  assert restarted.restored.source == "current"
  assert restarted.restored.problems == ()
  assert restarted.examples == phone.examples
  assert _equal(restarted.model.get_weights(), saved)
  assert np.array_equal(restarted.buffer.windows, phone.buffer.windows)
  assert _equal(restarted.bundled, phone.bundled)
  # Training goes on exactly as it would have without the restart.
  assert restarted.train(1) == phone.train(1)


def _flip(path):
  content = bytearray(open(path, "rb").read())
  content[len(content) // 2] ^= 0xFF
  open(path, "wb").write(bytes(content))


def _truncate(path):
  content = open(path, "rb").read()
  open(path, "wb").write(content[:len(content) // 3])


@pytest.mark.parametrize("damage", [_flip, _truncate])
def test_damaged_weights_fall_back_to_last_good_copy_then_bundled(
    model_dir, wav_dir, tmp_path, damage):
  phone = _trained(model_dir, tmp_path, wav_dir, steps=2)
  phone.persist()
  first = phone.model.get_weights()
  phone.train(2)
  phone.persist()
  assert os.path.exists(phone.store.previous_path)

  damage(phone.store.current_path)
  restarted = VirtualDevice(model_dir, str(tmp_path))
  assert restarted.restored.source == "previous"
  assert "checksum mismatch" in restarted.restored.problems[0]
  assert _equal(restarted.model.get_weights(), first)
  assert restarted.examples == 2 * BATCH

  damage(phone.store.previous_path)
  fresh = VirtualDevice(model_dir, str(tmp_path))
  assert fresh.restored.source == "bundled"
  assert len(fresh.restored.problems) == 2 and fresh.examples == 0
  assert _equal(fresh.model.get_weights(), fresh.bundled)

  # Saving replaces the damaged file instead of keeping it as the good copy.
  fresh.persist()
  assert VirtualDevice(model_dir, str(tmp_path)).restored.source == (
      "current")


def test_weights_of_another_model_are_not_restored(model_dir, wav_dir,
                                                   tmp_path):
  phone = _trained(model_dir, tmp_path, wav_dir, steps=1)
  phone.persist()
  content = read_tensor_file(phone.store.current_path)
  write_tensor_file(phone.store.current_path, TensorFile(
      kind=Kind.WEIGHTS, model_sha256="0" * 64,
      examples=content.examples, tensors=content.tensors))
  restarted = VirtualDevice(model_dir, str(tmp_path))
  assert restarted.restored.source == "bundled"
  assert "belongs to model 0000" in restarted.restored.problems[0]


def test_delta_file_is_current_minus_bundled_weights(model_dir, wav_dir,
                                                     tmp_path):
  phone = _trained(model_dir, tmp_path, wav_dir, steps=3)
  delta = read_tensor_file(phone.write_delta())
  current = phone.model.get_weights()
  bundled = OnDeviceModel.load(model_dir).get_weights()  # A fresh interpreter.
  assert delta.kind == Kind.DELTA
  assert delta.model_sha256 == phone.manifest.file.sha256
  assert delta.examples == 3 * BATCH
  assert list(delta.tensors) == phone.weight_names()
  assert not any(n.startswith("optimizer/") for n in delta.tensors)
  for name, value in delta.tensors.items():
    np.testing.assert_array_equal(value, current[name] - bundled[name])
  assert any(np.any(v != 0) for v in delta.tensors.values())


def test_not_enough_audio_is_a_clear_error(model_dir, tmp_path):
  empty = tmp_path / "mic"
  empty.mkdir()
  phone = VirtualDevice(model_dir, str(tmp_path / "state"))
  assert phone.listen(str(empty)).recordings == ()
  with pytest.raises(NotEnoughAudioError, match="a batch needs 2"):
    phone.train(1)
  with pytest.raises(FileNotFoundError, match="no such directory"):
    phone.listen(str(tmp_path / "missing"))


@pytest.mark.slow
def test_launcher_runs_the_whole_loop(model_dir, wav_dir, tmp_path):
  _trained(model_dir, tmp_path, wav_dir, steps=1).persist()
  _flip(tmp_path / WEIGHTS_FILE)
  result = subprocess.run(
      [sys.executable, "-m", "export.device_main", "--model_dir",
       os.path.dirname(model_dir), "--wav_dir", wav_dir, "--state_dir",
       str(tmp_path), "--steps", "2"], capture_output=True, text=True,
      env={**os.environ, "PYTHONPATH": ROOT}, cwd=ROOT, timeout=300)
  assert result.returncode == 0, result.stderr
  out = result.stdout
  assert "warning: current weights skipped" in out and "checksum" in out
  assert "weights: bundled" in out  # Nothing else was saved yet.
  assert "d_silent.wav: silent: rms 0 < 0.0001" in out
  assert "e_corrupt.wav: unreadable:" in out
  assert "step 2/2: loss" in out
  assert "a_stereo.wav: nearest" in out
  assert VirtualDevice(model_dir, str(tmp_path)).examples == 2 * BATCH
  assert os.path.exists(tmp_path / DELTA_FILE)


def test_tensor_files_are_checked_and_match_the_apps_bytes():
  content = TensorFile(
      kind=Kind.WEIGHTS,
      model_sha256=hashlib.sha256(b"fixture model").hexdigest(), examples=6,
      tensors={"encoder/w": np.arange(6, dtype=np.float32).reshape(2, 3) * 0.5
               - 1, "optimizer/step": np.array(3.0, np.float32)})
  encoded = encode_tensor_file(content)
  with open(FIXTURE, "rb") as f:
    assert encoded == f.read()  # The Kotlin tests decode and re-encode it.
  decoded = decode_tensor_file(encoded)
  assert decoded.examples == 6 and decoded.tensors["optimizer/step"].shape == ()
  for damaged, reason in ((encoded[:-1], "checksum mismatch"),
                          (encoded[:20], "truncated"),
                          (b"XXXX" + encoded[4:], "not a tensor file")):
    with pytest.raises(TensorFileError, match=reason):
      decode_tensor_file(damaged)


def test_window_buffer_cuts_drops_silence_and_rotates():
  buffer = WindowBuffer(4, 2)
  assert buffer.append(np.full(6, 0.5, np.float32)) == 1
  assert buffer.append(np.full(2, 0.5, np.float32)) == 1
  buffer.append(np.full(3, 0.5, np.float32))
  buffer.end_stream()
  assert buffer.append(np.zeros(4, np.float32)) == 0
  assert buffer.silent_windows == 1
  assert buffer.append(np.full(4, 0.25, np.float32)) == 1
  assert len(buffer) == 2
  np.testing.assert_array_equal(buffer.batch(2, 1)[0], np.full(4, 0.25))
  with pytest.raises(ValueError, match="a batch needs 3"):
    buffer.batch(3, 0)
