"""Federated (FedAvg, FedAdam, FedYogi) vs. centralized SSL quality at equal examples seen."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Mapping, Optional, Sequence

from model.config_checks import require_choice
from model import evaluation
from model.datasets import synthetic
from model.datasets.audio import decode_clips
from model.datasets.pipeline import training_segments
from model.encoders import ENCODERS, Encoder
from model.ssl_model import ModelSpec, SSLModel
from model.tasks import SSL_TASKS
from model.train import OPTIMIZERS, TrainConfig, train_centralized
from tff_sim.algorithms import ALGORITHMS, AlgorithmConfig
from tff_sim.costs import CostModel
from tff_sim.partition import PartitionConfig
from tff_sim.report import plot_quality_vs_cost_runs, read_release_csv
from tff_sim.simulation import (RETRIEVAL_METRIC, SimulationConfig,
                                run_simulation)

__all__ = ["CENTRALIZED", "CENTRALIZED_CLIENT_SGD", "COST_COLUMNS",
           "EXAMPLES", "FEDAVG_GOAL",
           "RANDOM_INIT", "RELATIVE_TASKS", "TFLOPS", "WIRE_MB",
           "FederatedQualityConfig", "format_table", "mixed_label",
           "run_federated_quality_benchmark"]

#: Row of the centralized run with as many examples as the federated runs.
CENTRALIZED = "centralized"
#: Row of the centralized run with the federated clients' optimizer (plain
#: SGD at the client learning rate), as many examples: separates what
#: federation costs from what the optimizer costs.
CENTRALIZED_CLIENT_SGD = "centralized, client SGD"
#: Row of the encoder at its initial (seeded) weights.
RANDOM_INIT = "random init"
#: Cost columns, after the quality columns.
EXAMPLES, TFLOPS, WIRE_MB = "examples seen", "client TFLOPs", "MB on the wire"
COST_COLUMNS = (EXAMPLES, TFLOPS, WIRE_MB)
#: Downstream tasks that get a "% of centralized" column.
RELATIVE_TASKS = ("keyword", "speaker")
#: FedAvg's goal, in percent of the centralized score on RELATIVE_TASKS.
FEDAVG_GOAL = 95.0


@dataclasses.dataclass(frozen=True)
class FederatedQualityConfig:
  """What the federated-vs-centralized benchmark runs.

  Attributes:
    corpus: Key of :data:`model.datasets.synthetic.CORPUS_PRESETS`.
    corpus_dir: Where the corpus is generated (reused when complete); None:
      ``<out_dir>/corpus``.
    task: SSL task (key of ``SSL_TASKS``) of every run.
    encoder: Encoder preset (key of ``ENCODERS``) of every run.
    algorithms: Federated algorithms (keys of ``ALGORITHMS``), one natural
      partition run each, with their default server learning rates.
    rounds: Federated rounds of every run.
    clients_per_round: Clients sampled per round.
    batch_size: Client (and centralized) batch size.
    max_local_steps: Cap on local steps per client and round.
    client_learning_rate: Client SGD step size.
    eval_every: Rounds between the federated runs' probes (the quality-vs-
      cost curve).
    centralized_optimizer: Key of ``model.train.OPTIMIZERS``.
    centralized_learning_rate: Its step size.
    mixes: ``mixed`` partition knobs p (0 IID ... 1 natural), one extra
      FedAvg run each (empty: no sweep).
    num_workers: TFF worker processes of each federated run.
    seed: Seed of weights, partitions, sampling, batches and probe splits.
    out_dir: Output directory (``runs/``, ``report.md``, ``results.csv``,
      ``quality_vs_cost.png``, the corpus by default).
  """

  corpus: str = "full"
  corpus_dir: Optional[str] = None
  task: str = "triplet"
  encoder: str = "small"
  algorithms: tuple[str, ...] = ("fedavg", "fedadam", "fedyogi")
  rounds: int = 30
  clients_per_round: int = 8
  batch_size: int = 8
  max_local_steps: int = 10
  client_learning_rate: float = 0.05
  eval_every: int = 10
  centralized_optimizer: str = "adam"
  centralized_learning_rate: float = 1e-3
  mixes: tuple[float, ...] = ()
  num_workers: int = 1
  seed: int = 0
  out_dir: str = "federated_quality_output"

  def __post_init__(self):
    for field in ("algorithms", "mixes"):
      object.__setattr__(self, field, tuple(getattr(self, field)))
    require_choice(self, ["corpus"], synthetic.CORPUS_PRESETS)
    if self.task not in SSL_TASKS or self.encoder not in ENCODERS:
      raise ValueError(f"FederatedQualityConfig: task must be one of "
                       f"{sorted(SSL_TASKS)} and encoder one of "
                       f"{sorted(ENCODERS)}, got {self.task!r}, "
                       f"{self.encoder!r}")
    if (not self.algorithms or len(set(self.algorithms)) < len(self.algorithms)
        or any(a not in ALGORITHMS for a in self.algorithms)):
      raise ValueError(f"FederatedQualityConfig.algorithms must be distinct "
                       f"keys of {list(ALGORITHMS)}, got {self.algorithms}")
    if self.centralized_optimizer not in OPTIMIZERS:
      raise ValueError(f"FederatedQualityConfig.centralized_optimizer: "
                       f"unknown {self.centralized_optimizer!r}; expected one "
                       f"of {sorted(OPTIMIZERS)}")
    if not all(0.0 <= p <= 1.0 for p in self.mixes):
      raise ValueError(f"FederatedQualityConfig.mixes must be in [0, 1], got "
                       f"{self.mixes}")
    for field in ("rounds", "clients_per_round", "batch_size", "eval_every",
                  "num_workers", "client_learning_rate",
                  "centralized_learning_rate"):
      if getattr(self, field) <= 0:
        raise ValueError(f"FederatedQualityConfig.{field} must be positive, "
                         f"got {getattr(self, field)}")
    if self.max_local_steps < 0:
      raise ValueError(f"FederatedQualityConfig.max_local_steps must be >= 0, "
                       f"got {self.max_local_steps}")

  @property
  def corpus_path(self) -> str:
    """The corpus directory: ``corpus_dir`` or ``<out_dir>/corpus``."""
    return self.corpus_dir or os.path.join(self.out_dir, "corpus")

  @property
  def spec(self) -> ModelSpec:
    return ModelSpec(task=self.task, encoder=ENCODERS[self.encoder],
                     seed=self.seed)

  def simulation(self, algorithm: str, partition: PartitionConfig
                 ) -> SimulationConfig:
    """The federated run of ``algorithm`` on ``partition``."""
    return SimulationConfig(
        model=self.spec,
        algorithm=AlgorithmConfig(
            algorithm=algorithm,
            client_learning_rate=self.client_learning_rate),
        partition=partition, rounds=self.rounds,
        clients_per_round=self.clients_per_round, batch_size=self.batch_size,
        max_local_steps=self.max_local_steps, eval_every=self.eval_every,
        seed=self.seed, num_workers=self.num_workers)


def mixed_label(mix: float) -> str:
  """Row label of the FedAvg run on the ``mixed`` partition with knob p."""
  return f"fedavg mixed p={mix:g}"


def _relative_column(task: str) -> str:
  return f"{task} % of centralized"


def _quality(scores: Mapping[str, float], tasks: Sequence[str]
             ) -> dict[str, float]:
  return {column: scores[column] for column in (*tasks, RETRIEVAL_METRIC)
          if column in scores}


def _with_relative(rows: dict[str, dict[str, float]]
                   ) -> dict[str, dict[str, float]]:
  """Adds "% of centralized" on RELATIVE_TASKS to every row."""
  reference = rows[CENTRALIZED]
  return {name: {**values, **{
      _relative_column(task): 100.0 * values[task] / reference[task]
      for task in RELATIVE_TASKS
      if task in values and reference.get(task, 0.0) > 0}}
          for name, values in rows.items()}


def format_table(rows: Mapping[str, Mapping[str, float]]) -> str:
  """Markdown table: scores to 3 decimals, costs and percentages shorter."""
  columns = list(dict.fromkeys(c for values in rows.values() for c in values))

  def cell(column: str, value: Optional[float]) -> str:
    if value is None:
      return "-"
    if column == EXAMPLES:
      return f"{value:.0f}"
    if column == WIRE_MB or column.endswith("% of centralized"):
      return f"{value:.1f}"
    if column == TFLOPS:
      return f"{value:.4g}"
    return f"{value:.3f}"

  lines = ["| run | " + " | ".join(columns) + " |",
           "|---|" + "---:|" * len(columns)]
  lines += [f"| {name} | " + " | ".join(cell(c, values.get(c))
                                        for c in columns) + " |"
            for name, values in rows.items()]
  return "\n".join(lines)


def _cost_row(examples: float, flops: float, wire_bytes: float
              ) -> dict[str, float]:
  return {EXAMPLES: examples, TFLOPS: flops / 1e12, WIRE_MB: wire_bytes / 1e6}


def _goal_lines(rows: Mapping[str, Mapping[str, float]]) -> list[str]:
  """FedAvg against the goal, and against the client-optimizer reference."""
  lines = []
  fedavg, same_optimizer = rows.get("fedavg", {}), rows[CENTRALIZED_CLIENT_SGD]
  for task in RELATIVE_TASKS:
    value = fedavg.get(_relative_column(task))
    if value is not None:
      verdict = "met" if value >= FEDAVG_GOAL else "NOT met"
      line = (f"- FedAvg `{task}`: {value:.1f}% of `{CENTRALIZED}` (goal >= "
              f"{FEDAVG_GOAL:g}%: {verdict})")
      if same_optimizer.get(task, 0.0) > 0:
        line += (f"; {100 * fedavg[task] / same_optimizer[task]:.1f}% of "
                 f"`{CENTRALIZED_CLIENT_SGD}`")
      lines.append(line + ".")
  return lines


def run_federated_quality_benchmark(config: FederatedQualityConfig, *,
                                    show_progress: bool = True
                                    ) -> dict[str, dict[str, float]]:
  """Runs the federated algorithms and the centralized reference; writes all.

  Every federated run is a :func:`tff_sim.simulation.run_simulation` on the
  natural partition (plus FedAvg on each ``mixed`` partition of
  ``config.mixes``); the centralized run trains the same task and encoder on
  all training segments for as many examples as FedAvg saw. All are scored by
  the same linear probes and keyword retrieval. Runs live in
  ``<out_dir>/runs/<row>`` and are resumed or reused by a rerun.

  Args:
    config: What to run.
    show_progress: Show progress bars.

  Returns:
    Rows (:data:`RANDOM_INIT`, :data:`CENTRALIZED`,
    :data:`CENTRALIZED_CLIENT_SGD`, the algorithms, then the mixed runs) of
    downstream accuracies, ``retrieval_map``, :data:`COST_COLUMNS` and
    "% of centralized" on :data:`RELATIVE_TASKS`.
    Written to ``results.csv`` and ``report.md`` with
    ``quality_vs_cost.png``.
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

  federated, curves, walls = {}, {}, {}
  partitions = [(name, name, PartitionConfig(method="natural",
                                             seed=config.seed))
                for name in config.algorithms]
  partitions += [(mixed_label(p), "fedavg",
                  PartitionConfig(method="mixed", mix=p, seed=config.seed))
                 for p in config.mixes]
  for label, algorithm, partition in partitions:
    run_dir = os.path.join(runs_dir, label.replace(" ", "_"))
    result = run_simulation(config.simulation(algorithm, partition), table,
                            waveforms, run_dir, show_progress=show_progress)
    totals = result.totals
    federated[label] = (result.final_metrics, _cost_row(
        totals["examples"], totals["client_flops"],
        totals["bytes_down"] + totals["bytes_up"]))
    curves[label] = read_release_csv(os.path.join(run_dir, "eval.csv"))
    walls[label] = totals["wall_s"]

  examples = federated[partitions[0][0]][1][EXAMPLES]
  steps = max(1, round(examples / config.batch_size))
  segments = training_segments(waveforms, spec).waveforms
  probe = dict(table=table, waveforms=waveforms, frontend=spec.frontend,
               seed=config.seed)
  central_cost = _cost_row(steps * config.batch_size,
                           steps * config.batch_size * costs.flops_per_example,
                           0)
  central = {}
  for label, optimization in (
      (CENTRALIZED, dict(optimizer=config.centralized_optimizer,
                         learning_rate=config.centralized_learning_rate)),
      (CENTRALIZED_CLIENT_SGD, dict(
          optimizer="sgd", momentum=0.0,
          learning_rate=config.client_learning_rate))):
    result = train_centralized(
        spec, TrainConfig(steps=steps, batch_size=config.batch_size,
                          seed=config.seed, **optimization),
        segments, os.path.join(runs_dir, label.replace(",", "")
                               .replace(" ", "_")),
        dataset_info={"kind": "synthetic", "preset": config.corpus},
        show_progress=show_progress)
    walls[label] = result.wall_s
    central[label] = evaluation.evaluate_encoder(result.model.encoder, **probe)
    curves[label] = [{**central[label], "cumulative_bytes_up": 0.0,
                      "cumulative_client_flops": central_cost[TFLOPS] * 1e12}]
  random_scores = evaluation.evaluate_encoder(
      Encoder(spec.encoder, seed=config.seed), **probe)
  baseline_scores = evaluation.evaluate_logmel_baseline(**probe)
  tasks = [t for t in evaluation.default_tasks(table)
           if t in central[CENTRALIZED]]

  rows = {RANDOM_INIT: {**_quality(random_scores, tasks),
                        **_cost_row(0, 0, 0)},
          evaluation.LOGMEL_BASELINE: {**_quality(baseline_scores, tasks),
                                       **_cost_row(0, 0, 0)}}
  rows.update({label: {**_quality(scores, tasks), **central_cost}
               for label, scores in central.items()})
  rows.update({label: {**_quality(scores, tasks), **cost}
               for label, (scores, cost) in federated.items()})
  rows = _with_relative(rows)

  metrics = [*tasks, RETRIEVAL_METRIC]
  plot_quality_vs_cost_runs(curves, metrics, os.path.join(
      config.out_dir, "quality_vs_cost.png"))
  evaluation.write_csv(rows, os.path.join(config.out_dir, "results.csv"))
  with open(os.path.join(config.out_dir, "report.md"), "w") as f:
    f.write(_report(config, rows, walls, steps, time.time() - start))
  return rows


def _report(config: FederatedQualityConfig,
            rows: Mapping[str, Mapping[str, float]], walls: Mapping[str, float],
            steps: int, wall_s: float) -> str:
  """The Markdown report: table, goal, runs, configuration."""
  return "\n".join([
      f"# Federated vs. centralized: {config.task}, {config.encoder} encoder, "
      f"{config.corpus} corpus", "",
      "Linear-probe accuracy of the final encoders (test speakers unseen in "
      "training except for `speaker`) and keyword retrieval mean average "
      f"precision. Federated runs: {config.rounds} rounds x "
      f"{config.clients_per_round} clients x <= {config.max_local_steps} "
      f"local SGD steps (lr {config.client_learning_rate}) of batch "
      f"{config.batch_size}, natural partition unless named. `{CENTRALIZED}`:"
      f" {steps} {config.centralized_optimizer} steps (lr "
      f"{config.centralized_learning_rate}) of batch {config.batch_size} on "
      "all training segments, i.e. as many examples as FedAvg saw; its "
      f"`{TFLOPS}` is the same training compute in one place, with nothing on "
      f"the wire. `{CENTRALIZED_CLIENT_SGD}`: the same with the clients' "
      f"optimizer (plain SGD, lr {config.client_learning_rate}), which "
      "separates the cost of federation from that of the optimizer.", "",
      format_table(rows), "",
      *_goal_lines(rows), "",
      "Training wall time per run (federated: cumulative over resumes; "
      "centralized: this invocation only): " + ", ".join(
          f"{name} {seconds:.0f} s" for name, seconds in walls.items())
      + f". Whole invocation: {wall_s:.0f} s.", "",
      "```json", json.dumps(dataclasses.asdict(config), indent=2), "```", ""])
