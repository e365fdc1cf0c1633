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

Every file is a *tensor file* (``android_demo/README.md`` documents the
layout byte by byte): a little-endian header naming the model it belongs to
by its sha256, a table of float32 tensors, their data and a sha256 of all of
it.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import os
import struct
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from export import manifest as manifest_lib
from export.exporter import TRAINING_DIR
from export.runtime import DEFAULT_RUNTIME, OnDeviceModel
from model.datasets.audio import AudioDecodeError, load_audio

__all__ = [
    "MAGIC", "FORMAT_VERSION", "Kind", "WEIGHTS_FILE", "PREVIOUS_WEIGHTS_FILE",
    "WINDOWS_FILE", "DELTA_FILE", "WINDOWS_TENSOR", "MIN_RMS", "TensorFile",
    "TensorFileError", "encode_tensor_file", "decode_tensor_file",
    "write_atomically", "write_tensor_file", "read_tensor_file",
    "weight_delta", "Restored", "WeightStore", "WindowBuffer", "Recording",
    "ListenReport", "NotEnoughAudioError", "VirtualDevice",
    "resolve_model_dir", "wav_files", "nearest_neighbours",
]

#: First bytes of every tensor file.
MAGIC = b"ODTF"
#: Version of the tensor-file layout.
FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sII32sQI")
_DIGEST_BYTES = hashlib.sha256().digest_size

#: Files in the state directory (the app's ``filesDir``).
WEIGHTS_FILE = "weights.odtf"
PREVIOUS_WEIGHTS_FILE = "weights.prev.odtf"
WINDOWS_FILE = "windows.odtf"
DELTA_FILE = "update.odtf"
#: Name of the one tensor of a windows file.
WINDOWS_TENSOR = "windows"
#: Windows quieter than this RMS are not buffered (``load_audio``'s default).
MIN_RMS = 1e-4


class Kind(enum.IntEnum):
  """What a tensor file holds."""

  WEIGHTS = 1  # Every get_weights tensor, by variable name.
  DELTA = 2  # Current minus bundled model weights (role "weight" only).
  WINDOWS = 3  # One tensor "windows" [count, example_samples].
  CLIPS = 4  # App's tagged clips: one [patch_samples] tensor "label#n" each.


class TensorFileError(ValueError):
  """A tensor file is unreadable, damaged or belongs to another model.

  Attributes:
    source: The file (or a description of the bytes).
    reason: Why, in words.
  """

  def __init__(self, source: str, reason: str):
    super().__init__(f"{source}: {reason}")
    self.source = source
    self.reason = reason


@dataclasses.dataclass(frozen=True)
class TensorFile:
  """The content of a tensor file.

  Attributes:
    kind: What the tensors are.
    model_sha256: Hex sha256 of the ``model.tflite`` the tensors belong to
      (the manifest's ``file.sha256``).
    examples: Training examples seen since the bundled weights (0 in a
      windows file).
    tensors: float32 arrays by name, in file order.
  """

  kind: Kind
  model_sha256: str
  examples: int
  tensors: dict[str, np.ndarray]


def encode_tensor_file(content: TensorFile) -> bytes:
  """The bytes of a tensor file (see the module docstring).

  Raises:
    ValueError: A name is empty or too long, or the digest is not 64 hex
      characters.
  """
  parts = [_HEADER.pack(MAGIC, FORMAT_VERSION, int(content.kind),
                        bytes.fromhex(content.model_sha256), content.examples,
                        len(content.tensors))]
  for name, array in content.tensors.items():
    encoded = name.encode("utf-8")
    if not 0 < len(encoded) < 1 << 16:
      raise ValueError(f"tensor name {name!r}: must be 1 to 65535 UTF-8 bytes")
    parts.append(struct.pack(f"<H{len(encoded)}sB{array.ndim}I", len(encoded),
                             encoded, array.ndim, *array.shape))
  for array in content.tensors.values():
    parts.append(np.ascontiguousarray(array, dtype="<f4").tobytes())
  body = b"".join(parts)
  return body + hashlib.sha256(body).digest()


class _Reader:
  """Little-endian reads that fail with a :class:`TensorFileError`."""

  def __init__(self, content: bytes, source: str):
    self.content = content
    self.source = source
    self.offset = 0

  def take(self, size: int) -> bytes:
    if self.offset + size > len(self.content):
      raise TensorFileError(self.source, f"truncated: needs {size} bytes at "
                            f"offset {self.offset}, file has "
                            f"{len(self.content)}")
    chunk = self.content[self.offset:self.offset + size]
    self.offset += size
    return chunk

  def unpack(self, fmt: str) -> tuple:
    return struct.unpack(fmt, self.take(struct.calcsize(fmt)))


def decode_tensor_file(content: bytes, *, source: str = "<bytes>"
                       ) -> TensorFile:
  """Parses and checks the bytes of a tensor file.

  Args:
    content: The file's bytes.
    source: Names the file in error messages.

  Raises:
    TensorFileError: Wrong magic or version, checksum mismatch, truncated or
      trailing bytes, unknown kind, duplicate names.
  """
  if len(content) < _HEADER.size + _DIGEST_BYTES:
    raise TensorFileError(source, f"truncated: {len(content)} bytes is "
                          f"shorter than a header and checksum")
  if content[:len(MAGIC)] != MAGIC:
    raise TensorFileError(source, f"not a tensor file (starts with "
                          f"{content[:len(MAGIC)]!r}, expected {MAGIC!r})")
  body, digest = content[:-_DIGEST_BYTES], content[-_DIGEST_BYTES:]
  if hashlib.sha256(body).digest() != digest:
    raise TensorFileError(source, "checksum mismatch: the file is damaged "
                          "or truncated")
  reader = _Reader(body, source)
  _, version, kind, model_digest, examples, count = reader.unpack(
      _HEADER.format)
  if version != FORMAT_VERSION:
    raise TensorFileError(source, f"format version {version}, this reader "
                          f"knows {FORMAT_VERSION}")
  if kind not in set(Kind):
    raise TensorFileError(source, f"unknown kind {kind}")
  table = []
  for _ in range(count):
    (length,) = reader.unpack("<H")
    name = reader.take(length).decode("utf-8")
    (rank,) = reader.unpack("<B")
    table.append((name, reader.unpack(f"<{rank}I")))
  tensors = {}
  for name, shape in table:
    if name in tensors:
      raise TensorFileError(source, f"tensor {name!r} appears twice")
    size = int(np.prod(shape, dtype=np.int64))
    tensors[name] = np.frombuffer(reader.take(4 * size), dtype="<f4").astype(
        np.float32).reshape(shape)
  if reader.offset != len(body):
    raise TensorFileError(source, f"{len(body) - reader.offset} unexpected "
                          f"bytes after the tensor data")
  return TensorFile(kind=Kind(kind), model_sha256=model_digest.hex(),
                    examples=examples, tensors=tensors)


def _fsync_directory(directory: str) -> None:
  fd = os.open(directory, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def write_atomically(path: str, content: bytes, *,
                     before_rename: Optional[Callable[[], None]] = None
                     ) -> None:
  """Writes ``path`` as temp file + fsync + rename (+ fsync of the folder).

  Args:
    path: The file to (re)place.
    content: Its bytes.
    before_rename: Called after the temporary file is durable and before it
      replaces ``path`` (the weight store rotates the previous copy here).
  """
  temporary = path + ".tmp"
  with open(temporary, "wb") as f:
    f.write(content)
    f.flush()
    os.fsync(f.fileno())
  if before_rename is not None:
    before_rename()
  os.replace(temporary, path)
  _fsync_directory(os.path.dirname(os.path.abspath(path)))


def write_tensor_file(path: str, content: TensorFile) -> None:
  """Encodes ``content`` and writes it atomically to ``path``."""
  write_atomically(path, encode_tensor_file(content))


def read_tensor_file(path: str) -> TensorFile:
  """Reads and checks a tensor file.

  Raises:
    TensorFileError: The file is missing, unreadable or damaged.
  """
  try:
    with open(path, "rb") as f:
      content = f.read()
  except OSError as e:
    raise TensorFileError(path, f"unreadable: {e.strerror}") from e
  return decode_tensor_file(content, source=path)


def weight_delta(current: Mapping[str, np.ndarray],
                 bundled: Mapping[str, np.ndarray],
                 names: Sequence[str]) -> dict[str, np.ndarray]:
  """``current - bundled`` of each of ``names``, in that order."""
  return {name: (current[name] - bundled[name]).astype(np.float32)
          for name in names}


@dataclasses.dataclass(frozen=True)
class Restored:
  """What :meth:`WeightStore.restore` assigned.

  Attributes:
    source: ``"current"``, ``"previous"`` (the last good copy) or
      ``"bundled"`` (nothing usable was saved: the model keeps its own).
    examples: Training examples behind the restored weights.
    problems: Why each skipped file was unusable (empty when the first
      choice worked or nothing was saved).
  """

  source: str
  examples: int
  problems: tuple[str, ...]


class WeightStore:
  """The saved weights of one model: current file + last good copy.

  :meth:`save` writes the new file durably before anything is renamed and
  keeps the file it replaces as the previous copy only if that one passes
  its checks, so at every moment one of the two files holds good weights
  once anything was saved.
  """

  def __init__(self, directory: str, model_sha256: str,
               variables: Sequence[tuple[str, Sequence[int]]]):
    """Describes the store.

    Args:
      directory: Where the files live (created on the first save).
      model_sha256: Hex sha256 of the model the weights belong to.
      variables: ``(name, shape)`` of every ``get_weights`` tensor, in
        manifest order.
    """
    self.directory = directory
    self.model_sha256 = model_sha256
    self.variables = [(name, tuple(int(d) for d in shape))
                      for name, shape in variables]
    self.current_path = os.path.join(directory, WEIGHTS_FILE)
    self.previous_path = os.path.join(directory, PREVIOUS_WEIGHTS_FILE)

  def check(self, path: str) -> TensorFile:
    """Reads ``path`` and checks it holds finite weights of this model.

    Raises:
      TensorFileError: Damaged, another model's, another kind, wrong or
        missing tensors, non-finite values.
    """
    content = read_tensor_file(path)
    if content.kind != Kind.WEIGHTS:
      raise TensorFileError(path, f"holds {content.kind.name.lower()}, not "
                            f"weights")
    if content.model_sha256 != self.model_sha256:
      raise TensorFileError(path, f"belongs to model "
                            f"{content.model_sha256[:16]}..., not "
                            f"{self.model_sha256[:16]}...")
    found = [(name, a.shape) for name, a in content.tensors.items()]
    if found != self.variables:
      raise TensorFileError(path, f"tensors do not match the manifest's "
                            f"{len(self.variables)} variables (file has "
                            f"{len(found)})")
    if bad := [n for n, a in content.tensors.items()
               if not np.all(np.isfinite(a))]:
      raise TensorFileError(path, f"non-finite values in {bad[:3]}")
    return content

  def save(self, weights: Mapping[str, np.ndarray], examples: int) -> None:
    """Writes ``weights`` durably; the replaced file becomes the last good copy.

    Args:
      weights: Every variable by name (as ``get_weights`` returns them).
      examples: Training examples behind them.
    """
    os.makedirs(self.directory, exist_ok=True)
    content = encode_tensor_file(TensorFile(
        kind=Kind.WEIGHTS, model_sha256=self.model_sha256, examples=examples,
        tensors={name: np.asarray(weights[name], np.float32)
                 for name, _ in self.variables}))

    def rotate() -> None:
      try:
        self.check(self.current_path)
      except TensorFileError:
        return  # Missing or damaged: keep the previous good copy instead.
      os.replace(self.current_path, self.previous_path)

    write_atomically(self.current_path, content, before_rename=rotate)

  def restore(self, assign: Callable[[dict[str, np.ndarray]], None]
              ) -> Restored:
    """Assigns the newest usable saved weights with ``assign``.

    Tries the current file, then the last good copy; a file that fails its
    checks or that ``assign`` rejects (``ValueError`` or ``RuntimeError``)
    is skipped with its reason recorded. Nothing usable leaves the model as
    it is (``source="bundled"``).
    """
    problems = []
    for source, path in (("current", self.current_path),
                         ("previous", self.previous_path)):
      if not os.path.exists(path):
        continue
      try:
        content = self.check(path)
        assign(content.tensors)
      except (TensorFileError, ValueError, RuntimeError) as e:
        problems.append(f"{source} weights skipped: {e}")
        continue
      return Restored(source=source, examples=content.examples,
                      problems=tuple(problems))
    return Restored(source="bundled", examples=0, problems=tuple(problems))


class WindowBuffer:
  """A bounded FIFO of training windows cut from an audio stream.

  Samples are cut into consecutive, non-overlapping windows of
  ``window_samples``; a window whose RMS is below ``min_rms`` is dropped;
  when the buffer is full the oldest window goes. :meth:`end_stream` drops
  the unfinished window (a recording ended).
  """

  def __init__(self, window_samples: int, capacity: int, *,
               min_rms: float = MIN_RMS):
    """Creates an empty buffer.

    Raises:
      ValueError: ``window_samples`` or ``capacity`` is not positive.
    """
    if window_samples <= 0 or capacity <= 0:
      raise ValueError(f"WindowBuffer: window_samples ({window_samples}) and "
                       f"capacity ({capacity}) must be positive")
    self.window_samples = window_samples
    self.capacity = capacity
    self.min_rms = min_rms
    self._windows: list[np.ndarray] = []
    self._partial = np.zeros(0, np.float32)
    self.silent_windows = 0

  def __len__(self) -> int:
    return len(self._windows)

  @property
  def windows(self) -> np.ndarray:
    """float32 ``[len(self), window_samples]``, oldest first."""
    return np.stack(self._windows) if self._windows else np.zeros(
        (0, self.window_samples), np.float32)

  def _push(self, window: np.ndarray) -> bool:
    if np.sqrt(np.mean(np.square(window, dtype=np.float64))) < self.min_rms:
      self.silent_windows += 1
      return False
    self._windows.append(window)
    del self._windows[:-self.capacity]
    return True

  def append(self, samples: np.ndarray) -> int:
    """Adds mono float32 samples; returns how many windows were buffered."""
    stream = np.concatenate([self._partial, np.asarray(samples, np.float32)])
    complete = len(stream) // self.window_samples
    added = sum(self._push(stream[i * self.window_samples:
                                  (i + 1) * self.window_samples].copy())
                for i in range(complete))
    self._partial = stream[complete * self.window_samples:]
    return added

  def end_stream(self) -> None:
    """Drops the unfinished window."""
    self._partial = np.zeros(0, np.float32)

  def batch(self, batch_size: int, offset: int) -> np.ndarray:
    """Windows ``(offset + j) % len(self)`` for ``j < batch_size``.

    Raises:
      ValueError: Fewer than ``batch_size`` windows are buffered.
    """
    if len(self) < batch_size:
      raise ValueError(f"{len(self)} windows buffered, a batch needs "
                       f"{batch_size}")
    return np.stack([self._windows[(offset + j) % len(self)]
                     for j in range(batch_size)])

  def save(self, path: str, model_sha256: str) -> None:
    """Writes the buffered windows atomically as a windows tensor file."""
    write_tensor_file(path, TensorFile(
        kind=Kind.WINDOWS, model_sha256=model_sha256, examples=0,
        tensors={WINDOWS_TENSOR: self.windows}))

  def load(self, path: str) -> None:
    """Replaces the buffer with a windows file's (newest ``capacity`` kept).

    Raises:
      TensorFileError: The file is damaged or holds other windows.
    """
    content = read_tensor_file(path)
    windows = content.tensors.get(WINDOWS_TENSOR)
    if (content.kind != Kind.WINDOWS or windows is None or windows.ndim != 2
        or windows.shape[1] != self.window_samples):
      raise TensorFileError(path, f"not a buffer of {self.window_samples}-"
                            f"sample windows")
    self._windows = list(windows[-self.capacity:])


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


class NotEnoughAudioError(ValueError):
  """The buffer holds fewer windows than one training batch."""


def resolve_model_dir(path: str) -> str:
  """``path`` itself, or its ``training/`` export subdirectory if it has one."""
  training = os.path.join(path, TRAINING_DIR)
  return training if os.path.exists(os.path.join(
      training, manifest_lib.MANIFEST_NAME)) else path


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
    model_dir = resolve_model_dir(model_dir)
    self.manifest = manifest_lib.read_manifest(model_dir)
    self.model = OnDeviceModel.load(model_dir, runtime=runtime)
    signatures = sorted(self.model.interpreter.get_signature_list())
    if "train" not in signatures:
      raise ValueError(f"{model_dir}: the model has no 'train' signature "
                       f"(an embed-only export?); it has {signatures}")
    self.state_dir = state_dir
    self.notes: list[str] = []
    self.bundled = self.model.get_weights()
    self.store = WeightStore(state_dir, self.model_sha256,
                             [(v["name"], v["shape"])
                              for v in self.manifest["variables"]])
    self.buffer = WindowBuffer(self.manifest["example_samples"],
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
    return self.manifest["file"]["sha256"]

  @property
  def batch_size(self) -> int:
    return self.manifest["batch_size"]

  @property
  def patch_samples(self) -> int:
    return self.manifest["model"]["patch_samples"]

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
                              sample_rate=self.manifest["model"]["sample_rate"])
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
          f"{self.manifest['example_samples']} samples; a batch needs "
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
    return bool(self.manifest["model"].get("multimodal", False))

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
    return [v["name"] for v in self.manifest["variables"]
            if v["role"] == "weight"]

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
