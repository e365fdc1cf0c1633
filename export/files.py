"""Durable file replacement: temporary file, fsync, rename, fsync of the folder.

The Android core does the same (``AtomicFiles`` in ``TensorFile.kt``), so a
crash at any moment leaves either the old or the new file, never a mix.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

__all__ = ["write_atomically"]


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

