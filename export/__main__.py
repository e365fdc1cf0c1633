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

from export.conversion import QUANTIZATIONS
from export.exporter import ExportConfig, ExportRequest, run_export
from export.ondevice_module import MODES
from export.optimizers import OPTIMIZERS, OptimizerConfig
from export.runtime import RUNTIMES
from export.verification import VerificationError, VerifyConfig
from model import cli
from model.tasks import IMAGE_TASKS
from model.tflite_compat import FlexOpsError

FLAGS = cli.launcher_flags()

_DEFAULT = ExportConfig()
#: Runtimes of builtin files (tensorflow runs flex files).
_ON_DEVICE_RUNTIMES = [r for r in RUNTIMES if r != "tensorflow"]

_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Run directory (holding model/) or saved-model "
    "directory (holding model.json and weights.npz).", flag_values=FLAGS)
_BEST_FOR = flags.DEFINE_string(
    "best_for", None, "Export the federated run's best global model for this "
    "downstream metric (<model_dir>/best/<metric>, listed in "
    "<model_dir>/best/best.json) instead of its final model.",
    flag_values=FLAGS)
_PRESET = flags.DEFINE_enum(
    "preset", None, cli.SHARED_FLAGS["encoder"].choices(),
    "Export a freshly initialized encoder of this preset instead of "
    "--model_dir (for benchmarks).", flag_values=FLAGS)
_TASK = cli.define(
    "task", None, help="SSL task of the train signature; default: the saved "
    "task (audio2vec_cbow with --preset). Another task than the saved one "
    "gets a fresh head.", flag_values=FLAGS)
_MULTIMODAL = flags.DEFINE_bool(
    "multimodal", False, "With --preset: a multimodal model (also "
    f"embed_image and train_image); the task must be one of "
    f"{list(IMAGE_TASKS)}. A saved multimodal model is exported as such.",
    flag_values=FLAGS)
_MODE = flags.DEFINE_enum("mode", _DEFAULT.mode, list(MODES),
                          "builtin: TFLite builtin ops only (tflite_runtime, "
                          "ai_edge_litert); flex: TF's own gradients with "
                          "Select-TF ops and save/restore signatures.",
                          flag_values=FLAGS)
_OPTIMIZER = flags.DEFINE_enum("optimizer", _DEFAULT.optimizer.name,
                               list(OPTIMIZERS), "On-device optimizer.",
                               flag_values=FLAGS)
_LEARNING_RATE = cli.define("learning_rate",
                            _DEFAULT.optimizer.learning_rate, flag_values=FLAGS)
_MOMENTUM = flags.DEFINE_float("momentum", _DEFAULT.optimizer.momentum,
                               "SGD momentum.", flag_values=FLAGS)
_BATCH_SIZE = cli.define("batch_size", _DEFAULT.batch_size,
                         help="Static batch size of train.", flag_values=FLAGS)
_QUANTIZATION = flags.DEFINE_list(
    "quantization", list(_DEFAULT.quantizations),
    f"Embed-only variants to write, some of {list(QUANTIZATIONS)} (empty: "
    f"none).", flag_values=FLAGS)
_OUT_DIR = cli.define("out_dir", None, help="Export directory.",
                      required=True, flag_values=FLAGS)
_CORPUS_DIR = cli.define(
    "corpus_dir", None, help="Audio for verification, int8 calibration and "
    "probes; default: the tiny built-in synthetic corpus, generated into a "
    "cache directory on first use.", flag_values=FLAGS)
_CORPUS_KIND = flags.DEFINE_enum("corpus_kind", "synthetic",
                                 cli.SHARED_FLAGS["dataset"].choices(),
                                 "Layout of --corpus_dir.", flag_values=FLAGS)
_VERIFY_STEPS = flags.DEFINE_integer(
    "verify_steps", _DEFAULT.verify.train_steps,
    "train steps run on the file and on TF to verify it.", flag_values=FLAGS)
_RUNTIME = cli.define(
    "runtime", _DEFAULT.verify.runtime, choices=_ON_DEVICE_RUNTIMES,
    help="Runtime that verifies builtin files (flex files: tf.lite): "
    "LiteRT's CompiledModel with XNNPACK, or tflite-runtime 2.14.",
    flag_values=FLAGS)
_SEED = cli.define("seed", _DEFAULT.seed,
                   help="Seed of the in-graph random ops.", flag_values=FLAGS)
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Replace an existing --out_dir.",
                               flag_values=FLAGS)


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


def request_from_flags() -> ExportRequest:
  """The model and audio given by the parsed flags.

  Raises:
    cli.UserError: The flags contradict each other.
  """
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
  return ExportRequest(
      model_dir=_MODEL_DIR.value, best_for=_BEST_FOR.value,
      preset=_PRESET.value, task=_TASK.value, multimodal=_MULTIMODAL.value,
      corpus_dir=_CORPUS_DIR.value, corpus_kind=_CORPUS_KIND.value)


def main() -> None:
  request = cli.build_config(request_from_flags)
  config = cli.build_config(_config)
  try:
    export = run_export(request, _OUT_DIR.value, config,
                        overwrite=_OVERWRITE.value,
                        progress=lambda line: print(line, flush=True))
  except (FileExistsError, FileNotFoundError, FlexOpsError,
          VerificationError, ValueError) as e:
    raise cli.UserError(f"export failed, nothing written: {e}") from e
  print(export.report)


def run() -> None:
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
