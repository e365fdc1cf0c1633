"""Launcher of the FASSL study: feature-matching vs. predictive SSL,
federated (natural partition, >= 100 clients) vs. centralized.

Usage:
  python -m benchmarks.fassl_main --out_dir fassl_output
      [--corpus fl] [--encoder tiny] [--rounds 30] [--clients_per_round 10]
      [--feature_matching nt_xent,barlow_twins,simsiam]
      [--predictive audio2vec_cbow,audio2vec_skipgram,temporal_gap]
  python -m benchmarks.fassl_main --quick --out_dir /tmp/fassl  # seconds

Rerunning the same command reuses the corpus and every finished run (more
--rounds resumes them); the probes are recomputed. Prints the report.
"""

from __future__ import annotations

from absl import flags

from benchmarks.fassl import QUICK, FasslConfig, run_fassl_benchmark
from model import cli
from model.train import OPTIMIZERS
from tff_sim.algorithms import ALGORITHMS

FLAGS = cli.launcher_flags()

_DEFAULT = FasslConfig()

# Flags are named after the FasslConfig fields they set.
_QUICK = flags.DEFINE_bool(
    "quick", False, "Smallest setting (tiny corpus, 2 rounds, one task per "
    "family), overriding the other study flags; a smoke test.",
    flag_values=FLAGS)
_CORPUS, _CORPUS_DIR = cli.define_corpus(_DEFAULT.corpus, flag_values=FLAGS)
_ENCODER = cli.define("encoder", _DEFAULT.encoder,
                      help="Encoder preset of every run.", flag_values=FLAGS)
_FM = flags.DEFINE_list("feature_matching", list(_DEFAULT.feature_matching),
                        "Feature-matching tasks.", flag_values=FLAGS)
_PREDICTIVE = flags.DEFINE_list("predictive", list(_DEFAULT.predictive),
                                "Predictive tasks.", flag_values=FLAGS)
_ALGORITHM = flags.DEFINE_enum("algorithm", _DEFAULT.algorithm,
                               list(ALGORITHMS), "Federated algorithm.",
                               flag_values=FLAGS)
_LOOP = cli.define_federated_loop(_DEFAULT, flag_values=FLAGS)
_CENTRAL_OPT = flags.DEFINE_enum("centralized_optimizer",
                                 _DEFAULT.centralized_optimizer,
                                 list(OPTIMIZERS), "Centralized optimizer.",
                                 flag_values=FLAGS)
_CENTRAL_LR = flags.DEFINE_float("centralized_learning_rate",
                                 _DEFAULT.centralized_learning_rate,
                                 "Centralized step size.", flag_values=FLAGS)
_WORKERS = cli.define("num_workers", _DEFAULT.num_workers, flag_values=FLAGS)
_SEED = cli.define("seed", _DEFAULT.seed, flag_values=FLAGS)
_OUT_DIR = cli.define("out_dir", _DEFAULT.out_dir, flag_values=FLAGS)


def config_from_flags() -> FasslConfig:
  """The study configuration given by the parsed flags."""
  values = dict(
      corpus=_CORPUS.value, corpus_dir=_CORPUS_DIR.value,
      encoder=_ENCODER.value, feature_matching=tuple(_FM.value),
      predictive=tuple(_PREDICTIVE.value), algorithm=_ALGORITHM.value,
      **_LOOP(),
      centralized_optimizer=_CENTRAL_OPT.value,
      centralized_learning_rate=_CENTRAL_LR.value,
      num_workers=_WORKERS.value, seed=_SEED.value, out_dir=_OUT_DIR.value)
  if _QUICK.value:
    values.update(QUICK)
  return FasslConfig(**values)


def run() -> None:
  cli.run_study(config_from_flags, run_fassl_benchmark, FLAGS)


if __name__ == "__main__":
  run()
