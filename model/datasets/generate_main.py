"""Generates the built-in synthetic corpus and prints its label counts.

Usage:
  python -m model.datasets.generate_main --out /tmp/corpus --size demo [--seed 1] [--tts]

Running it again with the same flags reuses the corpus already in ``--out``.
"""

import dataclasses
import time

from absl import flags

from model import cli
from model.datasets import synthetic

FLAGS = cli.launcher_flags()

_OUT = flags.DEFINE_string("out", None, "Directory to write the corpus to.",
                           required=True, flag_values=FLAGS)
_SIZE = flags.DEFINE_enum("size", "demo", list(synthetic.CORPUS_PRESETS),
                          "Corpus preset.", flag_values=FLAGS)
_SEED = cli.define("seed", synthetic.CorpusConfig().seed, flag_values=FLAGS)
_TTS = flags.DEFINE_bool("tts", False,
                         "Speak with espeak-ng voices in several languages.",
                         flag_values=FLAGS)


def main() -> None:
  config = cli.build_config(
      dataclasses.replace, synthetic.CORPUS_PRESETS[_SIZE.value],
      seed=_SEED.value, tts=_TTS.value)
  start = time.perf_counter()
  table = synthetic.generate_corpus(_OUT.value, config)
  print(f"{len(table)} clips from {len(table.client_ids)} clients in "
        f"{table.root} ({time.perf_counter() - start:.1f} s)")
  for task, counts in synthetic.label_counts(table).items():
    print(f"{task}: " + ", ".join(f"{value}={n}" for value, n in counts.items()))


def run() -> None:
  cli.run(main, FLAGS, quiet=False)


if __name__ == "__main__":
  run()
