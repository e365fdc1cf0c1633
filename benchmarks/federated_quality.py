"""Federated (FedAvg, FedAdam, FedYogi) vs. centralized SSL quality, like with like.

FedAvg is compared with centralized SGD, FedAdam and FedYogi with centralized
Adam, at equal examples seen, each learning rate chosen by nested
cross-validation of the linear probes (validation folds inside each test
fold's train part).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import os
import time
from typing import Any, Callable, Mapping, Optional, Sequence

from absl import logging
import numpy as np

from benchmarks.quality_seeds import SeedStatistics
from model.config_checks import (require_choice, require_non_negative,
                                 require_positive)
from model import evaluation
from model.datasets import synthetic
from model.datasets.audio import decode_clips
from model.datasets.pipeline import training_segments
from model.encoders import ENCODERS, POOLINGS, Encoder
from model.errors import NonFiniteWeightsError, UserError
from model.run_dir import differing_fields
from model.ssl_model import ModelSpec, SSLModel, load_model
from model.tasks import SSL_TASKS
from model.train import TrainConfig, train_centralized
from tff_sim.algorithms import (DEFAULT_SERVER_LEARNING_RATES, AlgorithmConfig,
                                 default_client_optimizer)
from tff_sim.costs import CostModel
from tff_sim.partition import PartitionConfig
from tff_sim.report import plot_quality_vs_cost_runs, read_release_csv
from tff_sim.simulation import (RETRIEVAL_METRIC, SimulationConfig,
                                run_simulation)

__all__ = ["BATCH_SIZE", "CLIENTS", "CLIENT_LR", "COLLAPSED", "COST_COLUMNS",
           "DIVERGED", "EFFECTIVE_RANK", "EXAMPLES",
           "FEDERATED_GOAL", "GOAL_HALF_WIDTH", "LEARNING_RATE", "LOCAL_STEPS",
           "PAIRED_OPTIMIZER",
           "SERVER_MOMENTUM",
           "RANDOM_INIT", "ROUNDS", "STEPS", "TFLOPS", "VALIDATION_MEAN", "WIRE_MB",
           "FederatedQualityConfig", "centralized_label", "format_table",
           "SeedResultsMismatch", "combine_federated_quality_seeds",
           "mixed_label", "run_federated_quality_benchmark",
           "run_federated_quality_seeds"]

#: The centralized optimizer each federated algorithm is compared with (like
#: with like: plain averaging of client SGD is SGD; an adaptive server
#: optimizer over client SGD, and MimeLite's client Adam with the server's
#: moments, are compared with Adam).
PAIRED_OPTIMIZER: dict[str, str] = {"fedavg": "sgd", "fedadam": "adam",
                                    "fedyogi": "adam", "mimelite": "adam"}
#: Row of the encoder at its initial (seeded) weights.
RANDOM_INIT = "random init"
#: Cost columns, after the quality columns.
EXAMPLES, TFLOPS, WIRE_MB = "examples seen", "client TFLOPs", "MB on the wire"
COST_COLUMNS = (EXAMPLES, TFLOPS, WIRE_MB)
#: Column of the validation table: mean validation probe accuracy, the
#: learning-rate selection criterion.
VALIDATION_MEAN = "mean"
#: Columns of the validation table that describe a candidate.
LEARNING_RATE, ROUNDS, LOCAL_STEPS = "learning rate", "rounds", "local steps"
CLIENTS = "clients per round"
CLIENT_LR, SERVER_MOMENTUM = "client lr", "server momentum"
STEPS, BATCH_SIZE = "steps", "batch size"
#: Validation column: 1 for a candidate whose training diverged (non-finite
#: loss or weights); it is never picked and its probe cells are empty.
DIVERGED = "diverged"
#: Validation column: 1 for a candidate whose training ended with finite
#: weights but collapsed embeddings (:func:`model.evaluation.is_collapsed` of
#: its probe-clip embeddings), 0 otherwise; a collapsed one is never picked
#: and its probe cells are empty.
COLLAPSED = "collapsed"
#: Validation column: :func:`model.evaluation.effective_rank` of each
#: candidate's probe-clip embeddings.
EFFECTIVE_RANK = evaluation.EFFECTIVE_RANK
#: How training reports divergence: a non-finite loss (``train_centralized``,
#: ``run_simulation``) or non-finite weights met when they are evaluated.
_DIVERGENCE = (FloatingPointError, NonFiniteWeightsError)
#: Goal of every federated run, in percent of its paired centralized run, on
#: every probe.
FEDERATED_GOAL = 95.0

#: Half-width (points of "% of centralized") of a 95 % interval of a mean
#: over seeds that the seed report counts the seeds for.
GOAL_HALF_WIDTH = 5.0

_SERVER_SGD = ("fedavg",)


def centralized_label(optimizer: str) -> str:
  """Row label of the centralized run with ``optimizer`` (tuned lr)."""
  return f"centralized {optimizer}"


@dataclasses.dataclass(frozen=True)
class FederatedQualityConfig:
  """What the federated-vs-centralized benchmark runs.

  Every federated algorithm is paired with a centralized optimizer
  (:data:`PAIRED_OPTIMIZER`); each side's learning rate is chosen from a grid
  of the same size by the mean linear-probe accuracy on validation folds
  inside each test fold's train part
  (:func:`model.evaluation.nested_probe_selection`), and each test fold is
  scored with the run chosen for it.

  Attributes:
    corpus: Key of :data:`model.datasets.synthetic.CORPUS_PRESETS`.
    corpus_dir: Where the corpus is generated (reused when complete); None:
      ``<out_dir>/corpus``.
    task: SSL task (key of ``SSL_TASKS``) of every run.
    encoder: Encoder preset (key of ``ENCODERS``) of every run.
    pooling: Key of :data:`model.encoders.POOLINGS`: the encoder's pooling
      in every run (federated, centralized and the random-init row).
    algorithms: Federated algorithms (keys of :data:`PAIRED_OPTIMIZER`), one
      natural partition run per server learning rate each.
    rounds: Federated rounds of every run.
    clients_per_round: Clients sampled per round.
    batch_size: Client (and centralized) batch size.
    max_local_steps: Cap on local steps per client and round.
    client_learning_rate: Client SGD step size (when
      ``client_learning_rates`` is empty).
    eval_every: Rounds between the federated runs' probes (the quality-vs-
      cost curve), scaled like the rounds for each of ``local_steps_grid``.
    client_learning_rates: Client SGD step sizes tried by FedAvg, FedAdam
      and FedYogi (empty: ``(client_learning_rate,)``).
    mime_learning_rates: Client Adam step sizes tried by MimeLite (server
      lr 1: plain averaging, as in Karimireddy et al.); empty: the
      centralized Adam grid, so both sides of the pairing try the same Adam
      step sizes.
    adaptive_server_momenta: Server momenta (Adam's / Yogi's ``beta_1``,
      :attr:`tff_sim.algorithms.AlgorithmConfig.server_momentum`) tried by
      FedAdam and FedYogi (empty: the default 0.9 only). 0 makes every
      server step follow that round's averaged client update only.
    local_steps_grid: Local steps per round tried by every federated
      algorithm at equal examples: ``k`` runs ``rounds * max_local_steps /
      k`` rounds (must divide). Empty: ``(max_local_steps,)`` only.
    clients_per_round_grid: Clients per round tried by every federated
      algorithm at equal examples: ``c`` clients run ``rounds *
      clients_per_round / c`` rounds (with ``local_steps_grid``: both
      scalings; must divide), so fewer clients per round means more
      sequential server updates on the same examples. Empty:
      ``(clients_per_round,)`` only.
    centralized_batch_sizes: Batch sizes tried by every centralized
      optimizer at equal examples (empty: ``(batch_size,)``). Each pairing
      evaluates as many candidates on each side: ``len(server grid) *
      len(client_learning_rates) * len(local_steps_grid) *
      len(clients_per_round_grid) [* len(adaptive_server_momenta) for
      FedAdam / FedYogi; MimeLite: len(mime_learning_rates) *
      len(local_steps_grid) * len(clients_per_round_grid)] ==
      len(centralized grid) * len(centralized_batch_sizes)``.
    sgd_server_learning_rates: Server learning-rate grid of FedAvg.
    adaptive_server_learning_rates: Server learning-rate grid of FedAdam and
      FedYogi.
    centralized_sgd_learning_rates: Learning-rate grid of centralized SGD
      (no momentum).
    centralized_adam_learning_rates: Learning-rate grid of centralized Adam.
    probe_folds: Test folds of every probe
      (:func:`model.evaluation.cross_validation_splits`: whole speakers on
      either side, within speakers for ``speaker``); 1: one split of 0.3.
    validation_folds: Validation folds inside each test fold's train part,
      on which the candidates are chosen; 1: one split of
      ``validation_fraction``. ``probe_folds == validation_folds == 1`` is
      the single-split choice of earlier reports.
    validation_fraction: With ``validation_folds == 1``: fraction of each
      probe's train part (train speakers, or train clips for ``speaker``)
      held out for the choice.
    mixes: ``mixed`` partition knobs p (0 IID ... 1 natural), one extra
      FedAvg run each at FedAvg's chosen server learning rate (empty: none).
    num_workers: TFF worker processes of each federated run.
    seed: Seed of weights, partitions, sampling, batches and probe splits.
    num_seeds: Seeds ``seed, seed + 1, ...``: the whole benchmark (tuning
      included) runs once per seed, in ``<out_dir>/seed_<s>`` when more than
      one, and the summary gives each pairing's mean and sample std of "% of
      centralized" per probe.
    out_dir: Output directory (``runs/``, ``report.md``, ``results.csv``,
      ``validation.csv``, ``pairings.csv``, ``quality_vs_cost.png``, the
      corpus by default).
  """

  corpus: str = "full"
  corpus_dir: Optional[str] = None
  task: str = "triplet"
  encoder: str = "small"
  pooling: str = "max"
  algorithms: tuple[str, ...] = ("fedavg", "fedadam", "fedyogi")
  rounds: int = 30
  clients_per_round: int = 8
  batch_size: int = 8
  max_local_steps: int = 10
  client_learning_rate: float = 0.05
  eval_every: int = 10
  # Grids measured on the full corpus (tiny encoder, 20 rounds x 8 clients x
  # 5 steps): every pick inside (FedAvg 3, FedAdam 0.1, centralized SGD 0.05,
  # Adam 3e-3); (1e-2, 3e-2, 1e-1) put FedAdam's pick on the upper edge.
  sgd_server_learning_rates: tuple[float, ...] = (1.0, 3.0, 10.0)
  adaptive_server_learning_rates: tuple[float, ...] = (3e-2, 1e-1, 3e-1)
  centralized_sgd_learning_rates: tuple[float, ...] = (0.015, 0.05, 0.15)
  centralized_adam_learning_rates: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
  client_learning_rates: tuple[float, ...] = ()
  mime_learning_rates: tuple[float, ...] = ()
  adaptive_server_momenta: tuple[float, ...] = ()
  local_steps_grid: tuple[int, ...] = ()
  clients_per_round_grid: tuple[int, ...] = ()
  centralized_batch_sizes: tuple[int, ...] = ()
  probe_folds: int = 5
  validation_folds: int = 3
  validation_fraction: float = 0.3
  mixes: tuple[float, ...] = ()
  num_workers: int = 1
  seed: int = 0
  num_seeds: int = 1
  out_dir: str = "federated_quality_output"

  def __post_init__(self):
    grids = ("sgd_server_learning_rates", "adaptive_server_learning_rates",
             "centralized_sgd_learning_rates",
             "centralized_adam_learning_rates")
    for field in ("algorithms", "mixes", "local_steps_grid",
                  "clients_per_round_grid", "centralized_batch_sizes",
                  "client_learning_rates", "mime_learning_rates",
                  "adaptive_server_momenta", *grids):
      object.__setattr__(self, field, tuple(getattr(self, field)))
    require_choice(self, ["corpus"], synthetic.CORPUS_PRESETS)
    require_choice(self, ["pooling"], POOLINGS)
    if self.task not in SSL_TASKS or self.encoder not in ENCODERS:
      raise ValueError(f"FederatedQualityConfig: task must be one of "
                       f"{sorted(SSL_TASKS)} and encoder one of "
                       f"{sorted(ENCODERS)}, got {self.task!r}, "
                       f"{self.encoder!r}")
    if (not self.algorithms or len(set(self.algorithms)) < len(self.algorithms)
        or any(a not in PAIRED_OPTIMIZER for a in self.algorithms)):
      raise ValueError(f"FederatedQualityConfig.algorithms must be distinct "
                       f"keys of {list(PAIRED_OPTIMIZER)}, got "
                       f"{self.algorithms}")
    optional = ("client_learning_rates", "mime_learning_rates")
    for field in (*grids, *optional):
      grid = getattr(self, field)
      if ((not grid and field not in optional)
          or len(set(grid)) < len(grid) or any(lr <= 0 for lr in grid)):
        raise ValueError(f"FederatedQualityConfig.{field} must be distinct "
                         f"positive learning rates, got {grid}")
    momenta = self.adaptive_server_momenta
    if len(set(momenta)) < len(momenta) or any(not 0 <= m < 1
                                               for m in momenta):
      raise ValueError(f"FederatedQualityConfig.adaptive_server_momenta must "
                       f"be distinct values in [0, 1), got {momenta}")
    for field in ("local_steps_grid", "clients_per_round_grid",
                  "centralized_batch_sizes"):
      grid = getattr(self, field)
      if len(set(grid)) < len(grid) or any(v <= 0 for v in grid):
        raise ValueError(f"FederatedQualityConfig.{field} must be distinct "
                         f"positive integers, got {grid}")
    if self.local_steps_grid:
      budget = self.rounds * self.max_local_steps
      if not self.max_local_steps or any(
          budget % k or (self.eval_every * self.max_local_steps) % k
          for k in self.local_steps_grid):
        raise ValueError(
            f"FederatedQualityConfig.local_steps_grid: every value must "
            f"divide rounds * max_local_steps ({self.rounds} * "
            f"{self.max_local_steps}) and eval_every * max_local_steps "
            f"({self.eval_every} * {self.max_local_steps}), got "
            f"{self.local_steps_grid}")
    for c in self.clients_per_round_grid:
      rounds = self.rounds * self.clients_per_round
      if (rounds % c or (self.eval_every * self.clients_per_round) % c
          or any((rounds // c * self.max_local_steps) % k
                 for k in self.local_steps_grid)):
        raise ValueError(
            f"FederatedQualityConfig.clients_per_round_grid: {c} clients "
            f"per round must see the examples of {self.rounds} rounds x "
            f"{self.clients_per_round} clients (x each of "
            f"local_steps_grid {self.local_steps_grid}) in whole rounds and "
            f"divide eval_every * clients_per_round ({self.eval_every} * "
            f"{self.clients_per_round}), got {self.clients_per_round_grid}")
    for algorithm in self.algorithms:
      optimizer = PAIRED_OPTIMIZER[algorithm]
      federated = (len(self.server_grid(algorithm))
                   * len(self.client_grid(algorithm)) * len(self.local_steps)
                   * len(self.clients) * len(self.server_momenta(algorithm)))
      central = (len(self.centralized_grid(optimizer))
                 * len(self.batch_sizes))
      if federated != central:
        raise ValueError(
            f"FederatedQualityConfig: {algorithm} evaluates {federated} "
            f"candidates (server x client learning rates x local steps "
            f"x clients per round x server momenta) "
            f"but "
            f"centralized {optimizer} {central} (learning rates x batch "
            f"sizes); the tuning budget must be the same on both sides")
    if not all(0.0 <= p <= 1.0 for p in self.mixes):
      raise ValueError(f"FederatedQualityConfig.mixes must be in [0, 1], got "
                       f"{self.mixes}")
    if self.mixes and "fedavg" not in self.algorithms:
      raise ValueError("FederatedQualityConfig.mixes needs 'fedavg' among "
                       f"the algorithms, got {self.algorithms}")
    if not 0 < self.validation_fraction < 1:
      raise ValueError(f"FederatedQualityConfig.validation_fraction must be "
                       f"in (0, 1), got {self.validation_fraction}")
    require_positive(self, ("rounds", "clients_per_round", "batch_size",
                            "eval_every", "num_workers", "client_learning_rate",
                            "num_seeds", "probe_folds", "validation_folds"))
    require_non_negative(self, ("max_local_steps",))

  @property
  def corpus_path(self) -> str:
    """The corpus directory: ``corpus_dir`` or ``<out_dir>/corpus``."""
    return self.corpus_dir or os.path.join(self.out_dir, "corpus")

  @property
  def spec(self) -> ModelSpec:
    return ModelSpec(task=self.task, encoder=dataclasses.replace(
        ENCODERS[self.encoder], pooling=self.pooling), seed=self.seed)

  @property
  def client_lrs(self) -> tuple[float, ...]:
    """Client learning rates tried by every federated algorithm."""
    return self.client_learning_rates or (self.client_learning_rate,)

  @property
  def local_steps(self) -> tuple[int, ...]:
    """Local steps per round tried by every federated algorithm."""
    return self.local_steps_grid or (self.max_local_steps,)

  @property
  def clients(self) -> tuple[int, ...]:
    """Clients per round tried by every federated algorithm."""
    return self.clients_per_round_grid or (self.clients_per_round,)

  @property
  def batch_sizes(self) -> tuple[int, ...]:
    """Batch sizes tried by every centralized optimizer."""
    return self.centralized_batch_sizes or (self.batch_size,)

  @property
  def seeds(self) -> tuple[int, ...]:
    """The seeds the benchmark runs with."""
    return tuple(range(self.seed, self.seed + self.num_seeds))

  def rounds_for(self, local_steps: int,
                 clients: Optional[int] = None) -> int:
    """Rounds of a run with ``local_steps`` per round and ``clients`` per
    round (None: ``clients_per_round``), at equal examples."""
    rounds = self.rounds
    if clients is not None and self.clients_per_round_grid:
      rounds = rounds * self.clients_per_round // clients
    if not self.local_steps_grid:
      return rounds
    return rounds * self.max_local_steps // local_steps

  def client_grid(self, algorithm: str) -> tuple[float, ...]:
    """Client learning rates tried for ``algorithm``."""
    if algorithm == "mimelite":
      return self.mime_learning_rates or self.centralized_adam_learning_rates
    return self.client_lrs

  def server_momenta(self, algorithm: str) -> tuple[Optional[float], ...]:
    """Server momenta tried for ``algorithm`` (``(None,)``: FedAvg and
    MimeLite, which have none)."""
    if algorithm in _SERVER_SGD or algorithm == "mimelite":
      return (None,)
    return (self.adaptive_server_momenta
            or (AlgorithmConfig().server_momentum,))

  def server_grid(self, algorithm: str) -> tuple[float, ...]:
    """Server learning rates tried for ``algorithm``."""
    if algorithm == "mimelite":
      return (DEFAULT_SERVER_LEARNING_RATES["mimelite"],)
    return (self.sgd_server_learning_rates if algorithm in _SERVER_SGD
            else self.adaptive_server_learning_rates)

  def centralized_grid(self, optimizer: str) -> tuple[float, ...]:
    """Learning rates tried for centralized ``optimizer``."""
    return {"sgd": self.centralized_sgd_learning_rates,
            "adam": self.centralized_adam_learning_rates}[optimizer]

  def simulation(self, algorithm: str, partition: PartitionConfig,
                 server_learning_rate: float,
                 local_steps: Optional[int] = None,
                 client_learning_rate: Optional[float] = None,
                 server_momentum: Optional[float] = None,
                 clients: Optional[int] = None) -> SimulationConfig:
    """The federated run of ``algorithm`` on ``partition`` with
    ``local_steps`` per round (None: ``max_local_steps``),
    ``client_learning_rate`` (None: the first of the algorithm's client
    grid, :meth:`client_grid`; MimeLite's client optimizer is Adam, the
    others' SGD), ``server_momentum`` (None: the
    algorithm's default) and ``clients`` per round (None:
    ``clients_per_round``); the rounds keep the examples equal."""
    local_steps = self.max_local_steps if local_steps is None else local_steps
    clients = self.clients_per_round if clients is None else clients
    rounds = self.rounds_for(local_steps, clients)
    return SimulationConfig(
        model=self.spec,
        algorithm=AlgorithmConfig(
            algorithm=algorithm,
            client_optimizer=default_client_optimizer(algorithm),
            client_learning_rate=(client_learning_rate
                                  or self.client_grid(algorithm)[0]),
            server_learning_rate=server_learning_rate,
            **({} if server_momentum is None
               else {"server_momentum": server_momentum})),
        partition=partition, rounds=rounds,
        clients_per_round=clients, batch_size=self.batch_size,
        max_local_steps=local_steps,
        eval_every=max(1, self.eval_every * rounds // self.rounds),
        seed=self.seed, num_workers=self.num_workers)


def mixed_label(mix: float) -> str:
  """Row label of the FedAvg run on the ``mixed`` partition with knob p."""
  return f"fedavg mixed p={mix:g}"


def _relative_column(column: str) -> str:
  return f"{column} % of centralized"


def _pairing_column(task: str) -> str:
  return f"{task} %"


def _dir_name(label: str) -> str:
  return label.replace(",", "").replace(" ", "_")


def _quality(scores: Mapping[str, float], tasks: Sequence[str]
             ) -> dict[str, float]:
  return {column: scores[column] for column in (*tasks, RETRIEVAL_METRIC)
          if column in scores}


def _reference(row: str) -> Optional[str]:
  """The centralized row that ``row`` is compared with (None: none)."""
  if row.startswith("centralized "):
    return row
  algorithm = "fedavg" if row.startswith("fedavg mixed") else row
  if algorithm in PAIRED_OPTIMIZER:
    return centralized_label(PAIRED_OPTIMIZER[algorithm])
  return None


def _with_relative(rows: dict[str, dict[str, float]], columns: Sequence[str]
                   ) -> dict[str, dict[str, float]]:
  """Adds "% of centralized" (its paired centralized run) on ``columns``."""
  out = {}
  for name, values in rows.items():
    reference = rows.get(_reference(name) or "", {})
    out[name] = {**values, **{
        _relative_column(column): 100.0 * values[column] / reference[column]
        for column in columns
        if column in values and reference.get(column, 0.0) > 0}}
  return out


def format_table(rows: Mapping[str, Mapping[str, float]]) -> str:
  """Markdown table: scores to 3 decimals, costs and percentages shorter."""
  columns = list(dict.fromkeys(c for values in rows.values() for c in values))

  def cell(column: str, value: Optional[float]) -> str:
    if value is None:
      return "-"
    if column in (EXAMPLES, "picked", ROUNDS, LOCAL_STEPS, CLIENTS, STEPS,
                  BATCH_SIZE, DIVERGED, COLLAPSED) or column.endswith(
                      _TEST_CLIPS):
      return f"{value:.0f}"
    if column in (WIRE_MB, EFFECTIVE_RANK) or column.endswith(
        ("%", "% of centralized")):
      return f"{value:.1f}"
    if column in (TFLOPS, LEARNING_RATE, CLIENT_LR, SERVER_MOMENTUM):
      return f"{value:.4g}"
    return f"{value:.3f}"

  lines = ["| run | " + " | ".join(columns) + " |",
           "|---|" + "---:|" * len(columns)]
  lines += [f"| {name} | " + " | ".join(cell(c, values.get(c))
                                        for c in columns) + " |"
            for name, values in rows.items()]
  return "\n".join(lines)


_TEST_CLIPS = " test clips"


def _stderr_row(selection: evaluation.NestedSelection) -> dict[str, float]:
  """Per task: test predictions and binomial standard error."""
  out = {}
  for task, stderr in selection.stderr.items():
    out[f"{task}{_TEST_CLIPS}"] = float(selection.num_test[task])
    out[f"{task} stderr"] = stderr
  return out


def _cost_row(examples: float, flops: float, wire_bytes: float
              ) -> dict[str, float]:
  return {EXAMPLES: examples, TFLOPS: flops / 1e12, WIRE_MB: wire_bytes / 1e6}


def _validation_tasks(table, config: FederatedQualityConfig) -> list[str]:
  """Probe tasks that have test, validation and fit parts in every fold."""
  tasks = []
  for task in evaluation.default_tasks(table):
    try:
      evaluation.nested_cross_validation_splits(
          table, task, folds=config.probe_folds,
          validation_folds=config.validation_folds,
          validation_fraction=config.validation_fraction, seed=config.seed)
    except ValueError as error:
      logging.warning("not probing %r: %s", task, error)
      continue
    tasks.append(task)
  if not tasks:
    raise ValueError(f"federated quality: no probe task of {table.name} can "
                     f"be split into fit, validation and test parts")
  return tasks


def _select(validation: dict[str, dict[str, float]], labels: Sequence[str],
            embeddings: Mapping[str, np.ndarray], rows: np.ndarray, table,
            tasks: Sequence[str], config: FederatedQualityConfig
            ) -> evaluation.NestedSelection:
  """Chooses among ``labels`` by nested cross-validation of the probes.

  Diverged candidates (``validation[label][DIVERGED]``) and collapsed ones
  (:func:`model.evaluation.is_collapsed` of ``embeddings[label]``; logged)
  are left out. Fills each candidate's validation row: the effective rank
  of its embeddings and whether it collapsed (diverged ones: neither), its
  validation accuracy per task (pooled over every test fold's validation
  folds), their mean, and ``picked``, the number of test folds it was
  chosen in.

  Raises:
    RuntimeError: Every candidate diverged or collapsed (the message names
      each and why).
  """
  usable, dropped = [], []
  for label in labels:
    row = validation[label]
    if row.get(DIVERGED):
      dropped.append(f"{label} (diverged: non-finite loss or weights)")
      continue
    row[EFFECTIVE_RANK] = evaluation.effective_rank(embeddings[label])
    row[COLLAPSED] = float(evaluation.is_collapsed(embeddings[label]))
    if row[COLLAPSED]:
      logging.warning(
          "%s collapsed (effective rank %.2f of its probe-clip embeddings, "
          "below %g) and is left out of the picks", label,
          row[EFFECTIVE_RANK], evaluation.COLLAPSE_RANK)
      dropped.append(f"{label} (collapsed: effective rank "
                     f"{row[EFFECTIVE_RANK]:.2f} < "
                     f"{evaluation.COLLAPSE_RANK:g})")
    else:
      usable.append(label)
  if not usable:
    raise RuntimeError(f"federated quality: every candidate diverged or "
                       f"collapsed: {'; '.join(dropped)}; try smaller "
                       f"learning rates")
  selection = evaluation.nested_probe_selection(
      {label: embeddings[label] for label in usable}, rows, table,
      tasks=tasks, folds=config.probe_folds,
      validation_folds=config.validation_folds,
      validation_fraction=config.validation_fraction, seed=config.seed)
  for label in labels:
    scores = selection.validation.get(label)
    if scores:
      validation[label].update(scores)
      validation[label][VALIDATION_MEAN] = float(np.mean(list(
          scores.values())))
    validation[label]["picked"] = float(selection.times_picked(label))
  return selection


def _diverged(label: str, error: Exception, settings: Mapping[str, float]
              ) -> dict[str, float]:
  """The validation row of a candidate whose training diverged."""
  logging.warning("%s diverged and is left out of the picks: %s", label,
                  error)
  return {**settings, DIVERGED: 1.0}


def _describe(config: FederatedQualityConfig, name: str,
              pick: Mapping[str, float]) -> str:
  """The picked settings of run ``name``: learning rate, and the schedule
  or batch size where several were tried."""
  text = f"{pick[LEARNING_RATE]:g}"
  client_grid = (config.client_grid(name) if name in PAIRED_OPTIMIZER
                 else config.client_lrs)
  if CLIENT_LR in pick and len(client_grid) > 1:
    text += f", client lr {pick[CLIENT_LR]:g}"
  if SERVER_MOMENTUM in pick and len(config.adaptive_server_momenta) > 1:
    text += f", momentum {pick[SERVER_MOMENTUM]:g}"
  if LOCAL_STEPS in pick and (len(config.local_steps) > 1
                              or len(config.clients) > 1):
    text += f", {pick[ROUNDS]:.0f} rounds x "
    if len(config.clients) > 1:
      text += f"{pick[CLIENTS]:.0f} clients x "
    text += f"{pick[LOCAL_STEPS]:.0f} local steps"
  if BATCH_SIZE in pick and len(config.batch_sizes) > 1:
    text += f", batch {pick[BATCH_SIZE]:.0f}"
  if config.probe_folds > 1:
    text += f"; {pick['picked']:.0f} of {config.probe_folds} folds"
  return text


def _pairing_rows(rows: Mapping[str, Mapping[str, float]],
                  config: FederatedQualityConfig, tasks: Sequence[str],
                  picks: Mapping[str, Mapping[str, float]]
                  ) -> dict[str, dict[str, float]]:
  """Per federated row: its % of the paired centralized run per probe."""
  out = {}
  for name in config.algorithms:
    reference = _reference(name)
    label = (f"{name} (server lr {_describe(config, name, picks[name])}) vs "
             f"{reference} (lr {_describe(config, reference, picks[reference])})")
    out[label] = {_pairing_column(task): rows[name][_relative_column(task)]
                  for task in tasks if _relative_column(task) in rows[name]}
  return out


def _goal_lines(pairings: Mapping[str, Mapping[str, float]]) -> list[str]:
  lines = []
  for label, values in pairings.items():
    below = [f"`{column[:-2]}` {value:.1f}%"
             for column, value in values.items() if value < FEDERATED_GOAL]
    verdict = ("met on every probe" if not below
               else "NOT met: " + ", ".join(below))
    lines.append(f"- {label}: goal >= {FEDERATED_GOAL:g}% {verdict}.")
  return lines


def run_federated_quality_benchmark(config: FederatedQualityConfig, *,
                                    show_progress: bool = True
                                    ) -> dict[str, dict[str, float]]:
  """Tunes and runs each pairing of federated and centralized training.

  Every federated algorithm runs :func:`tff_sim.simulation.run_simulation` on
  the natural partition once per server learning rate of its grid; every
  centralized optimizer of :data:`PAIRED_OPTIMIZER` trains the same task and
  encoder on all training segments for as many examples as the federated
  runs saw, once per learning rate of its grid (same grid size). Each run's
  final encoder embeds the probe clips once; in every test fold
  (``config.probe_folds``) the candidate with the best mean accuracy on the
  validation folds inside the fold's train part is chosen and scored on the
  fold's test part (:func:`model.evaluation.nested_probe_selection`), so no
  choice sees the clips it is scored on; test accuracies are pooled over the
  folds. Retrieval, costs, curves and the ``mixed`` partition runs use the
  candidate chosen in most folds. Runs live in ``<out_dir>/runs/<run>`` and
  are resumed or reused by a rerun.

  Args:
    config: What to run.
    show_progress: Show progress bars.

  Returns:
    Rows (:data:`RANDOM_INIT`, ``LOGMEL_BASELINE``, the centralized picks,
    the federated picks, then the mixed runs) of test accuracies,
    ``retrieval_map``, :data:`COST_COLUMNS` and "% of centralized" against
    the paired centralized run on every probe and retrieval. Written to
    ``results.csv`` and ``report.md`` with ``quality_vs_cost.png``; every
    run's validation scores to ``validation.csv``; each pairing's "% of
    centralized" per probe to ``pairings.csv``.
  """
  start = time.time()
  spec = config.spec
  table, waveforms, _ = decode_clips(
      synthetic.generate_corpus(config.corpus_path,
                                synthetic.CORPUS_PRESETS[config.corpus],
                                show_progress=show_progress),
      sample_rate=spec.frontend.sample_rate, show_progress=show_progress)
  runs_dir = os.path.join(config.out_dir, "runs")
  costs = CostModel.for_model(SSLModel(spec))
  tasks = _validation_tasks(table, config)
  labelled = np.flatnonzero([bool(clip.labels) for clip in table])
  probe = dict(table=table, waveforms=waveforms, frontend=spec.frontend,
               seed=config.seed, tasks=tasks, probe_folds=config.probe_folds)

  def embed(encoder: Encoder) -> np.ndarray:
    return evaluation.clip_embeddings(
        encoder, [waveforms[i] for i in labelled], spec.frontend)

  def test_scores(selection: evaluation.NestedSelection,
                  embeddings: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The nested test accuracies and the most picked run's retrieval."""
    retrieval = evaluation.probe_embeddings(
        embeddings[selection.most_picked], labelled, table, tasks=(),
        seed=config.seed).as_dict()
    return {**selection.accuracy, **retrieval}

  validation, picks, embeddings = {}, {}, {}
  federated, curves, walls, stderrs = {}, {}, {}, {}

  def simulate(label: str, algorithm: str, partition: PartitionConfig,
               learning_rate: float, local_steps: Optional[int] = None,
               client_learning_rate: Optional[float] = None,
               server_momentum: Optional[float] = None,
               clients: Optional[int] = None):
    run_dir = os.path.join(runs_dir, _dir_name(label))
    result = run_simulation(
        config.simulation(algorithm, partition, learning_rate, local_steps,
                          client_learning_rate, server_momentum, clients),
        table, waveforms, run_dir, show_progress=show_progress)
    totals = result.totals
    cost = _cost_row(totals["examples"], totals["client_flops"],
                     totals["bytes_down"] + totals["bytes_up"])
    return result, cost

  def attempt(label: str, train: Callable[[], Any],
              encoder_of: Callable[[Any], Encoder]) -> Any:
    """``train()``'s run with its probe embeddings kept, or None (and a
    ``diverged`` validation row) when its training diverged."""
    try:
      run = train()
      logging.info("embedding the probe clips with %s", label)
      embedded = embed(encoder_of(run))
      if not np.all(np.isfinite(embedded)):
        raise FloatingPointError(f"{label}: the probe clips' embeddings are "
                                 f"not finite")
      embeddings[label] = embedded
      return run
    except _DIVERGENCE as error:
      validation[label] = _diverged(label, error, validation[label])
      return None

  natural = PartitionConfig(method="natural", seed=config.seed)
  for algorithm in config.algorithms:
    candidates = {}
    momenta = config.server_momenta(algorithm)
    client_grid = config.client_grid(algorithm)
    for lr, client_lr, k, c, momentum in itertools.product(
        config.server_grid(algorithm), client_grid, config.local_steps,
        config.clients, momenta):
      label = f"{algorithm} server lr {lr:g}"
      if len(client_grid) > 1:
        label += f" client lr {client_lr:g}"
      if len(config.local_steps) > 1:
        label += f" local steps {k}"
      if len(config.clients) > 1:
        label += f" clients {c}"
      if len(momenta) > 1:
        label += f" momentum {momentum:g}"
      settings = {CLIENT_LR: client_lr, ROUNDS: config.rounds_for(k, c),
                  LOCAL_STEPS: k, CLIENTS: c}
      if momentum is not None:
        settings[SERVER_MOMENTUM] = momentum
      validation[label] = {LEARNING_RATE: lr, **settings}
      candidates[label] = attempt(
          label, lambda: simulate(label, algorithm, natural, lr, k,
                                  client_lr, momentum, c),
          lambda run: load_model(run[0].model_dir).encoder)
    selection = _select(validation, list(candidates), embeddings, labelled,
                        table, tasks, config)
    chosen = selection.most_picked
    result, cost = candidates[chosen]
    picks[algorithm] = validation[chosen]
    federated[algorithm] = (test_scores(selection, embeddings), cost)
    stderrs[algorithm] = _stderr_row(selection)
    curves[algorithm] = read_release_csv(os.path.join(result.run_dir,
                                                      "eval.csv"))
    walls[algorithm] = result.totals["wall_s"]
  for p in config.mixes:
    label = mixed_label(p)
    result, cost = simulate(label, "fedavg", PartitionConfig(
        method="mixed", mix=p, seed=config.seed),
        picks["fedavg"][LEARNING_RATE], int(picks["fedavg"][LOCAL_STEPS]),
        picks["fedavg"][CLIENT_LR], clients=int(picks["fedavg"][CLIENTS]))
    federated[label] = (evaluation.evaluate_encoder(
        load_model(result.model_dir).encoder, **probe), cost)
    curves[label] = read_release_csv(os.path.join(result.run_dir, "eval.csv"))
    walls[label] = result.totals["wall_s"]

  examples = federated[config.algorithms[0]][1][EXAMPLES]
  seen = {label: cost[EXAMPLES] for label, (_, cost) in federated.items()
          if label in config.algorithms}
  if len(set(seen.values())) > 1:
    raise RuntimeError(f"federated quality: the natural-partition runs saw "
                       f"different numbers of examples: {seen}")
  segments = training_segments(waveforms, spec).waveforms
  central, central_costs = {}, {}
  for optimizer in dict.fromkeys(PAIRED_OPTIMIZER[a]
                                 for a in config.algorithms):
    candidates = {}
    for lr in config.centralized_grid(optimizer):
      for batch_size in config.batch_sizes:
        label = f"{centralized_label(optimizer)} lr {lr:g}"
        if len(config.batch_sizes) > 1:
          label += f" batch {batch_size}"
        steps = max(1, round(examples / batch_size))
        validation[label] = {LEARNING_RATE: lr, STEPS: steps,
                             BATCH_SIZE: batch_size}
        candidates[label] = attempt(
            label, lambda: train_centralized(
                spec, TrainConfig(steps=steps, batch_size=batch_size,
                                  seed=config.seed, optimizer=optimizer,
                                  learning_rate=lr, momentum=0.0),
                segments, os.path.join(runs_dir, _dir_name(label)),
                dataset_info={"kind": "synthetic", "preset": config.corpus},
                show_progress=show_progress),
            lambda run: run.model.encoder)
    selection = _select(validation, list(candidates), embeddings, labelled,
                        table, tasks, config)
    chosen = selection.most_picked
    row = centralized_label(optimizer)
    picks[row] = validation[chosen]
    walls[row] = candidates[chosen].wall_s
    steps, batch_size = int(picks[row][STEPS]), int(picks[row][BATCH_SIZE])
    central_costs[row] = _cost_row(
        steps * batch_size, steps * batch_size * costs.flops_per_example, 0)
    central[row] = test_scores(selection, embeddings)
    stderrs[row] = _stderr_row(selection)
    curves[row] = [{**central[row], "cumulative_bytes_up": 0.0,
                    "cumulative_client_flops":
                        central_costs[row][TFLOPS] * 1e12}]
  random_scores = evaluation.evaluate_encoder(
      Encoder(spec.encoder, seed=config.seed), **probe)
  baseline_scores = evaluation.evaluate_logmel_baseline(**probe)

  rows = {RANDOM_INIT: {**_quality(random_scores, tasks),
                        **_cost_row(0, 0, 0)},
          evaluation.LOGMEL_BASELINE: {**_quality(baseline_scores, tasks),
                                       **_cost_row(0, 0, 0)}}
  rows.update({label: {**_quality(scores, tasks), **central_costs[label]}
               for label, scores in central.items()})
  rows.update({label: {**_quality(scores, tasks), **cost}
               for label, (scores, cost) in federated.items()})
  rows = _with_relative(rows, [*tasks, RETRIEVAL_METRIC])
  pairings = _pairing_rows(rows, config, tasks, picks)

  metrics = [*tasks, RETRIEVAL_METRIC]
  plot_quality_vs_cost_runs(curves, metrics, os.path.join(
      config.out_dir, "quality_vs_cost.png"))
  evaluation.write_csv(rows, os.path.join(config.out_dir, "results.csv"))
  evaluation.write_csv(validation, os.path.join(config.out_dir,
                                                "validation.csv"))
  evaluation.write_csv(pairings, os.path.join(config.out_dir,
                                              "pairings.csv"))
  with open(os.path.join(config.out_dir, CONFIG_FILE), "w") as f:
    json.dump(dataclasses.asdict(config), f, indent=2)
  with open(os.path.join(config.out_dir, "report.md"), "w") as f:
    f.write(_report(config, rows, validation, pairings, picks, walls,
                    stderrs, time.time() - start))
  return rows


def _report(config: FederatedQualityConfig,
            rows: Mapping[str, Mapping[str, float]],
            validation: Mapping[str, Mapping[str, float]],
            pairings: Mapping[str, Mapping[str, float]],
            picks: Mapping[str, Mapping[str, float]],
            walls: Mapping[str, float],
            stderrs: Mapping[str, Mapping[str, float]], wall_s: float) -> str:
  """The Markdown report: pairings, goal, test table, validation, runs."""
  grids = [f"{a} server lr {config.server_grid(a)}" for a in config.algorithms]
  grids += [f"{centralized_label(o)} lr {config.centralized_grid(o)}"
            for o in dict.fromkeys(PAIRED_OPTIMIZER[a]
                                   for a in config.algorithms)]
  if len(config.client_lrs) > 1 and set(config.algorithms) - {"mimelite"}:
    grids.append("x client learning rate of every client-SGD run "
                 f"{config.client_lrs}")
  if "mimelite" in config.algorithms:
    grids.append("x client Adam learning rate of mimelite "
                 f"{config.client_grid('mimelite')}")
  if len(config.adaptive_server_momenta) > 1:
    grids.append("x server momentum (beta_1) of every adaptive run "
                 f"{config.adaptive_server_momenta}")
  if len(config.local_steps) > 1:
    grids.append("x local steps per round of every federated run "
                 f"{config.local_steps} (rounds scaled for equal examples: "
                 + ", ".join(f"{config.rounds_for(k)} x {k}"
                             for k in config.local_steps) + ")")
  if len(config.clients) > 1:
    grids.append("x clients per round of every federated run "
                 f"{config.clients} (rounds scaled for equal examples: "
                 + ", ".join(f"{config.rounds_for(k, c)} x {c} x {k} steps"
                             for c in config.clients
                             for k in config.local_steps) + ")")
  if len(config.batch_sizes) > 1:
    grids.append("x batch size of every centralized run "
                 f"{config.batch_sizes}")
  examples = rows[config.algorithms[0]][EXAMPLES]
  steps = " or ".join(f"{max(1, round(examples / b))} steps of batch {b}"
                      for b in config.batch_sizes)
  return "\n".join([
      f"# Federated vs. centralized: {config.task}, {config.encoder} encoder "
      f"({config.pooling} pooling), "
      f"{config.corpus} corpus", "",
      "Like with like: " + ", ".join(
          f"`{a}` vs `{centralized_label(PAIRED_OPTIMIZER[a])}`"
          for a in config.algorithms) + ". Federated runs: "
      f"{config.rounds} rounds x {config.clients_per_round} clients x <= "
      f"{config.max_local_steps} local steps of batch {config.batch_size} "
      "(SGD; mimelite: Adam with the server's moments, after a full-batch "
      "gradient pass over the same batches), natural "
      f"partition unless named. Centralized runs: {steps} on all training "
      "segments, i.e. as many examples as each federated run saw; their "
      "`client TFLOPs` is the same training compute in one place, with "
      "nothing on the wire.", "",
      "Candidates (as many on both sides of each pairing): "
      + "; ".join(grids) + ". " + _choice_text(config) + " Picks ("
      + ("the candidate chosen in most test folds" if config.probe_folds > 1
         else "the chosen candidate") + "): "
      + "; ".join(f"{name} {_describe(config, name, pick)}"
                  for name, pick in picks.items()) + ".", "",
      "## % of the paired centralized run (test)", "",
      format_table(pairings), "",
      *_goal_lines(pairings), "",
      "## Test", "",
      "Linear-probe accuracy of the chosen encoders (test speakers unseen in "
      "the probe's training except for `speaker`) and keyword retrieval mean "
      "average precision" + (" (of the candidate chosen in most folds)"
                             if config.probe_folds > 1 else "")
      + "; % of centralized against each row's paired run.", "",
      format_table(rows), "",
      "Test predictions and binomial standard error of each accuracy (a lower "
      "bound: clips of one speaker are not independent):", "",
      format_table(stderrs), "",
      "## Validation (choice of learning rate and schedule)", "",
      "Linear-probe accuracy of every candidate on the validation parts"
      + (f", pooled over the {config.probe_folds} test folds; `picked`: "
         "test folds it was chosen in" if config.probe_folds > 1 else "")
      + f". `{EFFECTIVE_RANK}`: of its embeddings of the probe clips; "
      f"`{COLLAPSED}` (1: rank below {evaluation.COLLAPSE_RANK:g}) and "
      f"`{DIVERGED}` (non-finite loss or weights) candidates are never "
      "picked and have no probe cells.", "",
      format_table(validation), "",
      "Training wall time of the picked runs (federated: cumulative over "
      "resumes; centralized: this invocation only): " + ", ".join(
          f"{name} {seconds:.0f} s" for name, seconds in walls.items())
      + f". Whole invocation: {wall_s:.0f} s.", "",
      "```json", json.dumps(dataclasses.asdict(config), indent=2), "```", ""])


def _choice_text(config: FederatedQualityConfig) -> str:
  """How the candidates are chosen and scored, in words."""
  if config.validation_folds > 1:
    inner = (f"{config.validation_folds} validation folds (whole speakers, or "
             "clips within speakers for `speaker`)")
  else:
    inner = (f"a validation part ({config.validation_fraction:g} of the "
             "speakers, or of the clips for `speaker`)")
  if config.probe_folds > 1:
    return (f"Nested cross-validation: every probe has {config.probe_folds} "
            "test folds (whole speakers on either side, within speakers for "
            f"`speaker`); in each, the candidate with the best mean "
            f"linear-probe accuracy on {inner} inside the fold's train part "
            "is chosen and scored on the fold's test part, so no choice sees "
            "the clips it is scored on. Test accuracies are pooled over the "
            "folds (every labelled clip tested once).")
  return (f"Each is picked by the mean linear-probe accuracy on {inner} "
          "carved out of the train split; the test split is used only to "
          "score the picks.")


def _seed_statistics(per_seed: Mapping[int, Mapping[str, Mapping[str, float]]]
                     ) -> dict[str, dict[str, SeedStatistics]]:
  """Per algorithm and probe: "% of centralized" of every seed that has it."""
  first = next(iter(per_seed.values()))
  return {algorithm: {column: SeedStatistics(tuple(
      pairings[algorithm][column] for pairings in per_seed.values()
      if column in pairings[algorithm])) for column in columns}
          for algorithm, columns in first.items()}


def _seed_summary(statistics: Mapping[str, Mapping[str, SeedStatistics]]
                  ) -> dict[str, dict[str, float]]:
  """Per algorithm and probe: mean, sample std and minimum over seeds of
  "% of centralized"."""
  return {algorithm: {f"{column} {name}": value
                      for column, cell in columns.items()
                      for name, value in (("mean", cell.mean),
                                          ("std", cell.std),
                                          ("min", min(cell.values)))}
          for algorithm, columns in statistics.items()}


def run_federated_quality_seeds(config: FederatedQualityConfig, *,
                                show_progress: bool = True
                                ) -> dict[str, dict[str, float]]:
  """:func:`run_federated_quality_benchmark` once per seed of
  ``config.seeds``, tuning included, and the spread of the pairings.

  With one seed the benchmark writes to ``out_dir`` as it does alone; with
  several each seed writes to ``<out_dir>/seed_<s>`` (one shared corpus) and
  ``out_dir`` gets the summary of :func:`combine_federated_quality_seeds`.

  Args:
    config: What to run.
    show_progress: Show progress bars.

  Returns:
    Per federated algorithm: ``"<probe> % mean"``, ``"<probe> % std"`` and
    ``"<probe> % min"`` over the seeds.
  """
  start = time.time()
  for seed in config.seeds:
    logging.info("federated quality: seed %d", seed)
    seed_config = config
    if config.num_seeds > 1:
      seed_config = _seed_config(config, seed)
    run_federated_quality_benchmark(seed_config, show_progress=show_progress)
  if config.num_seeds == 1:
    return _seed_summary(_seed_statistics({config.seed: _pairings_by_algorithm(
        config.out_dir)[0]}))
  return combine_federated_quality_seeds(
      config, whole_invocation_s=time.time() - start)


def combine_federated_quality_seeds(
    config: FederatedQualityConfig, *,
    whole_invocation_s: Optional[float] = None
) -> dict[str, dict[str, float]]:
  """The summary over seeds of finished per-seed benchmarks, trained nothing.

  Reads ``<out_dir>/seed_<s>/pairings.csv`` and ``config.json`` for every
  seed of ``config.seeds``, e.g. seeds run as separate invocations (one per
  machine) with ``--seed s --num_seeds 1 --out_dir <out_dir>/seed_<s>``.
  Every seed's ``config.json`` must equal ``config`` with that seed on every
  field but :data:`_PLACEMENT_FIELDS`, so that seeds of different studies are
  never averaged. Writes ``seeds.csv`` (every seed's "% of centralized" per
  probe), ``summary.csv``, ``summary.png`` and ``report.md`` (mean ± sample
  std over seeds, the goal judged on the mean and on the worst seed, and
  each mean's 95 % interval against the goal) to ``out_dir``.

  Args:
    config: The study over all its seeds (``num_seeds`` >= 2).
    whole_invocation_s: Wall time of the invocation that ran the seeds, for
      the report; None: the seeds were run separately.

  Returns:
    Per federated algorithm: ``"<probe> % mean"``, ``"<probe> % std"`` and
    ``"<probe> % min"`` over the seeds.

  Raises:
    FileNotFoundError: A seed's ``pairings.csv`` or ``config.json`` is
      missing (the seed has not finished).
    SeedResultsMismatch: A seed ran with other settings.
  """
  if config.num_seeds < 2:
    raise ValueError(f"combining seeds needs num_seeds >= 2, got "
                     f"{config.num_seeds}")
  per_seed, labels = {}, {}
  for seed in config.seeds:
    seed_dir = _seed_config(config, seed).out_dir
    _check_seed_config(config, seed, os.path.join(seed_dir, CONFIG_FILE))
    per_seed[seed], labels[seed] = _pairings_by_algorithm(seed_dir)
  statistics = _seed_statistics(per_seed)
  summary = _seed_summary(statistics)
  evaluation.write_csv({f"{algorithm} seed {seed}": values
                        for seed, pairings in per_seed.items()
                        for algorithm, values in pairings.items()},
                       os.path.join(config.out_dir, "seeds.csv"))
  evaluation.write_csv(summary, os.path.join(config.out_dir, "summary.csv"))
  columns = list(dict.fromkeys(c.rsplit(" ", 1)[0]
                               for values in summary.values() for c in values))
  evaluation.plot_quality_table(
      {a: {c: v[f"{c} mean"] for c in columns} for a, v in summary.items()},
      os.path.join(config.out_dir, "summary.png"),
      title=f"Federated vs. centralized over {config.num_seeds} seeds "
            f"(goal >= {FEDERATED_GOAL:g}%)",
      ylabel="% of the paired centralized run (mean ± std)",
      errors={a: {c: v[f"{c} std"] for c in columns}
              for a, v in summary.items()}, goal=FEDERATED_GOAL)
  with open(os.path.join(config.out_dir, "report.md"), "w") as f:
    f.write(_seeds_report(config, summary, statistics, labels,
                          whole_invocation_s))
  return summary


class SeedResultsMismatch(ValueError, UserError):
  """A seed's finished benchmark ran with other settings than the summary."""


#: The per-seed ``config.json`` of a finished benchmark.
CONFIG_FILE = "config.json"

#: Fields that place a run (where, how many processes) without changing its
#: results; combining seeds does not compare them.
_PLACEMENT_FIELDS = ("corpus_dir", "out_dir", "num_workers", "num_seeds")


def _seed_config(config: FederatedQualityConfig,
                 seed: int) -> FederatedQualityConfig:
  """One seed's benchmark of a study over several seeds."""
  return dataclasses.replace(
      config, seed=seed, num_seeds=1, corpus_dir=config.corpus_path,
      out_dir=os.path.join(config.out_dir, f"seed_{seed}"))


def _check_seed_config(config: FederatedQualityConfig, seed: int,
                       path: str) -> None:
  """Raises :class:`SeedResultsMismatch` naming every field in which the
  ``config.json`` at ``path`` differs from ``config`` at ``seed``."""
  with open(path) as f:
    found = json.load(f)
  # Seeds finished before the pooling field existed ran with global max.
  found.setdefault("pooling", "max")
  expected = json.loads(json.dumps(dataclasses.asdict(
      dataclasses.replace(config, seed=seed))))
  if diff := differing_fields(found, expected, ignore=_PLACEMENT_FIELDS):
    raise SeedResultsMismatch(
        f"{path}: seed {seed} ran with other settings than the summary asks "
        "for: " + "; ".join(f"{name}: expected {expected.get(name)!r}, got "
                            f"{found.get(name)!r}" for name in diff))


def _pairings_by_algorithm(out_dir: str
                           ) -> tuple[dict[str, dict[str, float]], list[str]]:
  """A finished benchmark's "% of centralized" per federated algorithm and
  probe, and its pairings' labels (``<out_dir>/pairings.csv``)."""
  with open(os.path.join(out_dir, "pairings.csv"), newline="") as f:
    rows = {row.pop("model"): {k: float(v) for k, v in row.items() if v}
            for row in csv.DictReader(f)}
  return ({label.split(" ", 1)[0]: values for label, values in rows.items()},
          list(rows))


def _pairing_label(algorithm: str) -> str:
  """``"<algorithm> vs centralized <optimizer>"``: a row of the seed report."""
  return f"{algorithm} vs {centralized_label(PAIRED_OPTIMIZER[algorithm])}"


def _precision_lines(statistics: Mapping[str, Mapping[str, SeedStatistics]]
                     ) -> list[str]:
  """Per pairing and probe: the 95 % interval of the mean, where it lies
  against the goal and the seeds a +-GOAL_HALF_WIDTH interval would need."""
  lines = [
      "Precision of the means: the 95 % Student-t interval of each mean over "
      "the seeds, where it lies against the goal (above, below, or "
      "undecided: the interval holds the goal), and how many seeds would "
      f"narrow it to ± {GOAL_HALF_WIDTH:g} points if the spread stays as "
      "measured.", "",
      "| pairing | probe | seeds | mean % | 95 % interval | against the goal "
      f"| seeds for ± {GOAL_HALF_WIDTH:g} points |",
      "|---|---|---:|---:|---|---|---:|"]
  for algorithm, columns in statistics.items():
    pairing = _pairing_label(algorithm)
    for column, cell in columns.items():
      cells = ["-", "-", "-"]
      if len(cell.values) > 1:
        low, high = cell.confidence_interval(0.95)
        cells = [f"{low:.1f} to {high:.1f}",
                 ("above" if low >= FEDERATED_GOAL else
                  "below" if high < FEDERATED_GOAL else "undecided"),
                 str(cell.seeds_for_half_width(GOAL_HALF_WIDTH, 0.95))]
      lines.append(f"| {pairing} | {column.removesuffix(' %')} | "
                   f"{len(cell.values)} | {cell.mean:.1f} | "
                   + " | ".join(cells) + " |")
  return lines


def _seeds_report(config: FederatedQualityConfig,
                  summary: Mapping[str, Mapping[str, float]],
                  statistics: Mapping[str, Mapping[str, SeedStatistics]],
                  labels: Mapping[int, Sequence[str]],
                  wall_s: Optional[float]) -> str:
  """The Markdown report over seeds: mean ± std table, goal, precision of
  the means, picks."""
  columns = list(dict.fromkeys(c.rsplit(" ", 1)[0]
                               for values in summary.values() for c in values))
  lines = ["| pairing | " + " | ".join(columns) + " |",
           "|---|" + "---:|" * len(columns)]
  verdicts = []
  for algorithm, values in summary.items():
    pairing = _pairing_label(algorithm)
    lines.append(f"| {pairing} | " + " | ".join(
        f"{values[f'{c} mean']:.1f} ± {values[f'{c} std']:.1f}"
        for c in columns) + " |")
    low_mean = [f"`{c[:-2]}` {values[f'{c} mean']:.1f}%" for c in columns
                if values[f"{c} mean"] < FEDERATED_GOAL]
    low_min = [f"`{c[:-2]}` {values[f'{c} min']:.1f}%" for c in columns
               if values[f"{c} min"] < FEDERATED_GOAL]
    verdicts.append(
        f"- {pairing}: goal >= {FEDERATED_GOAL:g}% on the mean "
        + ("met on every probe" if not low_mean
           else "NOT met: " + ", ".join(low_mean))
        + "; on every seed " + ("met" if not low_min
                                else "NOT met (worst seed): "
                                + ", ".join(low_min)) + ".")
  picks = [f"- seed {seed}: " + "; ".join(names)
           for seed, names in labels.items()]
  return "\n".join([
      f"# Federated vs. centralized over {config.num_seeds} seeds: "
      f"{config.task}, {config.encoder} encoder ({config.pooling} pooling), "
      f"{config.corpus} corpus", "",
      "% of the paired centralized run on the test "
      + (f"folds ({config.probe_folds}-fold nested cross-validation of the "
         f"probes, {config.validation_folds} validation folds inside each)"
         if config.probe_folds > 1 else "split")
      + ", mean ± sample std over seeds "
      f"{', '.join(map(str, config.seeds))}; every seed makes its own choices "
      "on its validation data (reports in `seed_<s>/`).", "",
      *lines, "", *verdicts, "", *_precision_lines(statistics), "",
      "Picks per seed:", "", *picks, "",
      (f"Whole invocation: {wall_s:.0f} s." if wall_s is not None else
       "Combined from the seeds' separate invocations (their reports give "
       "their wall times)."), "",
      "```json", json.dumps(dataclasses.asdict(config), indent=2), "```", ""])
