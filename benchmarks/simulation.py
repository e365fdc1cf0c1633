"""Cost of the federated simulation itself: TFF overhead, worker scaling, memory."""

from __future__ import annotations

import csv
import dataclasses
import functools
import os
import platform
import time
from typing import Optional, Sequence

from absl import logging
from matplotlib.figure import Figure
import numpy as np
import psutil
import tensorflow as tf
import tensorflow_federated as tff
from tqdm import tqdm

from model.config_checks import require_choice, require_positive
from model import randomness
from model.datasets import synthetic
from model.datasets.audio import decode_clips
from model.datasets.pipeline import training_segments
from model.encoders import ENCODERS
from model.ssl_model import ModelSpec, SSLModel
from model.tasks import SSL_TASKS
from tff_sim import partition as partition_lib
from tff_sim.algorithms import CLIENT_OPTIMIZERS, AlgorithmConfig, build_process
from tff_sim.client_data import (SegmentClientData, client_round_seed,
                                 round_dataset)
from tff_sim.execution import execution_context
from tff_sim.learning_model import model_fn_for

__all__ = ["COLUMNS", "OVERHEAD_GOAL", "RSS_GROWTH_GOAL", "CorpusClients",
           "Measurement",
           "PlainFedAvg", "SimulationBenchmarkConfig", "format_markdown",
           "iterator_loop_process", "machine_tag", "process_tree_rss",
           "run_simulation_benchmark"]

#: Goal of the overhead ratio (TFF round time / plain round time).
OVERHEAD_GOAL = 1.3
#: Goal of the RSS growth between the two probed rounds, in percent.
RSS_GROWTH_GOAL = 10.0
#: Columns of ``results.csv`` (and of :meth:`Measurement.as_row`).
COLUMNS = ("benchmark", "preset", "workers", "metric", "value", "unit", "goal",
           "met", "cpu_count", "platform")

_OVERHEAD, _THROUGHPUT, _MEMORY = "overhead", "throughput", "memory"


@dataclasses.dataclass(frozen=True)
class SimulationBenchmarkConfig:
  """What the simulation benchmark measures.

  Attributes:
    corpus: Key of :data:`model.datasets.synthetic.CORPUS_PRESETS`; its
      natural partition (one client per speaker) gives the clients.
    corpus_dir: Where the corpus is generated (reused when complete); None:
      ``<out_dir>/corpus``.
    task: SSL task (key of ``SSL_TASKS``) trained by the clients.
    presets: Encoder presets (keys of ``ENCODERS``) of the overhead and
      throughput measurements, one set of rows each.
    clients_per_round: Clients sampled per round (at most the corpus's).
    local_steps: Local SGD steps of every client per round.
    batch_size: Client batch size.
    client_learning_rate: Client SGD step size (at 0.05 ``audio2vec_cbow``
      with the small encoder diverges within two rounds).
    timed_rounds: Rounds timed after one untimed warm-up round.
    workers: Worker counts of the throughput measurement.
    memory_preset: Encoder preset of the long memory run.
    memory_rounds: Rounds ``(first, last)`` whose RSS is compared; the run
      lasts ``last`` rounds.
    memory_clients: Clients per round of the memory run (1 local step each).
    seed: Seed of the weights, client sampling and batches.
    out_dir: Output directory (``results.csv``, ``report.md``,
      ``simulation.png``, the corpus by default).
  """

  corpus: str = "demo"
  corpus_dir: Optional[str] = None
  task: str = "audio2vec_cbow"
  presets: tuple[str, ...] = ("tiny", "small")
  clients_per_round: int = 4
  local_steps: int = 4
  batch_size: int = 8
  client_learning_rate: float = 0.01
  timed_rounds: int = 3
  workers: tuple[int, ...] = (1, 2, 4)
  memory_preset: str = "tiny"
  memory_rounds: tuple[int, int] = (10, 200)
  memory_clients: int = 2
  seed: int = 0
  out_dir: str = "simulation_output"

  def __post_init__(self):
    for field in ("presets", "workers", "memory_rounds"):
      object.__setattr__(self, field, tuple(getattr(self, field)))
    require_choice(self, ["corpus"], synthetic.CORPUS_PRESETS)
    if self.task not in SSL_TASKS:
      raise ValueError(f"SimulationBenchmarkConfig.task: unknown "
                       f"{self.task!r}; expected one of {sorted(SSL_TASKS)}")
    presets = (*self.presets, self.memory_preset)
    if not self.presets or any(p not in ENCODERS for p in presets):
      raise ValueError(f"SimulationBenchmarkConfig: presets must be keys of "
                       f"{sorted(ENCODERS)}, got {presets}")
    require_positive(self, ("clients_per_round", "local_steps", "batch_size",
                            "timed_rounds", "memory_clients"))
    if not self.workers or min(self.workers) < 1:
      raise ValueError(f"SimulationBenchmarkConfig.workers must be >= 1, got "
                       f"{self.workers}")
    first, last = (self.memory_rounds if len(self.memory_rounds) == 2
                   else (0, 0))
    if not 1 <= first < last:
      raise ValueError(f"SimulationBenchmarkConfig.memory_rounds must be "
                       f"(first, last) with 1 <= first < last, got "
                       f"{self.memory_rounds}")
    if self.client_learning_rate <= 0:
      raise ValueError(f"SimulationBenchmarkConfig.client_learning_rate must "
                       f"be positive, got {self.client_learning_rate}")

  @property
  def corpus_path(self) -> str:
    """The corpus directory: ``corpus_dir`` or ``<out_dir>/corpus``."""
    return self.corpus_dir or os.path.join(self.out_dir, "corpus")

  @property
  def algorithm(self) -> AlgorithmConfig:
    """FedAvg with plain client SGD (server step 1: the weighted mean)."""
    return AlgorithmConfig(algorithm="fedavg", client_optimizer="sgd",
                           client_learning_rate=self.client_learning_rate)

  def spec(self, preset: str) -> ModelSpec:
    """The model trained with encoder ``preset``."""
    return ModelSpec(task=self.task, encoder=ENCODERS[preset], seed=self.seed)


@dataclasses.dataclass(frozen=True)
class Measurement:
  """One measured number.

  Attributes:
    benchmark: ``overhead``, ``throughput`` or ``memory``.
    preset: Encoder preset.
    workers: TFF worker processes.
    metric: What was measured.
    value: The number.
    unit: Its unit.
    goal: The goal it is held to (e.g. ``<= 1.3``), empty if none.
  """

  benchmark: str
  preset: str
  workers: int
  metric: str
  value: float
  unit: str
  goal: str = ""

  @property
  def met(self) -> str:
    """``yes``/``no`` against :attr:`goal`, empty without a goal."""
    if not self.goal:
      return ""
    operator, bound = self.goal.split()
    ok = {"<=": self.value <= float(bound), "<": self.value < float(bound),
          ">=": self.value >= float(bound)}[operator]
    return "yes" if ok else "no"

  def as_row(self) -> dict[str, object]:
    """The measurement as a ``results.csv`` row (see :data:`COLUMNS`)."""
    return {**dataclasses.asdict(self), "met": self.met,
            "cpu_count": os.cpu_count(), "platform": platform.platform()}


def machine_tag() -> str:
  """CPU count, platform and current load, for figure titles and reports."""
  load = os.getloadavg()[0]
  return (f"{os.cpu_count()} CPUs, {platform.platform()}, "
          f"load average {load:.1f}")


def process_tree_rss() -> tuple[int, int]:
  """RSS bytes of this process and of all its descendants (TFF workers)."""
  me = psutil.Process()
  children = 0
  for child in me.children(recursive=True):
    try:
      children += child.memory_info().rss
    except psutil.NoSuchProcess:
      pass
  return me.memory_info().rss, children


class PlainFedAvg:
  """FedAvg rounds without TFF: the reference for the overhead ratio.

  Each client trains sequentially in this process, one ``tf.function`` call
  per batch (the same ``SSLModel.loss`` under the same per-batch seed, the
  same TFF client optimizer), like the centralized trainer; the round result
  is the example-weighted mean of the clients' weights, which is what TFF's
  weighted FedAvg with server SGD at step 1 computes.

  Args:
    spec: The model.
    algorithm: Client optimizer settings (``client_optimizer``,
      ``client_learning_rate``, ``client_momentum``).
  """

  def __init__(self, spec: ModelSpec, algorithm: AlgorithmConfig):
    model = SSLModel(spec)
    variables = tuple(model.weights)
    optimizer = CLIENT_OPTIMIZERS[algorithm.client_optimizer](algorithm)
    specs = tuple(tf.TensorSpec(v.shape, v.dtype) for v in variables)

    @tf.function
    def train_step(state, batch):
      with tf.GradientTape() as tape, randomness.stateless_seed(
          batch["seed"]):
        loss = model.loss(batch["waveform"])
      grads = tape.gradient(loss, variables)
      state, updated = optimizer.next(state, variables, tuple(grads))
      for variable, value in zip(variables, updated):
        variable.assign(value)
      return state

    self._variables = variables
    self._initial_state = lambda: optimizer.initialize(specs)
    self._train_step = train_step

  def round(self, weights: Sequence[np.ndarray],
            datasets: Sequence[tf.data.Dataset]) -> list[np.ndarray]:
    """Trains every client from ``weights``; their example-weighted mean."""
    total = [np.zeros_like(w) for w in weights]
    examples = 0
    for dataset in datasets:
      for variable, value in zip(self._variables, weights):
        variable.assign(value)
      state, count = self._initial_state(), 0
      for batch in dataset:
        state = self._train_step(state, batch)
        count += int(batch["waveform"].shape[0])
      for accumulator, variable in zip(total, self._variables):
        accumulator += count * variable.numpy()
      examples += count
    return [accumulator / examples for accumulator in total]


def _serialized_bytes(dataset: tf.data.Dataset) -> int:
  """Size of a dataset as TFF sends it to a worker (its serialized graph)."""
  return len(tf.raw_ops.DatasetToGraphV2(
      input_dataset=tf.data.experimental.to_variant(dataset)).numpy())


class CorpusClients:
  """The corpus's natural clients, per preset, and their round datasets.

  The decoded corpus stays in this process as one float32 array of training
  segments (``data(preset).waveforms``); each client is a list of row
  indices into it.
  """

  def __init__(self, config: SimulationBenchmarkConfig, show_progress: bool):
    self._config = config
    table, self._waveforms, _ = decode_clips(
        synthetic.generate_corpus(config.corpus_path,
                                  synthetic.CORPUS_PRESETS[config.corpus],
                                  show_progress=show_progress),
        sample_rate=config.spec(config.memory_preset).frontend.sample_rate,
        show_progress=show_progress)
    self._clients = partition_lib.partition(
        table, partition_lib.PartitionConfig(method="natural")).clients
    self._data: dict[str, SegmentClientData] = {}

  def data(self, preset: str) -> SegmentClientData:
    if preset not in self._data:
      segments = training_segments(self._waveforms,
                                   self._config.spec(preset))
      self._data[preset] = SegmentClientData(segments, self._clients)
    return self._data[preset]

  def round_datasets(self, preset: str, round_num: int, clients: int,
                     steps: int) -> list[tf.data.Dataset]:
    """Seeded sample of ``clients`` clients, ``steps`` batches each."""
    data = self.data(preset)
    ids = data.client_ids
    rng = np.random.default_rng([self._config.seed, round_num])
    chosen = sorted(rng.choice(len(ids), size=min(clients, len(ids)),
                               replace=False))
    return [round_dataset(data.waveforms(ids[i]), self._config.batch_size,
                          steps, seed=client_round_seed(self._config.seed,
                                                        round_num, int(i)))
            for i in chosen]


def _cpu_seconds(processes: Sequence[psutil.Process]) -> float:
  """User + system CPU time of ``processes`` so far."""
  return sum(sum(p.cpu_times()[:2]) for p in processes)


def _max_difference(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
  return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def iterator_loop_process(config: SimulationBenchmarkConfig, preset: str
                          ) -> tff.learning.templates.LearningProcess:
  """The benchmark's FedAvg with TFF's dataset-iterator client loop.

  ``tff_sim.algorithms.build_process`` keeps TFF's default client loop, a
  ``DatasetReduce`` op; this variant (``LoopImplementation.DATASET_ITERATOR``)
  is measured beside it to show what the loop costs.
  """
  algorithm = config.algorithm
  return tff.learning.algorithms.build_weighted_fed_avg(
      model_fn_for(config.spec(preset), config.batch_size),
      CLIENT_OPTIMIZERS[algorithm.client_optimizer](algorithm),
      tff.learning.optimizers.build_sgdm(algorithm.server_lr),
      loop_implementation=tff.learning.LoopImplementation.DATASET_ITERATOR)


def _measure_overhead(config: SimulationBenchmarkConfig, preset: str,
                      process: tff.learning.templates.LearningProcess,
                      clients: CorpusClients) -> list[Measurement]:
  """TFF rounds vs. plain rounds on the same clients and batches, interleaved.

  In every round the plain loop, the toolkit's process and its
  iterator-loop variant (:func:`iterator_loop_process`) train the same
  datasets, one after the other in an order that rotates every round, so
  that load from other processes hits all alike; the plain loop starts from
  the toolkit process's global weights and the weights they reach are
  compared as a check that the work is the same. CPU times (this process,
  plus the worker) separate extra work from waiting on a loaded machine;
  this process's share of a TFF round is TFF's Python runtime, serialization
  and gRPC.
  """
  plain = PlainFedAvg(config.spec(preset), config.algorithm)
  processes = {"TFF": process,
               "TFF, iterator loop": iterator_loop_process(config, preset)}
  me = psutil.Process()
  wall = {name: [] for name in ("plain", *processes)}
  cpu = {name: [] for name in wall}
  main_cpu = {name: [] for name in processes}
  serialize_s, serialized, difference = [], [], 0.0
  with execution_context(1) as pool:
    everyone = [me, *(psutil.Process(pid) for pid in pool.pids)]
    states = {name: p.initialize() for name, p in processes.items()}
    for round_num in range(config.timed_rounds + 1):  # Round 0: warm-up.
      datasets = clients.round_datasets(preset, round_num,
                                        config.clients_per_round,
                                        config.local_steps)
      weights = process.get_model_weights(states["TFF"]).trainable
      steps = {"plain": lambda: plain.round(weights, datasets)}
      steps.update({name: functools.partial(p.next, states[name], datasets)
                    for name, p in processes.items()})
      order = list(steps)[round_num % len(steps):]
      order += list(steps)[:round_num % len(steps)]
      results = {}
      for name in order:
        main_start, cpu_start = _cpu_seconds([me]), _cpu_seconds(everyone)
        start = time.perf_counter()
        results[name] = steps[name]()
        if round_num:
          wall[name].append(time.perf_counter() - start)
          cpu[name].append(_cpu_seconds(everyone) - cpu_start)
          if name in main_cpu:
            main_cpu[name].append(_cpu_seconds([me]) - main_start)
      states = {name: results[name].state for name in processes}
      difference = max(difference, _max_difference(
          results["plain"], process.get_model_weights(states["TFF"]).trainable))
      start = time.perf_counter()
      size = sum(_serialized_bytes(d) for d in datasets)
      if round_num:
        serialize_s.append(time.perf_counter() - start)
        serialized.append(size)
      logging.info("%s round %d: %s", preset, round_num, {
          name: f"{values[-1]:.2f} s" for name, values in wall.items()
          if values})
  point = dict(benchmark=_OVERHEAD, preset=preset, workers=1)
  measurements = []
  for name in wall:
    label = "plain tf.function" if name == "plain" else name
    measurements += [
        Measurement(**point, metric=f"{label} round",
                    value=float(np.mean(wall[name])), unit="s"),
        Measurement(**point, metric=f"{label} round CPU",
                    value=float(np.mean(cpu[name])), unit="CPU s")]
  for name in processes:
    measurements += [
        Measurement(**point, metric=f"{name} round CPU in main process",
                    value=float(np.mean(main_cpu[name])), unit="CPU s"),
        Measurement(**point, metric=f"overhead ratio ({name})",
                    value=sum(wall[name]) / sum(wall["plain"]), unit="x",
                    goal=f"<= {OVERHEAD_GOAL}"),
        Measurement(**point, metric=f"CPU ratio ({name})",
                    value=sum(cpu[name]) / sum(cpu["plain"]), unit="x")]
  return measurements + [
      Measurement(**point, metric="dataset serialization",
                  value=float(np.mean(serialize_s)), unit="s"),
      Measurement(**point, metric="serialized datasets",
                  value=float(np.mean(serialized)) / 1e6, unit="MB"),
      Measurement(**point, metric="weight difference TFF vs plain",
                  value=difference, unit="max abs")]


def _measure_throughput(config: SimulationBenchmarkConfig, preset: str,
                        process: tff.learning.templates.LearningProcess,
                        clients: CorpusClients) -> list[Measurement]:
  """Client updates per second with each worker count, same rounds."""
  rates = {}
  for workers in config.workers:
    with execution_context(workers):
      state = process.initialize()
      elapsed = updates = 0
      for round_num in range(config.timed_rounds + 1):  # Round 0: warm-up.
        datasets = clients.round_datasets(preset, round_num,
                                          config.clients_per_round,
                                          config.local_steps)
        start = time.perf_counter()
        state = process.next(state, datasets).state
        if round_num:
          elapsed += time.perf_counter() - start
          updates += len(datasets)
    rates[workers] = updates / elapsed
    logging.info("%s, %d workers: %.2f client updates/s", preset, workers,
                 rates[workers])
  base = rates[min(rates)]
  return [m for workers, rate in rates.items() for m in (
      Measurement(_THROUGHPUT, preset, workers, "client updates per second",
                  rate, "1/s"),
      Measurement(_THROUGHPUT, preset, workers,
                  f"speed-up vs {min(rates)} worker(s)", rate / base, "x"))]


def _measure_memory(config: SimulationBenchmarkConfig,
                    process: tff.learning.templates.LearningProcess,
                    clients: CorpusClients, show_progress: bool
                    ) -> tuple[list[Measurement], dict[str, list[float]]]:
  """RSS of this process and its worker over a long run (no evaluation).

  Besides the growth between the configured rounds, reports each process's
  own growth and the total's over the second half of the run, which tells a
  steady leak (grows there too) from allocator warm-up (flat there).
  """
  first, last = config.memory_rounds
  preset = config.memory_preset
  series: dict[str, list[float]] = {"round": [], "main": [], "workers": []}
  with execution_context(1):
    state = process.initialize()
    for round_num in tqdm(range(1, last + 1), desc=f"memory {preset}",
                          unit="round", disable=not show_progress):
      datasets = clients.round_datasets(preset, round_num,
                                        config.memory_clients, 1)
      state = process.next(state, datasets).state
      main, workers = process_tree_rss()
      series["round"].append(round_num)
      series["main"].append(main / 1e6)
      series["workers"].append(workers / 1e6)
  at = {"main": dict(zip(series["round"], series["main"])),
        "worker": dict(zip(series["round"], series["workers"]))}
  at["total"] = {r: at["main"][r] + at["worker"][r] for r in at["main"]}

  def growth(process_name: str, start: int) -> float:
    values = at[process_name]
    return 100.0 * (values[last] - values[start]) / values[start]

  point = dict(benchmark=_MEMORY, preset=preset, workers=1)
  middle = (first + last) // 2
  measurements = [
      *(Measurement(**point, metric=f"{label} at round {r}",
                    value=at[key][r], unit="MB")
        for r in (first, last)
        for label, key in (("RSS", "total"), ("main RSS", "main"),
                           ("worker RSS", "worker"))),
      Measurement(**point, metric=f"RSS growth round {first} -> {last}",
                  value=growth("total", first), unit="%",
                  goal=f"< {RSS_GROWTH_GOAL:g}"),
      Measurement(**point, metric=f"main RSS growth round {first} -> {last}",
                  value=growth("main", first), unit="%"),
      Measurement(**point, metric=f"worker RSS growth round {first} -> {last}",
                  value=growth("worker", first), unit="%")]
  if middle > first:
    measurements.append(Measurement(
        **point, metric=f"RSS growth round {middle} -> {last}",
        value=growth("total", middle), unit="%"))
  return measurements, series


def format_markdown(measurements: Sequence[Measurement]) -> str:
  """The measurements as a Markdown table (machine columns left out)."""
  lines = ["| benchmark | preset | workers | metric | value | unit | goal | "
           "met |", "|---|---|---:|---|---:|---|---|---|"]
  for m in measurements:
    value = f"{m.value:.3g}" if abs(m.value) < 1e-2 else f"{m.value:.3f}"
    lines.append(f"| {m.benchmark} | {m.preset} | {m.workers} | {m.metric} | "
                 f"{value} | {m.unit} | {m.goal} | {m.met} |")
  return "\n".join(lines)


def _write_csv(measurements: Sequence[Measurement], path: str) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(m.as_row() for m in measurements)


def _plot(measurements: Sequence[Measurement], series: dict[str, list[float]],
          path: str, tag: str) -> None:
  """RSS vs round (main process, workers, total); throughput vs workers."""
  figure = Figure(figsize=(11, 4), layout="constrained")
  memory, throughput = figure.subplots(1, 2)
  total = np.add(series["main"], series["workers"])
  for label, values in (("total", total), ("main process", series["main"]),
                        ("workers", series["workers"])):
    memory.plot(series["round"], values, label=label)
  memory.set_xlabel("round")
  memory.set_ylabel("RSS (MB)")
  memory.set_ylim(bottom=0)
  memory.legend(fontsize="small")
  memory.grid(alpha=0.3)
  rates: dict[str, list[tuple[int, float]]] = {}
  for m in measurements:
    if m.benchmark == _THROUGHPUT and m.unit == "1/s":
      rates.setdefault(m.preset, []).append((m.workers, m.value))
  for preset, points in rates.items():
    workers, values = zip(*sorted(points))
    throughput.plot(workers, values, marker="o", label=f"{preset} encoder")
    throughput.set_xticks(workers)
  cores = os.cpu_count() or 1
  throughput.axvline(cores, color="grey", linestyle=":",
                     label=f"{cores} CPU cores")
  throughput.set_xlabel("TFF worker processes")
  throughput.set_ylabel("client updates per second")
  throughput.set_ylim(bottom=0)
  throughput.legend(fontsize="small")
  throughput.grid(alpha=0.3)
  figure.suptitle(f"Simulation cost ({tag})", fontsize="medium")
  figure.savefig(path, dpi=110)


def run_simulation_benchmark(config: SimulationBenchmarkConfig, *,
                             show_progress: bool = True) -> list[Measurement]:
  """Measures overhead, throughput and memory; writes the outputs.

  Writes ``results.csv`` (one line per measurement, with the machine),
  ``report.md`` (Markdown table and set-up) and ``simulation.png`` (RSS vs
  round, throughput vs workers, tagged with the machine) to ``out_dir``.

  Args:
    config: What to measure.
    show_progress: Show progress bars.

  Returns:
    The measurements, in table order.
  """
  start = time.time()
  tag = machine_tag()
  os.makedirs(config.out_dir, exist_ok=True)
  clients = CorpusClients(config, show_progress)
  processes: dict[str, tff.learning.templates.LearningProcess] = {}

  def process_for(preset: str) -> tff.learning.templates.LearningProcess:
    if preset not in processes:
      processes[preset] = build_process(
          model_fn_for(config.spec(preset), config.batch_size),
          config.algorithm, clients_per_round=config.clients_per_round)
    return processes[preset]

  # Memory first: the main process then holds what a simulation holds (the
  # data and one learning process), not yet the other measurements' models.
  measurements, series = _measure_memory(
      config, process_for(config.memory_preset), clients, show_progress)
  for preset in config.presets:
    measurements += _measure_overhead(config, preset, process_for(preset),
                                      clients)
  for preset in config.presets:
    measurements += _measure_throughput(config, preset, process_for(preset),
                                        clients)

  _write_csv(measurements, os.path.join(config.out_dir, "results.csv"))
  _plot(measurements, series, os.path.join(config.out_dir, "simulation.png"),
        tag)
  data = clients.data(config.presets[0])  # Segments depend on the task only.
  sizes = [data.num_examples(c) for c in data.client_ids]
  with open(os.path.join(config.out_dir, "report.md"), "w") as f:
    f.write("\n".join([
        f"# Simulation cost: {config.task}, {config.corpus} corpus", "",
        f"Machine at the start: {tag}; at the end: load average "
        f"{os.getloadavg()[0]:.1f}. Wall time {time.time() - start:.0f} s.",
        "", format_markdown(measurements), "",
        f"Rounds: up to {config.clients_per_round} clients x "
        f"{config.local_steps} local steps x batch {config.batch_size}, "
        f"{config.timed_rounds} timed rounds after a warm-up round. "
        f"Training segments of the {len(sizes)} clients: {sizes}.", "",
        f"Config: `{dataclasses.asdict(config)}`", ""]))
  return measurements
