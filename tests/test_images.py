"""Tests for model.datasets.images: digits, image folders, in-graph augmentation."""

import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from model import randomness
from model.datasets.audio import EmptyDatasetError
from model.datasets.images import (ImageSet, augment_images,
                                   load_digits_images, load_image_folder,
                                   to_patch)


def test_to_patch_fits_pads_and_standardizes():
  image = np.zeros((8, 8), np.float32)
  image[2:6, 3:5] = 16.0
  patch = to_patch(image, 96, 64)
  assert patch.shape == (96, 64) and patch.dtype == np.float32
  np.testing.assert_allclose([patch.mean(), patch.std()], [0.0, 1.0], atol=1e-5)
  # An 8x8 image fits as 64x64 centred: 16 rows of background above and below.
  assert np.all(patch[:16] == patch[0, 0]) and np.all(patch[-16:] == patch[0, 0])
  assert patch[48, 32] > 1.0  # The stroke is brighter than the background.


@pytest.mark.parametrize("image, match", [
    (np.ones((5, 5)), "constant"), (np.zeros((0, 3)), "non-empty"),
    (np.full((4, 4), np.nan), "non-finite"), (np.ones(4), "non-empty")])
def test_to_patch_rejects_bad_images(image, match):
  with pytest.raises(ValueError, match=match):
    to_patch(image, 96, 64)


def test_digits_shapes_labels_clients():
  digits = load_digits_images(96, 64, num_clients=13)
  assert len(digits) == 1797 and digits.shape == (96, 64)
  assert sorted(set(digits.labels)) == [str(d) for d in range(10)]
  clients = digits.clients()
  assert len(clients) == 13
  assert sum(len(rows) for rows in clients.values()) == 1797
  subset = digits.select([5, 1])
  assert subset.labels == (digits.labels[5], digits.labels[1])
  np.testing.assert_array_equal(subset.images[0], digits.images[5])
  with pytest.raises(ValueError, match="num_clients"):
    load_digits_images(num_clients=0)
  first = load_digits_images(96, 64, num_clients=4, limit=40)
  assert first.labels == digits.labels[:40]
  assert [len(r) for r in first.clients().values()] == [10, 10, 10, 10]


def test_image_set_checks_lengths():
  with pytest.raises(ValueError, match="2 images but 1 labels"):
    ImageSet(images=np.zeros((2, 4, 4), np.float32), labels=("a",),
             client_ids=("c", "c"), paths=("p", "q"))


def _write_png(path, seed, size=(12, 10)):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pixels = np.random.default_rng(seed).integers(0, 255, size, dtype=np.uint8)
  Image.fromarray(pixels).save(path)


def test_image_folder_counts_and_names_skips(tmp_path, caplog):
  root = tmp_path / "shapes"
  _write_png(str(root / "cat" / "alice_1.png"), 0)
  _write_png(str(root / "cat" / "2.jpg"), 1)
  _write_png(str(root / "dog" / "bob_3.png"), 2)
  (root / "dog" / "empty.png").write_bytes(b"")
  (root / "dog" / "broken.png").write_bytes(b"not a png at all")
  (root / "dog" / "notes.txt").write_text("hello")
  Image.fromarray(np.full((6, 6), 7, np.uint8)).save(root / "dog" / "flat.png")
  (root / "stray.png").write_bytes(b"")  # Not in a label folder: ignored.
  images, report = load_image_folder(str(root), 32, 16)
  assert len(images) == 3 and images.shape == (32, 16)
  assert images.labels == ("cat", "cat", "dog")
  assert images.client_ids == ("images", "alice", "bob")  # 2.jpg sorts first
  assert report.total == 7 and report.usable == 3
  reasons = {os.path.basename(p): r.split(":", 1)[0] for p, r in report.skipped}
  assert reasons == {"empty.png": "empty", "broken.png": "unreadable",
                     "notes.txt": "not an image", "flat.png": "constant"}
  assert "4 skipped" in report.summary()
  assert "broken.png" in caplog.text


def test_image_folder_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    load_image_folder(str(tmp_path / "missing"))
  (tmp_path / "bad" / "x").mkdir(parents=True)
  (tmp_path / "bad" / "x" / "a.png").write_bytes(b"")
  with pytest.raises(EmptyDatasetError, match="a.png: empty"):
    load_image_folder(str(tmp_path / "bad"))


def test_augment_images_is_seeded_and_keeps_content():
  images = tf.constant(load_digits_images(96, 64).images[:8])
  kwargs = dict(max_shift=0.1, scale=0.15, brightness=0.3, noise_std=0.1)
  with randomness.stateless_seed(tf.constant([3, 4])):
    a = augment_images(images, **kwargs).numpy()
  with randomness.stateless_seed(tf.constant([3, 4])):
    b = augment_images(images, **kwargs).numpy()
  with randomness.stateless_seed(tf.constant([3, 5])):
    c = augment_images(images, **kwargs).numpy()
  assert a.shape == (8, 96, 64)
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).mean() > 0.05
  # Views stay close to their own image, not to another digit.
  corr = np.corrcoef(a.reshape(8, -1), images.numpy().reshape(8, -1))[:8, 8:]
  assert np.all(np.argmax(corr, axis=1) == np.arange(8))
  # Without zoom, shift, brightness or noise a view is the image itself.
  same = augment_images(images, max_shift=0.0, scale=0.0, brightness=0.0,
                        noise_std=0.0)
  np.testing.assert_allclose(same.numpy(), images.numpy(), atol=1e-6)
