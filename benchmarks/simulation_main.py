"""Launcher of the simulation-cost benchmark (TFF overhead, worker scaling, memory).

Usage:
  python -m benchmarks.simulation_main --out_dir simulation_output
      [--corpus demo] [--presets tiny,small] [--workers 1,2,4]
      [--memory_rounds 10,200]

  # Scale mode: 2,620 clients, 100 per round, 500 rounds (tiny, nt_xent).
  python -m benchmarks.simulation_main --mode scale --out_dir scale_output
      [--rounds 500] [--probe_every 50] [--clients_per_round 100]
      [--local_steps 2] [--num_workers 1]

Prints the report (machine, Markdown table, set-up); ``results.csv``,
``report.md`` and ``simulation.png`` (scale mode: ``scale.csv``,
``rounds.csv``, ``report.md``, ``scale.png``) go to --out_dir. In scale mode
the shared flags default to the scale run's values unless given.
"""

from __future__ import annotations

from absl import flags

from benchmarks.simulation import (SimulationBenchmarkConfig,
                                   run_simulation_benchmark)
from benchmarks.simulation_scale import ScaleBenchmarkConfig, run_scale_benchmark
from model import cli
from model.encoders import ENCODERS

FLAGS = cli.launcher_flags()

_DEFAULT = SimulationBenchmarkConfig()
_SCALE_DEFAULT = ScaleBenchmarkConfig()

_MODE = flags.DEFINE_enum(
    "mode", "standard", ["standard", "scale"],
    "standard: overhead, worker scaling and memory on a small corpus; "
    "scale: one long run over a large population.", flag_values=FLAGS)
_SCALE_ROUNDS = cli.define("rounds", _SCALE_DEFAULT.rounds,
                           help="Scale mode: rounds of the run.",
                           flag_values=FLAGS)
_PROBE_EVERY = flags.DEFINE_integer(
    "probe_every", _SCALE_DEFAULT.probe_every,
    "Scale mode: rounds between RSS probes / plain-loop comparisons.",
    flag_values=FLAGS)
_NUM_WORKERS = cli.define("num_workers", _SCALE_DEFAULT.num_workers,
                          help="Scale mode: local TFF workers.",
                          flag_values=FLAGS)

# Flags are named after the SimulationBenchmarkConfig fields they set.
_CORPUS, _CORPUS_DIR = cli.define_corpus(_DEFAULT.corpus, flag_values=FLAGS)
_TASK = cli.define("task", _DEFAULT.task,
                   help="SSL task trained by the clients.", flag_values=FLAGS)
_PRESETS = flags.DEFINE_list(
    "presets", list(_DEFAULT.presets),
    f"Encoder presets timed, of {', '.join(ENCODERS)}.", flag_values=FLAGS)
_CLIENTS = cli.define("clients_per_round", _DEFAULT.clients_per_round,
                      flag_values=FLAGS)
_STEPS = flags.DEFINE_integer("local_steps", _DEFAULT.local_steps,
                              "Local steps per client and round.",
                              flag_values=FLAGS)
_BATCH = cli.define("batch_size", _DEFAULT.batch_size,
                    help="Client batch size.", flag_values=FLAGS)
_LR = cli.define("client_learning_rate", _DEFAULT.client_learning_rate,
                 flag_values=FLAGS)
_ROUNDS = flags.DEFINE_integer("timed_rounds", _DEFAULT.timed_rounds,
                               "Timed rounds after a warm-up round.",
                               flag_values=FLAGS)
_WORKERS = flags.DEFINE_list("workers", [str(k) for k in _DEFAULT.workers],
                             "Worker counts of the throughput measurement.",
                             flag_values=FLAGS)
_MEMORY_PRESET = flags.DEFINE_enum("memory_preset", _DEFAULT.memory_preset,
                                   list(ENCODERS),
                                   "Encoder preset of the memory run.",
                                   flag_values=FLAGS)
_MEMORY_ROUNDS = flags.DEFINE_list(
    "memory_rounds", [str(r) for r in _DEFAULT.memory_rounds],
    "first,last: rounds whose RSS is compared (the run lasts last rounds).",
    flag_values=FLAGS)
_MEMORY_CLIENTS = flags.DEFINE_integer("memory_clients",
                                       _DEFAULT.memory_clients,
                                       "Clients per round of the memory run.",
                                       flag_values=FLAGS)
_SEED = cli.define("seed", _DEFAULT.seed, flag_values=FLAGS)
_OUT_DIR = cli.define("out_dir", _DEFAULT.out_dir, flag_values=FLAGS)


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


def _given_or(flag: flags.FlagHolder, default):
  return flag.value if flag.present else default


def scale_config_from_flags() -> ScaleBenchmarkConfig:
  """The scale-mode configuration: scale defaults, overridden by given flags."""
  d = _SCALE_DEFAULT
  presets = _given_or(_PRESETS, [d.preset])
  if len(presets) != 1:
    raise cli.UserError(f"--presets: scale mode runs one preset, got "
                         f"{presets}")
  return ScaleBenchmarkConfig(
      corpus=_given_or(_CORPUS, d.corpus), corpus_dir=_CORPUS_DIR.value,
      task=_given_or(_TASK, d.task), preset=presets[0],
      rounds=_SCALE_ROUNDS.value,
      clients_per_round=_given_or(_CLIENTS, d.clients_per_round),
      local_steps=_given_or(_STEPS, d.local_steps),
      batch_size=_given_or(_BATCH, d.batch_size),
      client_learning_rate=_given_or(_LR, d.client_learning_rate),
      probe_every=_PROBE_EVERY.value, num_workers=_NUM_WORKERS.value,
      seed=_SEED.value, out_dir=_given_or(_OUT_DIR, d.out_dir))


def _mode_config():
  return (scale_config_from_flags() if _MODE.value == "scale" else
          config_from_flags())


def _run_mode(config) -> None:
  if isinstance(config, ScaleBenchmarkConfig):
    run_scale_benchmark(config)
  else:
    run_simulation_benchmark(config)


def run() -> None:
  cli.run_study(_mode_config, _run_mode, FLAGS)


if __name__ == "__main__":
  run()
