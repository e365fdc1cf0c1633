"""Tests for the image capability of tasks, SSLModel's image paths and
centralized multimodal training (model.multimodal)."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from model import randomness
from model.datasets.images import load_digits_images
from model.encoders import ENCODERS
from model.multimodal import (AUDIO, IMAGE, MultimodalTrainConfig,
                              image_probe_splits, modality_loss,
                              modality_schedule, pixel_features,
                              probe_image_features, probe_images,
                              train_multimodal)
from model.ssl_model import ModelSpec, SSLModel
from model.tasks import IMAGE_TASKS, SSL_TASKS, require_image_task

SPEC = ModelSpec(task="nt_xent", encoder=ENCODERS["tiny"], multimodal=True)


@pytest.fixture(scope="module")
def digits():
  return load_digits_images(96, 64)


def test_image_tasks_are_declared():
  assert IMAGE_TASKS == ("nt_xent", "barlow_twins", "simsiam")
  assert all(SSL_TASKS[t].accepts_images for t in IMAGE_TASKS)
  assert not SSL_TASKS["triplet"].accepts_images
  with pytest.raises(ValueError, match=r"'triplet' cannot train on images.*"
                     r"nt_xent"):
    require_image_task("triplet")


def test_multimodal_spec_with_audio_only_task_names_image_tasks():
  with pytest.raises(ValueError, match=r"ModelSpec.multimodal.*\['nt_xent', "
                     r"'barlow_twins', 'simsiam'\]"):
    ModelSpec(task="audio2vec_cbow", encoder=ENCODERS["tiny"], multimodal=True)
  spec = ModelSpec.from_dict(SPEC.to_dict())
  assert spec == SPEC
  legacy = SPEC.to_dict()
  del legacy["multimodal"]
  assert not ModelSpec.from_dict(legacy).multimodal


def test_image_loss_and_embedding_share_the_encoder(digits):
  model = SSLModel(SPEC)
  images = tf.constant(digits.images[:8])
  embedding = model.embed_image(images)
  assert embedding.shape == (8, ENCODERS["tiny"].embedding_dim)
  np.testing.assert_allclose(embedding.numpy(), model.encoder(images).numpy())
  with tf.GradientTape() as tape, randomness.stateless_seed(tf.constant([1, 2])):
    loss = model.image_loss(images)
  grads = tape.gradient(loss, model.weights)
  assert np.isfinite(float(loss)) and float(loss) > 0
  # Every weight (encoder and projection head) gets a gradient.
  assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0
             for g in grads)
  with pytest.raises(ValueError, match=r"expected images \[n, 96, 64\]"):
    model.embed_image(tf.zeros([2, 32, 32]))
  audio_only = SSLModel(dataclasses.replace(SPEC, multimodal=False))
  with pytest.raises(ValueError, match="not multimodal"):
    audio_only.image_loss(images)


def test_modality_loss_picks_the_batch(digits):
  model = SSLModel(SPEC)
  waveform = tf.random.stateless_normal([4, model.example_samples], [0, 1])
  images = tf.constant(digits.images[:4])
  with randomness.stateless_seed(tf.constant([5, 6])):
    audio = modality_loss(model, waveform, images, tf.constant(AUDIO))
  with randomness.stateless_seed(tf.constant([5, 6])):
    image = modality_loss(model, waveform, images, tf.constant(IMAGE))
  with randomness.stateless_seed(tf.constant([5, 6])):
    want_image = model.image_loss(images)
  np.testing.assert_allclose(float(image), float(want_image), rtol=1e-5)
  assert abs(float(audio) - float(image)) > 1e-4


@pytest.mark.parametrize("audio, image", [(3, 5), (5, 3), (0, 4), (4, 0),
                                          (1, 1), (7, 2)])
def test_modality_schedule_counts_and_interleaves(audio, image):
  schedule = modality_schedule(audio, image)
  assert np.count_nonzero(schedule == AUDIO) == audio
  assert np.count_nonzero(schedule == IMAGE) == image
  if audio and image:
    assert schedule[0] == AUDIO and len(set(schedule[:2])) == 2


def test_train_multimodal_changes_weights_and_embeds_both(digits):
  model0 = SSLModel(SPEC)
  waveforms = np.random.default_rng(0).standard_normal(
      (12, model0.example_samples)).astype(np.float32) * 0.1
  config = MultimodalTrainConfig(audio_steps=2, image_steps=2, batch_size=4,
                                 learning_rate=1e-2)
  result = train_multimodal(SPEC, config, waveforms, digits.images[:40])
  assert [m for _, m, _ in result.losses] == [AUDIO, IMAGE, AUDIO, IMAGE]
  assert result.examples == {"audio": 8, "image": 8}
  changed = [not np.allclose(a.numpy(), b.numpy())
             for a, b in zip(result.model.weights, model0.weights)]
  assert all(changed)
  scores = probe_images(result.model.encoder, digits.select(range(200)))
  assert 0.0 <= scores["accuracy"] <= 1.0 and "retrieval_map" in scores
  with pytest.raises(ValueError, match="image steps need images"):
    train_multimodal(SPEC, config, waveforms, None)


@pytest.mark.parametrize("task", ["barlow_twins", "simsiam"])
def test_every_feature_matching_task_trains_on_images(digits, task):
  model = SSLModel(dataclasses.replace(SPEC, task=task))
  images = tf.constant(digits.images[:6])
  with tf.GradientTape() as tape, randomness.stateless_seed(tf.constant([3, 4])):
    loss = model.image_loss(images)
  grads = tape.gradient(loss, model.encoder.weights)
  assert np.isfinite(float(loss))
  assert all(g is not None for g in grads)
  # SimSiam reads the encoder's output bias frozen (its projector
  # standardizes the first layer): exactly zero there, nonzero elsewhere.
  dead = [name for name, g in zip(model.encoder.weight_names, grads)
          if not float(tf.reduce_sum(tf.abs(g))) > 0]
  assert dead == (["encoder/embedding/bias"] if task == "simsiam" else [])
  minimum = type(model.task).min_batch_size
  with pytest.raises(ValueError, match=f"batch size >= {minimum}"):
    model.image_loss(images[:minimum - 1])


def test_image_probe_folds_test_every_image_once(digits):
  labels = np.asarray(digits.labels[:300])
  splits = image_probe_splits(labels, folds=4, seed=2)
  tested = np.concatenate([test for _, test in splits])
  np.testing.assert_array_equal(np.sort(tested), np.arange(300))
  for train, test in splits:
    assert set(train).isdisjoint(test) and len(train) + len(test) == 300
    assert set(labels[test]) <= set(labels[train])
  (train, test), = image_probe_splits(labels, folds=1, test_fraction=0.3)
  assert len(test) == 90 and len(train) == 210
  with pytest.raises(ValueError, match="smallest class has 1"):
    image_probe_splits(np.asarray(["a", "a", "b"]), folds=2)


def test_pixel_baseline_probe_pools_every_image(digits):
  subset = digits.select(range(300))
  x = pixel_features(subset)
  assert x.shape == (300, 96 * 64)
  scores = probe_image_features(x, subset.labels, folds=3)
  assert scores["num_test"] == 300
  # Handwritten digits are far from chance (0.1) even as raw pixels.
  assert scores["accuracy"] > 0.6
  assert scores["accuracy_stderr"] == pytest.approx(np.sqrt(
      scores["accuracy"] * (1 - scores["accuracy"]) / 300))
  single = probe_image_features(x, subset.labels)
  assert single["num_test"] == 90
