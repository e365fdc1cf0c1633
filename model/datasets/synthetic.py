"""A deterministic, built-in synthetic audio corpus.

The machines this toolkit runs on cannot download datasets, so the demo and the
tests use audio that the toolkit synthesises itself with numpy and scipy:

* **Speech** from a small formant synthesiser. Each word of :data:`VOCABULARY`
  is a fixed phone sequence: vowels and sonorants are a glottal pulse train
  through a cascade of formant resonators (F1-F3 following the phones, F4 and
  F5 fixed), fricatives are band-passed noise, plosives are a closure, a burst
  and (when voiceless) aspiration. Every speaker has its own pitch, vocal-tract
  length (formant scale), speaking rate, voice quality and loudness, and
  records through its own "device": a fixed random EQ / band-pass plus a low
  noise floor. Each rendering varies pitch contour, timing and formants a
  little.
* **Keyword clips** (exactly 1 s, one word) and **utterances** (5.5-8 s, several
  words with pauses), optionally mixed with background noise at a random SNR.
* **Music** (5.5-8 s): a random melody on a scale at a random tempo, played by
  one of the :data:`INSTRUMENTS` families.
* **Noise** (5.5-8 s): one of the :data:`NOISE_KINDS`.

Every clip belongs to a client: a speaker together with its device, which also
records that client's music and noise clips. Music and noise clips are spread
unevenly over clients (non-IID), while every speaker records the same number
of keyword clips and utterances.

With ``tts=True`` the speech is spoken by ``espeak-ng`` voices in several
languages instead (the keyword label stays the English concept, e.g. German
"links" is labelled ``left``) and speech clips get a ``language`` label.

Generation is deterministic: the same :class:`CorpusConfig` always produces
byte-identical WAV files and manifest, because the random state of every
speaker and every clip is derived from ``(seed, index)`` only.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
from typing import Optional, Sequence

import numpy as np
import scipy.fft
from scipy import signal
import soundfile as sf
import tqdm

from model.datasets.clips import Clip, ClipTable, read_manifest_csv

__all__ = [
    "CORPUS_PRESETS",
    "CorpusConfig",
    "INSTRUMENTS",
    "NOISE_KINDS",
    "VOCABULARY",
    "generate_corpus",
    "label_counts",
]

_MANIFEST_NAME = "manifest.csv"
_INFO_NAME = "corpus.json"

#: Phone sequence (ARPAbet) of every keyword.
VOCABULARY: dict[str, tuple[str, ...]] = {
    "yes": ("Y", "EH", "S"),
    "no": ("N", "OW"),
    "up": ("AH", "P"),
    "down": ("D", "AW", "N"),
    "left": ("L", "EH", "F", "T"),
    "right": ("R", "AY", "T"),
    "on": ("AA", "N"),
    "off": ("AO", "F"),
    "stop": ("S", "T", "AA", "P"),
    "go": ("G", "OW"),
    "one": ("W", "AH", "N"),
    "two": ("T", "UW"),
}
_WORDS = tuple(VOCABULARY)

INSTRUMENTS = ("pluck", "organ", "bell", "bowed")
NOISE_KINDS = ("white", "pink", "brown", "hum", "babble", "rain")

_KEYWORD_SECONDS = 1.0
_LONG_CLIP_SECONDS = (5.5, 8.0)

# Independent random streams: np.random.default_rng([seed, stream, index]).
_PLAN_STREAM, _SPEAKER_STREAM, _CLIP_STREAM = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
  """What to generate.

  Attributes:
    num_speakers: Number of speakers, i.e. clients.
    keyword_clips_per_speaker: 1 s keyword clips recorded by every speaker.
    utterances_per_speaker: Multi-word utterances recorded by every speaker.
    music_clips_per_client: Mean number of music clips per client; clients
      differ a lot (some record none, some many).
    noise_clips_per_client: Mean number of noise clips per client, spread like
      the music clips.
    snr_db: Range of the signal-to-noise ratio (dB, uniform) at which
      background noise is mixed into speech clips.
    noise_mix_prob: Probability that a speech clip gets background noise.
    sample_rate: Sample rate of the written WAV files in Hz.
    seed: Seed of every random choice; the same config gives the same bytes.
    tts: Speak with ``espeak-ng`` voices in several languages instead of the
      built-in formant synthesiser (needs the ``espeak-ng`` binary).
  """

  num_speakers: int = 4
  keyword_clips_per_speaker: int = 12
  utterances_per_speaker: int = 2
  music_clips_per_client: float = 1.0
  noise_clips_per_client: float = 1.0
  snr_db: tuple[float, float] = (5.0, 30.0)
  noise_mix_prob: float = 0.5
  sample_rate: int = 16000
  seed: int = 0
  tts: bool = False

  def __post_init__(self):
    minimum = dict(num_speakers=1, keyword_clips_per_speaker=0,
                   utterances_per_speaker=0, music_clips_per_client=0,
                   noise_clips_per_client=0, seed=0,
                   sample_rate=16000)  # Fricatives reach 7.5 kHz.
    for name, lowest in minimum.items():
      if getattr(self, name) < lowest:
        raise ValueError(f"CorpusConfig.{name} must be >= {lowest}, "
                         f"got {getattr(self, name)}")
    low, high = self.snr_db
    if low > high:
      raise ValueError("CorpusConfig.snr_db must be (low, high) with "
                       f"low <= high, got {self.snr_db}")
    if not 0.0 <= self.noise_mix_prob <= 1.0:
      raise ValueError("CorpusConfig.noise_mix_prob must be in [0, 1], "
                       f"got {self.noise_mix_prob}")


#: Ready-made sizes: "tiny" (tests), "demo" (the demo), "full" (benchmarks),
#: "fl" (cross-device federated studies: 120 clients with a few clips each),
#: "population" (2,620 clients of three 1 s keyword clips each, about as many
#: clients as Speech Commands has speakers; for simulation-scale runs).
CORPUS_PRESETS: dict[str, CorpusConfig] = {
    "tiny": CorpusConfig(num_speakers=4, keyword_clips_per_speaker=9,
                         utterances_per_speaker=2, music_clips_per_client=1.0,
                         noise_clips_per_client=1.5),
    "demo": CorpusConfig(num_speakers=12, keyword_clips_per_speaker=20,
                         utterances_per_speaker=3, music_clips_per_client=2.0,
                         noise_clips_per_client=2.0),
    "full": CorpusConfig(num_speakers=32, keyword_clips_per_speaker=36,
                         utterances_per_speaker=5, music_clips_per_client=3.0,
                         noise_clips_per_client=3.0),
    "population": CorpusConfig(num_speakers=2620, keyword_clips_per_speaker=3,
                               utterances_per_speaker=0,
                               music_clips_per_client=0.1,
                               noise_clips_per_client=0.1),
    "fl": CorpusConfig(num_speakers=120, keyword_clips_per_speaker=6,
                       utterances_per_speaker=1, music_clips_per_client=0.5,
                       noise_clips_per_client=0.5),
}


# ----------------------------------------------------------------------------
# Speech: phones and the formant synthesiser.


@dataclasses.dataclass(frozen=True)
class _Segment:
  """A stretch of a phone with constant source settings.

  Attributes:
    duration_ms: Nominal duration at speaking rate 1.
    voicing: Amplitude of the glottal source.
    aspiration: Amplitude of noise fed into the formant cascade.
    frication: Amplitude of band-passed noise added after the cascade.
    band: Frication band in Hz (for formant scale 1).
    formants: Formant targets (F1, F2, F3) in Hz, spread evenly over the
      segment (two targets make a diphthong glide); empty for obstruents,
      whose formants follow from their neighbours.
  """

  duration_ms: float
  voicing: float = 0.0
  aspiration: float = 0.0
  frication: float = 0.0
  band: tuple[float, float] = (0.0, 0.0)
  formants: tuple[tuple[float, float, float], ...] = ()


def _vowel(*targets: tuple[float, float, float], ms: float) -> tuple[_Segment]:
  return (_Segment(ms, voicing=1.0, formants=targets),)


def _sonorant(target: tuple[float, float, float], amplitude: float,
              ms: float) -> tuple[_Segment]:
  return (_Segment(ms, voicing=amplitude, formants=(target,)),)


def _plosive(band: tuple[float, float], voiced: bool) -> tuple[_Segment, ...]:
  closure = _Segment(40 if voiced else 55)
  burst = _Segment(12, frication=0.3, band=band)
  if voiced:
    return closure, burst
  return closure, burst, _Segment(45, aspiration=0.4)


# Formant targets of an adult male voice (Peterson & Barney, Hillenbrand).
_PHONES: dict[str, tuple[_Segment, ...]] = {
    "AA": _vowel((730, 1090, 2440), ms=220),
    "AE": _vowel((660, 1720, 2410), ms=220),
    "AH": _vowel((640, 1190, 2390), ms=180),
    "AO": _vowel((570, 840, 2410), ms=220),
    "EH": _vowel((530, 1840, 2480), ms=180),
    "IH": _vowel((390, 1990, 2550), ms=160),
    "IY": _vowel((270, 2290, 3010), ms=220),
    "UH": _vowel((440, 1020, 2240), ms=160),
    "UW": _vowel((300, 870, 2240), ms=240),
    "AY": _vowel((730, 1090, 2440), (390, 1990, 2550), ms=290),
    "AW": _vowel((730, 1090, 2440), (440, 1020, 2240), ms=290),
    "OW": _vowel((540, 960, 2400), (370, 800, 2250), ms=270),
    "Y": _sonorant((260, 2070, 3020), 0.7, ms=70),
    "W": _sonorant((300, 610, 2200), 0.7, ms=70),
    "R": _sonorant((310, 1060, 1380), 0.7, ms=75),
    "L": _sonorant((360, 1300, 2700), 0.6, ms=80),
    "N": _sonorant((250, 1700, 2600), 0.3, ms=100),
    "S": (_Segment(150, frication=0.15, band=(3800, 7500)),),
    "F": (_Segment(130, frication=0.05, band=(1200, 6500)),),
    "P": _plosive((400, 2000), voiced=False),
    "T": _plosive((3000, 7000), voiced=False),
    "D": _plosive((3000, 7000), voiced=True),
    "G": _plosive((1500, 3200), voiced=True),
}
# Babble strings together random voiced phones.
_BABBLE_PHONES = tuple(name for name, segments in _PHONES.items()
                       if all(s.formants for s in segments))

# Fixed resonators (F4, F5: frequency, bandwidth in Hz at formant scale 1)
# above the moving ones, which keep the top of the spectrum from falling off.
_HIGHER_POLES = ((3300.0, 250.0), (4500.0, 300.0))
_BLOCK = 80  # Formant tracks are updated every 5 ms (at 16 kHz).


@dataclasses.dataclass(frozen=True)
class _Voice:
  """Parameters of the formant synthesiser for one (synthetic) person."""

  f0_hz: float
  formant_scale: float  # > 1: shorter vocal tract, higher formants.
  rate: float  # Speaking rate: > 1 faster.
  open_quotient: float  # Open fraction of a glottal cycle: higher = softer.
  brightness: float  # Pre-emphasis of the source: higher = brighter.
  breathiness: float  # Noise mixed into the glottal source.
  bandwidths: tuple[float, float, float]  # Formant bandwidths in Hz.


def _random_voice(rng: np.random.Generator, female: bool) -> _Voice:
  bandwidth_scale = rng.uniform(0.8, 1.4)
  return _Voice(
      f0_hz=rng.uniform(*(165, 255) if female else (85, 150)),
      formant_scale=rng.uniform(*(1.08, 1.22) if female else (0.88, 1.02)),
      rate=rng.uniform(0.8, 1.15),
      open_quotient=rng.uniform(0.45, 0.75),
      brightness=rng.uniform(0.7, 0.95),
      breathiness=rng.uniform(0.0, 0.15),
      bandwidths=(60 * bandwidth_scale, 90 * bandwidth_scale,
                  150 * bandwidth_scale))


def _wobble(n: int, rate_hz: float, rng: np.random.Generator,
            sr: int) -> np.ndarray:
  """Smooth random curve in [-1, 1] with about ``rate_hz`` turns a second."""
  knots = rng.uniform(-1, 1, size=int(n * rate_hz / sr) + 2)
  return np.interp(np.arange(n) * rate_hz / sr, np.arange(len(knots)), knots)


def _smooth(envelope: np.ndarray, sr: int, ms: float = 8.0) -> np.ndarray:
  """Smooths a piecewise-constant envelope so that phones cross-fade."""
  window = np.hanning(max(3, int(sr * ms / 1000)))
  return np.convolve(envelope, window / window.sum(), mode="same")


def _fades(n: int, sr: int, ms: float = 3.0) -> np.ndarray:
  """Envelope of ``n`` samples with short linear fade-in and fade-out."""
  ramp = max(1.0, sr * ms / 1000)
  position = np.arange(n)
  return np.minimum(1.0, np.minimum(position + 1, n - position) / ramp)


def _glottal_source(f0: np.ndarray, open_quotient: float,
                    sr: int) -> np.ndarray:
  """Differentiated Rosenberg glottal pulses following the pitch track f0."""
  phase = np.cumsum(f0 / sr) % 1.0
  rise = 0.6 * open_quotient
  fall = open_quotient - rise
  flow = np.where(phase < rise, 0.5 * (1 - np.cos(np.pi * phase / rise)),
                  np.where(phase < open_quotient,
                           np.cos(0.5 * np.pi * (phase - rise) / fall), 0.0))
  # Lip radiation differentiates the flow; dividing by f0 keeps the level
  # independent of pitch.
  return np.diff(flow, prepend=0.0) * sr / f0


def _resonator(freq: np.ndarray, bandwidth: float,
               sr: int) -> tuple[np.ndarray, np.ndarray]:
  """Second-order resonators with unity gain at 0 Hz, one per ``freq``.

  Returns:
    ``(b, a)``: numerators ``[..., 1]`` and denominators ``[..., 3]``.
  """
  r = np.exp(-np.pi * bandwidth / sr)
  cos = np.cos(2 * np.pi * np.asarray(freq, dtype=float) / sr)
  a = np.stack([np.ones_like(cos), -2 * r * cos, np.full_like(cos, r * r)], -1)
  return a.sum(axis=-1, keepdims=True), a


def _formant_cascade(source: np.ndarray, formants: np.ndarray,
                     bandwidths: Sequence[float], sr: int) -> np.ndarray:
  """Filters ``source`` through second-order resonators with moving centres.

  Args:
    source: Excitation, shape ``[n]``.
    formants: Centre frequency of every resonator at every sample, ``[n, k]``.
    bandwidths: Bandwidth of every resonator in Hz, length ``k``.
    sr: Sample rate in Hz.

  Returns:
    The filtered signal; the coefficients change every ``_BLOCK`` samples and
    the filter state carries over.
  """
  starts = range(0, len(source), _BLOCK)
  out = source
  for track, bandwidth in zip(formants[::_BLOCK].T, bandwidths):
    filtered = np.empty_like(out)
    state = np.zeros(2)
    for start, b, a in zip(starts, *_resonator(track, bandwidth, sr)):
      block = slice(start, start + _BLOCK)
      filtered[block], state = signal.lfilter(b, a, out[block], zi=state)
    out = filtered
  return out


def _speak(phones: Sequence[str], voice: _Voice, rng: np.random.Generator,
           sr: int, *, f0_scale: float = 1.0) -> np.ndarray:
  """Renders a phone sequence with the formant synthesiser.

  Args:
    phones: Keys of ``_PHONES``; at least one must carry formant targets.
    voice: Who speaks.
    rng: Source of the per-rendering variation (timing, pitch contour,
      formants, noise).
    sr: Sample rate in Hz.
    f0_scale: Pitch factor, e.g. for declination within an utterance.

  Returns:
    The waveform, peak 1 in the voiced part.
  """
  segments = [segment for phone in phones for segment in _PHONES[phone]]
  tempo = rng.uniform(0.9, 1.1) / voice.rate
  lengths = np.array([
      max(1, round(s.duration_ms / 1000 * sr * tempo * rng.uniform(0.85, 1.15)))
      for s in segments])
  starts = np.cumsum(lengths) - lengths
  n = int(lengths.sum())

  anchor_times, anchor_targets = [], []
  for segment, start, length in zip(segments, starts, lengths):
    for j, target in enumerate(segment.formants):
      anchor_times.append(start + (j + 0.5) * length / len(segment.formants))
      anchor_targets.append(target)
  targets = (np.array(anchor_targets) * voice.formant_scale
             * rng.uniform(0.97, 1.03, size=3))
  formants = np.stack([np.interp(np.arange(n), anchor_times, targets[:, k])
                       for k in range(3)], axis=1)

  f0_mean = voice.f0_hz * f0_scale * rng.uniform(0.93, 1.07)
  f0 = (np.geomspace(f0_mean * rng.uniform(1.0, 1.15),
                     f0_mean * rng.uniform(0.8, 0.95), n)
        * (1 + 0.015 * _wobble(n, 40, rng, sr)))
  voicing = _smooth(np.repeat([s.voicing for s in segments], lengths), sr)
  aspiration = _smooth(np.repeat([s.aspiration for s in segments], lengths), sr)
  noise = rng.standard_normal(n)
  glottal = signal.lfilter([1.0, -voice.brightness], [1.0],
                           _glottal_source(f0, voice.open_quotient, sr))
  source = (voicing * (glottal + voice.breathiness * noise)
            + aspiration * noise)
  out = _formant_cascade(source, formants, voice.bandwidths, sr)
  for freq, bandwidth in _HIGHER_POLES:
    out = signal.lfilter(*_resonator(freq * voice.formant_scale, bandwidth, sr),
                         out)
  out /= np.max(np.abs(out))

  for segment, start, length in zip(segments, starts, lengths):
    if segment.frication:
      low, high = np.clip(np.array(segment.band) * voice.formant_scale,
                          50, 0.47 * sr)
      bandpass = signal.butter(4, [low, high], btype="bandpass", fs=sr,
                               output="sos")
      hiss = signal.sosfilt(bandpass, rng.standard_normal(length))
      out[start:start + length] += segment.frication * hiss * _fades(length, sr)
  return out


# ----------------------------------------------------------------------------
# Speakers, their devices and the optional espeak-ng voices.

_TTS_LANGUAGES = ("en", "de", "fr", "es")
_TTS_MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")
_TTS_FEMALE_VARIANTS = ("f1", "f2", "f3", "f4")
_TTS_WORDS: dict[str, dict[str, str]] = {
    "en": {word: word for word in _WORDS},
    "de": dict(yes="ja", no="nein", up="hoch", down="runter", left="links",
               right="rechts", on="an", off="aus", stop="stopp", go="los",
               one="eins", two="zwei"),
    "fr": dict(yes="oui", no="non", up="haut", down="bas", left="gauche",
               right="droite", on="marche", off="arrêt", stop="stop", go="va",
               one="un", two="deux"),
    "es": dict(yes="sí", no="no", up="arriba", down="abajo",
               left="izquierda", right="derecha", on="enciende", off="apaga",
               stop="para", go="ve", one="uno", two="dos"),
}


@dataclasses.dataclass(frozen=True)
class _EspeakVoice:
  """An ``espeak-ng`` voice: ``-v language+variant -s speed_wpm -p pitch``."""

  language: str
  variant: str
  speed_wpm: int
  pitch: int


@dataclasses.dataclass(frozen=True, eq=False)
class _Speaker:
  """A client: a speaker recording through its own device.

  Attributes:
    client_id: Client and speaker id, e.g. ``"spk007"``.
    voice: Formant-synthesiser voice.
    device_taps: FIR filter of the recording device.
    hiss_db: RMS of the device noise floor, dB relative to the clip's peak.
    level_db: Typical peak level of the client's recordings in dBFS.
    espeak: The TTS voice (only when generating with ``tts=True``).
  """

  client_id: str
  voice: _Voice
  device_taps: np.ndarray
  hiss_db: float
  level_db: float
  espeak: Optional[_EspeakVoice] = None


def _device_taps(rng: np.random.Generator, sr: int) -> np.ndarray:
  """Random device colouring: a band-pass with three random EQ bumps."""
  freqs = np.linspace(0, sr / 2, 257)
  f = np.maximum(freqs, 1.0)
  low, high = rng.uniform(70, 350), rng.uniform(3200, 7600)
  gain_db = (-12 * np.log2(np.maximum(low / f, 1.0))
             - 24 * np.log2(np.maximum(f / high, 1.0)))
  for _ in range(3):
    centre = np.exp(rng.uniform(np.log(200), np.log(6000)))
    width_octaves = rng.uniform(0.3, 1.5)
    gain_db += rng.uniform(-9, 9) * np.exp(
        -0.5 * (np.log2(f / centre) / width_octaves) ** 2)
  gain = 10 ** (np.maximum(gain_db, -60) / 20)
  return signal.firwin2(129, freqs, gain, fs=sr)


def _make_speaker(config: CorpusConfig, index: int) -> _Speaker:
  rng = np.random.default_rng([config.seed, _SPEAKER_STREAM, index])
  female = index % 2 == 1
  speaker = _Speaker(
      client_id=f"spk{index:03d}",
      voice=_random_voice(rng, female),
      device_taps=_device_taps(rng, config.sample_rate),
      hiss_db=rng.uniform(-72, -50),
      level_db=rng.uniform(-14, -1))
  if not config.tts:
    return speaker
  variants = _TTS_FEMALE_VARIANTS if female else _TTS_MALE_VARIANTS
  return dataclasses.replace(speaker, espeak=_EspeakVoice(
      language=_TTS_LANGUAGES[index % len(_TTS_LANGUAGES)],
      variant=str(rng.choice(variants)),
      speed_wpm=int(rng.integers(140, 200)),
      pitch=int(rng.integers(25, 75))))


def _espeak(text: str, voice: _EspeakVoice, rng: np.random.Generator,
            sr: int, f0_scale: float) -> np.ndarray:
  """Speaks ``text`` with espeak-ng, resampled to ``sr`` and trimmed."""
  # librosa is slow to import and only this optional mode needs it.
  import librosa  # pylint: disable=g-import-not-at-top

  speed = voice.speed_wpm + int(rng.integers(-10, 11))
  pitch = int(np.clip(voice.pitch * f0_scale + rng.integers(-5, 6), 0, 99))
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "speech.wav")
    subprocess.run(["espeak-ng", "-v", f"{voice.language}+{voice.variant}",
                    "-s", str(speed), "-p", str(pitch), "-w", path, text],
                   check=True, capture_output=True)
    audio, native_sr = sf.read(path, dtype="float64")
  audio = librosa.resample(audio, orig_sr=native_sr, target_sr=sr)
  active = np.flatnonzero(np.abs(audio) > 0.02 * np.max(np.abs(audio)))
  return audio[active[0]:active[-1] + 1]


def _say(speaker: _Speaker, word: str, rng: np.random.Generator, sr: int,
         f0_scale: float = 1.0) -> np.ndarray:
  """One rendering of ``word`` by ``speaker``."""
  if speaker.espeak is not None:
    text = _TTS_WORDS[speaker.espeak.language][word]
    return _espeak(text, speaker.espeak, rng, sr, f0_scale)
  return _speak(VOCABULARY[word], speaker.voice, rng, sr, f0_scale=f0_scale)


# ----------------------------------------------------------------------------
# Clip content.


def _long_clip_samples(rng: np.random.Generator, sr: int) -> int:
  """A random clip length within _LONG_CLIP_SECONDS, in whole 10 ms steps."""
  return round(rng.uniform(*_LONG_CLIP_SECONDS) * 100) * sr // 100


def _keyword_audio(speaker: _Speaker, word: str, rng: np.random.Generator,
                   sr: int) -> np.ndarray:
  n = round(_KEYWORD_SECONDS * sr)
  # A slow TTS voice may take longer than the clip: keep the onset.
  spoken = _say(speaker, word, rng, sr)[:n]
  out = np.zeros(n)
  offset = int(rng.integers(0, n - len(spoken) + 1))
  out[offset:offset + len(spoken)] = spoken
  return out


def _utterance_audio(speaker: _Speaker, rng: np.random.Generator,
                     sr: int) -> np.ndarray:
  """Random words with pauses and a falling pitch over the utterance."""
  n = _long_clip_samples(rng, sr)
  out = np.zeros(n)
  position = round(rng.uniform(0.1, 0.5) * sr)
  while True:
    word = str(rng.choice(_WORDS))
    spoken = _say(speaker, word, rng, sr, f0_scale=1.08 - 0.16 * position / n)
    if position + len(spoken) > n:
      return out
    out[position:position + len(spoken)] = spoken * rng.uniform(0.6, 1.0)
    position += len(spoken) + round(rng.uniform(0.05, 0.6) * sr)


def _adsr(n_note: int, sr: int, attack: float, decay: float, sustain: float,
          release: float) -> np.ndarray:
  """Attack-decay-sustain-release envelope: ``n_note`` held, then released."""
  t = np.arange(n_note) / sr
  held = np.where(t < attack, t / attack,
                  sustain + (1 - sustain) * np.exp(-(t - attack) / decay))
  tail = held[-1] * np.linspace(1, 0, max(1, round(release * sr)))
  return np.concatenate([held, tail])


def _partials(phase: np.ndarray, ratios: np.ndarray, amplitudes: np.ndarray,
              decay_rates: np.ndarray, rng: np.random.Generator,
              sr: int) -> np.ndarray:
  """Sum of exponentially decaying sinusoids at ``ratios`` x ``phase``.

  Args:
    phase: Phase of the fundamental in cycles, one value per sample.
    ratios: Frequency of every partial relative to the fundamental.
    amplitudes: Initial amplitude of every partial.
    decay_rates: Exponential decay of every partial in 1/s.
    rng: Draws the (random) starting phases.
    sr: Sample rate in Hz.
  """
  t = np.arange(len(phase))[:, None] / sr
  return np.sum(amplitudes * np.exp(-decay_rates * t)
                * np.sin(2 * np.pi * ratios * phase[:, None]
                         + rng.uniform(0, 2 * np.pi, len(ratios))), axis=1)


@dataclasses.dataclass(frozen=True, eq=False)
class _Timbre:
  """How an instrument family sounds.

  Attributes:
    ratios: Partial frequencies relative to the note's fundamental.
    amplitudes: Initial amplitude of every partial.
    decay_rates: Exponential decay of every partial in 1/s.
    adsr: Attack (s), decay (s), sustain level and release (s) of the note.
    vibrato: Relative depth of a 4.5-6.5 Hz vibrato (0: none).
  """

  ratios: np.ndarray
  amplitudes: np.ndarray
  decay_rates: np.ndarray
  adsr: tuple[float, float, float, float]
  vibrato: float = 0.0


_HARMONICS = np.arange(1.0, 25.0)
_ODD_HARMONICS = np.arange(1.0, 13.0, 2)
_TIMBRES = {
    # Bright attack, ringing on; the upper harmonics die first.
    "pluck": _Timbre(_HARMONICS, _HARMONICS ** -0.8, 2 + 1.5 * _HARMONICS,
                     adsr=(0.002, 1.0, 1.0, 0.3)),
    # Steady odd harmonics.
    "organ": _Timbre(_ODD_HARMONICS, 1 / _ODD_HARMONICS,
                     np.zeros_like(_ODD_HARMONICS),
                     adsr=(0.02, 0.05, 0.9, 0.08)),
    # Risset's inharmonic bell partials, the low ones ringing longest.
    "bell": _Timbre(
        np.array([0.56, 0.92, 1.19, 1.71, 2.0, 2.74, 3.0, 3.76, 4.07]),
        np.array([1.0, 0.67, 1.0, 1.8, 2.67, 1.67, 1.46, 1.33, 1.33]),
        1 / (1.2 * np.array([1.0, 0.9, 0.65, 0.55, 0.33, 0.35, 0.25, 0.2,
                             0.15])),
        adsr=(0.002, 1.0, 1.0, 1.0)),
    # Sawtooth-like string with a slow attack and vibrato.
    "bowed": _Timbre(_HARMONICS[:12], 1 / _HARMONICS[:12],
                     np.zeros(12), adsr=(0.15, 0.1, 0.8, 0.2), vibrato=0.006),
}


def _note(instrument: str, freq: float, seconds: float,
          rng: np.random.Generator, sr: int) -> np.ndarray:
  """One note held for ``seconds``, followed by its release or ringing tail."""
  timbre = _TIMBRES[instrument]
  envelope = _adsr(round(seconds * sr), sr, *timbre.adsr)
  t = np.arange(len(envelope)) / sr
  vibrato = (timbre.vibrato * np.minimum(1.0, t / 0.3)
             * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * t))
  phase = np.cumsum(freq * (1 + vibrato)) / sr
  audible = timbre.ratios * freq < 0.45 * sr
  return envelope * _partials(phase, timbre.ratios[audible],
                              timbre.amplitudes[audible],
                              timbre.decay_rates[audible], rng, sr)


_SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "pentatonic": (0, 2, 4, 7, 9),
}
# Per instrument: MIDI range of the root note and note lengths in beats.
_REGISTER = {"pluck": (50, 64), "organ": (45, 60), "bell": (62, 74),
             "bowed": (45, 62)}
_RHYTHMS = {"pluck": (0.5, 0.5, 1.0), "organ": (1.0, 2.0), "bell": (1.0, 2.0),
            "bowed": (1.0, 2.0, 4.0)}


def _music_audio(instrument: str, rng: np.random.Generator,
                 sr: int) -> np.ndarray:
  """A melody: random walk on a scale, at a random tempo."""
  n = _long_clip_samples(rng, sr)
  out = np.zeros(n)
  beat = 60 / rng.uniform(70, 160)
  scale = np.array(_SCALES[str(rng.choice(list(_SCALES)))])
  root = rng.integers(*_REGISTER[instrument])
  degree = int(rng.integers(0, 2 * len(scale)))
  position = 0
  while position < n:
    beats = float(rng.choice(_RHYTHMS[instrument]))
    if rng.random() > 0.1:  # Otherwise a rest.
      octave, step = divmod(degree, len(scale))
      freq = 440 * 2 ** ((root + 12 * octave + scale[step] - 69) / 12)
      note = _note(instrument, freq, beats * beat, rng, sr)[:n - position]
      out[position:position + len(note)] += note * rng.uniform(0.7, 1.0)
    degree = int(np.clip(degree + rng.integers(-2, 3), 0, 2 * len(scale)))
    position += round(beats * beat * sr)
  return out


def _colored_noise(n: int, exponent: float,
                   rng: np.random.Generator) -> np.ndarray:
  """Noise with power spectrum ~ 1 / f**exponent (pink: 1, brown: 2)."""
  size = scipy.fft.next_fast_len(n, real=True)
  spectrum = np.fft.rfft(rng.standard_normal(size))
  freqs = np.fft.rfftfreq(size)
  freqs[0] = freqs[1]
  return np.fft.irfft(spectrum * freqs ** (-exponent / 2), size)[:n]


def _noise_audio(kind: str, n: int, rng: np.random.Generator,
                 sr: int) -> np.ndarray:
  """``n`` samples of the background ``kind`` (one of NOISE_KINDS)."""
  if kind == "white":
    return rng.standard_normal(n)
  if kind == "pink":
    return _colored_noise(n, 1.0, rng)
  if kind == "brown":
    return _colored_noise(n, 2.0, rng)
  if kind == "hum":  # Mains hum: harmonics of 50 or 60 Hz, slightly unsteady.
    t = np.arange(n) / sr
    mains = rng.choice([50.0, 60.0])
    k = np.arange(1, 9.0)
    hum = _partials(mains * t, k, rng.uniform(0.2, 1.0, len(k)) / k ** 1.2,
                    np.zeros_like(k), rng, sr)
    flutter = 1 + 0.1 * _wobble(n, 2, rng, sr)
    return hum * flutter + 0.02 * rng.standard_normal(n)
  if kind == "babble":  # Overlapping streams of vowel-like syllables.
    out = np.zeros(n)
    for _ in range(rng.integers(4, 8)):
      voice = _random_voice(rng, female=bool(rng.random() < 0.5))
      stream = np.zeros(n)
      position = int(rng.integers(0, sr // 2))
      while position < n:
        phones = rng.choice(_BABBLE_PHONES, size=rng.integers(2, 6))
        syllables = _speak(phones, voice, rng, sr)[:n - position]
        stream[position:position + len(syllables)] = syllables
        position += len(syllables) + round(rng.uniform(0.02, 0.3) * sr)
      out += stream * rng.uniform(0.3, 1.0)
    return out
  if kind == "rain":  # Random drop clicks over a soft pink bed.
    drops = np.zeros(n)
    count = rng.poisson(rng.uniform(300, 3000) * n / sr)
    drops[rng.integers(0, n, count)] = rng.lognormal(0, 1, count) * rng.choice(
        [-1, 1], count)
    crackle = signal.sosfilt(
        signal.butter(2, [rng.uniform(800, 1500), rng.uniform(5000, 7000)],
                      btype="bandpass", fs=sr, output="sos"), drops)
    bed = _colored_noise(n, 1.0, rng)
    return crackle / np.std(crackle) + 0.3 * bed / np.std(bed)
  raise ValueError(f"unknown noise kind {kind!r}; "
                   f"expected one of {NOISE_KINDS}")


def _rms(x: np.ndarray) -> float:
  return float(np.sqrt(np.mean(x ** 2)))


def _mix_background(speech: np.ndarray, config: CorpusConfig,
                    rng: np.random.Generator) -> np.ndarray:
  """Adds a random background at a random SNR (over the whole clip)."""
  noise = _noise_audio(str(rng.choice(NOISE_KINDS)), len(speech), rng,
                       config.sample_rate)
  snr_db = rng.uniform(*config.snr_db)
  return speech + noise * _rms(speech) / _rms(noise) * 10 ** (-snr_db / 20)


def _record(x: np.ndarray, speaker: _Speaker,
            rng: np.random.Generator) -> np.ndarray:
  """What ``speaker``'s device records: coloured, noisy, peak-normalised."""
  x = signal.fftconvolve(x, speaker.device_taps, mode="same")
  hiss = 10 ** (speaker.hiss_db / 20) * rng.standard_normal(len(x))
  x = x / np.max(np.abs(x)) + hiss
  peak_db = min(speaker.level_db + rng.uniform(-1.5, 1.5), -0.5)
  return x * (10 ** (peak_db / 20) / np.max(np.abs(x)))


# ----------------------------------------------------------------------------
# The corpus.


@dataclasses.dataclass(frozen=True)
class _ClipSpec:
  """Clip ``index``: its kind, its owner and its word, instrument or noise."""

  index: int
  speaker: int
  kind: str  # "keyword", "utterance", "music" or "noise".
  variant: str = ""


_FOLDERS = {"keyword": "keywords", "utterance": "utterances", "music": "music",
            "noise": "noise"}


def _balanced(values: Sequence[str], count: int,
              rng: np.random.Generator) -> list[str]:
  """``count`` values, each used equally often (+-1), in random order."""
  return [str(v) for v in rng.permutation(np.resize(np.array(values), count))]


def _plan(config: CorpusConfig) -> list[_ClipSpec]:
  """Decides every clip: words, instruments and noise kinds, and who owns them.

  Keywords are balanced over the whole corpus. Music and noise clips are
  balanced over instruments / noise kinds and handed to clients with
  probabilities drawn from a skewed (gamma) distribution, so clients differ in
  how much of each they own.
  """
  rng = np.random.default_rng([config.seed, _PLAN_STREAM])
  num_speakers = config.num_speakers
  per_speaker = collections.defaultdict(list)
  per_keyword_speaker = config.keyword_clips_per_speaker
  words = _balanced(_WORDS, num_speakers * per_keyword_speaker, rng)
  for i, word in enumerate(words):
    per_speaker[i // per_keyword_speaker].append(("keyword", word))
  for speaker in range(num_speakers):
    per_speaker[speaker] += [("utterance", "")] * config.utterances_per_speaker
  for kind, variants, mean in (
      ("music", INSTRUMENTS, config.music_clips_per_client),
      ("noise", NOISE_KINDS, config.noise_clips_per_client)):
    count = round(mean * num_speakers)
    weights = rng.gamma(0.7, size=num_speakers)
    owners = rng.choice(num_speakers, size=count, p=weights / weights.sum())
    for owner, variant in zip(owners, _balanced(variants, count, rng)):
      per_speaker[owner].append((kind, variant))
  items = [(speaker, kind, variant) for speaker in range(num_speakers)
           for kind, variant in per_speaker[speaker]]
  return [_ClipSpec(index, *item) for index, item in enumerate(items)]


def _labels(spec: _ClipSpec, speaker: _Speaker) -> dict[str, str]:
  if spec.kind == "music":
    return {"content": "music", "instrument": spec.variant}
  if spec.kind == "noise":
    return {"content": "noise"}
  labels = {"content": "speech", "speaker": speaker.client_id}
  if spec.kind == "keyword":
    labels["keyword"] = spec.variant
  if speaker.espeak is not None:
    labels["language"] = speaker.espeak.language
  return labels


def _render(spec: _ClipSpec, speaker: _Speaker,
            config: CorpusConfig) -> np.ndarray:
  rng = np.random.default_rng([config.seed, _CLIP_STREAM, spec.index])
  sr = config.sample_rate
  if spec.kind == "keyword":
    audio = _keyword_audio(speaker, spec.variant, rng, sr)
  elif spec.kind == "utterance":
    audio = _utterance_audio(speaker, rng, sr)
  elif spec.kind == "music":
    audio = _music_audio(spec.variant, rng, sr)
  else:
    audio = _noise_audio(spec.variant, _long_clip_samples(rng, sr), rng, sr)
  is_speech = spec.kind in ("keyword", "utterance")
  if is_speech and rng.random() < config.noise_mix_prob:
    audio = _mix_background(audio, config, rng)
  return _record(audio, speaker, rng)


def label_counts(table: ClipTable) -> dict[str, dict[str, int]]:
  """Number of clips per value of every label task.

  Args:
    table: Any clip table.

  Returns:
    ``{task: {value: count}}``, sorted by task and value, e.g.
    ``{"content": {"music": 4, "noise": 6, "speech": 44}, ...}``.
  """
  counts = {}
  for task in table.label_columns:
    values = collections.Counter(
        c.labels[task] for c in table if task in c.labels)
    counts[task] = dict(sorted(values.items()))
  return counts


def _check_same_config(info_path: str, config: CorpusConfig) -> None:
  with open(info_path, encoding="utf-8") as f:
    stored = json.load(f)["config"]
  wanted = json.loads(json.dumps(dataclasses.asdict(config)))
  for name in sorted(set(stored) | set(wanted)):
    if stored.get(name) != wanted.get(name):
      raise ValueError(
          f"{os.path.dirname(info_path)} already holds a synthetic corpus with "
          f"{name}={stored.get(name)!r}, but {name}={wanted.get(name)!r} was "
          "requested; use another directory or delete this one")


def _write_json(path: str, content: dict) -> None:
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(content, f, indent=2)
  os.replace(path + ".tmp", path)


def generate_corpus(out_dir: str, config: CorpusConfig, *,
                    show_progress: bool = True) -> ClipTable:
  """Writes the synthetic corpus (WAVs, manifest, corpus.json) to ``out_dir``.

  Clips go to ``keywords/``, ``utterances/``, ``music/`` and ``noise/``, one
  folder per client below each, as mono 16-bit PCM WAV. ``manifest.csv`` lists
  them (paths relative to ``out_dir``) and ``corpus.json``, written last, holds
  the config and the label counts. A directory whose ``corpus.json`` has the
  same config is complete and is reused as it is.

  Args:
    out_dir: Directory to write to (created if missing).
    config: What to generate.
    show_progress: Show a progress bar.

  Returns:
    The clip table, rooted at ``out_dir``, with durations.

  Raises:
    ValueError: ``out_dir`` holds a corpus made with a different config (the
      message names the first differing field).
    RuntimeError: ``config.tts`` is set but ``espeak-ng`` is not on PATH.
  """
  manifest_path = os.path.join(out_dir, _MANIFEST_NAME)
  info_path = os.path.join(out_dir, _INFO_NAME)
  if os.path.exists(info_path):
    _check_same_config(info_path, config)
    if os.path.exists(manifest_path):
      return read_manifest_csv(manifest_path, name="synthetic")
    os.remove(info_path)
  if config.tts and shutil.which("espeak-ng") is None:
    raise RuntimeError("CorpusConfig.tts=True needs the espeak-ng binary on "
                       "PATH (e.g. `apt-get install espeak-ng`); it was not "
                       "found. Use tts=False for the built-in synthesiser.")

  os.makedirs(out_dir, exist_ok=True)
  speakers = [_make_speaker(config, i) for i in range(config.num_speakers)]
  clips = []
  for spec in tqdm.tqdm(_plan(config), desc="synthetic corpus", unit="clip",
                        disable=not show_progress):
    speaker = speakers[spec.speaker]
    audio = _render(spec, speaker, config)
    name = f"{spec.index:05d}" + (f"_{spec.variant}" if spec.variant else "")
    path = os.path.join(_FOLDERS[spec.kind], speaker.client_id, name + ".wav")
    os.makedirs(os.path.join(out_dir, os.path.dirname(path)), exist_ok=True)
    sf.write(os.path.join(out_dir, path), audio, config.sample_rate,
             subtype="PCM_16")
    clips.append(Clip(path=path, client_id=speaker.client_id,
                      labels=_labels(spec, speaker),
                      duration_s=len(audio) / config.sample_rate))

  table = ClipTable.from_rows(clips, root=out_dir, name="synthetic")
  table.to_csv(manifest_path + ".tmp")
  os.replace(manifest_path + ".tmp", manifest_path)
  _write_json(info_path, {
      "config": dataclasses.asdict(config),
      "num_clips": len(table),
      "total_duration_s": round(sum(c.duration_s for c in table), 3),
      "label_counts": label_counts(table),
  })
  return read_manifest_csv(manifest_path, name="synthetic")
