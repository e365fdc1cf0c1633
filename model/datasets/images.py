"""Images for the multimodal encoder (FSSUAVL: Rehman et al., 2025, one
encoder pre-trained on unpaired audio and images).

Images enter the audio encoder shaped like a log-mel patch: each one is
converted to grayscale, resized to fit ``[patch_frames, num_mel_bins]`` with
its aspect ratio kept, padded with its background (the median of its border
pixels) and standardized to zero mean and unit variance.

Two sources:

* :func:`load_digits_images`: the 1,797 real handwritten digits (8x8, 10
  classes) that ship with scikit-learn (``sklearn.datasets.load_digits``; no
  download). They are the UCI test set, written by 13 people; their writers
  are not recorded, so the images are split into ``num_clients`` contiguous
  groups in file order as the natural clients.
* :func:`load_image_folder`: a user's folder ``<root>/<label>/<name>.png|jpg``
  (Pillow). A file ``<label>/<client>_<rest>.png`` belongs to client
  ``<client>``; names without ``_`` belong to client ``images``. Unreadable,
  empty, constant and non-image files are skipped, each named with its
  reason, and counted in a :class:`model.datasets.audio.ScanReport`.

:func:`augment_images` makes the NT-Xent views of an image batch inside the
TF graph (random translation, scale, brightness and noise; no flips, which
would change a digit's meaning), drawing through :mod:`model.randomness`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

from absl import logging
import numpy as np
from PIL import Image, UnidentifiedImageError
import tensorflow as tf
from tqdm import tqdm

from model import randomness
from model.datasets.audio import EmptyDatasetError, ScanReport

__all__ = [
    "IMAGE_EXTENSIONS",
    "DEFAULT_IMAGE_CLIENT",
    "ImageSet",
    "to_patch",
    "load_digits_images",
    "load_image_folder",
    "augment_images",
]

#: File extensions :func:`load_image_folder` reads (lower case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
#: Client of a folder image whose name has no ``<client>_`` prefix.
DEFAULT_IMAGE_CLIENT = "images"
#: Standard deviation below which an image counts as constant (no content).
_MIN_STD = 1e-6


@dataclasses.dataclass(frozen=True)
class ImageSet:
  """Images shaped like log-mel patches, with labels and client ids.

  Attributes:
    images: float32 ``[n, patch_frames, num_mel_bins]``, each standardized.
    labels: Class label of each image.
    client_ids: Owner (natural federated client) of each image.
    paths: Where each image came from (a file, or ``<dataset>#<index>``).
    name: Name of the source (for logs and reports).
  """

  images: np.ndarray
  labels: tuple[str, ...]
  client_ids: tuple[str, ...]
  paths: tuple[str, ...]
  name: str = "images"

  def __post_init__(self):
    object.__setattr__(self, "labels", tuple(self.labels))
    object.__setattr__(self, "client_ids", tuple(self.client_ids))
    object.__setattr__(self, "paths", tuple(self.paths))
    if self.images.ndim != 3 or self.images.dtype != np.float32:
      raise ValueError(f"ImageSet {self.name!r}: images must be float32 "
                       f"[n, frames, bins], got {self.images.dtype} "
                       f"{list(self.images.shape)}")
    n = len(self.images)
    for field in ("labels", "client_ids", "paths"):
      if len(getattr(self, field)) != n:
        raise ValueError(f"ImageSet {self.name!r}: {n} images but "
                         f"{len(getattr(self, field))} {field}")

  def __len__(self) -> int:
    return len(self.images)

  @property
  def shape(self) -> tuple[int, int]:
    """``(patch_frames, num_mel_bins)`` of every image."""
    return tuple(self.images.shape[1:])

  def select(self, indices: Sequence[int]) -> "ImageSet":
    """The images at ``indices`` (in that order)."""
    indices = np.asarray(indices, np.int64)
    return dataclasses.replace(
        self, images=self.images[indices],
        labels=tuple(self.labels[i] for i in indices),
        client_ids=tuple(self.client_ids[i] for i in indices),
        paths=tuple(self.paths[i] for i in indices))

  def clients(self) -> dict[str, np.ndarray]:
    """Client id -> indices of its images (sorted by client id)."""
    ids = np.asarray(self.client_ids)
    return {c: np.flatnonzero(ids == c) for c in sorted(set(self.client_ids))}


def to_patch(image: np.ndarray, frames: int, bins: int) -> np.ndarray:
  """One grayscale image as a standardized ``[frames, bins]`` patch.

  The image is resized (bilinear, aspect ratio kept) to fit, centred, padded
  with its background (median of its border pixels) and standardized.

  Args:
    image: ``[height, width]`` grayscale, any real range.
    frames: Output rows (the front-end's ``patch_frames``).
    bins: Output columns (the front-end's ``num_mel_bins``).

  Returns:
    float32 ``[frames, bins]`` with mean 0 and standard deviation 1.

  Raises:
    ValueError: ``image`` is not 2-D, is empty, is not finite or is constant.
  """
  image = np.asarray(image, np.float32)
  if image.ndim != 2 or image.size == 0:
    raise ValueError(f"to_patch: expected a non-empty [height, width] image, "
                     f"got shape {list(image.shape)}")
  if not np.all(np.isfinite(image)):
    raise ValueError("to_patch: image has non-finite pixels")
  if float(image.std()) < _MIN_STD:
    raise ValueError("to_patch: image is constant (no content)")
  height, width = image.shape
  scale = min(frames / height, bins / width)
  size = (max(1, min(bins, round(width * scale))),
          max(1, min(frames, round(height * scale))))
  resized = np.asarray(Image.fromarray(image, mode="F").resize(
      size, Image.BILINEAR), np.float32)
  border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
  out = np.full((frames, bins), np.median(border), np.float32)
  top, left = (frames - size[1]) // 2, (bins - size[0]) // 2
  out[top:top + size[1], left:left + size[0]] = resized
  std = float(out.std())
  if std < _MIN_STD:
    raise ValueError("to_patch: image is constant after resizing")
  return ((out - out.mean()) / std).astype(np.float32)


def load_digits_images(frames: int = 96, bins: int = 64, *,
                       num_clients: int = 13, limit: int = 0) -> ImageSet:
  """scikit-learn's bundled handwritten digits as patches.

  Args:
    frames: Patch rows.
    bins: Patch columns.
    num_clients: Contiguous groups (in file order) that act as the natural
      clients; 13 people wrote these digits.
    limit: Keep only the first ``limit`` digits (0: all), before grouping.

  Returns:
    1,797 (or ``limit``) images, labels ``"0"`` ... ``"9"``, clients ``digits_00`` ...,
    paths ``digits#<index>``.

  Raises:
    ValueError: ``num_clients`` is not in ``[1, 1797]``.
  """
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  n = min(limit, len(digits.images)) if limit > 0 else len(digits.images)
  if not 1 <= num_clients <= n:
    raise ValueError(f"load_digits_images: num_clients must be in [1, {n}], "
                     f"got {num_clients}")
  images = np.stack([to_patch(x, frames, bins) for x in digits.images[:n]])
  group = np.zeros(n, np.int64)
  for g, rows in enumerate(np.array_split(np.arange(n), num_clients)):
    group[rows] = g
  return ImageSet(images=images,
                  labels=tuple(str(int(t)) for t in digits.target[:n]),
                  client_ids=tuple(f"digits_{g:02d}" for g in group),
                  paths=tuple(f"digits#{i}" for i in range(n)), name="digits")


def _read_image(path: str) -> np.ndarray:
  """Decodes ``path`` to a float32 grayscale array; ValueError says why."""
  if os.path.getsize(path) == 0:
    raise ValueError("empty: file has 0 bytes")
  try:
    with Image.open(path) as image:
      image.load()
      gray = np.asarray(image.convert("F"), np.float32)
  except (UnidentifiedImageError, OSError, SyntaxError) as e:
    raise ValueError(f"unreadable: {type(e).__name__}: {e}") from e
  if gray.size == 0:
    raise ValueError("empty: 0 pixels")
  return gray


def load_image_folder(root: str, frames: int = 96, bins: int = 64, *,
                      show_progress: bool = False
                      ) -> tuple[ImageSet, ScanReport]:
  """Reads ``<root>/<label>/<name>.png|jpg`` images as patches.

  Every file below a label folder is tried; each one that cannot be used is
  skipped with a logged reason (``not an image: ...``, ``empty: ...``,
  ``unreadable: ...``, ``constant: ...``) and counted in the report. Files
  directly in ``root`` and hidden files are ignored.

  Args:
    root: The folder.
    frames: Patch rows.
    bins: Patch columns.
    show_progress: Show a tqdm bar.

  Returns:
    The usable images (sorted by label folder, then file name) and the
    report.

  Raises:
    FileNotFoundError: ``root`` is not a folder.
    EmptyDatasetError: No image is usable; the message names the folder and
      the first reasons.
  """
  if not os.path.isdir(root):
    raise FileNotFoundError(f"image folder {root!r} does not exist or is not "
                            "a directory")
  root = os.path.abspath(root)
  name = os.path.basename(root.rstrip(os.sep)) or "images"
  labels = sorted(d for d in os.listdir(root) if not d.startswith(".")
                  and os.path.isdir(os.path.join(root, d)))
  files = [(label, f) for label in labels
           for f in sorted(os.listdir(os.path.join(root, label)))
           if not f.startswith(".")
           and os.path.isfile(os.path.join(root, label, f))]
  kept, skipped = [], []
  for label, filename in tqdm(files, desc=f"reading {name}", unit="image",
                              disable=not show_progress):
    path = os.path.join(root, label, filename)
    extension = os.path.splitext(filename)[1].lower()
    try:
      if extension not in IMAGE_EXTENSIONS:
        raise ValueError(f"not an image: extension {extension or '(none)'!r}"
                         f" is not one of {IMAGE_EXTENSIONS}")
      gray = _read_image(path)
      try:
        patch = to_patch(gray, frames, bins)
      except ValueError as e:
        raise ValueError(f"constant: {e}") from e
    except ValueError as e:
      logging.warning("%s: skipping %s: %s", name, path, e)
      skipped.append((path, str(e)))
      continue
    stem = os.path.splitext(filename)[0]
    client = stem.split("_", 1)[0] if "_" in stem else DEFAULT_IMAGE_CLIENT
    kept.append((patch, label, client, path))
  report = ScanReport(total=len(files), usable=len(kept),
                      skipped=tuple(skipped))
  (logging.warning if skipped else logging.info)("%s: %s", name,
                                                 report.summary())
  if not kept:
    reasons = "; ".join(f"{p}: {r}" for p, r in skipped[:5])
    raise EmptyDatasetError(
        f"image folder {root!r}: no usable image among {len(files)} files in "
        f"{len(labels)} label folders (expected <label>/<name>"
        f"{'|'.join(IMAGE_EXTENSIONS)})" + (f"; first reasons: {reasons}"
                                             if reasons else ""))
  patches, image_labels, clients, paths = zip(*kept)
  return ImageSet(images=np.stack(patches), labels=image_labels,
                  client_ids=clients, paths=paths, name=name), report


def _resample_index(size: int, scale: tf.Tensor, shift: tf.Tensor
                    ) -> tuple[tf.Tensor, tf.Tensor]:
  """Nearest source index along one axis for a zoom and a shift per example.

  Returns:
    int32 ``[batch, size]`` indices (clipped) and float32 ``[batch, size]``
    1/0 marks of the positions whose source lies inside the image.
  """
  centre = (size - 1) / 2.0
  position = tf.range(size, dtype=tf.float32)[tf.newaxis, :]
  source = tf.floor(centre + (position - centre) / scale[:, tf.newaxis]
                    + shift[:, tf.newaxis] + 0.5)
  inside = tf.cast(tf.logical_and(source >= 0.0, source <= size - 1.0),
                   tf.float32)
  index = tf.cast(tf.clip_by_value(source, 0.0, size - 1.0), tf.int32)
  return index, inside


def augment_images(images: tf.Tensor, *, max_shift: float, scale: float,
                   brightness: float, noise_std: float) -> tf.Tensor:
  """One random view of each image (in-graph, builtin TFLite ops only).

  Each image is zoomed by a factor in ``[1 - scale, 1 + scale]`` and shifted
  by up to ``max_shift`` of its size along each axis (nearest-neighbour
  resampling; uncovered pixels take the image's minimum, the background of
  standardized digits), then gets a brightness offset in
  ``[-brightness, brightness]`` and Gaussian noise. No flips.

  Args:
    images: float32 ``[batch, height, width]`` (static shape).
    max_shift: Largest shift, as a fraction of the height / width.
    scale: Largest relative zoom.
    brightness: Largest additive brightness offset (in standard deviations).
    noise_std: Standard deviation of the additive noise.

  Returns:
    float32 ``[batch, height, width]``.
  """
  batch, height, width = images.shape
  zoom = 1.0 + randomness.uniform([batch], -scale, scale)
  rows, rows_inside = _resample_index(
      height, zoom, randomness.uniform([batch], -1.0, 1.0) * max_shift * height)
  cols, cols_inside = _resample_index(
      width, zoom, randomness.uniform([batch], -1.0, 1.0) * max_shift * width)
  moved = tf.gather(tf.gather(images, rows, axis=1, batch_dims=1), cols,
                    axis=2, batch_dims=1)
  inside = rows_inside[:, :, tf.newaxis] * cols_inside[:, tf.newaxis, :]
  background = tf.reduce_min(images, axis=[1, 2], keepdims=True)
  view = inside * moved + (1.0 - inside) * background
  view = view + randomness.uniform([batch, 1, 1], -brightness, brightness)
  return view + randomness.normal([batch, height, width], noise_std)

