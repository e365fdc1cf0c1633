"""Federated pre-training of one encoder on unpaired audio and images
(FSSUAVL: Rehman et al., 2025).

Clients hold audio only, images only, or both (:class:`ClientMix` sets the
shares). A client's local update takes one optimizer step per batch, and the
batches of its modalities take turns (``model.multimodal.modality_schedule``),
so audio and images pass through the same encoder and head one after the
other; the server averages the updates (FedAvg by default, any of
``tff_sim.algorithms``). The per-batch objective is
``model.multimodal.modality_loss``, the same as centralized multimodal
training; :func:`local_update` is the client update as a plain
``tf.function`` (no TFF), which the TFF process reproduces exactly.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import math
import os
import time
from typing import Callable, Mapping, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
from tqdm import tqdm

from model import randomness
from model.datasets.pipeline import batch_plan
from model.multimodal import (AUDIO, IMAGE, MODALITIES, modality_loss,
                              modality_schedule)
from model.ssl_model import ModelSpec, SSLModel, assign_weights
from tff_sim.algorithms import AlgorithmConfig, build_process
from tff_sim.client_data import client_round_seed
from tff_sim.execution import execution_context
from tff_sim.learning_model import SSLVariableModel

__all__ = ["ClientMix", "MultimodalClient", "mix_clients",
           "client_round_dataset", "MultimodalVariableModel",
           "multimodal_model_fn", "local_update",
           "MultimodalSimulationConfig", "MultimodalSimulationResult",
           "run_multimodal_simulation"]


@dataclasses.dataclass(frozen=True)
class ClientMix:
  """Shares of the clients holding audio only, images only, or both.

  Attributes:
    audio_only: Share of clients with only audio.
    image_only: Share of clients with only images.
    both: Share of clients with audio and images.
  """

  audio_only: float = 0.25
  image_only: float = 0.25
  both: float = 0.5

  def __post_init__(self):
    shares = (self.audio_only, self.image_only, self.both)
    if min(shares) < 0 or not math.isclose(sum(shares), 1.0, abs_tol=1e-6):
      raise ValueError(f"ClientMix: shares must be >= 0 and sum to 1, got "
                       f"audio_only={self.audio_only}, image_only="
                       f"{self.image_only}, both={self.both}")

  def counts(self, num_clients: int) -> tuple[int, int, int]:
    """Clients ``(audio_only, image_only, both)`` among ``num_clients``."""
    both = round(num_clients * self.both)
    audio = min(round(num_clients * self.audio_only), num_clients - both)
    return audio, num_clients - both - audio, both


@dataclasses.dataclass(frozen=True)
class MultimodalClient:
  """One client's data.

  Attributes:
    client_id: ``audio_<i>``, ``image_<i>`` or ``both_<i>``.
    audio: Rows of the audio segments the client holds.
    image: Rows of the images the client holds.
  """

  client_id: str
  audio: np.ndarray
  image: np.ndarray

  @property
  def kind(self) -> str:
    """``audio``, ``image`` or ``both``."""
    return self.client_id.rsplit("_", 1)[0]


def mix_clients(audio_groups: Mapping[str, np.ndarray],
                image_groups: Mapping[str, np.ndarray], mix: ClientMix,
                num_clients: int, *, seed: int = 0) -> list[MultimodalClient]:
  """Builds clients of each kind from natural per-modality groups.

  Natural groups (speakers, image writers) are kept whole: shuffled by
  ``seed``, the audio groups are dealt round-robin over the clients that
  hold audio, the image groups over those that hold images, so the data stay
  non-IID.

  Args:
    audio_groups: Natural audio client -> its segment rows.
    image_groups: Natural image client -> its image rows.
    mix: Shares of the client kinds.
    num_clients: Clients to build.
    seed: Seed of the dealing.

  Returns:
    ``audio_*`` clients, then ``image_*``, then ``both_*``.

  Raises:
    ValueError: A modality has fewer natural groups than clients that hold
      it (the message gives both counts).
  """
  if num_clients <= 0:
    raise ValueError(f"mix_clients: num_clients must be positive, got "
                     f"{num_clients}")
  n_audio, n_image, n_both = mix.counts(num_clients)
  rng = np.random.default_rng(seed)

  def deal(groups: Mapping[str, np.ndarray], holders: int, what: str
           ) -> list[np.ndarray]:
    if holders == 0:
      return []
    if len(groups) < holders:
      raise ValueError(f"mix_clients: {holders} clients hold {what} but there "
                       f"are only {len(groups)} natural {what} groups; use "
                       f"fewer clients or another mix")
    names = sorted(groups)
    order = rng.permutation(len(names))
    dealt = [[] for _ in range(holders)]
    for k, i in enumerate(order):
      dealt[k % holders].append(np.asarray(groups[names[i]], np.int64))
    return [np.sort(np.concatenate(rows)) for rows in dealt]

  audio = deal(audio_groups, n_audio + n_both, "audio")
  image = deal(image_groups, n_image + n_both, "image")
  none = np.zeros(0, np.int64)
  clients = [MultimodalClient(f"audio_{i:02d}", audio[i], none)
             for i in range(n_audio)]
  clients += [MultimodalClient(f"image_{i:02d}", none, image[i])
              for i in range(n_image)]
  clients += [MultimodalClient(f"both_{i:02d}", audio[n_audio + i],
                               image[n_image + i]) for i in range(n_both)]
  return clients


def client_round_dataset(waveforms: np.ndarray, images: np.ndarray,
                         client: MultimodalClient, *, batch_size: int,
                         max_local_steps: int, seed: int,
                         modalities: Sequence[str] = ("audio", "image")
                         ) -> tuple[Optional[tf.data.Dataset], dict[str, int]]:
  """One client's batches for one round, its modalities taking turns.

  Each modality gets one pass over the client's data (at most
  ``max_local_steps`` batches; 0: no cap); the batch order depends only on
  ``(seed, modality)``, so a run restricted to one modality sees the very
  same batches of it.

  Elements are ``{"waveform": [B, S], "image": [B, H, W], "modality": int32,
  "seed": [2] int64}``; the input of the other modality is zeros.

  Args:
    waveforms: All audio segments ``[n, S]``.
    images: All images ``[m, H, W]``.
    client: The client.
    batch_size: Static batch size.
    max_local_steps: Cap on steps per modality.
    seed: The client's seed for this round.
    modalities: Modalities trained (names of ``model.multimodal.MODALITIES``).

  Returns:
    The dataset (None if the client has no data of ``modalities``) and the
    examples per modality.
  """
  rows = {AUDIO: client.audio if "audio" in modalities else client.audio[:0],
          IMAGE: client.image if "image" in modalities else client.image[:0]}
  steps = {}
  for modality, r in rows.items():
    n = math.ceil(len(r) / batch_size)
    steps[modality] = min(n, max_local_steps) if max_local_steps else n
  examples = {"audio": steps[AUDIO] * batch_size,
              "image": steps[IMAGE] * batch_size}
  schedule = modality_schedule(steps[AUDIO], steps[IMAGE])
  if not len(schedule):
    return None, examples
  batches = {}
  for modality, data in ((AUDIO, waveforms), (IMAGE, images)):
    shape = (0, batch_size, *data.shape[1:])
    if steps[modality]:
      plan = batch_plan(len(rows[modality]), batch_size,
                        seed=seed + 7919 * modality, start_step=0,
                        num_steps=steps[modality])
      batches[modality] = data[rows[modality][plan]]
    else:
      batches[modality] = np.zeros(shape, np.float32)
  # Position of each step among the steps of its modality.
  index = np.zeros(len(schedule), np.int32)
  for modality in (AUDIO, IMAGE):
    mine = schedule == modality
    index[mine] = np.arange(np.count_nonzero(mine))
  audio = tf.constant(batches[AUDIO])
  image = tf.constant(batches[IMAGE])
  audio_zeros = tf.zeros([batch_size, waveforms.shape[1]], tf.float32)
  image_zeros = tf.zeros([batch_size, *images.shape[1:]], tf.float32)

  def element(modality, i, step_seed):
    is_audio = tf.equal(modality, AUDIO)
    return collections.OrderedDict(
        waveform=tf.cond(is_audio, lambda: tf.gather(audio, i),
                         lambda: audio_zeros),
        image=tf.cond(is_audio, lambda: image_zeros,
                      lambda: tf.gather(image, i)),
        modality=modality, seed=step_seed)

  seeds = np.stack([np.full(len(schedule), seed, np.int64),
                    np.arange(len(schedule), dtype=np.int64)], axis=1)
  dataset = tf.data.Dataset.from_tensor_slices(
      (schedule, index, seeds)).map(element)
  return dataset, examples


class MultimodalVariableModel(SSLVariableModel):
  """:class:`SSLVariableModel` whose batches carry audio or images.

  Args:
    model: A model (multimodal when images are trained).
    batch_size: Static batch size.
    modalities: Modalities trained; with only one, the other input is never
      read.
  """

  def __init__(self, model: SSLModel, batch_size: int, *,
               modalities: Sequence[str] = ("audio", "image")):
    super().__init__(model, batch_size)
    self._modalities = tuple(modalities)
    self._input_spec = collections.OrderedDict(
        waveform=tf.TensorSpec([batch_size, model.example_samples], tf.float32),
        image=tf.TensorSpec([batch_size, *model.image_shape], tf.float32),
        modality=tf.TensorSpec([], tf.int32),
        seed=tf.TensorSpec([2], tf.int64))

  @tf.function
  def forward_pass(self, batch_input, training=True):
    del training  # No weight noise or dropout in multimodal training.
    with randomness.stateless_seed(batch_input["seed"]):
      loss = _batch_loss(self._model, batch_input, self._modalities)
    batch = tf.shape(batch_input["waveform"], out_type=tf.int64)[0]
    self._loss_sum.assign_add(loss * tf.cast(batch, tf.float32))
    self._num_examples.assign_add(batch)
    return tff.learning.models.BatchOutput(
        loss=loss, predictions=(), num_examples=tf.cast(batch, tf.int32))


def _batch_loss(model: SSLModel, batch: Mapping[str, tf.Tensor],
                modalities: Sequence[str]) -> tf.Tensor:
  """The loss of one round-dataset element (see :func:`client_round_dataset`)."""
  if tuple(modalities) == ("audio",):
    return model.loss(batch["waveform"])
  if tuple(modalities) == ("image",):
    return model.image_loss(batch["image"])
  return modality_loss(model, batch["waveform"], batch["image"],
                       batch["modality"])


def multimodal_model_fn(spec: ModelSpec, batch_size: int, *,
                        modalities: Sequence[str] = ("audio", "image")
                        ) -> Callable[[], MultimodalVariableModel]:
  """A no-argument ``model_fn`` building a fresh model, as TFF requires."""
  return lambda: MultimodalVariableModel(SSLModel(spec), batch_size,
                                         modalities=modalities)


def local_update(model: SSLModel, dataset: tf.data.Dataset,
                 learning_rate: float, *,
                 modalities: Sequence[str] = ("audio", "image")) -> tf.Tensor:
  """The client update without TFF: plain SGD over one round's batches.

  Trains ``model`` in place with ``w -= learning_rate * grad`` per batch (the
  FedAvg client with ``client_optimizer="sgd"`` and no momentum).

  Returns:
    The mean batch loss (float32 scalar).
  """
  @tf.function
  def run(data):
    total, count = tf.constant(0.0), tf.constant(0.0)
    for batch in data:
      with tf.GradientTape() as tape, randomness.stateless_seed(batch["seed"]):
        loss = _batch_loss(model, batch, modalities)
      for variable, grad in zip(model.weights,
                                tape.gradient(loss, model.weights)):
        variable.assign_sub(learning_rate * grad)
      total += loss
      count += 1.0
    return total / tf.maximum(count, 1.0)

  return run(dataset)


@dataclasses.dataclass(frozen=True)
class MultimodalSimulationConfig:
  """A federated multimodal run.

  Attributes:
    model: The model (``multimodal=True`` when images are trained).
    algorithm: Federated algorithm and optimizers.
    mix: Shares of audio-only, image-only and audio+image clients.
    num_clients: Clients built by :func:`mix_clients`.
    modalities: Modalities trained: both (shared encoder) or one (a
      separate per-modality encoder seeing the same batches of it).
    rounds: Federated rounds.
    clients_per_round: Clients sampled uniformly per round.
    batch_size: Static client batch size.
    max_local_steps: Cap on a client's steps per modality and round.
    seed: Seed of dealing, sampling, batches and in-graph draws.
    num_workers: TFF worker processes.
  """

  model: ModelSpec = ModelSpec(task="nt_xent", multimodal=True)
  algorithm: AlgorithmConfig = AlgorithmConfig()
  mix: ClientMix = ClientMix()
  num_clients: int = 12
  modalities: tuple[str, ...] = ("audio", "image")
  rounds: int = 10
  clients_per_round: int = 4
  batch_size: int = 16
  max_local_steps: int = 5
  seed: int = 0
  num_workers: int = 1

  def __post_init__(self):
    object.__setattr__(self, "modalities", tuple(self.modalities))
    if not self.modalities or any(m not in MODALITIES for m in self.modalities
                                  ) or len(set(self.modalities)) != len(
                                      self.modalities):
      raise ValueError(f"MultimodalSimulationConfig.modalities: expected a "
                       f"non-empty subset of {list(MODALITIES)}, got "
                       f"{list(self.modalities)}")
    object.__setattr__(self, "modalities", tuple(
        m for m in MODALITIES if m in self.modalities))  # Canonical order.
    if "image" in self.modalities and not self.model.multimodal:
      raise ValueError("MultimodalSimulationConfig: training on images needs "
                       "ModelSpec.multimodal=True")
    for field in ("num_clients", "rounds", "clients_per_round", "batch_size",
                  "num_workers"):
      if getattr(self, field) <= 0:
        raise ValueError(f"MultimodalSimulationConfig.{field} must be "
                         f"positive, got {getattr(self, field)}")
    if self.max_local_steps < 0:
      raise ValueError("MultimodalSimulationConfig.max_local_steps must be "
                       ">= 0")

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class MultimodalSimulationResult:
  """What a federated multimodal run produced.

  Attributes:
    model: The final global model.
    examples: Training examples seen per modality, over all rounds.
    round_losses: Mean client loss of each round.
    clients: Client id -> ``(audio rows, image rows)`` counts.
    wall_s: Wall time.
  """

  model: SSLModel
  examples: dict[str, int]
  round_losses: tuple[float, ...]
  clients: dict[str, tuple[int, int]]
  wall_s: float


@functools.lru_cache(maxsize=4)
def _process(spec: ModelSpec, algorithm: AlgorithmConfig,
             modalities: tuple[str, ...], batch_size: int,
             clients_per_round: int) -> tff.learning.templates.LearningProcess:
  """The learning process (cached: runs that differ only in their clients,
  rounds or seed reuse it instead of tracing it again)."""
  return build_process(
      multimodal_model_fn(spec, batch_size, modalities=modalities),
      algorithm, clients_per_round=clients_per_round)


def run_multimodal_simulation(
    config: MultimodalSimulationConfig, waveforms: np.ndarray,
    audio_groups: Mapping[str, np.ndarray], images: np.ndarray,
    image_groups: Mapping[str, np.ndarray], *,
    run_dir: Optional[str] = None, show_progress: bool = True
) -> MultimodalSimulationResult:
  """Runs a federated multimodal simulation.

  Args:
    config: The run.
    waveforms: Audio training segments ``[n, example_samples]``.
    audio_groups: Natural audio client -> its segment rows.
    images: Images ``[m, patch_frames, num_mel_bins]``.
    image_groups: Natural image client -> its image rows.
    run_dir: If given, receives ``config.json``, ``clients.json`` and
      ``losses.csv``.
    show_progress: Show a tqdm bar.

  Returns:
    The final model, examples seen and per-round losses.

  Raises:
    ValueError: The data do not fit the model, or :func:`mix_clients` fails.
    FloatingPointError: A round's loss is not finite.
  """
  reference = SSLModel(config.model)
  if waveforms.ndim != 2 or waveforms.shape[1] != reference.example_samples:
    raise ValueError(f"run_multimodal_simulation: expected waveforms [n, "
                     f"{reference.example_samples}], got "
                     f"{list(waveforms.shape)}")
  if images.ndim != 3 or tuple(images.shape[1:]) != reference.image_shape:
    raise ValueError(f"run_multimodal_simulation: expected images [m, "
                     f"{reference.image_shape[0]}, {reference.image_shape[1]}]"
                     f", got {list(images.shape)}")
  clients = mix_clients(audio_groups, image_groups, config.mix,
                        config.num_clients, seed=config.seed)
  summary = {c.client_id: (len(c.audio), len(c.image)) for c in clients}
  if run_dir:
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
      json.dump(config.to_dict(), f, indent=2)
    with open(os.path.join(run_dir, "clients.json"), "w") as f:
      json.dump(summary, f, indent=2)
  process = _process(config.model, config.algorithm, config.modalities,
                     config.batch_size, config.clients_per_round)
  examples = {"audio": 0, "image": 0}
  losses = []
  start = time.perf_counter()
  with execution_context(config.num_workers):
    state = process.initialize()
    for round_num in tqdm(range(1, config.rounds + 1), unit="round",
                          desc=f"multimodal {'+'.join(config.modalities)}",
                          disable=not show_progress, dynamic_ncols=True):
      rng = np.random.default_rng([config.seed, round_num])
      count = min(config.clients_per_round, len(clients))
      sampled = sorted(rng.choice(len(clients), size=count, replace=False))
      datasets = []
      for i in sampled:
        dataset, seen = client_round_dataset(
            waveforms, images, clients[i], batch_size=config.batch_size,
            max_local_steps=config.max_local_steps,
            seed=client_round_seed(config.seed, round_num, int(i)),
            modalities=config.modalities)
        if dataset is not None:
          datasets.append(dataset)
          for k, v in seen.items():
            examples[k] += v
      if not datasets:
        logging.info("round %d: no sampled client holds %s", round_num,
                     config.modalities)
        losses.append(float("nan"))
        continue
      output = process.next(state, datasets)
      state = output.state
      loss = float(output.metrics["client_work"]["train"]["loss"])
      if not math.isfinite(loss):
        raise FloatingPointError(f"round {round_num}: client loss is {loss}; "
                                 f"lower the learning rates")
      losses.append(loss)
    weights = process.get_model_weights(state).trainable
  assign_weights(reference, dict(zip(reference.weight_names, weights)),
                 source="global model")
  if run_dir:
    with open(os.path.join(run_dir, "losses.csv"), "w") as f:
      f.write("round,loss\n" + "".join(
          f"{r},{l:.6f}\n" for r, l in enumerate(losses, start=1)))
  return MultimodalSimulationResult(
      model=reference, examples=examples, round_losses=tuple(losses),
      clients=summary, wall_s=time.perf_counter() - start)
