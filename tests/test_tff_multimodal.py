"""Federated multimodal pre-training (tff_sim.multimodal): client mix, round
datasets, the plain client update against TFF, a 2-round simulation."""

import dataclasses

import numpy as np
import pytest

from model.datasets.images import load_digits_images
from model.encoders import ENCODERS
from model.multimodal import AUDIO, IMAGE
from model.ssl_model import ModelSpec, SSLModel
from tff_sim.algorithms import AlgorithmConfig, build_process
from tff_sim.execution import execution_context
from tff_sim.multimodal import (ClientMix, MultimodalClient,
                                MultimodalSimulationConfig,
                                client_round_dataset, local_update,
                                mix_clients, multimodal_model_fn,
                                run_multimodal_simulation)

SPEC = ModelSpec(task="nt_xent", encoder=ENCODERS["tiny"], multimodal=True)
BATCH = 2


@pytest.fixture(scope="module")
def data():
  samples = SPEC.example_samples
  rng = np.random.default_rng(0)
  waveforms = (0.1 * rng.standard_normal((16, samples))).astype(np.float32)
  images = load_digits_images(96, 64).images[:24]
  audio_groups = {f"spk{i}": np.arange(4 * i, 4 * i + 4) for i in range(4)}
  image_groups = {f"w{i}": np.arange(6 * i, 6 * i + 6) for i in range(4)}
  return waveforms, audio_groups, images, image_groups


def test_client_mix_kinds_and_whole_groups(data):
  _, audio_groups, _, image_groups = data
  clients = mix_clients(audio_groups, image_groups,
                        ClientMix(audio_only=0.25, image_only=0.25, both=0.5),
                        4, seed=1)
  assert [c.kind for c in clients] == ["audio", "image", "both", "both"]
  assert [c.client_id for c in clients] == ["audio_00", "image_00", "both_00",
                                            "both_01"]
  # Every row of each modality is dealt exactly once, groups kept whole.
  audio = np.sort(np.concatenate([c.audio for c in clients]))
  np.testing.assert_array_equal(audio, np.arange(16))
  image = np.sort(np.concatenate([c.image for c in clients]))
  np.testing.assert_array_equal(image, np.arange(24))
  for c in clients:
    assert len(c.audio) % 4 == 0 and len(c.image) % 6 == 0
  assert not len(clients[0].image) and not len(clients[1].audio)
  with pytest.raises(ValueError, match="5 clients hold audio but there are "
                     "only 4"):
    mix_clients(audio_groups, image_groups, ClientMix(1.0, 0.0, 0.0), 5)
  with pytest.raises(ValueError, match="sum to 1"):
    ClientMix(0.5, 0.5, 0.5)


def test_round_dataset_alternates_and_single_modality_sees_same_batches(data):
  waveforms, _, images, _ = data
  client = MultimodalClient("both_00", np.arange(6), np.arange(5))
  kwargs = dict(batch_size=BATCH, max_local_steps=2, seed=7)
  dataset, seen = client_round_dataset(waveforms, images, client, **kwargs)
  elements = list(dataset)
  assert seen == {"audio": 4, "image": 4}
  assert [int(e["modality"]) for e in elements] == [AUDIO, IMAGE, AUDIO, IMAGE]
  assert not np.any(elements[0]["image"].numpy())
  assert not np.any(elements[1]["waveform"].numpy())
  assert np.any(elements[1]["image"].numpy())
  audio_only, seen = client_round_dataset(waveforms, images, client,
                                          modalities=("audio",), **kwargs)
  assert seen == {"audio": 4, "image": 0}
  only = list(audio_only)
  assert len(only) == 2
  for got, want in zip(only, elements[0::2]):
    np.testing.assert_array_equal(got["waveform"], want["waveform"])
  none, _ = client_round_dataset(waveforms, images, MultimodalClient(
      "image_00", np.zeros(0, np.int64), np.arange(4)),
                                 modalities=("audio",), **kwargs)
  assert none is None


@pytest.mark.slow
def test_tff_round_equals_the_plain_client_update(data):
  waveforms, _, images, _ = data
  client = MultimodalClient("both_00", np.arange(4), np.arange(4))
  dataset, _ = client_round_dataset(waveforms, images, client,
                                    batch_size=BATCH, max_local_steps=2, seed=3)
  algorithm = AlgorithmConfig(client_learning_rate=0.05)
  process = build_process(multimodal_model_fn(SPEC, BATCH), algorithm,
                          clients_per_round=1)
  with execution_context(1):
    state = process.initialize()
    before = process.get_model_weights(state).trainable
    state = process.next(state, [dataset]).state
    after = process.get_model_weights(state).trainable
  model = SSLModel(SPEC)
  for variable, value in zip(model.weights, before):
    variable.assign(value)
  loss = local_update(model, dataset, 0.05)
  assert np.isfinite(float(loss))
  for variable, want, old in zip(model.weights, after, before):
    assert not np.allclose(want, old)
    np.testing.assert_allclose(variable.numpy(), want, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_two_rounds_with_mixed_clients_change_weights(data, tmp_path):
  waveforms, audio_groups, images, image_groups = data
  config = MultimodalSimulationConfig(
      model=SPEC, num_clients=4, rounds=2, clients_per_round=3,
      batch_size=BATCH, max_local_steps=1, mix=ClientMix(0.25, 0.25, 0.5))
  result = run_multimodal_simulation(config, waveforms, audio_groups, images,
                                     image_groups, run_dir=str(tmp_path),
                                     show_progress=False)
  initial = SSLModel(SPEC)
  assert all(not np.allclose(a.numpy(), b.numpy())
             for a, b in zip(result.model.weights, initial.weights))
  assert len(result.round_losses) == 2
  assert all(np.isfinite(result.round_losses))
  assert result.examples["audio"] > 0 and result.examples["image"] > 0
  assert set(result.clients) == {"audio_00", "image_00", "both_00", "both_01"}
  assert (tmp_path / "losses.csv").exists()
  with pytest.raises(ValueError, match="needs ModelSpec.multimodal=True"):
    dataclasses.replace(config, model=dataclasses.replace(SPEC,
                                                          multimodal=False))
