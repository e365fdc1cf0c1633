"""Federated self-supervised training in TensorFlow Federated.

Usage:
  python -m tff_sim --data_dir /tmp/corpus --run_dir runs/fedavg \\
      --task nt_xent --encoder small --algorithm fedavg \\
      --partition natural --rounds 50 --clients_per_round 8

Kill it at any point and rerun the same command: it resumes from the last
saved round. ``--num_workers 4`` splits each round's clients over 4 TFF worker
processes; ``--worker_addresses hostA:8000,hostB:8000`` runs them on workers
started on other hosts with ``python -m tff_sim.worker_main --port 8000``.
``--compare_centralized`` also trains centrally on the same data for the same
number of examples and prints both evaluations side by side.
"""

from __future__ import annotations

import dataclasses
import os

from absl import flags

from model import cli
from model import evaluation
from model.datasets.audio import decode_clips
from model.datasets.loaders import load_dataset
from model.datasets.pipeline import training_segments
from model.encoders import ENCODERS
from model.ssl_model import ModelSpec
from model.train import TrainConfig, train_centralized
from tff_sim.algorithms import ALGORITHMS, CLIENT_OPTIMIZERS, AlgorithmConfig
from tff_sim.execution import WorkerLostError, WorkerUnreachableError
from tff_sim.partition import PARTITIONERS, PartitionConfig
from tff_sim.report import plot_quality_vs_cost
from tff_sim.simulation import PopulationTooSmallError, SimulationConfig, run_simulation

_DEFAULT = SimulationConfig()

_DATASET, _DATA_DIR = cli.define_dataset()
_RUN_DIR = cli.define("run_dir", None, required=True)
_TASK = cli.define("task", "nt_xent")
_ENCODER = cli.define("encoder", "small")
_POOLING = cli.define("pooling", ENCODERS["small"].pooling)
_ALGORITHM = flags.DEFINE_enum("algorithm", "fedavg", list(ALGORITHMS),
                               "Federated algorithm.")
_CLIENT_OPT = flags.DEFINE_enum("client_optimizer", "sgd",
                                list(CLIENT_OPTIMIZERS), "Client optimizer.")
_CLIENT_LR = cli.define("client_learning_rate",
                        _DEFAULT.algorithm.client_learning_rate)
_SERVER_LR = flags.DEFINE_float("server_learning_rate", None,
                                "Server LR (default: per algorithm).")
_MU = flags.DEFINE_float("proximal_mu", 0.01, "FedProx proximal strength.")
_DP_NOISE = flags.DEFINE_float("dp_noise_multiplier", 0.0,
                               "DP aggregation noise multiplier (0: off).")
_DP_CLIP = flags.DEFINE_float("dp_clip_norm", None,
                              "Fixed DP clip norm (default: adaptive).")
_COMPRESSION = flags.DEFINE_bool("compression", False,
                                 "8-bit compressed aggregation.")
_PARTITION = flags.DEFINE_enum("partition", "natural", list(PARTITIONERS),
                               "How clips are spread over clients.")
_NUM_CLIENTS = flags.DEFINE_integer("num_clients", 10,
                                    "Clients for iid/dirichlet partitions.")
_ALPHA = flags.DEFINE_float("alpha", 0.5, "Dirichlet concentration.")
_MIX = flags.DEFINE_float("mix", 0.5, "mixed partition: p (0 IID, 1 natural).")
_LABEL = flags.DEFINE_string("partition_label", "content",
                             "Label column of the Dirichlet skew / summary.")
_QUANTITY_SKEW = flags.DEFINE_float("quantity_skew", 0.0,
                                    "Dirichlet client-size power law (0: off).")
_ROUNDS = cli.define("rounds", _DEFAULT.rounds)
_CLIENTS = cli.define("clients_per_round", _DEFAULT.clients_per_round)
_BATCH = cli.define("batch_size", _DEFAULT.batch_size,
                    help="Client batch size.")
_EPOCHS = flags.DEFINE_integer("local_epochs", 1, "Local epochs.")
_MAX_STEPS = cli.define("max_local_steps", _DEFAULT.max_local_steps)
_NOISE = flags.DEFINE_float("weight_noise_std", 0.0,
                            "Gaussian weight noise in local training.")
_EVAL_EVERY = cli.define("eval_every", _DEFAULT.eval_every)
_SEED = cli.define("seed", _DEFAULT.seed)
_WORKERS = cli.define("num_workers", _DEFAULT.num_workers,
                      help="Local TFF worker processes.")
_CONCURRENCY = flags.DEFINE_integer("max_concurrent_clients", -1,
                                    "Per-worker concurrent client updates.")
_ADDRESSES = flags.DEFINE_list(
    "worker_addresses", [],
    "host:port of running remote TFF workers (python -m tff_sim.worker_main "
    "--port P on each host); replaces --num_workers local ones.")
_COMPARE = flags.DEFINE_bool("compare_centralized", False,
                             "Also train centrally on as many examples.")


def _config() -> SimulationConfig:
  """The simulation's configuration given by the parsed flags."""
  spec = ModelSpec(task=_TASK.value, encoder=dataclasses.replace(
      ENCODERS[_ENCODER.value], pooling=_POOLING.value),
                   seed=_SEED.value)
  return SimulationConfig(
      model=spec,
      algorithm=AlgorithmConfig(
          algorithm=_ALGORITHM.value, client_optimizer=_CLIENT_OPT.value,
          client_learning_rate=_CLIENT_LR.value,
          server_learning_rate=_SERVER_LR.value, proximal_mu=_MU.value,
          dp_noise_multiplier=_DP_NOISE.value, dp_clip_norm=_DP_CLIP.value,
          compression=_COMPRESSION.value),
      partition=PartitionConfig(
          method=_PARTITION.value, num_clients=_NUM_CLIENTS.value,
          alpha=_ALPHA.value, label=_LABEL.value,
          quantity_skew=_QUANTITY_SKEW.value, mix=_MIX.value, seed=_SEED.value),
      rounds=_ROUNDS.value, clients_per_round=_CLIENTS.value,
      batch_size=_BATCH.value, local_epochs=_EPOCHS.value,
      max_local_steps=_MAX_STEPS.value, weight_noise_std=_NOISE.value,
      eval_every=_EVAL_EVERY.value, seed=_SEED.value,
      num_workers=_WORKERS.value,
      max_concurrent_clients=_CONCURRENCY.value,
      worker_addresses=tuple(_ADDRESSES.value))


def main() -> None:
  config = cli.build_config(_config)
  spec = config.model
  table, waveforms, report = decode_clips(
      load_dataset(_DATASET.value, _DATA_DIR.value),
      sample_rate=spec.frontend.sample_rate, show_progress=True)
  print(report.summary())
  result = run_simulation(config, table, waveforms, _RUN_DIR.value)
  plot = plot_quality_vs_cost(_RUN_DIR.value)
  totals = result.totals
  print(f"{config.rounds} rounds: {totals['examples']:.0f} client examples, "
        f"{totals['client_flops'] / 1e12:.3f} client TFLOPs, "
        f"{(totals['bytes_down'] + totals['bytes_up']) / 1e6:.1f} MB on the "
        f"wire, {totals['wall_s']:.0f} s; quality vs cost: {plot}")
  print("best round per metric: " + ", ".join(
      f"{k} {v:.3f} (round {r})" for k, (r, v) in result.best.items())
        + f"; those models are in {_RUN_DIR.value}/best/<metric> (export "
        f"one with python -m export --model_dir {_RUN_DIR.value} "
        f"--best_for <metric>)")
  rows = {f"federated ({config.algorithm.algorithm})": result.final_metrics}
  if _COMPARE.value:
    steps = max(1, round(totals["examples"] / config.batch_size))
    central = train_centralized(
        spec, TrainConfig(steps=steps, batch_size=config.batch_size,
                          seed=_SEED.value),
        training_segments(waveforms, spec).waveforms,
        os.path.join(_RUN_DIR.value, "centralized"),
        dataset_info={"kind": _DATASET.value, "clips": len(table)})
    rows["centralized (same examples)"] = evaluation.evaluate_encoder(
        central.model.encoder, table, waveforms, spec.frontend)
  print(evaluation.format_markdown_table(rows))
  evaluation.write_csv(rows, os.path.join(_RUN_DIR.value, "comparison.csv"))


def run() -> None:
  # A worker lost mid-run is reported like the user errors (one line, exit
  # 2): the message names the worker; a traceback would add nothing.
  cli.run(main, user_errors=(PopulationTooSmallError, WorkerUnreachableError,
                             WorkerLostError))


if __name__ == "__main__":
  run()
