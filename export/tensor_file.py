"""Tensor files: the binary format shared with the app (``TensorFile.kt``).

A tensor file (``android_demo/README.md`` documents the layout byte by byte)
is a little-endian header naming the model it belongs to by its sha256, a
table of float32 tensors, their data and a sha256 of all of it. Weights,
weight updates, buffered training windows and the app's tagged clips are all
stored this way.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import struct

import numpy as np

from export.files import write_atomically

__all__ = ["MAGIC", "FORMAT_VERSION", "Kind", "TensorFile", "TensorFileError",
           "encode_tensor_file", "decode_tensor_file", "write_tensor_file",
           "read_tensor_file"]

#: First bytes of every tensor file.
MAGIC = b"ODTF"
#: Version of the tensor-file layout.
FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sII32sQI")
_DIGEST_BYTES = hashlib.sha256().digest_size

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

