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

from absl import flags

from model import cli
from model.datasets.loaders import DatasetSource
from model.encoders import ENCODERS
from model.ssl_model import ModelSpec
from tff_sim.algorithms import (ALGORITHMS, CLIENT_OPTIMIZERS,
                                DEFAULT_CLIENT_LEARNING_RATES, AlgorithmConfig,
                                default_client_optimizer)
from tff_sim.execution import WorkerLostError, WorkerUnreachableError
from tff_sim.partition import PARTITIONERS, PartitionConfig
from tff_sim.simulation import (PopulationTooSmallError, SimulationConfig,
                                run_federated)

FLAGS = cli.launcher_flags()

_DEFAULT = SimulationConfig()

_DATASET, _DATA_DIR = cli.define_dataset(flag_values=FLAGS)
_RUN_DIR = cli.define("run_dir", None, required=True, flag_values=FLAGS)
_TASK = cli.define("task", "nt_xent", flag_values=FLAGS)
_ENCODER = cli.define("encoder", "small", flag_values=FLAGS)
_POOLING = cli.define("pooling", ENCODERS["small"].pooling, flag_values=FLAGS)
_ALGORITHM = flags.DEFINE_enum("algorithm", "fedavg", list(ALGORITHMS),
                               "Federated algorithm.", flag_values=FLAGS)
_CLIENT_OPT = flags.DEFINE_enum("client_optimizer", None,
                                list(CLIENT_OPTIMIZERS),
                                "Client optimizer (for mimelite the base "
                                "optimizer whose state the server keeps). "
                                "Default: adam for mimelite, sgd otherwise.",
                                flag_values=FLAGS)
_CLIENT_LR = cli.define(
    "client_learning_rate", None, help="Client step size. Default: per "
    "client optimizer, " + ", ".join(
        f"{k} {v:g}" for k, v in DEFAULT_CLIENT_LEARNING_RATES.items()) + ".",
    flag_values=FLAGS)
_SERVER_LR = flags.DEFINE_float("server_learning_rate", None,
                                "Server LR (default: per algorithm).",
                                flag_values=FLAGS)
_SERVER_MOMENTUM = flags.DEFINE_float(
    "server_momentum", _DEFAULT.algorithm.server_momentum,
    "FedAvgM momentum and FedAdam/FedYogi beta_1 (0: none).",
    flag_values=FLAGS)
_EPSILON = flags.DEFINE_float(
    "adaptive_epsilon", _DEFAULT.algorithm.adaptive_epsilon,
    "FedAdam/FedYogi/FedAdagrad epsilon.", flag_values=FLAGS)
_MU = flags.DEFINE_float("proximal_mu", 0.01, "FedProx proximal strength.",
                         flag_values=FLAGS)
_DP_NOISE = flags.DEFINE_float("dp_noise_multiplier", 0.0,
                               "DP aggregation noise multiplier (0: off).",
                               flag_values=FLAGS)
_DP_CLIP = flags.DEFINE_float("dp_clip_norm", None,
                              "Fixed DP clip norm (default: adaptive).",
                              flag_values=FLAGS)
_COMPRESSION = flags.DEFINE_bool("compression", False,
                                 "8-bit compressed aggregation.",
                                 flag_values=FLAGS)
_PARTITION = flags.DEFINE_enum("partition", "natural", list(PARTITIONERS),
                               "How clips are spread over clients.",
                               flag_values=FLAGS)
_NUM_CLIENTS = flags.DEFINE_integer("num_clients", 10,
                                    "Clients for iid/dirichlet partitions.",
                                    flag_values=FLAGS)
_ALPHA = flags.DEFINE_float("alpha", 0.5, "Dirichlet concentration.",
                            flag_values=FLAGS)
_MIX = flags.DEFINE_float("mix", 0.5, "mixed partition: p (0 IID, 1 natural).",
                          flag_values=FLAGS)
_LABEL = flags.DEFINE_string("partition_label", "content",
                             "Label column of the Dirichlet skew / summary.",
                             flag_values=FLAGS)
_QUANTITY_SKEW = flags.DEFINE_float("quantity_skew", 0.0,
                                    "Dirichlet client-size power law (0: off).",
                                    flag_values=FLAGS)
_ROUNDS = cli.define("rounds", _DEFAULT.rounds, flag_values=FLAGS)
_CLIENTS = cli.define("clients_per_round", _DEFAULT.clients_per_round,
                      flag_values=FLAGS)
_BATCH = cli.define("batch_size", _DEFAULT.batch_size,
                    help="Client batch size.", flag_values=FLAGS)
_EPOCHS = flags.DEFINE_integer("local_epochs", 1, "Local epochs.",
                               flag_values=FLAGS)
_MAX_STEPS = cli.define("max_local_steps", _DEFAULT.max_local_steps,
                        flag_values=FLAGS)
_NOISE = flags.DEFINE_float("weight_noise_std", 0.0,
                            "Gaussian weight noise in local training.",
                            flag_values=FLAGS)
_EVAL_EVERY = cli.define("eval_every", _DEFAULT.eval_every, flag_values=FLAGS)
_SEED = cli.define("seed", _DEFAULT.seed, flag_values=FLAGS)
_WORKERS = cli.define("num_workers", _DEFAULT.num_workers,
                      help="Local TFF worker processes.", flag_values=FLAGS)
_CONCURRENCY = flags.DEFINE_integer("max_concurrent_clients", -1,
                                    "Per-worker concurrent client updates.",
                                    flag_values=FLAGS)
_ADDRESSES = flags.DEFINE_list(
    "worker_addresses", [],
    "host:port of running remote TFF workers (python -m tff_sim.worker_main "
    "--port P on each host); replaces --num_workers local ones.",
    flag_values=FLAGS)
_COMPARE = flags.DEFINE_bool("compare_centralized", False,
                             "Also train centrally on as many examples.",
                             flag_values=FLAGS)


def config_from_flags() -> SimulationConfig:
  """The simulation's configuration given by the parsed flags."""
  spec = ModelSpec(task=_TASK.value, encoder=dataclasses.replace(
      ENCODERS[_ENCODER.value], pooling=_POOLING.value),
                   seed=_SEED.value)
  client_optimizer = (_CLIENT_OPT.value
                      or default_client_optimizer(_ALGORITHM.value))
  client_learning_rate = (DEFAULT_CLIENT_LEARNING_RATES[client_optimizer]
                          if _CLIENT_LR.value is None else _CLIENT_LR.value)
  return SimulationConfig(
      model=spec,
      algorithm=AlgorithmConfig(
          algorithm=_ALGORITHM.value, client_optimizer=client_optimizer,
          client_learning_rate=client_learning_rate,
          server_learning_rate=_SERVER_LR.value,
          server_momentum=_SERVER_MOMENTUM.value,
          adaptive_epsilon=_EPSILON.value, proximal_mu=_MU.value,
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
  config = cli.build_config(config_from_flags)
  federated = run_federated(
      config, DatasetSource(_DATASET.value, _DATA_DIR.value), _RUN_DIR.value,
      compare_centralized=_COMPARE.value, progress=print)
  print(federated.report)


def run() -> None:
  # A worker lost mid-run is reported like the user errors (one line, exit
  # 2): the message names the worker; a traceback would add nothing.
  cli.run(main, FLAGS, user_errors=(PopulationTooSmallError,
                                    WorkerUnreachableError, WorkerLostError))


if __name__ == "__main__":
  run()
