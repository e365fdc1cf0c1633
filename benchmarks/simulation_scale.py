"""Simulation at the scale of real speech federations: thousands of clients,
a hundred per round, hundreds of rounds.

Measures, on one long FedAvg run in TFF: the time of every round and the
client updates per second; the RSS of the driver and of every TFF worker at
regular probe rounds (TFF's tracker reports memory that grows per round at
this scale); at those probe rounds also a plain ``tf.function`` FedAvg round
on the same clients and batches, from the same global weights, for the
overhead ratio. Writes ``rounds.jsonl`` while it runs (one line per round),
then ``scale.csv`` (measurements), ``rounds.csv`` (one row per round),
``report.md`` and ``scale.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from typing import Optional

from absl import logging
from matplotlib.figure import Figure
import numpy as np
import psutil
from tqdm import tqdm

from benchmarks.simulation import (COLUMNS, CorpusClients, Measurement,
                                   PlainFedAvg, SimulationBenchmarkConfig,
                                   format_markdown, machine_tag)
from model.config_checks import require_choice, require_positive
from model.datasets import synthetic
from model.encoders import ENCODERS
from model.tasks import SSL_TASKS
from tff_sim.algorithms import build_process
from tff_sim.execution import execution_context
from tff_sim.learning_model import model_fn_for

__all__ = ["ScaleBenchmarkConfig", "run_scale_benchmark", "SCALE_OVERHEAD_GOAL",
           "SCALE_RSS_GROWTH_GOAL", "ROUND_TIME_TREND_GOAL"]

#: Goal of TFF round time / plain round time at the probe rounds.
SCALE_OVERHEAD_GOAL = 1.2
#: Goal of the RSS growth from the first probe round to the last, percent.
SCALE_RSS_GROWTH_GOAL = 10.0
#: Goal of the fitted round-time change over the run, percent of the mean.
ROUND_TIME_TREND_GOAL = 10.0
_SCALE = "scale"


@dataclasses.dataclass(frozen=True)
class ScaleBenchmarkConfig:
  """A long run over a large population.

  Attributes:
    corpus: Built-in corpus (key of ``CORPUS_PRESETS``); its natural
      partition (one client per speaker) is the population.
    corpus_dir: Where the corpus is generated (reused when complete); None:
      ``<out_dir>/corpus``.
    task: SSL task of the clients.
    preset: Encoder preset.
    rounds: Rounds of the run.
    clients_per_round: Clients sampled (without replacement) per round.
    local_steps: Local SGD steps of every client per round.
    batch_size: Client batch size.
    client_learning_rate: Client SGD step size.
    probe_every: Rounds between RSS probes and plain-loop comparisons.
    num_workers: Local TFF worker processes.
    seed: Seed of weights, sampling and batches.
    out_dir: Output directory.
  """

  corpus: str = "population"
  corpus_dir: Optional[str] = None
  task: str = "nt_xent"
  preset: str = "tiny"
  rounds: int = 500
  clients_per_round: int = 100
  local_steps: int = 2
  batch_size: int = 8
  client_learning_rate: float = 0.01
  probe_every: int = 50
  num_workers: int = 1
  seed: int = 0
  out_dir: str = "simulation_scale_output"

  def __post_init__(self):
    require_choice(self, ["corpus"], synthetic.CORPUS_PRESETS)
    require_choice(self, ["task"], SSL_TASKS)
    require_choice(self, ["preset"], ENCODERS)
    require_positive(self, ("rounds", "clients_per_round", "local_steps",
                            "batch_size", "probe_every", "num_workers"))
    if self.rounds < 2 * self.probe_every:
      raise ValueError(f"ScaleBenchmarkConfig.rounds ({self.rounds}) must be "
                       f">= 2 x probe_every ({self.probe_every}): growth is "
                       f"measured between the first and the last probe")

  def base(self) -> SimulationBenchmarkConfig:
    """The equivalent settings of the standard simulation benchmark."""
    return SimulationBenchmarkConfig(
        corpus=self.corpus, corpus_dir=self.corpus_dir, task=self.task,
        presets=(self.preset,), clients_per_round=self.clients_per_round,
        local_steps=self.local_steps, batch_size=self.batch_size,
        client_learning_rate=self.client_learning_rate, workers=(1,),
        memory_preset=self.preset, seed=self.seed, out_dir=self.out_dir)


def _rss_mb(process: psutil.Process) -> float:
  return process.memory_info().rss / 1e6


def _cpu_s(processes: list[psutil.Process]) -> float:
  """User + system CPU seconds used so far by the processes."""
  return sum(sum(p.cpu_times()[:2]) for p in processes)


def _trend_percent(rounds: np.ndarray, seconds: np.ndarray) -> float:
  """Least-squares change of round time over the rounds, % of the mean."""
  slope = np.polyfit(rounds, seconds, 1)[0]
  return float(100.0 * slope * (rounds[-1] - rounds[0]) / np.mean(seconds))


def _plot(rows: list[dict], path: str, title: str) -> None:
  figure = Figure(figsize=(11, 4), layout="constrained")
  timing, memory = figure.subplots(1, 2)
  rounds = [r["round"] for r in rows]
  timing.plot(rounds, [r["round_s"] for r in rows], lw=0.6,
              label="TFF round (wall)")
  timing.plot(rounds, [r["round_cpu_s"] for r in rows], lw=0.6,
              label="TFF round (CPU, driver + workers)")
  probes = [r for r in rows if r.get("plain_round_s")]
  timing.plot([r["round"] for r in probes],
              [r["plain_round_s"] for r in probes], "o",
              label="plain tf.function round (same batches)")
  timing.set_xlabel("round")
  timing.set_ylabel("seconds")
  timing.set_ylim(bottom=0)
  timing.legend(fontsize="small")
  timing.grid(alpha=0.3)
  probed = [r for r in rows if r.get("driver_rss_mb")]
  memory.plot([r["round"] for r in probed],
              [r["driver_rss_mb"] for r in probed], "o-", label="driver")
  worker_keys = sorted(k for k in probed[0] if k.startswith("worker")) \
      if probed else []
  for key in worker_keys:
    memory.plot([r["round"] for r in probed], [r[key] for r in probed], "o-",
                label=key.replace("_rss_mb", ""))
  memory.set_xlabel("round")
  memory.set_ylabel("RSS (MB)")
  memory.set_ylim(bottom=0)
  memory.legend(fontsize="small")
  memory.grid(alpha=0.3)
  figure.suptitle(title, fontsize="medium")
  figure.savefig(path, dpi=110)


def run_scale_benchmark(config: ScaleBenchmarkConfig, *,
                        show_progress: bool = True) -> list[Measurement]:
  """Runs the long simulation and writes its measurements.

  Args:
    config: The run.
    show_progress: Show progress bars.

  Returns:
    The summary measurements (also in ``scale.csv`` and ``report.md``).

  Raises:
    ValueError: More clients per round than the population has.
  """
  start_time = time.time()
  tag = machine_tag()
  os.makedirs(config.out_dir, exist_ok=True)
  base = config.base()
  clients = CorpusClients(base, show_progress)
  data = clients.data(config.preset)
  population = len(data.client_ids)
  if config.clients_per_round > population:
    raise ValueError(f"ScaleBenchmarkConfig.clients_per_round is "
                     f"{config.clients_per_round} but corpus "
                     f"{config.corpus!r} has {population} clients")
  spec = base.spec(config.preset)
  process = build_process(model_fn_for(spec, config.batch_size),
                          base.algorithm,
                          clients_per_round=config.clients_per_round)
  plain = PlainFedAvg(spec, base.algorithm)
  driver = psutil.Process()
  rows: list[dict] = []
  # One JSON line per finished round, so that a long run that is stopped
  # still shows what it measured.
  with execution_context(config.num_workers,
                         log_path=os.path.join(config.out_dir,
                                               "workers.log")) as workers, \
      open(os.path.join(config.out_dir, "rounds.jsonl"), "w") as progress:
    worker_processes = [psutil.Process(pid) for pid in workers.pids]
    measured = [driver, *worker_processes]
    state = process.initialize()
    # Trace the plain loop before the run, so that probes time steady state.
    plain.round(process.get_model_weights(state).trainable,
                clients.round_datasets(config.preset, 0, 1, 1))
    bar = tqdm(range(1, config.rounds + 1), desc="scale", unit="round",
               disable=not show_progress, dynamic_ncols=True)
    for round_num in bar:
      datasets = clients.round_datasets(config.preset, round_num,
                                        config.clients_per_round,
                                        config.local_steps)
      weights = process.get_model_weights(state).trainable
      cpu_start = _cpu_s(measured)
      start = time.perf_counter()
      state = process.next(state, datasets).state
      seconds = time.perf_counter() - start
      # CPU time of driver + workers: unlike wall time, it does not grow
      # when other jobs share the machine, so its trend isolates TFF's.
      row = {"round": round_num, "round_s": seconds,
             "round_cpu_s": _cpu_s(measured) - cpu_start,
             "load_average": os.getloadavg()[0],
             "client_updates_per_s": len(datasets) / seconds}
      if round_num % config.probe_every == 0:
        start = time.perf_counter()
        plain.round(weights, datasets)
        row["plain_round_s"] = time.perf_counter() - start
        row["driver_rss_mb"] = _rss_mb(driver)
        for i, worker in enumerate(worker_processes):
          row[f"worker{i}_rss_mb"] = _rss_mb(worker)
        logging.info("round %d: %.2f s (plain %.2f s), driver %.0f MB",
                     round_num, seconds, row["plain_round_s"],
                     row["driver_rss_mb"])
      rows.append(row)
      progress.write(json.dumps(row) + "\n")
      progress.flush()
      bar.set_postfix(round_s=f"{seconds:.2f}")

  fields = sorted({k for r in rows for k in r},
                  key=lambda k: (k != "round", k))
  with open(os.path.join(config.out_dir, "rounds.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)

  probes = [r for r in rows if "driver_rss_mb" in r]
  first, last = probes[0], probes[-1]
  point = dict(benchmark=_SCALE, preset=config.preset,
               workers=config.num_workers)

  def total_rss(row: dict) -> float:
    return row["driver_rss_mb"] + sum(
        v for k, v in row.items() if k.startswith("worker"))

  def growth(key) -> float:
    a, b = (key(first), key(last))
    return 100.0 * (b - a) / a

  warm_up = max(1, config.probe_every // 5)
  timed = rows[warm_up:]  # Leave out warm-up rounds.
  rounds = np.array([r["round"] for r in timed], np.float64)
  seconds = np.array([r["round_s"] for r in timed])
  cpu_seconds = np.array([r["round_cpu_s"] for r in timed])
  loads = np.array([r["load_average"] for r in timed])
  halves = np.array_split(seconds, 2)
  tff_at_probes = sum(r["round_s"] for r in probes)
  plain_at_probes = sum(r["plain_round_s"] for r in probes)
  worker_keys = sorted(k for k in first if k.startswith("worker"))
  span = f"round {first['round']} -> {last['round']}"
  measurements = [
      Measurement(**point, metric="population (clients)", value=population,
                  unit="clients"),
      Measurement(**point, metric="clients per round",
                  value=config.clients_per_round, unit="clients"),
      Measurement(**point, metric="rounds", value=config.rounds, unit=""),
      Measurement(**point, metric="mean round time", value=float(
          np.mean(seconds)), unit="s"),
      Measurement(**point, metric="median round time, first half",
                  value=float(np.median(halves[0])), unit="s"),
      Measurement(**point, metric="median round time, second half",
                  value=float(np.median(halves[1])), unit="s"),
      Measurement(**point, metric="round-time trend over the run",
                  value=_trend_percent(rounds, seconds), unit="%",
                  goal=f"<= {ROUND_TIME_TREND_GOAL:g}"),
      Measurement(**point, metric="mean round CPU time (driver + workers)",
                  value=float(np.mean(cpu_seconds)), unit="s"),
      Measurement(**point, metric="round CPU-time trend over the run",
                  value=_trend_percent(rounds, cpu_seconds), unit="%",
                  goal=f"<= {ROUND_TIME_TREND_GOAL:g}"),
      Measurement(**point, metric="load average, first half (median)",
                  value=float(np.median(np.array_split(loads, 2)[0])),
                  unit=""),
      Measurement(**point, metric="load average, second half (median)",
                  value=float(np.median(np.array_split(loads, 2)[1])),
                  unit=""),
      Measurement(**point, metric="client updates per second",
                  value=float(config.clients_per_round * len(seconds)
                              / np.sum(seconds)), unit="1/s"),
      Measurement(**point, metric="overhead ratio (TFF / plain, probe rounds)",
                  value=tff_at_probes / plain_at_probes, unit="x",
                  goal=f"<= {SCALE_OVERHEAD_GOAL:g}"),
      Measurement(**point, metric=f"driver RSS at round {first['round']}",
                  value=first["driver_rss_mb"], unit="MB"),
      Measurement(**point, metric=f"driver RSS at round {last['round']}",
                  value=last["driver_rss_mb"], unit="MB"),
      *(Measurement(**point, metric=f"{k[:-7]} RSS at round {r['round']}",
                    value=r[k], unit="MB")
        for k in worker_keys for r in (first, last)),
      Measurement(**point, metric=f"total RSS growth {span}",
                  value=growth(total_rss), unit="%",
                  goal=f"< {SCALE_RSS_GROWTH_GOAL:g}"),
      Measurement(**point, metric=f"driver RSS growth {span}",
                  value=growth(lambda r: r["driver_rss_mb"]), unit="%"),
      *(Measurement(**point, metric=f"{k[:-7]} RSS growth {span}",
                    value=growth(lambda r, k=k: r[k]), unit="%")
        for k in worker_keys),
  ]
  with open(os.path.join(config.out_dir, "scale.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(m.as_row() for m in measurements)
  _plot(rows, os.path.join(config.out_dir, "scale.png"),
        f"{population} clients, {config.clients_per_round} per round, "
        f"{config.preset} {config.task} ({tag})")
  segment_mb = data.waveforms(data.client_ids[0]).itemsize * (
      sum(data.num_examples(c) for c in data.client_ids)
      * data.waveforms(data.client_ids[0]).shape[1]) / 1e6
  with open(os.path.join(config.out_dir, "report.md"), "w") as f:
    f.write("\n".join([
        f"# Simulation at scale: {population} clients, "
        f"{config.clients_per_round} per round, {config.rounds} rounds", "",
        f"Machine at the start: {tag}; at the end: load average "
        f"{os.getloadavg()[0]:.1f}. Wall time {time.time() - start_time:.0f} "
        f"s.", "", format_markdown(measurements), "",
        f"Each client: {config.local_steps} local steps x batch "
        f"{config.batch_size} ({config.preset} encoder, {config.task}). The "
        f"driver holds every client's training segments as one float32 "
        f"array: {segment_mb:.0f} MB for {population} clients, "
        f"{1000 * segment_mb / population:.0f} kB per client. Round times "
        f"from round {warm_up + 1} on (warm-up left out).",
        "", f"Config: `{dataclasses.asdict(config)}`", ""]))
  return measurements
