"""Federated partitions of a clip table: natural, IID, Dirichlet and mixed."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Callable, Optional

from matplotlib.figure import Figure
import numpy as np

from model.datasets.clips import ClipTable

__all__ = [
    "PARTITIONERS",
    "Partition",
    "PartitionConfig",
    "format_summary",
    "partition",
    "summarize",
    "write_summary",
]


@dataclasses.dataclass(frozen=True)
class PartitionConfig:
  """How to split a clip table into federated clients.

  Attributes:
    method: Partitioner, a key of :data:`PARTITIONERS`.
    num_clients: Number of clients K for ``iid`` and ``dirichlet``; ``natural``
      and ``mixed`` have one client per ``client_id`` and ignore it.
    alpha: Dirichlet concentration of ``dirichlet`` (small: few labels per
      client; large: every client close to the global label mix).
    label: Label column that ``dirichlet`` skews over.
    quantity_skew: Power-law exponent of ``dirichlet`` client sizes; 0 gives
      equal sizes.
    mix: The ``mixed`` knob p in [0, 1], from IID (0) to per-speaker (1).
    seed: Seed of every random choice; the same config and table always give
      the same partition.
  """

  method: str = "natural"
  num_clients: int = 10
  alpha: float = 0.5
  label: str = "content"
  quantity_skew: float = 0.0
  mix: float = 0.5
  seed: int = 0

  def __post_init__(self):
    if not isinstance(self.method, str) or self.method not in PARTITIONERS:
      raise ValueError(f"PartitionConfig.method must be one of "
                       f"{sorted(PARTITIONERS)}, got {self.method!r}")
    if not _is_int(self.num_clients) or self.num_clients < 1:
      raise ValueError(f"PartitionConfig.num_clients must be an integer >= 1, "
                       f"got {self.num_clients!r}")
    if not _is_real(self.alpha) or not self.alpha > 0:
      raise ValueError(f"PartitionConfig.alpha must be a finite number > 0, "
                       f"got {self.alpha!r}")
    if not isinstance(self.label, str) or not self.label:
      raise ValueError(f"PartitionConfig.label must be a non-empty string, "
                       f"got {self.label!r}")
    if not _is_real(self.quantity_skew) or self.quantity_skew < 0:
      raise ValueError(f"PartitionConfig.quantity_skew must be a finite number "
                       f">= 0, got {self.quantity_skew!r}")
    if not _is_real(self.mix) or not 0 <= self.mix <= 1:
      raise ValueError(f"PartitionConfig.mix must be a number in [0, 1], "
                       f"got {self.mix!r}")
    if not _is_int(self.seed) or self.seed < 0:
      raise ValueError(f"PartitionConfig.seed must be an integer >= 0, "
                       f"got {self.seed!r}")


def _is_int(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
  return (isinstance(value, (int, float, np.integer, np.floating))
          and not isinstance(value, bool) and math.isfinite(value))


@dataclasses.dataclass(frozen=True)
class Partition:
  """An assignment of clip indices to named clients.

  Attributes:
    clients: Clip indices into the table, by client name (insertion order is
      the client order). Stored sorted, as read-only int64 arrays.
    method: Name of the partitioner that made it.

  Raises:
    ValueError: A client's indices are not a 1-D integer array.
  """

  clients: dict[str, np.ndarray]
  method: str

  def __post_init__(self):
    clients = {}
    for name, indices in self.clients.items():
      array = np.asarray(indices)
      if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ValueError(f"Partition client {name!r}: clip indices must be a "
                         f"1-D integer array, got {array.dtype} of shape "
                         f"{array.shape}")
      array = np.sort(array.astype(np.int64))
      array.setflags(write=False)
      clients[str(name)] = array
    object.__setattr__(self, "clients", clients)

  @property
  def client_ids(self) -> tuple[str, ...]:
    """Client names, in client order."""
    return tuple(self.clients)

  @property
  def sizes(self) -> np.ndarray:
    """Number of clips of every client, in client order."""
    return np.array([len(v) for v in self.clients.values()], dtype=np.int64)

  def of(self, client: str) -> np.ndarray:
    """Returns the sorted clip indices of ``client``.

    Args:
      client: A client name.

    Returns:
      Read-only int64 array of indices into the partitioned table.

    Raises:
      KeyError: No client has that name.
    """
    if client not in self.clients:
      raise KeyError(f"partition {self.method!r} has no client {client!r} "
                     f"({len(self.clients)} clients)")
    return self.clients[client]


def _numbered(num_clients: int) -> list[str]:
  width = len(str(num_clients - 1))
  return [f"client_{k:0{width}d}" for k in range(num_clients)]


def _from_assignment(assignment: np.ndarray, names: list[str],
                     method: str) -> Partition:
  """Builds a partition from the client number of every clip."""
  order = np.argsort(assignment, kind="stable")
  counts = np.bincount(assignment, minlength=len(names))
  return Partition(dict(zip(names, np.split(order, np.cumsum(counts)[:-1]))),
                   method)


def _speakers(table: ClipTable) -> tuple[list[str], np.ndarray]:
  """Sorted distinct client ids, and the position of every clip's among them."""
  names, codes = np.unique([c.client_id for c in table], return_inverse=True)
  return [str(n) for n in names], codes.astype(np.int64)


def _check_size(table: ClipTable, num_clients: int) -> None:
  if num_clients > len(table):
    raise ValueError(f"PartitionConfig.num_clients ({num_clients}) exceeds "
                     f"the {len(table)} clips of table {table.name!r}")


def _natural(table: ClipTable, config: PartitionConfig) -> Partition:
  """One client per ``client_id`` (speaker / device), named by it."""
  del config  # Fully determined by the table.
  names, codes = _speakers(table)
  return _from_assignment(codes, names, "natural")


def _iid(table: ClipTable, config: PartitionConfig) -> Partition:
  """Shuffled clips dealt into K clients whose sizes differ by at most 1."""
  _check_size(table, config.num_clients)
  rng = np.random.default_rng(config.seed)
  chunks = np.array_split(rng.permutation(len(table)), config.num_clients)
  return Partition(dict(zip(_numbered(config.num_clients), chunks)), "iid")


def _power_law_sizes(num_clips: int, num_clients: int, exponent: float,
                     rng: np.random.Generator) -> np.ndarray:
  """Client sizes >= 1 summing to ``num_clips``, with Zipf-like shares.

  The client of size rank r (a random permutation of 1..K) gets a share of the
  clips beyond the first one proportional to ``r ** -exponent``, rounded by
  largest remainder; exponent 0 gives sizes that differ by at most 1.
  """
  weights = np.arange(1, num_clients + 1, dtype=np.float64) ** -exponent
  share = weights[rng.permutation(num_clients)]
  share *= (num_clips - num_clients) / share.sum()
  sizes = np.floor(share).astype(np.int64)
  shortfall = num_clips - num_clients - int(sizes.sum())
  sizes[np.argsort(sizes - share, kind="stable")[:shortfall]] += 1
  return sizes + 1


def _label_mix(concentration: np.ndarray, prior: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
  """Draws Dir(concentration); a one-hot drawn from ``prior`` on underflow.

  The one-hot is the alpha -> 0 limit, for a draw that underflows to zeros.
  """
  mix = rng.dirichlet(concentration)
  if np.all(np.isfinite(mix)) and mix.sum() > 0:
    return mix
  return np.eye(len(prior))[rng.choice(len(prior), p=prior / prior.sum())]


def _dirichlet(table: ClipTable, config: PartitionConfig) -> Partition:
  """Label skew (Hsu et al. 2019) plus optional power-law quantity skew.

  1. Client sizes n_k >= 1 (sum = all clips) from :func:`_power_law_sizes`.
  2. Clips without ``config.label`` take uniformly random slots among all
     sum(n_k) slots; the rest of each client's slots are for labelled clips.
  3. Clients, in random order, draw a label mix q_k ~ Dir(alpha * prior), prior
     being the global label frequencies, and fill their labelled slots with
     unused clips, a label c drawn with probability proportional to
     q_k[c] * left[c] / prior[c] (left: its unused clips). Scaling by what is
     left keeps the clients filled last from getting a skewed remainder (with
     q_k = prior this is drawing uniformly from the unused clips) and drops
     labels that ran out. Every clip is used exactly once.
  """
  _check_size(table, config.num_clients)
  codes, values = _label_codes(table, config.label)
  rng = np.random.default_rng(config.seed)
  num_clients = config.num_clients
  sizes = _power_law_sizes(len(table), num_clients, config.quantity_skew, rng)
  assignment = np.empty(len(table), dtype=np.int64)
  slots = rng.permutation(np.repeat(np.arange(num_clients), sizes))
  unlabelled = rng.permutation(np.flatnonzero(codes < 0))
  assignment[unlabelled] = slots[:len(unlabelled)]
  labelled_slots = np.bincount(slots[len(unlabelled):], minlength=num_clients)
  pools = [rng.permutation(np.flatnonzero(codes == c))
           for c in range(len(values))]
  left = np.array([len(p) for p in pools], dtype=np.int64)
  prior = left / left.sum()
  for client in rng.permutation(num_clients):
    need = int(labelled_slots[client])
    mix = _label_mix(config.alpha * prior, prior, rng)
    while need:
      weights = mix * left / prior
      if weights.sum() <= 0:  # Its labels ran out: redraw over those left.
        mix = np.zeros_like(prior)
        mix[left > 0] = _label_mix(config.alpha * prior[left > 0],
                                   prior[left > 0], rng)
        continue
      take = np.minimum(rng.multinomial(need, weights / weights.sum()), left)
      for c in np.flatnonzero(take):
        start = len(pools[c]) - left[c]
        assignment[pools[c][start:start + take[c]]] = client
      left -= take
      need -= int(take.sum())
  return _from_assignment(assignment, _numbered(num_clients), "dirichlet")


def _mixed(table: ClipTable, config: PartitionConfig) -> Partition:
  """Interpolates between IID (``mix`` = 0) and per-speaker (``mix`` = 1).

  There is one client per ``client_id`` (K = number of speakers), named by
  it. Each clip independently stays with its speaker's client with
  probability p = ``config.mix``; otherwise it goes to a client drawn
  uniformly from all K (possibly its own). So p = 1 is exactly ``natural``
  and p = 0 assigns every clip to a uniformly random client (IID). A client
  left empty then takes one random clip from the currently largest client
  (rare: only when its speaker has few clips and p is small).
  """
  names, assignment = _speakers(table)
  rng = np.random.default_rng(config.seed)
  moved = rng.random(len(table)) >= config.mix
  assignment[moved] = rng.integers(len(names), size=int(moved.sum()))
  counts = np.bincount(assignment, minlength=len(names))
  for empty in np.flatnonzero(counts == 0):
    donor = int(np.argmax(counts))
    assignment[rng.choice(np.flatnonzero(assignment == donor))] = empty
    counts[donor] -= 1
    counts[empty] = 1
  return _from_assignment(assignment, names, "mixed")


#: Partitioners by name: ``fn(table, config) -> Partition``.
PARTITIONERS: dict[str, Callable[[ClipTable, PartitionConfig], Partition]] = {
    "natural": _natural,
    "iid": _iid,
    "dirichlet": _dirichlet,
    "mixed": _mixed,
}


def partition(table: ClipTable, config: PartitionConfig) -> Partition:
  """Splits ``table`` into clients with the partitioner ``config.method``.

  Args:
    table: The clips to split.
    config: Partitioner and its settings.

  Returns:
    The partition; every clip index of ``table`` is in exactly one client and
    no client is empty.

  Raises:
    ValueError: The table is empty, the config does not fit the table (more
      clients than clips; a ``dirichlet`` label that no clip has), or the
      partitioner did not cover every clip exactly once.
  """
  if not len(table):
    raise ValueError(f"table {table.name!r} has no clips to partition")
  result = PARTITIONERS[config.method](table, config)
  indices = np.concatenate([np.zeros(0, np.int64), *result.clients.values()])
  valid = (indices >= 0) & (indices < len(table))
  counts = np.bincount(indices[valid], minlength=len(table))
  if not valid.all() or np.any(counts != 1):
    raise ValueError(
        f"partitioner {config.method!r} must cover each of the {len(table)} "
        f"clips exactly once; {int(np.sum(counts == 0))} clips are missing, "
        f"{int(np.sum(counts > 1))} repeated and {int(np.sum(~valid))} "
        f"indices out of range")
  if empty := [name for name, v in result.clients.items() if not len(v)]:
    raise ValueError(f"partitioner {config.method!r} left clients {empty} "
                     f"empty")
  return result


def _label_codes(table: ClipTable, label: str) -> tuple[np.ndarray, list[str]]:
  """Code of every clip's ``label`` value (-1: absent) and the sorted values.

  Raises:
    ValueError: No clip has ``label``.
  """
  values = sorted({c.labels[label] for c in table if label in c.labels})
  if not values:
    raise ValueError(f"no clip of table {table.name!r} has label {label!r}; "
                     f"its labels are {list(table.label_columns)}")
  index = {v: i for i, v in enumerate(values)}
  codes = np.array([index.get(c.labels.get(label), -1) for c in table],
                   dtype=np.int64)
  return codes, values


def _entropy_bits(counts: np.ndarray) -> float:
  p = counts[counts > 0] / counts.sum()
  return float(max(0.0, -np.sum(p * np.log2(p))))


def summarize(partition: Partition, table: ClipTable, *,
              label: str) -> dict[str, Any]:
  """Client sizes and label skew of a partition, as a JSON-ready dict.

  Args:
    partition: A partition of ``table``.
    table: The partitioned clips.
    label: Label column whose entropy measures skew (computed, per client,
      among the clips that have it).

  Returns:
    ``method``, ``label``, ``num_clients``, ``num_clips``, ``num_labels``
    (distinct values), ``clips_per_client`` (min / max / mean / median / std),
    ``clips_per_client_histogram`` (``bin_edges``, ``counts``),
    ``label_entropy_bits`` (by client; None for a client without the label),
    ``mean_label_entropy_bits`` (over clients with the label),
    ``global_label_entropy_bits`` and ``max_label_entropy_bits`` (log2 of
    ``num_labels``).

  Raises:
    ValueError: The partition has no clients or indexes clips outside
      ``table``, or no clip has ``label``.
  """
  if not partition.clients:
    raise ValueError(f"partition {partition.method!r} has no clients")
  sizes = partition.sizes
  indices = [partition.of(name) for name in partition.client_ids]
  if any(len(v) and (v[0] < 0 or v[-1] >= len(table)) for v in indices):
    raise ValueError(f"partition {partition.method!r} indexes clips outside "
                     f"the {len(table)} clips of table {table.name!r}")
  codes, values = _label_codes(table, label)
  entropies = {}
  for name, clip_indices in zip(partition.client_ids, indices):
    client_codes = codes[clip_indices]
    client_codes = client_codes[client_codes >= 0]
    entropies[name] = (_entropy_bits(np.bincount(client_codes)) if
                       len(client_codes) else None)
  defined = [e for e in entropies.values() if e is not None]
  # At most 20 bins, each a whole number of sizes wide.
  width = -(-int(sizes.max() - sizes.min() + 1) // 20)
  edges = np.arange(sizes.min() - 0.5, sizes.max() + width, width)
  counts, _ = np.histogram(sizes, bins=edges)
  return {
      "method": partition.method,
      "label": label,
      "num_clients": len(sizes),
      "num_clips": int(sizes.sum()),
      "num_labels": len(values),
      "clips_per_client": {
          "min": int(sizes.min()),
          "max": int(sizes.max()),
          "mean": float(sizes.mean()),
          "median": float(np.median(sizes)),
          "std": float(sizes.std()),
      },
      "clips_per_client_histogram": {
          "bin_edges": [float(e) for e in edges],
          "counts": [int(c) for c in counts],
      },
      "label_entropy_bits": entropies,
      "mean_label_entropy_bits": float(np.mean(defined)) if defined else None,
      "global_label_entropy_bits": _entropy_bits(
          np.bincount(codes[codes >= 0])),
      "max_label_entropy_bits": math.log2(len(values)),
  }


def write_summary(summary: dict[str, Any], partition: Partition,
                  out_dir: str) -> tuple[str, str]:
  """Writes ``partition.json`` and ``partition.png`` under ``out_dir``.

  The JSON holds ``summary`` and ``clients`` (client -> clip indices); the
  PNG has two panels: a histogram of clips per client, and a histogram of the
  per-client label entropy with the global entropy marked.

  Args:
    summary: From :func:`summarize` on ``partition``.
    partition: The summarized partition.
    out_dir: Output directory (created if needed).

  Returns:
    The paths of the JSON and the PNG file.
  """
  os.makedirs(out_dir, exist_ok=True)
  json_path = os.path.join(out_dir, "partition.json")
  png_path = os.path.join(out_dir, "partition.png")
  with open(json_path, "w", encoding="utf-8") as f:
    json.dump({"summary": summary,
               "clients": {name: partition.of(name).tolist()
                           for name in partition.client_ids}},
              f, indent=1, allow_nan=False)
  figure = Figure(figsize=(10.0, 4.0), layout="constrained")
  size_axes, entropy_axes = figure.subplots(1, 2)
  size_axes.hist(partition.sizes,
                 bins=summary["clips_per_client_histogram"]["bin_edges"])
  size_axes.set_xlabel("clips per client")
  size_axes.set_ylabel("clients")
  size_axes.set_title(f"{summary['method']}: {summary['num_clients']} clients, "
                      f"{summary['num_clips']} clips")
  entropies = [e for e in summary["label_entropy_bits"].values()
               if e is not None]
  top = max(summary["max_label_entropy_bits"], 1e-3)
  entropy_axes.hist(entropies, bins=20, range=(0.0, top))
  entropy_axes.axvline(summary["global_label_entropy_bits"], color="tab:red",
                       linestyle="--", label="global")
  if summary["mean_label_entropy_bits"] is not None:
    entropy_axes.axvline(summary["mean_label_entropy_bits"], color="black",
                         linestyle=":", label="client mean")
  entropy_axes.set_xlabel(f"{summary['label']!r} label entropy (bits)")
  entropy_axes.set_ylabel("clients")
  entropy_axes.set_title("per-client label entropy")
  entropy_axes.legend(fontsize="small")
  figure.savefig(png_path, dpi=100, format="png")
  return json_path, png_path


def _format_bits(value: Optional[float]) -> str:
  return "n/a" if value is None else f"{value:.2f}"


def format_summary(summary: dict[str, Any]) -> str:
  """A few readable lines describing a :func:`summarize` result.

  Args:
    summary: From :func:`summarize`.

  Returns:
    The lines, joined by newlines.
  """
  sizes = summary["clips_per_client"]
  entropies = summary["label_entropy_bits"]
  missing = sum(e is None for e in entropies.values())
  lines = [
      f"partition {summary['method']!r}: {summary['num_clients']} clients, "
      f"{summary['num_clips']} clips",
      f"  clips per client: min {sizes['min']}, median {sizes['median']:g}, "
      f"mean {sizes['mean']:.1f}, max {sizes['max']} (std {sizes['std']:.1f})",
      f"  {summary['label']!r} entropy (bits): client mean "
      f"{_format_bits(summary['mean_label_entropy_bits'])}, global "
      f"{summary['global_label_entropy_bits']:.2f}, max "
      f"{summary['max_label_entropy_bits']:.2f} "
      f"({summary['num_labels']} labels)",
  ]
  if missing:
    lines.append(f"  {missing} clients have no {summary['label']!r} label")
  return "\n".join(lines)
