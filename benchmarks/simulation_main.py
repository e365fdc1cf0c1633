"""Launcher of the simulation-cost benchmark (TFF overhead, worker scaling, memory).

Usage:
  python -m benchmarks.simulation_main --out_dir simulation_output
      [--corpus demo] [--presets tiny,small] [--workers 1,2,4]
      [--memory_rounds 10,200]

Prints the report (machine, Markdown table, set-up); ``results.csv``,
``report.md`` and ``simulation.png`` go to --out_dir.
"""

from __future__ import annotations

import os

from absl import app
from absl import flags

from benchmarks.simulation import (SimulationBenchmarkConfig,
                                   run_simulation_benchmark)
from model.datasets import synthetic
from model.encoders import ENCODERS
from model.tasks import SSL_TASKS

_DEFAULT = SimulationBenchmarkConfig()

# Flags are named after the SimulationBenchmarkConfig fields they set.
_CORPUS = flags.DEFINE_enum("corpus", _DEFAULT.corpus,
                            list(synthetic.CORPUS_PRESETS),
                            "Built-in corpus whose speakers are the clients.")
_CORPUS_DIR = flags.DEFINE_string(
    "corpus_dir", None, "Corpus directory (default <out_dir>/corpus).")
_TASK = flags.DEFINE_enum("task", _DEFAULT.task, list(SSL_TASKS),
                          "SSL task trained by the clients.")
_PRESETS = flags.DEFINE_list(
    "presets", list(_DEFAULT.presets),
    f"Encoder presets timed, of {', '.join(ENCODERS)}.")
_CLIENTS = flags.DEFINE_integer("clients_per_round", _DEFAULT.clients_per_round,
                                "Clients per round.")
_STEPS = flags.DEFINE_integer("local_steps", _DEFAULT.local_steps,
                              "Local steps per client and round.")
_BATCH = flags.DEFINE_integer("batch_size", _DEFAULT.batch_size,
                              "Client batch size.")
_LR = flags.DEFINE_float("client_learning_rate", _DEFAULT.client_learning_rate,
                         "Client SGD step size.")
_ROUNDS = flags.DEFINE_integer("timed_rounds", _DEFAULT.timed_rounds,
                               "Timed rounds after a warm-up round.")
_WORKERS = flags.DEFINE_list("workers", [str(k) for k in _DEFAULT.workers],
                             "Worker counts of the throughput measurement.")
_MEMORY_PRESET = flags.DEFINE_enum("memory_preset", _DEFAULT.memory_preset,
                                   list(ENCODERS),
                                   "Encoder preset of the memory run.")
_MEMORY_ROUNDS = flags.DEFINE_list(
    "memory_rounds", [str(r) for r in _DEFAULT.memory_rounds],
    "first,last: rounds whose RSS is compared (the run lasts last rounds).")
_MEMORY_CLIENTS = flags.DEFINE_integer("memory_clients",
                                       _DEFAULT.memory_clients,
                                       "Clients per round of the memory run.")
_SEED = flags.DEFINE_integer("seed", _DEFAULT.seed, "Seed.")
_OUT_DIR = flags.DEFINE_string("out_dir", _DEFAULT.out_dir, "Output directory.")


def config_from_flags() -> SimulationBenchmarkConfig:
  """The benchmark configuration given by the parsed flags."""
  return SimulationBenchmarkConfig(
      corpus=_CORPUS.value, corpus_dir=_CORPUS_DIR.value, task=_TASK.value,
      presets=tuple(_PRESETS.value), clients_per_round=_CLIENTS.value,
      local_steps=_STEPS.value, batch_size=_BATCH.value,
      client_learning_rate=_LR.value, timed_rounds=_ROUNDS.value,
      workers=tuple(int(k) for k in _WORKERS.value),
      memory_preset=_MEMORY_PRESET.value,
      memory_rounds=tuple(int(r) for r in _MEMORY_ROUNDS.value),
      memory_clients=_MEMORY_CLIENTS.value, seed=_SEED.value,
      out_dir=_OUT_DIR.value)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = config_from_flags()
  run_simulation_benchmark(config)
  with open(os.path.join(config.out_dir, "report.md")) as f:
    print(f.read())


def run() -> None:
  app.run(main)


if __name__ == "__main__":
  run()
