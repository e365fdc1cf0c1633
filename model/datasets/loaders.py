"""Loaders that turn datasets already on disk into a :class:`ClipTable`."""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Callable

from absl import logging

from model.datasets.clips import Clip, ClipTable, DatasetError, read_manifest_csv

__all__ = [
    "DATASETS",
    "DatasetSource",
    "load_dataset",
    "load_librispeech",
    "load_manifest",
    "load_speech_commands",
    "load_synthetic",
]

#: Speech Commands file names: ``<speaker hash>_nohash_<utterance>.wav``.
_SPEECH_COMMANDS_FILE = re.compile(r"(?P<speaker>[^_]+)_nohash_(?P<n>\d+)\.wav")

#: Speech Commands split lists and the split each one assigns.
_SPEECH_COMMANDS_LISTS = (("validation_list.txt", "validation"),
                          ("testing_list.txt", "test"))

#: How many offending names an error or warning quotes.
_EXAMPLES = 3


def _require_dir(root: str, what: str) -> str:
  """Returns ``root`` made absolute; FileNotFoundError if it is not a folder."""
  if not os.path.isdir(root):
    raise FileNotFoundError(f"{what} folder {root!r} does not exist "
                            "or is not a directory")
  return os.path.abspath(root)


def _subdirs(folder: str) -> list[str]:
  """Sorted names of the non-hidden subfolders of ``folder``."""
  return sorted(name for name in os.listdir(folder)
                if not name.startswith(".")
                and os.path.isdir(os.path.join(folder, name)))


def _files(folder: str) -> list[str]:
  """Sorted names of the non-hidden plain files in ``folder``."""
  return sorted(name for name in os.listdir(folder)
                if not name.startswith(".")
                and os.path.isfile(os.path.join(folder, name)))


def _read_split_lists(root: str) -> dict[str, str]:
  """Maps ``<keyword>/<file>`` to its split, from the Speech Commands lists."""
  splits = {}
  for filename, split in _SPEECH_COMMANDS_LISTS:
    list_path = os.path.join(root, filename)
    if not os.path.isfile(list_path):
      logging.warning(
          "speech_commands: %s not found; its clips count as 'train'",
          list_path)
      continue
    with open(list_path, encoding="utf-8") as f:
      for line in f:
        entry = line.strip().replace("\\", "/")
        if entry:
          splits[entry] = split
  return splits


def load_speech_commands(root: str) -> ClipTable:
  """Lists a Speech Commands (v1/v2) folder.

  The layout is ``<root>/<keyword>/<speaker>_nohash_<n>.wav``; folders whose
  name starts with ``_`` (``_background_noise_``) are skipped, and so are files
  not named that way (with one warning giving their count).

  Args:
    root: The extracted dataset folder (holding the keyword folders and
      ``validation_list.txt`` / ``testing_list.txt``).

  Returns:
    One clip per utterance, path ``<keyword>/<file>``, client id and label
    ``speaker`` the speaker hash, label ``keyword`` the folder name, split
    "validation" / "test" from the list files and "train" otherwise.

  Raises:
    FileNotFoundError: ``root`` is not a folder.
    ValueError: No file in ``root`` follows the layout.
  """
  root = _require_dir(root, "Speech Commands")
  keywords = [d for d in _subdirs(root) if not d.startswith("_")]
  splits = _read_split_lists(root)
  clips, unmatched = [], []
  for keyword in keywords:
    for filename in _files(os.path.join(root, keyword)):
      rel = f"{keyword}/{filename}"
      match = _SPEECH_COMMANDS_FILE.fullmatch(filename)
      if not match:
        unmatched.append(rel)
        continue
      speaker = match.group("speaker")
      clips.append(Clip(path=rel, client_id=speaker,
                        labels={"keyword": keyword, "speaker": speaker},
                        split=splits.get(rel, "train")))
  if unmatched:
    logging.warning(
        "speech_commands: skipped %d files not named "
        "<speaker>_nohash_<n>.wav, e.g. %s", len(unmatched),
        ", ".join(unmatched[:_EXAMPLES]))
  if not clips:
    raise DatasetError(
        f"Speech Commands folder {root!r}: expected "
        f"<keyword>/<speaker>_nohash_<n>.wav files, found {len(keywords)} "
        f"keyword folders {keywords[:_EXAMPLES]} and {len(unmatched)} files "
        "not following that pattern")
  listed = {c.path for c in clips}
  unknown = sorted(p for p in splits if p not in listed)
  if unknown:
    logging.warning("speech_commands: %d entries of the split lists are not "
                    "on disk, e.g. %s", len(unknown),
                    ", ".join(unknown[:_EXAMPLES]))
  return ClipTable(clips=tuple(clips), root=root, name="speech_commands")


def load_librispeech(root: str) -> ClipTable:
  """Lists one LibriSpeech subset folder.

  The layout is ``<root>/<speaker>/<chapter>/*.flac`` (transcripts are
  ignored).

  Args:
    root: A subset folder such as ``.../LibriSpeech/train-clean-100``.

  Returns:
    One clip per utterance, path ``<speaker>/<chapter>/<file>``, client id and
    label ``speaker`` the speaker id, split "" (LibriSpeech splits are whole
    subset folders).

  Raises:
    FileNotFoundError: ``root`` is not a folder.
    ValueError: ``root`` holds no ``<speaker>/<chapter>/*.flac`` file.
  """
  root = _require_dir(root, "LibriSpeech")
  speakers = _subdirs(root)
  clips = []
  for speaker in speakers:
    for chapter in _subdirs(os.path.join(root, speaker)):
      for filename in _files(os.path.join(root, speaker, chapter)):
        if filename.lower().endswith(".flac"):
          clips.append(Clip(path=f"{speaker}/{chapter}/{filename}",
                            client_id=speaker, labels={"speaker": speaker}))
  if not clips:
    raise DatasetError(
        f"LibriSpeech folder {root!r}: expected <speaker>/<chapter>/*.flac "
        f"files, found none (subfolders: {speakers[:_EXAMPLES]}); pass a "
        "subset folder such as .../LibriSpeech/train-clean-100")
  return ClipTable(clips=tuple(clips), root=root, name="librispeech")


def _check_files_exist(table: ClipTable, manifest: str) -> None:
  """Raises FileNotFoundError naming the missing audio files of ``table``."""
  missing = [c.path for c in table if not os.path.isfile(table.resolve(c))]
  if missing:
    raise FileNotFoundError(
        f"{manifest}: {len(missing)} of {len(table)} listed audio files do not "
        f"exist (relative paths resolve against {table.root!r}), first: "
        f"{', '.join(missing[:_EXAMPLES])}")


def _read_manifest(path: str, name: str) -> ClipTable:
  """Reads a manifest CSV and checks it lists at least one existing file."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"manifest {path!r} does not exist")
  table = read_manifest_csv(path, name=name)
  if not len(table):
    raise DatasetError(f"manifest {path!r} lists no clips")
  _check_files_exist(table, path)
  return table


def load_manifest(path: str) -> ClipTable:
  """Reads a generic manifest CSV (``path,client_id,<label columns>``).

  See :func:`model.datasets.clips.read_manifest_csv` for the format.

  Args:
    path: The CSV file; relative audio paths resolve against its folder.

  Returns:
    The listed clips, named after the CSV file.

  Raises:
    FileNotFoundError: The CSV or one of the audio files it lists is missing
      (the message names the first missing ones and their count).
    ValueError: The CSV is malformed or lists no clips.
  """
  return _read_manifest(path, os.path.basename(path))


def load_synthetic(root: str) -> ClipTable:
  """Reads the built-in synthetic corpus folder (its ``manifest.csv``).

  Args:
    root: The folder written by ``python -m model.datasets.generate_main``.

  Returns:
    The corpus clips, named "synthetic".

  Raises:
    FileNotFoundError: The folder, its manifest or a listed file is missing.
    ValueError: The manifest is malformed or lists no clips.
  """
  manifest = os.path.join(root, "manifest.csv")
  if not os.path.isfile(manifest):
    problem = "has no manifest.csv" if os.path.isdir(root) else "does not exist"
    raise FileNotFoundError(
        f"synthetic corpus folder {root!r} {problem}; generate the corpus "
        "with: python -m model.datasets.generate_main --out DIR")
  return _read_manifest(manifest, "synthetic")


#: Loader of each dataset kind; each takes a folder (or, for "manifest", a CSV).
DATASETS: dict[str, Callable[[str], ClipTable]] = {
    "synthetic": load_synthetic,
    "speech_commands": load_speech_commands,
    "librispeech": load_librispeech,
    "manifest": load_manifest,
}


def load_dataset(kind: str, path: str) -> ClipTable:
  """Loads a dataset with the loader registered under ``kind``.

  Args:
    kind: A key of :data:`DATASETS`.
    path: The dataset folder (a CSV file for "manifest").

  Returns:
    The clip table.

  Raises:
    ValueError: ``kind`` is unknown (the message lists the known kinds), or
      the loader's own errors.
    FileNotFoundError: From the loader.
  """
  try:
    loader = DATASETS[kind]
  except KeyError:
    raise DatasetError(f"unknown dataset kind {kind!r}; known kinds: "
                       f"{', '.join(sorted(DATASETS))}") from None
  return loader(path)


@dataclasses.dataclass(frozen=True)
class DatasetSource:
  """A dataset on disk, as the launchers' ``--dataset``/``--data_dir`` name it.

  Attributes:
    kind: A key of :data:`DATASETS`.
    path: The dataset folder (a CSV file for "manifest").
  """

  kind: str
  path: str

  def load(self) -> ClipTable:
    """The clip table (:func:`load_dataset`)."""
    return load_dataset(self.kind, self.path)
