"""Training windows cut from the microphone, in a bounded buffer.

The Android core's counterpart is ``AudioBuffers.kt``.

Samples are cut into consecutive, non-overlapping windows of
``example_samples``; silent windows are dropped and a bounded FIFO keeps the
most recent ones. The buffer is saved as a windows tensor file.
"""

from __future__ import annotations

import numpy as np

from export.tensor_file import (Kind, TensorFile, TensorFileError,
                                read_tensor_file, write_tensor_file)

__all__ = ["WINDOWS_TENSOR", "MIN_RMS", "WindowBuffer", "NotEnoughAudioError"]

#: Name of the one tensor of a windows file.
WINDOWS_TENSOR = "windows"
#: Windows quieter than this RMS are not buffered (``load_audio``'s default).
MIN_RMS = 1e-4


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


class NotEnoughAudioError(ValueError):
  """The buffer holds fewer windows than one training batch."""
