"""Front-end: parity with librosa, shapes, patches, TFLite builtin conversion."""

import librosa
import numpy as np
import pytest
import tensorflow as tf

from model import ops
from model.features import FrontendConfig, frames_to_patches, log_mel
from model.tflite_compat import convert, select_tf_ops

CONFIG = FrontendConfig()
# Measured against librosa: log-mel max abs error 5.4e-6 on noise; mel error
# relative to the clip's peak mel 1.8e-6 (chirp) / 2.7e-6 (noise). Cells far
# below the peak of a pure tone differ more in the log domain (float32 FFT
# leakage, up to 0.17 at 120 dB below the peak), hence the relative check.
LOG_TOLERANCE = 2e-5
RELATIVE_MEL_TOLERANCE = 1e-5


def _librosa_log_mel(y: np.ndarray) -> np.ndarray:
  """Independent reference: librosa's STFT and mel spectrogram.

  librosa centres the 400-sample window inside each 512-sample FFT frame;
  TF's frame starts at the window. Shifting the signal by the 56-sample
  offset aligns the windows (magnitudes do not depend on the zero padding's
  position).
  """
  offset = (CONFIG.fft_length - CONFIG.window_samples) // 2
  mel = librosa.feature.melspectrogram(
      y=np.concatenate([np.zeros(offset, np.float32), y]),
      sr=CONFIG.sample_rate, n_fft=CONFIG.fft_length,
      hop_length=CONFIG.hop_samples, win_length=CONFIG.window_samples,
      window="hann", center=False, power=1.0, n_mels=CONFIG.num_mel_bins,
      fmin=CONFIG.fmin, fmax=CONFIG.fmax, htk=True, norm=None)
  return np.log(mel.T + CONFIG.log_offset)


@pytest.mark.parametrize("signal", ["noise", "chirp"])
def test_matches_librosa(signal):
  rng = np.random.default_rng(0)
  t = np.arange(2 * CONFIG.sample_rate) / CONFIG.sample_rate
  y = (0.1 * rng.standard_normal(len(t)) if signal == "noise"
       else 0.5 * np.sin(2 * np.pi * (200 + 1500 * t) * t)).astype(np.float32)
  ours = log_mel(tf.constant(y), CONFIG).numpy()
  ref = _librosa_log_mel(y)
  n = min(len(ours), len(ref))
  assert n >= len(ours) - 1
  ours, ref = ours[:n], ref[:n]
  mel_ours, mel_ref = (np.exp(v) - CONFIG.log_offset for v in (ours, ref))
  assert (np.max(np.abs(mel_ours - mel_ref)) / np.max(mel_ref)
          < RELATIVE_MEL_TOLERANCE)
  if signal == "noise":
    assert np.max(np.abs(ours - ref)) < LOG_TOLERANCE


def test_frame_arithmetic():
  assert CONFIG.window_samples == 400 and CONFIG.hop_samples == 160
  assert CONFIG.patch_samples == 15600
  for n in (399, 400, 559, 560, 16000, CONFIG.patch_samples):
    frames = log_mel(tf.zeros([n]), CONFIG).shape[0] if n >= 400 else 0
    assert frames == CONFIG.num_frames(n)
  assert CONFIG.num_frames(CONFIG.samples_for_frames(96)) == 96


def test_batched_equals_single():
  x = np.random.default_rng(1).standard_normal((3, 8000)).astype(np.float32)
  batched = log_mel(tf.constant(x), CONFIG).numpy()
  single = log_mel(tf.constant(x[1]), CONFIG).numpy()
  np.testing.assert_allclose(batched[1], single, atol=1e-5)


def test_patches_pad_and_drop():
  features = tf.reshape(tf.range(250 * 2, dtype=tf.float32), [250, 2])
  padded = frames_to_patches(features, 96, pad=True)
  assert padded.shape == (3, 96, 2)  # 250 = 2*96 + 58, 58 >= 48 is kept.
  assert float(padded[2, -1, 0]) == 0.0  # Filled with the minimum.
  assert frames_to_patches(features, 96, pad=False).shape == (2, 96, 2)
  short = frames_to_patches(features[:10], 96, pad=True)
  assert short.shape == (1, 96, 2)


def test_config_validation():
  with pytest.raises(ValueError, match="fft_length"):
    FrontendConfig(window_s=0.05)
  with pytest.raises(ValueError, match="fmax"):
    FrontendConfig(fmax=9000.0)


def test_converts_to_builtins_and_matches_tf():
  import tflite_runtime.interpreter as tflite

  class FrontEnd(tf.Module):

    @tf.function(input_signature=[tf.TensorSpec([2, 16000], tf.float32)])
    def features(self, waveform):
      return {"log_mel": log_mel(waveform, CONFIG)}

  module = FrontEnd()
  model = convert(module, ["features"])
  assert not select_tf_ops(model)
  x = np.random.default_rng(2).standard_normal((2, 16000)).astype(np.float32)
  interpreter = tflite.Interpreter(model_content=model)
  interpreter.allocate_tensors()
  got = interpreter.get_signature_runner("features")(waveform=x)["log_mel"]
  want = module.features(tf.constant(x))["log_mel"].numpy()
  assert np.max(np.abs(got - want)) < 1e-4


@pytest.mark.parametrize("config", [
    CONFIG, FrontendConfig(fft_length=1024),
    FrontendConfig(sample_rate=8000, fft_length=256, fmax=3800.0)],
                         ids=["default", "fft1024", "8khz"])
def test_matmul_dft_matches_stft(config):
  """The delegate formulation's DFT-by-matmul front-end equals the STFT's."""
  x = tf.constant(0.1 * np.random.default_rng(3).standard_normal(
      (2, 3, config.sample_rate)).astype(np.float32))
  want = log_mel(x, config).numpy()
  with ops.formulation("delegate"):
    got = log_mel(x, config).numpy()
  assert got.shape == want.shape
  assert np.max(np.abs(got - want)) < 1e-4


@pytest.mark.parametrize("samples", [400, 401, 559, 560, 15600])
@pytest.mark.parametrize("window_s", [0.025, 0.02], ids=["400", "320"])
def test_matmul_dft_frames_any_length(samples, window_s):
  """The delegate formulation's framing by hop-strided slices equals
  ``tf.signal.frame`` for lengths with and without a remainder, and for a
  window that is a whole number of hops."""
  config = FrontendConfig(window_s=window_s)
  x = tf.constant(0.1 * np.random.default_rng(4).standard_normal(
      (2, samples)).astype(np.float32))
  want = log_mel(x, config).numpy()
  with ops.formulation("delegate"):
    got = log_mel(x, config).numpy()
  assert got.shape == want.shape == (2, config.num_frames(samples), 64)
  assert np.max(np.abs(got - want)) < 1e-4


def test_matmul_dft_front_end_converts_without_rfft():
  import tflite_runtime.interpreter as tflite

  class FrontEnd(tf.Module):

    @tf.function(input_signature=[tf.TensorSpec([2, 16000], tf.float32)])
    def features(self, waveform):
      with ops.formulation("delegate"):
        return {"log_mel": log_mel(waveform, CONFIG)}

  module = FrontEnd()
  model = convert(module, ["features"])
  interpreter = tflite.Interpreter(model_content=model)
  names = {op["op_name"] for op in interpreter._get_ops_details()}  # pylint: disable=protected-access
  assert not names & {"RFFT2D", "COMPLEX_ABS"}, names
  assert not select_tf_ops(model)
  x = np.random.default_rng(2).standard_normal((2, 16000)).astype(np.float32)
  interpreter.allocate_tensors()
  got = interpreter.get_signature_runner("features")(waveform=x)["log_mel"]
  want = log_mel(tf.constant(x), CONFIG).numpy()
  assert np.max(np.abs(got - want)) < 1e-4
