"""Federated partitions: coverage, skew knobs, determinism, summaries."""

import dataclasses
import json

import numpy as np
import pytest

from model.datasets.clips import Clip, ClipTable
from tff_sim.partition import (PARTITIONERS, Partition, PartitionConfig,
                               format_summary, partition, summarize,
                               write_summary)

CONTENT = ("speech", "music", "noise")
KEYWORDS = ("yes", "no", "up")
NUM_SPEAKERS = 8
CLIPS_PER_SPEAKER = 20


def make_table():
  """8 speakers x 20 clips; each speaker records mostly one content class.

  Speaker s has 18 clips of ``CONTENT[s % 3]`` and one of each other class;
  speech clips also carry a ``keyword`` label.
  """
  rows = []
  for s in range(NUM_SPEAKERS):
    for j in range(CLIPS_PER_SPEAKER):
      content = CONTENT[(s + max(0, j - 17)) % 3]
      labels = {"content": content}
      if content == "speech":
        labels["keyword"] = KEYWORDS[j % 3]
      rows.append(Clip(f"spk{s}/{j:02d}.wav", f"spk{s}", labels))
  return ClipTable.from_rows(rows, root="/nonexistent", name="synthetic")


TABLE = make_table()
N = len(TABLE)


def mean_entropy(config):
  part = partition(TABLE, config)
  return summarize(part, TABLE, label="content")["mean_label_entropy_bits"]


def global_entropy():
  part = partition(TABLE, PartitionConfig("natural"))
  return summarize(part, TABLE, label="content")["global_label_entropy_bits"]


ALL_CONFIGS = [
    PartitionConfig("natural"),
    PartitionConfig("iid", num_clients=7),
    PartitionConfig("dirichlet", num_clients=6, alpha=0.05),
    PartitionConfig("dirichlet", num_clients=12, alpha=1.0, quantity_skew=2.0),
    PartitionConfig("dirichlet", num_clients=5, label="keyword"),
    PartitionConfig("mixed", mix=0.0),
    PartitionConfig("mixed", mix=0.4),
    PartitionConfig("mixed", mix=1.0),
]


def test_registry_lists_every_method():
  assert sorted(PARTITIONERS) == ["dirichlet", "iid", "mixed", "natural"]


@pytest.mark.parametrize("config", ALL_CONFIGS,
                         ids=lambda c: f"{c.method}-{c.num_clients}-{c.mix}")
def test_every_clip_exactly_once(config):
  part = partition(TABLE, config)
  assert part.method == config.method
  all_indices = np.concatenate([part.of(c) for c in part.client_ids])
  np.testing.assert_array_equal(np.sort(all_indices), np.arange(N))
  assert part.sizes.sum() == N and part.sizes.min() >= 1
  for name in part.client_ids:
    indices = part.of(name)
    assert indices.dtype == np.int64 and np.all(np.diff(indices) > 0)
    assert not indices.flags.writeable
  if config.method in ("iid", "dirichlet"):
    assert len(part.client_ids) == config.num_clients


def test_natural_is_one_client_per_speaker():
  part = partition(TABLE, PartitionConfig("natural", num_clients=3))
  assert part.client_ids == TABLE.client_ids
  for name in part.client_ids:
    expected = [i for i, c in enumerate(TABLE) if c.client_id == name]
    np.testing.assert_array_equal(part.of(name), expected)


def test_iid_sizes_are_balanced():
  for k in (1, 3, 7, 13, N):
    sizes = partition(TABLE, PartitionConfig("iid", num_clients=k)).sizes
    assert len(sizes) == k and sizes.max() - sizes.min() <= 1


def test_mixed_interpolates_between_iid_and_natural():
  natural = partition(TABLE, PartitionConfig("natural"))
  for seed in range(3):
    full = partition(TABLE, PartitionConfig("mixed", mix=1.0, seed=seed))
    assert full.client_ids == natural.client_ids
    for name in natural.client_ids:
      np.testing.assert_array_equal(full.of(name), natural.of(name))
  seeds = range(10)
  natural_h = mean_entropy(PartitionConfig("natural"))
  iid_h = np.mean([mean_entropy(PartitionConfig("iid", num_clients=8, seed=s))
                   for s in seeds])
  mixed_h = {p: np.mean([mean_entropy(PartitionConfig("mixed", mix=p, seed=s))
                         for s in seeds]) for p in (0.0, 0.5)}
  assert natural_h < 0.7 < 1.4 < iid_h
  assert abs(mixed_h[0.0] - iid_h) < 0.1
  assert natural_h + 0.3 < mixed_h[0.5] < mixed_h[0.0] - 0.1
  # p = 0 sends every clip to a uniformly random client: speakers are mixed.
  part = partition(TABLE, PartitionConfig("mixed", mix=0.0))
  home = np.mean([TABLE[i].client_id == name for name in part.client_ids
                  for i in part.of(name)])
  assert home < 0.35


def test_dirichlet_alpha_controls_label_skew():
  seeds = range(10)
  low = np.mean([mean_entropy(PartitionConfig(
      "dirichlet", num_clients=8, alpha=0.05, seed=s)) for s in seeds])
  high = np.mean([mean_entropy(PartitionConfig(
      "dirichlet", num_clients=8, alpha=100.0, seed=s)) for s in seeds])
  assert low < 0.4
  assert high > global_entropy() - 0.2


def test_dirichlet_spreads_clips_without_the_label():
  config = PartitionConfig("dirichlet", num_clients=8, label="keyword",
                           alpha=0.05)
  part = partition(TABLE, config)
  summary = summarize(part, TABLE, label="keyword")
  assert summary["num_labels"] == 3
  assert summary["mean_label_entropy_bits"] < 0.6
  # Clips without a keyword fill the rest of every client.
  unlabelled = [sum("keyword" not in TABLE[i].labels for i in part.of(c))
                for c in part.client_ids]
  assert min(unlabelled) >= 1


def test_quantity_skew_makes_sizes_unequal():
  equal = partition(TABLE, PartitionConfig("dirichlet", num_clients=8)).sizes
  assert equal.max() - equal.min() <= 1
  skewed = partition(TABLE, PartitionConfig(
      "dirichlet", num_clients=8, quantity_skew=1.5)).sizes
  assert skewed.sum() == N and skewed.min() >= 1
  assert skewed.max() >= 4 * skewed.min()
  # Even an extreme skew leaves at least one clip on every client.
  extreme = partition(TABLE, PartitionConfig(
      "dirichlet", num_clients=40, quantity_skew=5.0, alpha=0.05)).sizes
  assert extreme.min() == 1 and extreme.sum() == N


@pytest.mark.parametrize("config", ALL_CONFIGS[1:],
                         ids=lambda c: f"{c.method}-{c.num_clients}-{c.mix}")
def test_deterministic_by_seed(config):
  first = partition(TABLE, config)
  again = partition(TABLE, config)
  other = partition(TABLE, dataclasses.replace(config, seed=config.seed + 1))
  assert first.client_ids == again.client_ids
  assert all(np.array_equal(first.of(c), again.of(c))
             for c in first.client_ids)
  if config.mix < 1:
    assert any(not np.array_equal(first.of(c), other.of(c))
               for c in first.client_ids)


@pytest.mark.parametrize("kwargs, field", [
    ({"method": "random"}, "method"),
    ({"num_clients": 0}, "num_clients"),
    ({"num_clients": 2.5}, "num_clients"),
    ({"num_clients": True}, "num_clients"),
    ({"alpha": 0.0}, "alpha"),
    ({"alpha": float("inf")}, "alpha"),
    ({"label": ""}, "label"),
    ({"quantity_skew": -1.0}, "quantity_skew"),
    ({"quantity_skew": float("nan")}, "quantity_skew"),
    ({"mix": 1.5}, "mix"),
    ({"mix": -0.1}, "mix"),
    ({"seed": -1}, "seed"),
])
def test_bad_config(kwargs, field):
  with pytest.raises(ValueError, match=f"PartitionConfig.{field}"):
    PartitionConfig(**kwargs)


def test_config_that_does_not_fit_the_table():
  with pytest.raises(ValueError, match="num_clients.*exceeds"):
    partition(TABLE, PartitionConfig("iid", num_clients=N + 1))
  with pytest.raises(ValueError, match="num_clients.*exceeds"):
    partition(TABLE, PartitionConfig("dirichlet", num_clients=N + 1))
  with pytest.raises(ValueError, match="label 'speaker'"):
    partition(TABLE, PartitionConfig("dirichlet", label="speaker"))
  with pytest.raises(ValueError, match="no clips"):
    partition(ClipTable.from_rows([]), PartitionConfig("natural"))


def test_partition_checks_coverage(monkeypatch):
  def broken(table, config):
    del config
    return Partition({"a": [0, 1], "b": [1, len(table)]}, "broken")
  monkeypatch.setitem(PARTITIONERS, "broken", broken)
  with pytest.raises(ValueError, match="exactly once"):
    partition(TABLE, PartitionConfig("broken"))


def test_partition_helpers():
  part = Partition({"b": [3, 1], "a": np.array([0, 2])}, "manual")
  assert part.client_ids == ("b", "a")
  np.testing.assert_array_equal(part.sizes, [2, 2])
  np.testing.assert_array_equal(part.of("b"), [1, 3])
  with pytest.raises(KeyError, match="no client 'c'"):
    part.of("c")
  with pytest.raises(ValueError, match="integer"):
    Partition({"a": [0.5]}, "manual")


def test_summary(tmp_path):
  part = partition(TABLE, PartitionConfig("natural"))
  summary = summarize(part, TABLE, label="content")
  assert summary["num_clients"] == NUM_SPEAKERS
  assert summary["num_clips"] == N
  assert summary["clips_per_client"]["min"] == CLIPS_PER_SPEAKER
  assert sum(summary["clips_per_client_histogram"]["counts"]) == NUM_SPEAKERS
  assert summary["max_label_entropy_bits"] == pytest.approx(np.log2(3))
  expected = -(0.9 * np.log2(0.9) + 2 * 0.05 * np.log2(0.05))
  np.testing.assert_allclose(list(summary["label_entropy_bits"].values()),
                             expected)
  assert summary["mean_label_entropy_bits"] == pytest.approx(expected)
  assert summary["global_label_entropy_bits"] > 1.5
  text = format_summary(summary)
  assert "'natural'" in text and "8 clients" in text

  speech = [i for i, c in enumerate(TABLE) if "keyword" in c.labels]
  rest = sorted(set(range(N)) - set(speech))
  keyword = summarize(Partition({"speech": speech, "rest": rest}, "manual"),
                      TABLE, label="keyword")
  assert keyword["label_entropy_bits"]["rest"] is None
  assert keyword["mean_label_entropy_bits"] == pytest.approx(
      keyword["global_label_entropy_bits"])
  assert "1 clients have no 'keyword' label" in format_summary(keyword)

  json_path, png_path = write_summary(summary, part, str(tmp_path / "out"))
  with open(json_path, encoding="utf-8") as f:
    written = json.load(f)
  assert written["summary"] == summary
  assert written["clients"]["spk0"] == list(range(CLIPS_PER_SPEAKER))
  with open(png_path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"

  with pytest.raises(ValueError, match="outside"):
    summarize(Partition({"a": [N]}, "manual"), TABLE, label="content")
  with pytest.raises(ValueError, match="label 'speaker'"):
    summarize(part, TABLE, label="speaker")
