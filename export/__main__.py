"""Exports a trained encoder + SSL task as verified on-device TFLite models.

Usage:
  python -m export --model_dir runs/cbow --out_dir exports/cbow
  python -m export --model_dir runs/cbow/model --task temporal_gap \\
      --mode flex --optimizer sgd --learning_rate 0.01 --batch_size 8 \\
      --quantization float32,int8 --corpus_dir /data/corpus --out_dir exp
  python -m export --preset small --task audio2vec_cbow --out_dir exp  # fresh
  python -m export --model_dir runs/fed --best_for retrieval_map --out_dir e
  python -m export --preset tiny --task nt_xent --multimodal --out_dir exp

Writes <out_dir>/training/ (train, embed, get_weights, set_weights[,
embed_image, train_image for multimodal models][, save, restore]) and <out_dir>/embed_<quantization>/, each as model.tflite +
manifest.json, plus report.md and quantization.csv. Every file is verified
under the on-device runtime before the directory appears.
"""

from __future__ import annotations

from absl import flags
from absl import logging

from export.conversion import QUANTIZATIONS
from export.corpus import load_corpus
from export.exporter import (TRAINING_DIR, ExportConfig, export_model,
                             fresh_source, load_source)
from export.ondevice_module import MODES
from export.optimizers import OPTIMIZERS, OptimizerConfig
from export.runtime import RUNTIMES
from export.verification import VerificationError, VerifyConfig
from model import cli
from model.best_models import best_model_dir, read_best_index
from model.tasks import IMAGE_TASKS
from model.tflite_compat import FlexOpsError

_DEFAULT = ExportConfig()
#: Runtimes of builtin files (tensorflow runs flex files).
_ON_DEVICE_RUNTIMES = [r for r in RUNTIMES if r != "tensorflow"]

_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Run directory (holding model/) or saved-model "
    "directory (holding model.json and weights.npz).")
_BEST_FOR = flags.DEFINE_string(
    "best_for", None, "Export the federated run's best global model for this "
    "downstream metric (<model_dir>/best/<metric>, listed in "
    "<model_dir>/best/best.json) instead of its final model.")
_PRESET = flags.DEFINE_enum(
    "preset", None, cli.SHARED_FLAGS["encoder"].choices(),
    "Export a freshly initialized encoder of this preset instead of "
    "--model_dir (for benchmarks).")
_TASK = cli.define(
    "task", None, help="SSL task of the train signature; default: the saved "
    "task (audio2vec_cbow with --preset). Another task than the saved one "
    "gets a fresh head.")
_MULTIMODAL = flags.DEFINE_bool(
    "multimodal", False, "With --preset: a multimodal model (also "
    f"embed_image and train_image); the task must be one of "
    f"{list(IMAGE_TASKS)}. A saved multimodal model is exported as such.")
_MODE = flags.DEFINE_enum("mode", _DEFAULT.mode, list(MODES),
                          "builtin: TFLite builtin ops only (tflite_runtime, "
                          "ai_edge_litert); flex: TF's own gradients with "
                          "Select-TF ops and save/restore signatures.")
_OPTIMIZER = flags.DEFINE_enum("optimizer", _DEFAULT.optimizer.name,
                               list(OPTIMIZERS), "On-device optimizer.")
_LEARNING_RATE = cli.define("learning_rate",
                            _DEFAULT.optimizer.learning_rate)
_MOMENTUM = flags.DEFINE_float("momentum", _DEFAULT.optimizer.momentum,
                               "SGD momentum.")
_BATCH_SIZE = cli.define("batch_size", _DEFAULT.batch_size,
                         help="Static batch size of train.")
_QUANTIZATION = flags.DEFINE_list(
    "quantization", list(_DEFAULT.quantizations),
    f"Embed-only variants to write, some of {list(QUANTIZATIONS)} (empty: "
    f"none).")
_OUT_DIR = cli.define("out_dir", None, help="Export directory.",
                      required=True)
_CORPUS_DIR = cli.define(
    "corpus_dir", None, help="Audio for verification, int8 calibration and "
    "probes; default: the tiny built-in synthetic corpus, generated into a "
    "cache directory on first use.")
_CORPUS_KIND = flags.DEFINE_enum("corpus_kind", "synthetic",
                                 cli.SHARED_FLAGS["dataset"].choices(),
                                 "Layout of --corpus_dir.")
_VERIFY_STEPS = flags.DEFINE_integer(
    "verify_steps", _DEFAULT.verify.train_steps,
    "train steps run on the file and on TF to verify it.")
_RUNTIME = cli.define(
    "runtime", _DEFAULT.verify.runtime, choices=_ON_DEVICE_RUNTIMES,
    help="Runtime that verifies builtin files (flex files: tf.lite): "
    "LiteRT's CompiledModel with XNNPACK, or tflite-runtime 2.14.")
_SEED = cli.define("seed", _DEFAULT.seed,
                   help="Seed of the in-graph random ops.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Replace an existing --out_dir.")


def _config() -> ExportConfig:
  """The export configuration given by the parsed flags."""
  return ExportConfig(
      mode=_MODE.value,
      optimizer=OptimizerConfig(_OPTIMIZER.value,
                                learning_rate=_LEARNING_RATE.value,
                                momentum=_MOMENTUM.value),
      batch_size=_BATCH_SIZE.value, quantizations=tuple(_QUANTIZATION.value),
      seed=_SEED.value,
      verify=VerifyConfig(train_steps=_VERIFY_STEPS.value,
                          runtime=_RUNTIME.value))


def main() -> None:
  if (_MODEL_DIR.value is None) == (_PRESET.value is None):
    raise cli.UserError("give exactly one of --model_dir and --preset")
  if _BEST_FOR.value is not None and _MODEL_DIR.value is None:
    raise cli.UserError("--best_for needs --model_dir (a federated run)")
  task = _TASK.value or "audio2vec_cbow"
  if _MULTIMODAL.value and (_PRESET.value is None or task not in IMAGE_TASKS):
    raise cli.UserError(f"--multimodal needs --preset and a --task that "
                        f"can train on images: one of {list(IMAGE_TASKS)} "
                        f"(got --task={task})")
  if unknown := [q for q in _QUANTIZATION.value if q not in QUANTIZATIONS]:
    raise cli.UserError(f"--quantization: unknown {unknown}; choose from "
                        f"{list(QUANTIZATIONS)}")
  config = cli.build_config(_config)
  print(f"Exporting to {_OUT_DIR.value}; every file is converted, then "
        f"verified (--verbosity=0 shows each step)", flush=True)
  try:
    model_dir = _MODEL_DIR.value
    if _BEST_FOR.value is not None:
      model_dir = best_model_dir(model_dir, _BEST_FOR.value)
      selection = read_best_index(_MODEL_DIR.value)[_BEST_FOR.value]
      print(f"best global model for {_BEST_FOR.value}: round "
            f"{selection['round']} ({selection['value']:.4g})", flush=True)
    source = (load_source(model_dir, task=_TASK.value)
              if model_dir is not None else
              fresh_source(_PRESET.value, task, seed=_SEED.value,
                           multimodal=_MULTIMODAL.value))
    corpus = load_corpus(_CORPUS_DIR.value, kind=_CORPUS_KIND.value,
                         sample_rate=source.model.spec.frontend.sample_rate)
    logging.info("corpus %s: %d clips", corpus.source, len(corpus.table))
    result = export_model(source, _OUT_DIR.value, config, corpus=corpus,
                          overwrite=_OVERWRITE.value)
  except (FileExistsError, FileNotFoundError, FlexOpsError,
          VerificationError, ValueError) as e:
    raise cli.UserError(f"export failed, nothing written: {e}") from e
  training = result.manifests[TRAINING_DIR]
  train = training.verification["train"]
  print(f"Exported to {result.out_dir}:")
  for manifest in result.manifests.values():
    print(f"  {manifest.path}: {manifest.file.bytes:,} bytes, "
          f"sha256 {manifest.file.sha256[:16]}...")
  print(f"train loss {train['first_cycle_mean_loss']:.4g} -> "
        f"{train['last_cycle_mean_loss']:.4g} over {train['steps']} steps; "
        f"vs TF per step: loss {train['max_relative_loss_difference']:.2e}, "
        f"gradient {train['max_relative_gradient_error']:.2e} (relative); "
        f"embed max abs error "
        f"{training.verification['embed']['max_abs_error']:.2e}")
  print(f"Report: {result.out_dir}/report.md")


def run() -> None:
  cli.run(main)


if __name__ == "__main__":
  run()
