package com.example.audiossl.core

/**
 * Every name the app shares with the exported model, its `manifest.json` and the toolkit's
 * host-side virtual device (`export/device_session.py`).
 *
 * This is the only Kotlin file that spells these names. `tests/test_android_contract.py`
 * exports a model and checks each constant against it: every `SIGNATURE_*` must be a signature
 * of the model, every `TENSOR_*` an input or output of one, every `KEY_*` a key of the manifest,
 * every `VALUE_*` a value in it, and every `FILE_*` / `STATE_*` / `FORMAT_*` constant must
 * equal the toolkit's. Sizes (batch, samples, sample rate, embedding width, variable shapes) are
 * never constants: they are read from the manifest.
 */
object Contract {
  /** One optimizer step: `waveform` float32 [B, S] -> `loss`. */
  const val SIGNATURE_TRAIN = "train"

  /** Embeddings: `waveform` float32 [N, patch_samples] -> `embedding` [N, D]. */
  const val SIGNATURE_EMBED = "embed"

  /** Every variable (weights, then optimizer state), one output per manifest variable key. */
  const val SIGNATURE_GET_WEIGHTS = "get_weights"

  /** Assigns every variable, one input per manifest variable key -> `ok`. */
  const val SIGNATURE_SET_WEIGHTS = "set_weights"

  /** Audio input of `train` and `embed`. */
  const val TENSOR_WAVEFORM = "waveform"

  /** Output of `train`. */
  const val TENSOR_LOSS = "loss"

  /** Output of `embed`. */
  const val TENSOR_EMBEDDING = "embedding"

  /** Output of `set_weights`: 1 if the tensors were assigned, 0 if rejected (non-finite). */
  const val TENSOR_OK = "ok"

  /** Manifest keys (the fields of `export.manifest.Manifest` and its parts). */
  const val KEY_FORMAT_VERSION = "format_version"
  const val KEY_KIND = "kind"
  const val KEY_PATH = "path"
  const val KEY_FILE = "file"
  const val KEY_NAME = "name"
  const val KEY_BYTES = "bytes"
  const val KEY_SHA256 = "sha256"
  const val KEY_TOOLKIT_VERSION = "toolkit_version"
  const val KEY_TENSORFLOW_VERSION = "tensorflow_version"
  const val KEY_MODEL = "model"
  const val KEY_TASK = "task"
  const val KEY_TASK_CONFIG = "task_config"
  const val KEY_ENCODER = "encoder"
  const val KEY_PRESET = "preset"
  const val KEY_CONFIG = "config"
  const val KEY_NUM_PARAMS = "num_params"
  const val KEY_FRONTEND = "frontend"
  const val KEY_SAMPLE_RATE = "sample_rate"
  const val KEY_EXAMPLE_SAMPLES = "example_samples"
  const val KEY_PATCH_SAMPLES = "patch_samples"
  const val KEY_EMBEDDING_DIM = "embedding_dim"
  const val KEY_MULTIMODAL = "multimodal"
  const val KEY_IMAGE_SHAPE = "image_shape"
  const val KEY_EMBED_BATCH = "embed_batch"
  const val KEY_OPERATORS = "operators"
  const val KEY_FLEX_OPS = "flex_ops"
  const val KEY_OPS_SETS = "ops_sets"
  const val KEY_SOURCE = "source"
  const val KEY_MODE = "mode"
  const val KEY_QUANTIZATION = "quantization"
  const val KEY_TYPE = "type"
  const val KEY_NOTES = "notes"
  const val KEY_REPRESENTATIVE_PATCHES = "representative_patches"
  const val KEY_SIGNATURES = "signatures"
  const val KEY_INPUTS = "inputs"
  const val KEY_OUTPUTS = "outputs"
  const val KEY_DTYPE = "dtype"
  const val KEY_SHAPE = "shape"
  const val KEY_BATCH_SIZE = "batch_size"
  const val KEY_OPTIMIZER = "optimizer"
  const val KEY_HYPERPARAMETERS = "hyperparameters"
  const val KEY_RANDOM_SEED = "random_seed"
  const val KEY_VARIABLES = "variables"
  const val KEY_VARIABLE_BYTES = "variable_bytes"
  const val KEY_VERIFICATION = "verification"
  const val KEY_DELEGATION = "delegation"
  const val KEY_KEY = "key"
  const val KEY_ROLE = "role"

  /** `format_version` of the manifest layout the app reads (`export.manifest.FORMAT_VERSION`). */
  const val MANIFEST_FORMAT_VERSION = 1

  /** `kind` of an on-device training model (the other kind is an embed-only model). */
  const val VALUE_KIND_TRAINING = "training"

  /** `mode` of an export that runs on the plain TFLite runtime (no Select-TF ops). */
  const val VALUE_MODE_BUILTIN = "builtin"

  /** `role` of a model weight (the other variables are optimizer state). */
  const val VALUE_ROLE_WEIGHT = "weight"

  /** `dtype` of the audio and of every variable. */
  const val VALUE_DTYPE_FLOAT32 = "float32"

  /** File names of an export directory (`export.manifest.MODEL_NAME`, `MANIFEST_NAME`). */
  const val FILE_MODEL = "model.tflite"
  const val FILE_MANIFEST = "manifest.json"

  /**
   * Files in the app's storage (`export.weight_store.WEIGHTS_FILE`, `PREVIOUS_WEIGHTS_FILE`,
   * `export.device_session.WINDOWS_FILE`, `DELTA_FILE`).
   */
  const val STATE_WEIGHTS = "weights.odtf"
  const val STATE_PREVIOUS_WEIGHTS = "weights.prev.odtf"
  const val STATE_WINDOWS = "windows.odtf"
  const val STATE_DELTA = "update.odtf"

  /**
   * Tensor-file layout (`export.tensor_file.MAGIC`, `FORMAT_VERSION`,
   * `export.audio_buffers.WINDOWS_TENSOR`).
   */
  const val FORMAT_MAGIC = "ODTF"
  const val FORMAT_VERSION = 1
  const val FORMAT_WINDOWS_TENSOR = "windows"

  /** Windows quieter than this RMS are not buffered (`export.audio_buffers.MIN_RMS`). */
  const val MIN_WINDOW_RMS = 1e-4
}
