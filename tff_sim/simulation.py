"""The federated training loop: sample clients, run rounds, evaluate, resume.

State goes through ``tff.program``: the learning state and the host-side
accounting are saved every round by a ``FileProgramStateManager`` (rerun the
same command after a kill and it resumes from the last saved round), metrics
are released to CSV and TensorBoard release managers. Client sampling, batch
order and in-graph random draws are functions of (seed, round, client), so a
resumed run reaches the same final metrics as an uninterrupted one.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import math
import os
import time
from typing import Callable, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
from tqdm import tqdm

from model import evaluation
from model.best_models import BestModels
from model.config_checks import require_non_negative, require_positive
from model.datasets.audio import decode_clips
from model.datasets.clips import ClipTable
from model.datasets.loaders import DatasetSource
from model.datasets.pipeline import training_segments
from model.errors import UserError, WeightsMismatchError
from model.run_dir import write_or_check_config
from model.saved_model import positional_weight_differences
from model.ssl_model import (ModelSpec, SSLModel, assign_weights, save_model,
                             upgrade_model_section)
from model.tasks import check_task_batch_size
from model.train import TrainConfig, train_centralized
from tff_sim import partition as partition_lib
from tff_sim.algorithms import AlgorithmConfig, build_process
from tff_sim.client_data import SegmentClientData, client_round_seed, round_dataset
from tff_sim.costs import CostModel
from tff_sim.execution import WorkerLostError, check_reachable, execution_context
from tff_sim.learning_model import model_fn_for
from tff_sim.report import plot_quality_vs_cost

__all__ = ["SimulationConfig", "SimulationResult", "run_simulation",
           "FederatedRun", "run_federated", "RETRIEVAL_METRIC",
           "PopulationTooSmallError"]

#: Name of the retrieval score among the evaluation metrics.
RETRIEVAL_METRIC = "retrieval_map"
_COST_FIELDS = ("examples", "client_flops", "bytes_down", "bytes_up", "wall_s")


class PopulationTooSmallError(ValueError, UserError):
  """More clients per round are asked for than the partition has."""


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
  """A federated self-supervised training run.

  Attributes:
    model: Task, encoder preset, front-end, initial-weight seed.
    algorithm: Federated algorithm and optimizers.
    partition: How clips are spread over clients.
    rounds: Federated rounds.
    clients_per_round: Clients sampled uniformly (without replacement) per
      round.
    batch_size: Static client batch size.
    local_epochs: Passes over a client's data per round.
    max_local_steps: Cap on local steps per round (0: no cap).
    weight_noise_std: Gaussian weight ("variational") noise in local training.
    eval_every: Rounds between linear-probe evaluations (and the last round).
    seed: Seed of client sampling, batch order and in-graph draws.
    num_workers: TFF worker processes; > 1 splits each round's clients.
    max_concurrent_clients: Per-worker limit of concurrent client updates
      (non-positive: unlimited).
    worker_addresses: ``host:port`` of running remote TFF workers
      (``python -m tff_sim.worker_main``) to use instead of ``num_workers``
      local ones.
  """

  model: ModelSpec = ModelSpec()
  algorithm: AlgorithmConfig = AlgorithmConfig()
  partition: partition_lib.PartitionConfig = partition_lib.PartitionConfig()
  rounds: int = 20
  clients_per_round: int = 4
  batch_size: int = 8
  local_epochs: int = 1
  max_local_steps: int = 10
  weight_noise_std: float = 0.0
  eval_every: int = 5
  seed: int = 0
  num_workers: int = 1
  max_concurrent_clients: int = -1
  worker_addresses: tuple[str, ...] = ()

  def __post_init__(self):
    object.__setattr__(self, "worker_addresses",
                       tuple(self.worker_addresses))
    require_positive(self, ("rounds", "clients_per_round", "batch_size",
                            "local_epochs", "eval_every", "num_workers"))
    require_non_negative(self, ("max_local_steps", "weight_noise_std"))
    check_task_batch_size(self.model.task, self.batch_size,
                          "SimulationConfig.batch_size")

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class SimulationResult:
  """What a simulation produced.

  Attributes:
    final_metrics: Evaluation of the final global model.
    best: Per downstream metric, ``(round, score)`` of the best global model.
    totals: Cumulative costs (``examples``, ``client_flops``, ``bytes_down``,
      ``bytes_up``, ``wall_s``).
    resumed_from: Round the run resumed after (0 for a fresh run).
    model_dir: Where the final global model was saved.
    run_dir: The run directory.
  """

  final_metrics: dict[str, float]
  best: dict[str, tuple[int, float]]
  totals: dict[str, float]
  resumed_from: int
  model_dir: str
  run_dir: str


def _local_steps(num_examples: int, config: SimulationConfig) -> int:
  steps = math.ceil(config.local_epochs * num_examples / config.batch_size)
  return min(steps, config.max_local_steps) if config.max_local_steps else steps


def _sample_clients(client_ids: Sequence[str], config: SimulationConfig,
                    round_num: int) -> list[str]:
  rng = np.random.default_rng([config.seed, round_num])
  return sorted(rng.choice(client_ids, size=config.clients_per_round,
                           replace=False).tolist())


def _host_state(metric_names: Sequence[str]) -> collections.OrderedDict:
  return collections.OrderedDict(
      costs=np.zeros(len(_COST_FIELDS), np.float64),
      best_scores=np.full(len(metric_names), -np.inf, np.float64),
      best_rounds=np.zeros(len(metric_names), np.int64))


def _best_index(metric_names: Sequence[str], host: collections.OrderedDict
                ) -> dict[str, tuple[int, float]]:
  """Best ``(round, score)`` per evaluated metric in the host state."""
  return {name: (int(host["best_rounds"][i]), float(host["best_scores"][i]))
          for i, name in enumerate(metric_names)
          if np.isfinite(host["best_scores"][i])}


#: What to do about a run directory saved by an earlier version.
_OUTDATED_RUN = ("The run was probably started by an earlier version of the "
                 "project; simulate into a new run directory, or resume it "
                 "with the version that started it")


def _check_resumed_weights(initial, loaded, reference: SSLModel,
                           source: str) -> None:
  """Raises if a loaded learning state does not fit this version's model.

  Same structure but other shapes loads silently (the saved state is a
  flat list of tensors) and fails later inside TFF's serialization.

  Raises:
    WeightsMismatchError: A global model weight (named, matched by position)
      or another state entry has another shape than this version builds.
  """
  differences = positional_weight_differences(
      {n: tuple(v.shape) for n, v in zip(reference.weight_names,
                                         reference.weights)},
      dict(enumerate(np.shape(w)
                     for w in loaded.global_model_weights.trainable)))
  if not differences:
    others = sum(np.shape(a) != np.shape(b) for a, b in zip(
        tf.nest.flatten(initial), tf.nest.flatten(loaded)))
    if others:
      differences = [f"{others} optimizer or aggregator state entries"]
  if differences:
    raise WeightsMismatchError(
        f"{source}: the saved state does not fit task "
        f"{reference.spec.task!r} with encoder "
        f"{reference.spec.encoder.name!r} as this version builds it "
        f"(weights matched by position): " + "; ".join(differences)
        + f". {_OUTDATED_RUN}")


def run_simulation(config: SimulationConfig, table: ClipTable,
                   waveforms: Sequence[np.ndarray], run_dir: str, *,
                   show_progress: bool = True) -> SimulationResult:
  """Runs (or resumes) a federated simulation on decoded clips.

  Args:
    config: The run.
    table: Clips (with client ids and downstream labels).
    waveforms: Decoded audio of ``table``'s clips, in order.
    run_dir: Run directory: ``config.json``, ``partition.{json,png}``,
      ``state/`` (program state), ``metrics.csv``, ``eval.csv``,
      ``tensorboard/``, ``best/`` (for every evaluated metric the global
      model of the round that scored best, ``best/<metric>/``, and
      ``best/best.json``: metric -> round and value; see
      :mod:`model.best_models`) and the final ``model/``.
    show_progress: Show a progress bar with round time and ETA.

  Returns:
    Final and best metrics and cost totals.

  Raises:
    model.run_dir.RunConfigMismatch: ``run_dir`` holds another run.
    PopulationTooSmallError: More clients per round than the partition
      has clients (checked before anything is written).
    tff_sim.execution.WorkerUnreachableError: A worker address does not
      answer (checked before anything is written).
    tff_sim.execution.WorkerLostError: A worker stopped answering during a
      round; the last completed round is kept, rerun to resume.
  """
  # Everything that can be refused is checked before the run dir is touched.
  segments = training_segments(waveforms, config.model)
  clients = partition_lib.partition(table, config.partition)
  client_data = SegmentClientData(segments, clients.clients)
  client_ids = client_data.client_ids
  if config.clients_per_round > len(client_ids):
    raise PopulationTooSmallError(
        f"SimulationConfig.clients_per_round is {config.clients_per_round} "
        f"but the {config.partition.method!r} partition of {table.name!r} "
        f"has only {len(client_ids)} clients with training examples")
  if config.worker_addresses:
    check_reachable(config.worker_addresses)
  os.makedirs(run_dir, exist_ok=True)
  write_or_check_config(run_dir, {"kind": "federated", **config.to_dict(),
                                  "data": {"name": table.name,
                                           "clips": len(table)}},
                        extendable=["num_workers",
                                    "max_concurrent_clients",
                                    "worker_addresses"],
                        growable=["rounds"],
                        upgrade=upgrade_model_section)
  summary = partition_lib.summarize(clients, table,
                                    label=config.partition.label)
  partition_lib.write_summary(summary, clients, run_dir)
  logging.info("partition: %s", partition_lib.format_summary(summary))

  reference = SSLModel(config.model)
  costs = CostModel.for_model(reference,
                              compressed=config.algorithm.compression,
                              algorithm=config.algorithm)
  metric_names = [*evaluation.default_tasks(table), RETRIEVAL_METRIC]
  process = build_process(
      model_fn_for(config.model, config.batch_size,
                   weight_noise_std=config.weight_noise_std),
      config.algorithm, clients_per_round=config.clients_per_round)

  state_manager = tff.program.FileProgramStateManager(
      os.path.join(run_dir, "state"), keep_total=2, keep_first=False)
  metrics_manager = tff.program.CSVFileReleaseManager(
      os.path.join(run_dir, "metrics.csv"), key_fieldname="round")
  eval_manager = tff.program.CSVFileReleaseManager(
      os.path.join(run_dir, "eval.csv"), key_fieldname="round")
  tensorboard = tff.program.TensorBoardReleaseManager(
      os.path.join(run_dir, "tensorboard"))

  def evaluate(weights) -> dict[str, float]:
    assign_weights(reference, dict(zip(reference.weight_names,
                                       weights.trainable)),
                   source="global model")
    return evaluation.evaluate_encoder(reference.encoder, table, waveforms,
                                       config.model.frontend, seed=config.seed)

  best_models = BestModels(run_dir)
  log_path = os.path.join(run_dir, "workers.log")
  with execution_context(config.num_workers,
                         max_concurrent_calls=config.max_concurrent_clients,
                         log_path=log_path,
                         addresses=config.worker_addresses) as workers:
    initial = (process.initialize(), _host_state(metric_names))
    state_dir = os.path.join(run_dir, "state")
    try:
      loaded, done = asyncio.run(state_manager.load_latest(initial))
    except (ValueError, TypeError) as e:
      raise WeightsMismatchError(
          f"{state_dir}: the saved federated state does not have the "
          f"structure this version builds for task {config.model.task!r} "
          f"with encoder {config.model.encoder.name!r} ({e}). "
          f"{_OUTDATED_RUN}") from e
    if loaded is not None:
      _check_resumed_weights(initial[0], loaded[0], reference,
                             f"{state_dir} (round {done})")
    state, host = loaded if loaded is not None else initial
    if done:
      logging.info("resuming %s after round %d", run_dir, done)
    best_models.recover(done, _best_index(metric_names, host))
    final_metrics: dict[str, float] = {}
    with tqdm(total=config.rounds, initial=done, unit="round",
              disable=not show_progress, dynamic_ncols=True,
              desc=f"{config.algorithm.algorithm} {config.model.task}") as bar:
      for round_num in range(done + 1, config.rounds + 1):
        start = time.perf_counter()
        sampled = _sample_clients(client_ids, config, round_num)
        steps = [_local_steps(client_data.num_examples(c), config)
                 for c in sampled]
        datasets = [
            round_dataset(client_data.waveforms(c), config.batch_size, n,
                          seed=client_round_seed(config.seed, round_num,
                                                 client_ids.index(c)))
            for c, n in zip(sampled, steps)]
        try:
          with workers.watch():
            output = process.next(state, datasets)
        except WorkerLostError as e:
          raise WorkerLostError(
              e.addresses,
              f"round {round_num} failed; rounds up to {round_num - 1} are "
              f"saved in {run_dir}/state: restart the worker(s) and rerun "
              f"the same command to resume") from None
        state = output.state
        train = output.metrics["client_work"]["train"]
        cost = costs.round_cost([n * config.batch_size for n in steps],
                                time.perf_counter() - start)
        host["costs"] = host["costs"] + np.array(
            [getattr(cost, f) for f in _COST_FIELDS], np.float64)
        loss = float(train["loss"])
        if not math.isfinite(loss):
          raise FloatingPointError(
              f"round {round_num}: client loss is {loss}; state of round "
              f"{done} is kept in {run_dir}/state. Lower the learning rates.")
        row = {"train_loss": loss, "clients": cost.clients,
               **{f: float(getattr(cost, f)) for f in _COST_FIELDS},
               **{f"cumulative_{f}": float(v)
                  for f, v in zip(_COST_FIELDS, host["costs"])}}
        if round_num % config.eval_every == 0 or round_num == config.rounds:
          scores = evaluate(process.get_model_weights(state))
          final_metrics = scores
          for i, name in enumerate(metric_names):
            if scores.get(name, -np.inf) > host["best_scores"][i]:
              host["best_scores"][i] = scores[name]
              host["best_rounds"][i] = round_num
              best_models.stage(round_num, name, scores[name], reference)
          eval_row = {**scores, **{f"cumulative_{f}": row[f"cumulative_{f}"]
                                   for f in _COST_FIELDS}}
          asyncio.run(eval_manager.release(eval_row, key=round_num))
          asyncio.run(tensorboard.release(
              {f"eval/{k}": v for k, v in scores.items()}, key=round_num))
        asyncio.run(metrics_manager.release(row, key=round_num))
        asyncio.run(tensorboard.release({"train/loss": loss}, key=round_num))
        asyncio.run(state_manager.save((state, host), version=round_num))
        best_models.commit(round_num, _best_index(metric_names, host))
        bar.set_postfix(loss=f"{loss:.4f}",
                        round_s=f"{time.perf_counter() - start:.1f}")
        bar.update(1)
    if not final_metrics:  # Nothing left to run: evaluate the saved state.
      final_metrics = evaluate(process.get_model_weights(state))
    else:
      assign_weights(reference, dict(zip(
          reference.weight_names, process.get_model_weights(state).trainable)),
                     source="global model")
  model_dir = os.path.join(run_dir, "model")
  save_model(reference, model_dir)
  return SimulationResult(
      final_metrics=final_metrics, best=_best_index(metric_names, host),
      totals=dict(zip(_COST_FIELDS, map(float, host["costs"]))),
      resumed_from=done, model_dir=model_dir, run_dir=run_dir)


@dataclasses.dataclass(frozen=True)
class FederatedRun:
  """What :func:`run_federated` produced.

  Attributes:
    result: The simulation.
    rows: Final evaluation by row name: the federated model, and with
      ``compare_centralized`` the centralized one (also in
      ``<run_dir>/comparison.csv``).
    plot: The quality-vs-cost plot.
    report: Costs, best round per metric, the evaluation table.
  """

  result: SimulationResult
  rows: dict[str, dict[str, float]]
  plot: str
  report: str


def run_federated(config: SimulationConfig, dataset: DatasetSource,
                  run_dir: str, *, compare_centralized: bool = False,
                  progress: Optional[Callable[[str], None]] = None
                  ) -> FederatedRun:
  """A federated run on a dataset on disk, as ``python -m tff_sim`` runs it.

  Decodes the clips, runs :func:`run_simulation` (resumable), plots quality
  vs cost, and with ``compare_centralized`` also trains centrally on the
  same segments for as many examples as the clients saw, evaluated like
  the federated model.

  Args:
    config: The simulation.
    dataset: The dataset.
    run_dir: Run directory (rerunning resumes; the centralized run goes to
      ``<run_dir>/centralized``).
    compare_centralized: Add the centralized run to the table.
    progress: Called with a line on the decoded data before the run.

  Returns:
    The run and its report.
  """
  spec = config.model
  table, waveforms, scan = decode_clips(
      dataset.load(), sample_rate=spec.frontend.sample_rate,
      show_progress=True)
  if progress:
    progress(scan.summary())
  result = run_simulation(config, table, waveforms, run_dir)
  plot = plot_quality_vs_cost(run_dir)
  totals = result.totals
  lines = [
      f"{config.rounds} rounds: {totals['examples']:.0f} client examples, "
      f"{totals['client_flops'] / 1e12:.3f} client TFLOPs, "
      f"{(totals['bytes_down'] + totals['bytes_up']) / 1e6:.1f} MB on the "
      f"wire, {totals['wall_s']:.0f} s; quality vs cost: {plot}",
      "best round per metric: " + ", ".join(
          f"{k} {v:.3f} (round {r})" for k, (r, v) in result.best.items())
      + f"; those models are in {run_dir}/best/<metric> (export one with "
      f"python -m export --model_dir {run_dir} --best_for <metric>)"]
  rows = {f"federated ({config.algorithm.algorithm})": result.final_metrics}
  if compare_centralized:
    steps = max(1, round(totals["examples"] / config.batch_size))
    central = train_centralized(
        spec, TrainConfig(steps=steps, batch_size=config.batch_size,
                          seed=config.seed),
        training_segments(waveforms, spec).waveforms,
        os.path.join(run_dir, "centralized"),
        dataset_info={"kind": dataset.kind, "clips": len(table)})
    rows["centralized (same examples)"] = evaluation.evaluate_encoder(
        central.model.encoder, table, waveforms, spec.frontend,
        seed=config.seed)
  lines.append(evaluation.format_markdown_table(rows))
  evaluation.write_csv(rows, os.path.join(run_dir, "comparison.csv"))
  return FederatedRun(result=result, rows=rows, plot=plot,
                      report="\n".join(lines))
