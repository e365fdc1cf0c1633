"""The clip table: one row per audio file, with its client id and labels.

Every data source (the built-in synthetic corpus, Speech Commands, LibriSpeech,
a generic manifest CSV) produces the same :class:`ClipTable`; everything
downstream (tf.data pipelines, federated partitions, linear probes) reads only
this table.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import types
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence

from model.errors import UserError

__all__ = ["Clip", "ClipTable", "DatasetError", "SPLITS", "read_manifest_csv"]


class DatasetError(ValueError, UserError):
  """A dataset on disk does not have the expected layout or content (the
  message names the file or folder, expected vs got)."""

#: Allowed values of :attr:`Clip.split` ("" means "not assigned").
SPLITS = ("", "train", "validation", "test")
#: Manifest columns that are not label tasks.
_RESERVED = ("path", "client_id", "split", "duration_s")


@dataclasses.dataclass(frozen=True)
class Clip:
  """One audio clip.

  Attributes:
    path: Path of the audio file (absolute, or relative to the table's root).
    client_id: Who recorded it (speaker / device); the natural federated client.
    labels: Downstream labels by task name (e.g. ``{"keyword": "yes"}``). A
      task that does not apply to this clip is simply absent.
    duration_s: Duration in seconds (0.0 if unknown before decoding).
    split: Dataset-defined split ("train", "validation", "test") or "".
  """

  path: str
  client_id: str
  labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
  duration_s: float = 0.0
  split: str = ""

  def __post_init__(self):
    # Read-only labels: a frozen clip must not change under a shared table.
    object.__setattr__(self, "labels", types.MappingProxyType(dict(self.labels)))
    if reserved := sorted(set(self.labels) & set(_RESERVED)):
      raise ValueError(f"Clip {self.path!r}: label names {reserved} are "
                       f"reserved manifest columns")
    if not math.isfinite(self.duration_s) or self.duration_s < 0:
      raise ValueError(f"Clip {self.path!r}: duration_s must be a finite "
                       f"number >= 0, got {self.duration_s}")
    if self.split not in SPLITS:
      raise ValueError(
          f"Clip {self.path!r}: split must be one of {SPLITS}, got {self.split!r}")
    if not self.client_id:
      raise ValueError(f"Clip {self.path!r}: empty client_id")


@dataclasses.dataclass(frozen=True)
class ClipTable:
  """An immutable, ordered collection of :class:`Clip` rows.

  Attributes:
    clips: The rows.
    root: Directory that relative clip paths are resolved against.
    name: Human-readable name of the source (for logs and reports).
  """

  clips: tuple[Clip, ...]
  root: str = ""
  name: str = "clips"

  def __len__(self) -> int:
    return len(self.clips)

  def __iter__(self) -> Iterator[Clip]:
    return iter(self.clips)

  def __getitem__(self, index: int) -> Clip:
    return self.clips[index]

  def resolve(self, clip: Clip) -> str:
    """Returns the absolute path of ``clip``'s audio file."""
    if os.path.isabs(clip.path) or not self.root:
      return clip.path
    return os.path.join(self.root, clip.path)

  @property
  def label_columns(self) -> tuple[str, ...]:
    """Sorted names of every label task present on at least one clip."""
    return tuple(sorted({k for c in self.clips for k in c.labels}))

  @property
  def client_ids(self) -> tuple[str, ...]:
    """Sorted distinct client ids."""
    return tuple(sorted({c.client_id for c in self.clips}))

  def with_label(self, task: str) -> "ClipTable":
    """Returns the clips that carry a label for ``task``."""
    return self.filter(lambda c: task in c.labels)

  def filter(self, predicate: Callable[[Clip], bool]) -> "ClipTable":
    """Returns the clips for which ``predicate(clip)`` is true."""
    return dataclasses.replace(
        self, clips=tuple(c for c in self.clips if predicate(c)))

  def select(self, indices: Iterable[int]) -> "ClipTable":
    """Returns the clips at ``indices`` (in that order)."""
    return dataclasses.replace(self, clips=tuple(self.clips[i] for i in indices))

  def labels_of(self, task: str) -> list[str]:
    """Label of ``task`` for every clip (KeyError names the first clip without)."""
    out = []
    for c in self.clips:
      if task not in c.labels:
        raise KeyError(f"clip {c.path!r} has no label {task!r}")
      out.append(c.labels[task])
    return out

  def to_csv(self, path: str) -> None:
    """Writes the generic manifest CSV: ``path,client_id,split,duration_s,<labels>``."""
    columns = self.label_columns
    with open(path, "w", newline="", encoding="utf-8") as f:
      writer = csv.writer(f)
      writer.writerow(["path", "client_id", "split", "duration_s", *columns])
      for c in self.clips:
        writer.writerow([c.path, c.client_id, c.split, f"{c.duration_s:.4f}",
                         *(c.labels.get(k, "") for k in columns)])

  @classmethod
  def from_rows(cls, rows: Sequence[Clip], *, root: str = "",
                name: str = "clips") -> "ClipTable":
    """Builds a table from a sequence of clips."""
    return cls(clips=tuple(rows), root=root, name=name)


def read_manifest_csv(path: str, *, name: Optional[str] = None) -> ClipTable:
  """Reads a manifest CSV written by :meth:`ClipTable.to_csv` (or by a user).

  Required columns are ``path`` and ``client_id``; ``split`` and
  ``duration_s`` are optional; every other column is a label task (an empty
  cell means the task does not apply to that clip). Relative paths are
  resolved against the CSV's directory.

  Raises:
    ValueError: A required column is missing or a row is malformed (the
      message names the file, line and field).
  """
  root = os.path.dirname(os.path.abspath(path))
  rows = []
  # utf-8-sig: spreadsheet programs often prepend a byte-order mark.
  with open(path, newline="", encoding="utf-8-sig") as f:
    reader = csv.DictReader(f)
    fields = reader.fieldnames or []
    for required in ("path", "client_id"):
      if required not in fields:
        raise DatasetError(f"{path}: missing required column {required!r}; "
                           f"got columns {fields}")
    label_cols = [k for k in fields if k not in _RESERVED]
    for line, row in enumerate(reader, start=2):
      if None in row or None in row.values():
        raise DatasetError(f"{path}:{line}: expected {len(fields)} fields "
                           f"{fields}, got a row of another length")
      if not row.get("path"):
        raise DatasetError(f"{path}:{line}: empty 'path'")
      if not row.get("client_id"):
        raise DatasetError(f"{path}:{line}: empty 'client_id'")
      try:
        duration = float(row.get("duration_s") or 0.0)
        if not math.isfinite(duration) or duration < 0:
          raise ValueError(duration)
      except ValueError as e:
        raise DatasetError(f"{path}:{line}: field 'duration_s' must be a "
                           f"number >= 0, got {row.get('duration_s')!r}"
                           ) from e
      split = row.get("split") or ""
      if split not in SPLITS:
        raise DatasetError(f"{path}:{line}: field 'split' must be one of "
                           f"{SPLITS}, got {split!r}")
      labels = {k: row[k] for k in label_cols if row.get(k)}
      rows.append(Clip(path=row["path"], client_id=row["client_id"],
                       labels=labels, duration_s=duration, split=split))
  return ClipTable(clips=tuple(rows), root=root,
                   name=name or os.path.basename(path))
