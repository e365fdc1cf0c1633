"""The ``manifest.json`` written beside every exported ``.tflite`` file.

Each exported model lives in its own directory as ``model.tflite`` plus
``manifest.json``; the manifest records how the file was made, what its
signatures are (as read back from the file) and how it was verified. This
module holds the file names, hashing and reading/writing.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from typing import Any

__all__ = ["MANIFEST_NAME", "MODEL_NAME", "FORMAT_VERSION", "sha256_bytes",
           "sha256_file", "read_manifest", "write_manifest",
           "toolkit_version"]

MANIFEST_NAME = "manifest.json"
MODEL_NAME = "model.tflite"
#: Version of the manifest's layout (bumped when keys change meaning).
FORMAT_VERSION = 1
_DISTRIBUTION = "ondevice-audio-ssl"


def sha256_bytes(content: bytes) -> str:
  """Hex sha256 of ``content``."""
  return hashlib.sha256(content).hexdigest()


def sha256_file(path: str) -> str:
  """Hex sha256 of the file at ``path``."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def read_manifest(directory: str) -> dict[str, Any]:
  """Reads ``<directory>/manifest.json``.

  Raises:
    FileNotFoundError: There is no manifest (the message names the path).
  """
  path = os.path.join(directory, MANIFEST_NAME)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no manifest; expected a directory "
                            f"written by `python -m export`")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def write_manifest(directory: str, manifest: dict[str, Any]) -> str:
  """Writes ``<directory>/manifest.json`` via a temporary; returns the path."""
  path = os.path.join(directory, MANIFEST_NAME)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(manifest, f, indent=2, sort_keys=False, allow_nan=False)
    f.write("\n")
  os.replace(path + ".tmp", path)
  return path


def toolkit_version() -> str:
  """The installed toolkit's version (``"unknown"`` in a bare checkout)."""
  try:
    return importlib.metadata.version(_DISTRIBUTION)
  except importlib.metadata.PackageNotFoundError:
    return "unknown"
