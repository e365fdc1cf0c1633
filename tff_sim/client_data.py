"""Training segments of each federated client, as TFF ``ClientData`` and as
the per-round batches a client trains on."""

from __future__ import annotations

import collections
from typing import Mapping

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from model.datasets.pipeline import Segments, batch_plan

__all__ = ["SegmentClientData", "client_round_seed", "round_dataset"]


class SegmentClientData(tff.simulation.datasets.ClientData):
  """Each client's segments (``{"waveform": [samples]}`` elements).

  Args:
    segments: All training segments with the clip each came from.
    clients: Client id -> indices of that client's clips (a partition).
  """

  def __init__(self, segments: Segments, clients: Mapping[str, np.ndarray]):
    self._segments = segments
    self._rows = {
        client: np.flatnonzero(np.isin(segments.clip_index, np.asarray(clips)))
        for client, clips in clients.items()}
    self._rows = {c: rows for c, rows in self._rows.items() if len(rows)}
    if not self._rows:
      raise ValueError("SegmentClientData: no client has a training segment")
    self._ids = sorted(self._rows)
    samples = segments.waveforms.shape[1]
    self._element_spec = collections.OrderedDict(
        waveform=tf.TensorSpec([samples], tf.float32))

  @property
  def client_ids(self) -> list[str]:
    return list(self._ids)

  def waveforms(self, client_id: str) -> np.ndarray:
    """The client's segments ``[n, samples]`` (a view on the shared array)."""
    if client_id not in self._rows:
      raise KeyError(f"unknown client {client_id!r}")
    return self._segments.waveforms[self._rows[client_id]]

  def num_examples(self, client_id: str) -> int:
    return len(self._rows[client_id])

  def create_tf_dataset_for_client(self, client_id: str) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(
        collections.OrderedDict(waveform=self.waveforms(client_id)))

  @property
  def serializable_dataset_fn(self):
    """A TF-traceable ``client_id -> dataset`` (embeds the data as constants).

    Used by ``dataset_computation``, i.e. when datasets are built inside TFF
    computations; the simulation loop passes datasets built in Python instead.
    """
    ids = tf.constant(self._ids)
    order = np.concatenate([self._rows[c] for c in self._ids])
    bounds = np.cumsum([0] + [len(self._rows[c]) for c in self._ids])
    data = self._segments.waveforms[order]

    def dataset_fn(client_id: tf.Tensor) -> tf.data.Dataset:
      index = tf.argmax(tf.cast(tf.equal(ids, client_id), tf.int32))
      start, end = tf.gather(bounds, index), tf.gather(bounds, index + 1)
      return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
          waveform=tf.constant(data)[start:end]))

    return dataset_fn

  @property
  def element_type_structure(self):
    return self._element_spec


def client_round_seed(seed: int, round_num: int, client_index: int) -> int:
  """A 63-bit seed for one client's work in one round."""
  mixed = np.random.SeedSequence([seed, round_num, client_index])
  return int(mixed.generate_state(1, np.uint64)[0] >> np.uint64(1))


def round_dataset(waveforms: np.ndarray, batch_size: int, num_batches: int, *,
                  seed: int) -> tf.data.Dataset:
  """One client's training batches for one round.

  Elements are ``{"waveform": [batch_size, samples], "seed": [2] int64}``;
  the order of examples and the in-graph random draws depend only on
  ``seed`` (see :func:`client_round_seed`), so a resumed simulation repeats
  an uninterrupted one.

  Args:
    waveforms: The client's segments ``[n, samples]``.
    batch_size: Static batch size.
    num_batches: Local steps this round (epochs x batches, capped).
    seed: This client's seed for this round.
  """
  plan = batch_plan(len(waveforms), batch_size, seed=seed, start_step=0,
                    num_steps=num_batches)
  seeds = np.stack([np.full(num_batches, seed, np.int64),
                    np.arange(num_batches, dtype=np.int64)], axis=1)
  return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
      waveform=waveforms[plan], seed=seeds))
