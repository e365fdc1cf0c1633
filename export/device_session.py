"""Host-side virtual device: what the Android demo app does, on WAV files.

The app (``android_demo/``) and :class:`VirtualDevice` run the same exported
training model through the same steps and read and write the same files:

* the microphone (here: a folder of WAV files) is cut into consecutive,
  non-overlapping training windows of ``example_samples`` samples; silent
  windows are dropped and a bounded FIFO keeps the most recent ones;
* ``train`` runs on batches taken from that buffer in a fixed rotation;
* the weights from ``get_weights`` are persisted atomically with a checksum
  and restored with ``set_weights`` at start; a damaged file falls back to
  the previous good copy, then to the weights bundled in the model;
* the update a federated server would aggregate (current minus bundled
  model weights) is written to a file.

Every file is a tensor file (:mod:`export.tensor_file`); the buffer lives in
:mod:`export.audio_buffers`, the saved weights in :mod:`export.weight_store`.
The app's counterpart is ``DeviceSession.kt``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional

import numpy as np

from export.manifest import MANIFEST_NAME, Manifest
from export.audio_buffers import NotEnoughAudioError, WindowBuffer
from export.exporter import TRAINING_DIR
from export.runtime import DEFAULT_RUNTIME, OnDeviceModel
from export.tensor_file import (Kind, TensorFile, TensorFileError,
                                write_tensor_file)
from export.weight_store import WeightStore, weight_delta
from model.datasets.audio import AudioDecodeError, load_audio
from model.errors import UserError

__all__ = ["WINDOWS_FILE", "DELTA_FILE", "Recording", "ListenReport",
           "VirtualDevice", "training_model_dir", "wav_files",
           "nearest_neighbours", "ModelLoadError", "SessionRun",
           "run_session"]

#: Files in the state directory (the app's ``filesDir``) besides the weights.
WINDOWS_FILE = "windows.odtf"
DELTA_FILE = "update.odtf"


@dataclasses.dataclass(frozen=True)
class Recording:
  """One usable WAV file heard by the virtual microphone.

  Attributes:
    path: The file.
    windows: Training windows it added to the buffer.
    tail: Its last ``patch_samples`` samples (zero-padded in front if
      shorter): what the app's live view embeds when a recording ends.
  """

  path: str
  windows: int
  tail: np.ndarray


@dataclasses.dataclass(frozen=True)
class ListenReport:
  """What :meth:`VirtualDevice.listen` did with a folder.

  Attributes:
    recordings: Usable files, in name order.
    skipped: ``(path, reason)`` of every file that could not be used.
    silent_windows: Windows dropped as silent.
  """

  recordings: tuple[Recording, ...]
  skipped: tuple[tuple[str, str], ...]
  silent_windows: int


def training_model_dir(path: str) -> str:
  """``path`` itself, or its ``training/`` export subdirectory if it has one."""
  training = os.path.join(path, TRAINING_DIR)
  return training if os.path.exists(os.path.join(
      training, MANIFEST_NAME)) else path


def wav_files(directory: str) -> list[str]:
  """Every ``*.wav`` under ``directory`` (recursively), in path order.

  Raises:
    FileNotFoundError: ``directory`` does not exist.
  """
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"{directory}: no such directory of WAV files")
  return sorted(os.path.join(root, name)
                for root, _, names in os.walk(directory) for name in names
                if name.lower().endswith(".wav"))


class VirtualDevice:
  """The Android demo app's model, buffer and files, driven from the host.

  Attributes:
    manifest: The training model's manifest.
    model: The model on its runtime (LiteRT by default, as on the phone).
    bundled: The weights inside the ``.tflite`` file, read before restoring.
    store: The persisted weights.
    buffer: The training windows.
    restored: What was restored at start.
    examples: Training examples behind the current weights.
    notes: Messages from start-up (e.g. an unusable saved buffer).
  """

  def __init__(self, model_dir: str, state_dir: str, *,
               buffer_windows: int = 32, runtime: str = DEFAULT_RUNTIME):
    """Loads the model and restores the saved weights and buffer.

    Args:
      model_dir: Directory of ``model.tflite`` + ``manifest.json`` (or an
        export directory holding ``training/``).
      state_dir: The device's storage (created when something is saved).
      buffer_windows: Capacity of the window buffer.
      runtime: One of :data:`export.runtime.RUNTIMES` (not ``tensorflow``).

    Raises:
      FileNotFoundError: No model or manifest.
      ValueError: The model's sha256 differs from its manifest's, or it is a
        ``flex`` export (the on-device runtime has no Select-TF ops).
    """
    model_dir = training_model_dir(model_dir)
    self.manifest = Manifest.read(model_dir)
    self.model = OnDeviceModel.load(model_dir, runtime=runtime)
    signatures = sorted(self.model.interpreter.get_signature_list())
    if "train" not in signatures:
      raise ValueError(f"{model_dir}: the model has no 'train' signature "
                       f"(an embed-only export?); it has {signatures}")
    self.state_dir = state_dir
    self.notes: list[str] = []
    self.bundled = self.model.get_weights()
    self.store = WeightStore(state_dir, self.model_sha256,
                             [(v.name, v.shape)
                              for v in self.manifest.variables])
    self.buffer = WindowBuffer(self.manifest.example_samples,
                               buffer_windows)
    windows_path = os.path.join(state_dir, WINDOWS_FILE)
    if os.path.exists(windows_path):
      try:
        self.buffer.load(windows_path)
      except TensorFileError as e:
        self.notes.append(f"saved buffer ignored: {e}")
    self.restored = self.store.restore(self.model.set_weights)
    self.examples = self.restored.examples

  @property
  def model_sha256(self) -> str:
    return self.manifest.file.sha256

  @property
  def batch_size(self) -> int:
    return self.manifest.batch_size

  @property
  def patch_samples(self) -> int:
    return self.manifest.model.patch_samples

  def listen(self, wav_dir: str) -> ListenReport:
    """Plays every WAV file under ``wav_dir`` into the microphone buffer.

    Each file is one recording: decoded to mono at the manifest's sample
    rate (``model.datasets.audio.load_audio``), cut into windows; its
    unfinished last window is dropped.

    Raises:
      FileNotFoundError: ``wav_dir`` does not exist.
    """
    recordings, skipped = [], []
    silent_before = self.buffer.silent_windows
    for path in wav_files(wav_dir):
      try:
        waveform = load_audio(path,
                              sample_rate=self.manifest.model.sample_rate)
      except AudioDecodeError as e:
        skipped.append((path, e.reason))
        continue
      added = self.buffer.append(waveform)
      self.buffer.end_stream()
      tail = waveform[-self.patch_samples:]
      recordings.append(Recording(path=path, windows=added, tail=np.pad(
          tail, (self.patch_samples - len(tail), 0))))
    return ListenReport(recordings=tuple(recordings), skipped=tuple(skipped),
                        silent_windows=self.buffer.silent_windows
                        - silent_before)

  def train(self, steps: int,
            on_step: Optional[Callable[[int, float], None]] = None
            ) -> list[float]:
    """Runs ``steps`` optimizer steps on batches from the buffer.

    Batch ``j`` of a step holds windows ``(examples + j) % len(buffer)``, so
    successive steps (and runs) rotate through the buffer.

    Args:
      steps: Optimizer steps.
      on_step: Called with (step index, loss) after each step.

    Returns:
      The loss of each step.

    Raises:
      NotEnoughAudioError: The buffer holds fewer windows than a batch.
    """
    if steps > 0 and len(self.buffer) < self.batch_size:
      raise NotEnoughAudioError(
          f"the buffer holds {len(self.buffer)} training windows of "
          f"{self.manifest.example_samples} samples; a batch needs "
          f"{self.batch_size}: record (or add WAV files) for longer")
    losses = []
    for step in range(steps):
      loss = self.model.train(self.buffer.batch(self.batch_size,
                                                self.examples))
      self.examples += self.batch_size
      losses.append(loss)
      if on_step is not None:
        on_step(step, loss)
    return losses

  def persist(self) -> None:
    """Saves the weights (atomically, keeping the last good copy) and buffer."""
    self.store.save(self.model.get_weights(), self.examples)
    self.buffer.save(os.path.join(self.state_dir, WINDOWS_FILE),
                     self.model_sha256)

  def embed(self, waveforms: np.ndarray) -> np.ndarray:
    """Embeddings ``[N, D]`` of ``[N, patch_samples]`` waveforms."""
    return self.model.embed(np.asarray(waveforms, np.float32))

  @property
  def multimodal(self) -> bool:
    """Whether the model also has ``embed_image`` and ``train_image``."""
    return self.manifest.model.multimodal

  def _require_images(self, what: str) -> None:
    if not self.multimodal:
      raise ValueError(f"{what}: the model is not multimodal (its manifest "
                       f"has no image signatures)")

  def embed_image(self, images: np.ndarray) -> np.ndarray:
    """Embeddings ``[N, D]`` of ``[N, H, W]`` images (multimodal models).

    Raises:
      ValueError: The model is not multimodal, or the images have the wrong
        shape or non-finite pixels.
    """
    self._require_images("embed_image")
    return self.model.embed_image(np.asarray(images, np.float32))

  def train_image(self, images: np.ndarray, steps: int) -> list[float]:
    """Runs ``steps`` ``train_image`` steps on batches cycling ``images``.

    Batch ``j`` of a step holds images ``(examples + j) % len(images)``; the
    steps count towards :attr:`examples` like audio steps.

    Args:
      images: ``[n, H, W]`` images, ``n >= batch_size``.
      steps: Optimizer steps.

    Returns:
      The loss of each step.

    Raises:
      ValueError: The model is not multimodal, or fewer images than a batch.
    """
    self._require_images("train_image")
    images = np.asarray(images, np.float32)
    if steps > 0 and len(images) < self.batch_size:
      raise ValueError(f"train_image: {len(images)} images; a batch needs "
                       f"{self.batch_size}")
    losses = []
    for _ in range(steps):
      rows = (self.examples + np.arange(self.batch_size)) % len(images)
      losses.append(self.model.train_image(images[rows]))
      self.examples += self.batch_size
    return losses

  def weight_names(self) -> list[str]:
    """Names of the model weights (not the optimizer state), in order."""
    return [v.name for v in self.manifest.weights]

  def write_delta(self, path: Optional[str] = None) -> str:
    """Writes current minus bundled model weights; returns the file's path.

    Args:
      path: Default: ``<state_dir>/update.odtf``.
    """
    path = path or os.path.join(self.state_dir, DELTA_FILE)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_tensor_file(path, TensorFile(
        kind=Kind.DELTA, model_sha256=self.model_sha256,
        examples=self.examples,
        tensors=weight_delta(self.model.get_weights(), self.bundled,
                             self.weight_names())))
    return path


def nearest_neighbours(embeddings: np.ndarray) -> np.ndarray:
  """Index of each row's most cosine-similar other row (``-1`` if alone)."""
  norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
  unit = embeddings / np.maximum(norms, 1e-12)
  similarity = unit @ unit.T
  np.fill_diagonal(similarity, -np.inf)
  nearest = np.argmax(similarity, axis=1)
  return np.where(len(embeddings) > 1, nearest, -1)


class ModelLoadError(ValueError, UserError):
  """The training model cannot be loaded (missing, damaged or flex)."""


@dataclasses.dataclass(frozen=True)
class SessionRun:
  """What :func:`run_session` did.

  Attributes:
    losses: Loss of each train step (empty when the buffer was too small).
    delta_path: The weight update written.
    report: The closing line (where the update is).
  """

  losses: tuple[float, ...]
  delta_path: str
  report: str


def run_session(model_dir: str, wav_dir: str, state_dir: str, *, steps: int,
                runtime: str = DEFAULT_RUNTIME, buffer_windows: int = 32,
                progress: Optional[Callable[[str], None]] = None
                ) -> SessionRun:
  """One session of the app on the host (``python -m export.device_main``).

  Restores the weights saved in ``state_dir`` (falling back to the last
  good copy, then to the model's own), plays every WAV file under
  ``wav_dir`` into the buffer, trains ``steps`` steps (none, with a note,
  when the buffer holds less than a batch), saves the weights and buffer,
  embeds the end of every recording (its nearest other recording is
  reported) and writes the weight update.

  Args:
    model_dir: The training export (or the export directory).
    wav_dir: Folder of WAV files: the microphone.
    state_dir: The device's storage.
    steps: Training steps.
    runtime: On-device runtime.
    buffer_windows: Training windows the buffer keeps.
    progress: Called with a line per event, as it happens.

  Returns:
    The losses, the update's path and the closing line.

  Raises:
    ModelLoadError: The model cannot be loaded.
  """
  say = progress or (lambda line: None)
  try:
    device = VirtualDevice(model_dir, state_dir,
                           buffer_windows=buffer_windows, runtime=runtime)
  except (FileNotFoundError, ValueError) as e:
    raise ModelLoadError(f"cannot load the model: {e}") from e
  for message in (*device.restored.problems, *device.notes):
    say(f"warning: {message}")
  say(f"weights: {device.restored.source} ({device.examples} training "
      f"examples behind them)")

  heard = device.listen(wav_dir)
  for path, reason in heard.skipped:
    say(f"skipped {path}: {reason}")
  say(f"microphone: {len(heard.recordings)} usable WAV files, "
      f"{sum(r.windows for r in heard.recordings)} new windows "
      f"({heard.silent_windows} silent dropped); buffer holds "
      f"{len(device.buffer)} of {device.buffer.capacity}")

  losses: list[float] = []
  try:
    losses = device.train(steps, on_step=lambda step, loss: say(
        f"step {step + 1}/{steps}: loss {loss:.4f}"))
  except NotEnoughAudioError as e:
    say(f"not training: {e}")
  device.persist()
  say(f"saved weights to {device.store.current_path}")

  if heard.recordings:
    embeddings = device.embed([r.tail for r in heard.recordings])
    for recording, nearest in zip(heard.recordings,
                                  nearest_neighbours(embeddings)):
      match = (os.path.basename(heard.recordings[nearest].path)
               if nearest >= 0 else "-")
      say(f"{os.path.basename(recording.path)}: nearest {match}")
  delta_path = device.write_delta()
  return SessionRun(losses=tuple(float(l) for l in losses),
                    delta_path=delta_path,
                    report=f"weight update: {delta_path}")
