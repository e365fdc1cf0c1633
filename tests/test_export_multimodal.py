"""A multimodal model's builtin export: embed_image / train_image signatures,
self-verified against TF, listed in the manifest, run by the virtual device."""

import os

import numpy as np
import pytest
import tensorflow as tf

from export import manifest as manifest_lib
from export.corpus import load_corpus
from export.device_session import VirtualDevice
from export.exporter import (TRAINING_DIR, ExportConfig, export_model,
                             fresh_source)
from export.ondevice_module import IMAGE_SIGNATURES, OnDeviceModule
from export.optimizers import OptimizerConfig
from export.runtime import OnDeviceModel
from export.verification import VerifyConfig
from model.datasets.images import load_digits_images
from model.datasets.synthetic import CORPUS_PRESETS, generate_corpus

BATCH = 4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("corpus"))
  generate_corpus(directory, CORPUS_PRESETS["tiny"], show_progress=False)
  out = str(tmp_path_factory.mktemp("export") / "mm")
  source = fresh_source("tiny", "nt_xent", multimodal=True)
  result = export_model(
      source, out, ExportConfig(
          batch_size=BATCH, quantizations=(),
          optimizer=OptimizerConfig("adam", learning_rate=1e-3),
          verify=VerifyConfig(train_steps=4, num_batches=2, embed_patches=8)),
      corpus=load_corpus(directory))
  return source, result


@pytest.mark.slow
def test_manifest_lists_the_image_signatures(exported):
  _, result = exported
  manifest = result.manifests[TRAINING_DIR]
  assert manifest.model.multimodal is True
  assert manifest.model.image_shape == (96, 64)
  signatures = manifest.signatures
  assert set(IMAGE_SIGNATURES) <= set(signatures)
  assert signatures["embed_image"].inputs["image"].shape == (-1, 96, 64)
  assert signatures["embed_image"].outputs["embedding"].shape == (-1, 32)
  assert signatures["train_image"].inputs["image"].shape == (BATCH, 96, 64)
  assert manifest.flex_ops == () and manifest.mode == "builtin"
  verification = manifest.verification
  assert verification["embed_image"]["max_abs_error"] <= (
      verification["embed_image"]["tolerance"])
  train = verification["train_image"]
  assert train["max_relative_gradient_error"] <= train["gradient_tolerance"]
  assert len(train["losses"]) == 4


@pytest.mark.slow
def test_file_embeds_images_like_tensorflow_and_trains(exported):
  source, result = exported
  path = os.path.join(result.out_dir, TRAINING_DIR)
  lite = OnDeviceModel.load(path)
  images = load_digits_images(96, 64).images[:6]
  want = source.model.encoder(tf.constant(images)).numpy()
  np.testing.assert_allclose(lite.embed_image(images), want, atol=1e-4)
  before = lite.get_weights()
  loss = lite.train_image(load_digits_images(96, 64).images[:BATCH])
  assert np.isfinite(loss)
  assert any(not np.array_equal(before[k], v)
             for k, v in lite.get_weights().items())
  with pytest.raises(ValueError, match=r"train_image: tensor 'image' has "
                     r"shape \[3, 96, 64\]"):
    lite.train_image(images[:3])


@pytest.mark.slow
def test_virtual_device_embeds_and_trains_images(exported, tmp_path):
  _, result = exported
  device = VirtualDevice(result.out_dir, str(tmp_path / "state"))
  assert device.multimodal
  images = load_digits_images(96, 64).images[:10]
  assert device.embed_image(images).shape == (10, 32)
  losses = device.train_image(images, 2)
  assert len(losses) == 2 and all(np.isfinite(losses))
  assert device.examples == 2 * BATCH
  with pytest.raises(ValueError, match="a batch needs 4"):
    device.train_image(images[:2], 1)


def test_audio_only_module_has_no_image_signatures():
  module = OnDeviceModule(fresh_source("tiny", "nt_xent").model,
                          OptimizerConfig("sgd", learning_rate=0.1), BATCH)
  assert not set(IMAGE_SIGNATURES) & set(module.signature_names)
  with pytest.raises(ValueError, match="not multimodal"):
    module.embed_image_function()
  assert manifest_lib.MODEL_NAME == "model.tflite"


@pytest.mark.slow
def test_android_app_contract_holds_for_a_multimodal_export(exported):
  # The app ignores the image signatures; everything it names must still be
  # in a multimodal export's manifest.
  from test_android_contract import ANDROID, check_app  # pylint: disable=g-import-not-at-top
  _, result = exported
  assert check_app(ANDROID, result.manifests[TRAINING_DIR]) == []


def test_export_launcher_refuses_multimodal_with_an_audio_only_task(tmp_path):
  from export import __main__ as export_main  # pylint: disable=g-import-not-at-top
  from model import cli  # pylint: disable=g-import-not-at-top
  cli.parse(export_main.FLAGS, ["export", "--preset=tiny", "--task=triplet",
                                "--multimodal",
                                f"--out_dir={tmp_path / 'never'}"])
  with pytest.raises(cli.UserError) as caught:
    export_main.request_from_flags()
  assert ("can train on images: one of ['nt_xent', 'barlow_twins', "
          "'simsiam']") in str(caught.value)
  assert not (tmp_path / "never").exists()
