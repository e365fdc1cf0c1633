"""Launcher of the FedSA study (Xie et al., "Federated Selective Aggregation for Knowledge Amalgamation", 2022).

Usage:
  python -m benchmarks.fedsa_main --out_dir fedsa_output --corpus full \\
      --teachers small:nt_xent,small:triplet,tiny:temporal_gap,small:audio2vec_cbow \\
      --student_encoder tiny --label_fractions 0.01,0.05,0.1,1 --seeds 0,1,2

Trains (once; cached in <out_dir>/teachers) one teacher per --teachers entry
on its own speakers, then for every labelled fraction and seed a student by
FedSA and by the baselines (scratch, best teacher, central KA, FedAvg of
students, log-mel), and writes report.md, results.csv, selection.csv,
accuracy_by_round.csv, selection.png and results.png to --out_dir. Prints
the report.
"""

from __future__ import annotations

from absl import flags

from benchmarks.fedsa import FedSAStudyConfig, run_fedsa_study
from model import cli
from tff_sim.fedsa import HINT_LAYERS, FedSAConfig

FLAGS = cli.launcher_flags()

_DEFAULT = FedSAStudyConfig()
_LOOP = _DEFAULT.fedsa

# Flags are named after the FedSAStudyConfig and FedSAConfig fields.
_CORPUS, _CORPUS_DIR = cli.define_corpus(_DEFAULT.corpus, flag_values=FLAGS)
_TEACHERS = flags.DEFINE_list("teachers", list(_DEFAULT.teachers),
                              "One preset:task per teacher.", flag_values=FLAGS)
_TEACHER_STEPS = flags.DEFINE_integer("teacher_steps", _DEFAULT.teacher_steps,
                                      "Training steps of every teacher.",
                                      flag_values=FLAGS)
_TEACHER_BATCH = flags.DEFINE_integer(
    "teacher_batch_size", _DEFAULT.teacher_batch_size,
    "Batch size of the teachers' training.", flag_values=FLAGS)
_STUDENT_ENCODER = flags.DEFINE_enum("student_encoder",
                                     _DEFAULT.student_encoder,
                                     cli.SHARED_FLAGS["encoder"].choices(),
                                     "Preset of the student.",
                                     flag_values=FLAGS)
_DOWNSTREAM = flags.DEFINE_string("downstream_task", _DEFAULT.downstream_task,
                                  "Label column of the new task.",
                                  flag_values=FLAGS)
_FRACTIONS = flags.DEFINE_list(
    "label_fractions", [str(f) for f in _DEFAULT.label_fractions],
    "Labelled fractions of the task's training clips.", flag_values=FLAGS)
_SEEDS = flags.DEFINE_list("seeds", [str(s) for s in _DEFAULT.seeds],
                           "Seeds (one run per seed).", flag_values=FLAGS)
_ABLATION = flags.DEFINE_list(
    "ablation_fractions", [str(f) for f in _DEFAULT.ablation_fractions],
    "Fractions at which the FedSA ablations also run.", flag_values=FLAGS)
_FINE_TUNE = flags.DEFINE_integer(
    "fine_tune_steps", _DEFAULT.fine_tune_steps,
    "0: score by linear probes; > 0: fine-tune every student with a new "
    "head on the labelled clips for this many steps.", flag_values=FLAGS)
_ROUNDS = cli.define("rounds", _LOOP.rounds, flag_values=FLAGS)
_PERIOD = flags.DEFINE_integer(
    "selection_period", _LOOP.selection_period,
    "Rounds between teacher draws and head re-fits.", flag_values=FLAGS)
_TOP_K = flags.DEFINE_integer("top_k", _LOOP.top_k,
                              "Teachers drawn (with replacement) per period.",
                              flag_values=FLAGS)
_TEMPERATURE = flags.DEFINE_float("temperature", _LOOP.temperature,
                                  "Softmax temperature of the selection.",
                                  flag_values=FLAGS)
_CAM_BLOCK = flags.DEFINE_integer("cam_block", _LOOP.cam_block,
                                  "Conv block of Grad-CAM (negative: from "
                                  "the last).", flag_values=FLAGS)
_HINT = flags.DEFINE_enum("hint_layer", _LOOP.hint_layer, list(HINT_LAYERS),
                          "Layer of the hint loss.", flag_values=FLAGS)
_LOCAL_STEPS = flags.DEFINE_integer("local_steps", _LOOP.local_steps,
                                    "Local steps per draw per round.",
                                    flag_values=FLAGS)
_BATCH = cli.define("batch_size", _LOOP.batch_size,
                    help="Patches per distillation step.", flag_values=FLAGS)
_LR = cli.define("learning_rate", _LOOP.learning_rate,
                 help="Adam step size (distillation and probe set).",
                 flag_values=FLAGS)
_PROBE_STEPS = flags.DEFINE_integer(
    "probe_steps", _LOOP.probe_steps,
    "Steps training the student on the labelled clips first.",
    flag_values=FLAGS)
_PROBE_BATCH = flags.DEFINE_integer("probe_batch_size", _LOOP.probe_batch_size,
                                    "Patches per probe-set step.",
                                    flag_values=FLAGS)
_OUT_DIR = cli.define("out_dir", _DEFAULT.out_dir, flag_values=FLAGS)


def config_from_flags() -> FedSAStudyConfig:
  """The study configuration given by the parsed flags."""
  return FedSAStudyConfig(
      corpus=_CORPUS.value, corpus_dir=_CORPUS_DIR.value,
      teachers=tuple(_TEACHERS.value), teacher_steps=_TEACHER_STEPS.value,
      teacher_batch_size=_TEACHER_BATCH.value,
      student_encoder=_STUDENT_ENCODER.value,
      downstream_task=_DOWNSTREAM.value,
      label_fractions=tuple(float(f) for f in _FRACTIONS.value),
      seeds=tuple(int(s) for s in _SEEDS.value),
      ablation_fractions=tuple(float(f) for f in _ABLATION.value),
      fine_tune_steps=_FINE_TUNE.value,
      fedsa=FedSAConfig(
          rounds=_ROUNDS.value, selection_period=_PERIOD.value,
          top_k=_TOP_K.value, temperature=_TEMPERATURE.value,
          cam_block=_CAM_BLOCK.value, hint_layer=_HINT.value,
          local_steps=_LOCAL_STEPS.value, batch_size=_BATCH.value,
          learning_rate=_LR.value, probe_steps=_PROBE_STEPS.value,
          probe_batch_size=_PROBE_BATCH.value),
      out_dir=_OUT_DIR.value)


def run() -> None:
  cli.run_study(config_from_flags, run_fedsa_study, FLAGS)


if __name__ == "__main__":
  run()
