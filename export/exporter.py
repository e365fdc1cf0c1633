"""Exports a trained encoder + SSL task as verified on-device TFLite models.

An export directory holds ``training/`` (the on-device training model),
``embed_<quantization>/`` (embed-only inference models), each as
``model.tflite`` + ``manifest.json``, and ``report.md`` + ``quantization.csv``.
Everything is written to a temporary directory beside the output and renamed
into place only after every file passed its verification, so a failed export
leaves nothing half-written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from typing import Any, Callable, Iterator, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from export import delegation as delegation_lib
from export import manifest as manifest_lib
from export import quality
from export import report as report_lib
from export.conversion import (QUANTIZATIONS, Conversion, convert_embed_model,
                               convert_training_model)
from export.corpus import Corpus, load_corpus
from export.manifest import (EncoderInfo, FileInfo, Manifest, ModelInfo,
                             OptimizerInfo, QuantizationInfo, SignatureSpec,
                             TensorSpec, VariableSpec)
from export.ondevice_module import MODES, EmbedModule, OnDeviceModule
from export.optimizers import OptimizerConfig
from export.runtime import OnDeviceModel
from export.verification import (VerifyConfig, verify_embed_model,
                                 verify_training_model)
from model import best_models
from model.config_checks import require_positive
from model.datasets.images import load_digits_images
from model.encoders import ENCODERS
from model.saved_model import SavedModel
from model.ssl_model import ModelSpec, SSLModel, load_model
from model.tasks import check_task_batch_size

__all__ = ["TRAINING_DIR", "embed_dir", "ExportConfig", "Source",
           "load_source", "fresh_source", "ExportResult", "export_model",
           "ExportRequest", "ExportRun", "run_export"]

#: Subdirectory of the training model.
TRAINING_DIR = "training"
#: Patches per TF ``embed`` call when embedding the corpus.
_EMBED_CHUNK = 64


def embed_dir(quantization: str) -> str:
  """Subdirectory of an embed-only variant, e.g. ``embed_int8``."""
  return f"embed_{quantization}"


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  """What to export.

  Attributes:
    mode: ``builtin`` (runs under tflite_runtime / ai_edge_litert) or
      ``flex`` (TF's gradients, Select-TF ops, save/restore signatures).
    optimizer: On-device optimizer.
    batch_size: Static batch size of ``train``.
    quantizations: Embed-only variants to write (may be empty).
    seed: Seed of the in-graph random ops (crops, augmentations).
    representative_patches: Corpus patches that calibrate ``int8``.
    verify: How the files are checked.
  """

  mode: str = "builtin"
  optimizer: OptimizerConfig = OptimizerConfig()
  batch_size: int = 16
  quantizations: tuple[str, ...] = QUANTIZATIONS
  seed: int = 0
  representative_patches: int = 64
  verify: VerifyConfig = VerifyConfig()

  def __post_init__(self):
    object.__setattr__(self, "quantizations", tuple(self.quantizations))
    if self.mode not in MODES:
      raise ValueError(f"ExportConfig.mode: unknown mode {self.mode!r}; "
                       f"expected one of {MODES}")
    if unknown := [q for q in self.quantizations if q not in QUANTIZATIONS]:
      raise ValueError(f"ExportConfig.quantizations: unknown {unknown}; "
                       f"expected some of {QUANTIZATIONS}")
    if len(set(self.quantizations)) != len(self.quantizations):
      raise ValueError(f"ExportConfig.quantizations: duplicates in "
                       f"{self.quantizations}")
    require_positive(self, ("batch_size", "representative_patches"))


@dataclasses.dataclass(frozen=True)
class Source:
  """The model to export and where it came from.

  Attributes:
    model: The model (not modified by the export).
    description: Provenance for the manifests (path, checksum, task, ...).
  """

  model: SSLModel
  description: dict[str, Any]


def load_source(path: str, *, task: Optional[str] = None) -> Source:
  """Loads a saved model from a run directory or a saved-model directory.

  Args:
    path: ``<run_dir>`` (holding ``model/``) or the model directory itself
      (holding ``model.json`` and ``weights.npz``).
    task: Export under this SSL task (a fresh head on the saved encoder);
      default: the saved task with its trained head.

  Raises:
    FileNotFoundError: Neither layout is found (the message names both).
    ValueError: ``model.json`` is not a spec or the weights do not match.
  """
  saved = SavedModel.read(path)
  model = load_model(saved.directory, task=task)
  description = {
      "kind": "saved_model",
      "path": saved.directory,
      "weights_sha256": manifest_lib.sha256_file(saved.weights_path),
      "saved_task": saved.task,
      "head": "saved" if model.spec.task == saved.task else "fresh",
  }
  selection = os.path.join(saved.directory, best_models.SELECTION_FILE)
  if os.path.exists(selection):  # A run's best model for some metric.
    with open(selection, encoding="utf-8") as f:
      description["best_for"] = json.load(f)
  return Source(model=model, description=description)


def fresh_source(preset: str, task: str, *, seed: int = 0,
                 multimodal: bool = False) -> Source:
  """A freshly initialized model (for benchmarks and tests).

  Args:
    preset: Encoder preset.
    task: SSL task.
    seed: Seed of the weights.
    multimodal: Also train on and embed images (``embed_image`` and
      ``train_image`` signatures); the task must accept images.

  Raises:
    ValueError: Unknown preset or task.
  """
  if preset not in ENCODERS:
    raise ValueError(f"unknown encoder preset {preset!r}; expected one of "
                     f"{sorted(ENCODERS)}")
  model = SSLModel(ModelSpec(task=task, encoder=ENCODERS[preset], seed=seed,
                             multimodal=multimodal))
  return Source(model=model, description={"kind": "fresh", "preset": preset,
                                          "seed": seed})


@dataclasses.dataclass(frozen=True)
class ExportResult:
  """What an export wrote.

  Attributes:
    out_dir: The export directory.
    manifests: Manifest of every model, by subdirectory name.
    quantization: The embed-only variants' measurements.
  """

  out_dir: str
  manifests: dict[str, Manifest]
  quantization: tuple[report_lib.QuantizationRow, ...]


def _clone(model: SSLModel) -> SSLModel:
  """A new model with the same spec and copies of the weights."""
  clone = SSLModel(model.spec)
  for target, source in zip(clone.weights, model.weights):
    target.assign(source)
  return clone


def _model_info(model: SSLModel) -> ModelInfo:
  spec = model.spec
  return ModelInfo(
      task=spec.task, task_config=dataclasses.asdict(spec.task_config),
      encoder=EncoderInfo(preset=spec.encoder.name,
                          config=dataclasses.asdict(spec.encoder),
                          num_params=spec.encoder.num_params),
      frontend=dataclasses.asdict(spec.frontend),
      sample_rate=spec.frontend.sample_rate,
      example_samples=model.example_samples,
      patch_samples=spec.frontend.patch_samples,
      embedding_dim=spec.encoder.embedding_dim, multimodal=spec.multimodal,
      image_shape=tuple(model.image_shape) if spec.multimodal else None)


def _file_info(content: bytes) -> FileInfo:
  return FileInfo(name=manifest_lib.MODEL_NAME, bytes=len(content),
                  sha256=manifest_lib.sha256_bytes(content))


def _signature_specs(model: OnDeviceModel) -> dict[str, SignatureSpec]:
  """The signatures as read back from the file."""
  def specs(tensors):
    return {name: TensorSpec(name=name, dtype=info.dtype,
                             shape=tuple(info.shape))
            for name, info in tensors.items()}
  return {name: SignatureSpec(name=name, inputs=specs(table["inputs"]),
                              outputs=specs(table["outputs"]))
          for name, table in model.signatures().items()}


def _write_model(directory: str, conversion: Conversion) -> bytes:
  """Writes ``model.tflite``; returns the bytes read back from disk."""
  os.makedirs(directory)
  path = os.path.join(directory, manifest_lib.MODEL_NAME)
  with open(path, "wb") as f:
    f.write(conversion.content)
  with open(path, "rb") as f:
    return f.read()


def _common_fields(content: bytes, conversion: Conversion, kind: str,
                   path: str, source: Source) -> dict[str, Any]:
  """The :class:`Manifest` fields every exported file has."""
  return dict(
      format_version=manifest_lib.FORMAT_VERSION, kind=kind, path=path,
      file=_file_info(content),
      toolkit_version=manifest_lib.toolkit_version(),
      tensorflow_version=tf.__version__, model=_model_info(source.model),
      embed_batch="dynamic", operators=tuple(conversion.operators),
      flex_ops=tuple(conversion.flex_ops),
      ops_sets=tuple(conversion.ops_sets), source=source.description)


def _delegation(content: bytes, runtime: str) -> dict[str, Any]:
  return {key: d.to_dict() for key, d in delegation_lib.model_delegation(
      content, runtime=runtime).items()}


def _image_batches(model: SSLModel, config: ExportConfig) -> np.ndarray:
  """``[num_batches, B, H, W]`` digit images that verify the image signatures."""
  height, width = model.image_shape
  count = config.verify.num_batches * config.batch_size
  digits = load_digits_images(height, width, num_clients=1)
  rows = np.random.default_rng(config.seed).choice(len(digits), count,
                                                   replace=False)
  return digits.images[rows].reshape(config.verify.num_batches,
                                     config.batch_size, height, width)


def _export_training(directory: str, source: Source, config: ExportConfig,
                     batches: np.ndarray, patches: np.ndarray) -> Manifest:
  """Converts, writes, verifies the training model; returns its manifest."""
  make = lambda: OnDeviceModule(_clone(source.model), config.optimizer,
                                config.batch_size, mode=config.mode,
                                seed=config.seed)
  module = make()
  logging.info("converting the %s training model", config.mode)
  conversion = convert_training_model(module)
  content = _write_model(directory, conversion)
  logging.info("verifying %s (%d bytes)", directory, len(content))
  images = (_image_batches(source.model, config)
            if source.model.spec.multimodal else None)
  verification = verify_training_model(content, make(), batches, patches,
                                       config.verify, images=images)
  runtime = "tensorflow" if config.mode == "flex" else config.verify.runtime
  variables = tuple(
      VariableSpec(name=name, key=key,
                   role="optimizer" if name.startswith("optimizer/")
                   else "weight",
                   shape=tuple(v.shape), dtype=v.dtype.name,
                   bytes=int(np.prod(v.shape, dtype=np.int64)) * v.dtype.size)
      for name, key, v in zip(module.variable_names, module.keys,
                              module.state))
  manifest = Manifest(
      **_common_fields(content, conversion, "training",
                       os.path.join(TRAINING_DIR, manifest_lib.MODEL_NAME),
                       source),
      mode=config.mode, quantization=QuantizationInfo(type="float32"),
      signatures=_signature_specs(OnDeviceModel(content, runtime=runtime)),
      batch_size=config.batch_size,
      example_samples=source.model.example_samples,
      optimizer=OptimizerInfo(
          name=config.optimizer.name,
          hyperparameters=config.optimizer.hyperparameters()),
      random_seed=config.seed, variables=variables,
      variable_bytes=sum(v.bytes for v in variables),
      verification=verification,
      delegation=(_delegation(content, config.verify.runtime)
                  if config.mode == "builtin"
                  and config.verify.runtime != "tensorflow" else None))
  manifest.write(directory)
  return manifest


def _representative(patches: np.ndarray, count: int, seed: int
                    ) -> Iterator[dict[str, np.ndarray]]:
  """Calibration inputs: ``count`` corpus patches, one per call."""
  rng = np.random.default_rng(seed)
  for i in rng.choice(len(patches), min(count, len(patches)), replace=False):
    yield {"waveform": patches[i:i + 1]}


def _export_embed(directory: str, quantization: str, module: EmbedModule,
                  source: Source, config: ExportConfig, patches: np.ndarray,
                  reference: np.ndarray
                  ) -> tuple[Manifest, np.ndarray]:
  """Converts, writes, verifies a variant; returns manifest and embeddings."""
  logging.info("converting the %s embed model", quantization)
  conversion = convert_embed_model(
      module, quantization,
      representative=lambda: _representative(
          patches, config.representative_patches, config.seed))
  content = _write_model(directory, conversion)
  verification = verify_embed_model(content, quantization, patches, reference,
                                    config.verify)
  lite = OnDeviceModel(content, runtime=config.verify.runtime)
  manifest = Manifest(
      **_common_fields(content, conversion, "embed",
                       os.path.join(os.path.basename(directory),
                                    manifest_lib.MODEL_NAME), source),
      mode="builtin",
      quantization=QuantizationInfo(
          type=quantization, notes=conversion.notes,
          representative_patches=(min(config.representative_patches,
                                      len(patches))
                                  if quantization == "int8" else None)),
      signatures=_signature_specs(lite), verification=verification.results,
      delegation=(_delegation(content, config.verify.runtime)
                  if config.verify.runtime != "tensorflow" else None))
  manifest.write(directory)
  return manifest, verification.embeddings


def _spread(count: int, total: int) -> np.ndarray:
  """``min(count, total)`` indices spread evenly over ``range(total)``."""
  return np.unique(np.linspace(0, total - 1, min(count, total)).astype(int))


def _install(staging: str, out_dir: str, overwrite: bool) -> None:
  """Renames ``staging`` to ``out_dir``, replacing it if ``overwrite``."""
  if os.path.isdir(out_dir) and not os.listdir(out_dir):
    os.rmdir(out_dir)
  if not os.path.exists(out_dir):
    os.rename(staging, out_dir)
    return
  old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old-",
                         dir=os.path.dirname(out_dir))
  os.rename(out_dir, os.path.join(old, "previous"))
  os.rename(staging, out_dir)
  shutil.rmtree(old, ignore_errors=True)


def export_model(source: Source, out_dir: str, config: ExportConfig, *,
                 corpus: Corpus, overwrite: bool = False) -> ExportResult:
  """Writes and verifies the training model and the embed-only variants.

  Args:
    source: The model (not modified).
    out_dir: Export directory (created; must not exist or be empty unless
      ``overwrite``).
    config: What to export.
    corpus: Audio for verification batches, calibration and probes.
    overwrite: Replace an existing export directory (only once the new one
      is complete).

  Returns:
    The manifests and the quantization measurements.

  Raises:
    FileExistsError: ``out_dir`` is not empty and ``overwrite`` is false.
    ValueError: ``config.batch_size`` is below the task's minimum.
    model.tflite_compat.FlexOpsError: ``builtin`` mode and the graph needs
      Select-TF ops.
    export.verification.VerificationError: A written file failed its checks.
  """
  check_task_batch_size(source.model.spec.task, config.batch_size,
                        "ExportConfig.batch_size")
  out_dir = os.path.abspath(out_dir)
  if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
    raise FileExistsError(f"{out_dir} exists and is not empty; choose another "
                          f"output directory or overwrite it")
  os.makedirs(os.path.dirname(out_dir), exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-",
                             dir=os.path.dirname(out_dir))
  try:
    result = _export_into(staging, source, config, corpus)
    _install(staging, out_dir, overwrite)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return dataclasses.replace(result, out_dir=out_dir)


def _export_variants(staging: str, source: Source, config: ExportConfig,
                     corpus: Corpus, patches: np.ndarray, owner: np.ndarray
                     ) -> tuple[dict[str, Manifest],
                                list[report_lib.QuantizationRow],
                                quality.ProbeScores]:
  """Writes every embed-only variant; returns manifests, rows, TF's scores."""
  module = EmbedModule(_clone(source.model))
  embed = module.embed_function()
  reference = np.concatenate([
      embed(waveform=tf.constant(patches[i:i + _EMBED_CHUNK]))[
          "embedding"].numpy()
      for i in range(0, len(patches), _EMBED_CHUNK)])
  reference_scores = quality.probe_accuracies(
      quality.clip_means(reference, owner), corpus.table, seed=config.seed)
  manifests, rows = {}, []
  for quantization in config.quantizations:
    name = embed_dir(quantization)
    manifest, embeddings = _export_embed(
        os.path.join(staging, name), quantization, module, source, config,
        patches, reference)
    manifests[name] = manifest
    scores = quality.probe_accuracies(
        quality.clip_means(embeddings, owner), corpus.table, seed=config.seed)
    fidelity = manifest.verification
    rows.append(report_lib.QuantizationRow(
        variant=quantization, path=manifest.path, bytes=manifest.file.bytes,
        mean_cosine=fidelity["mean_cosine"],
        min_cosine=fidelity["min_cosine"],
        max_abs_error=fidelity["max_abs_error"],
        accuracy=scores.accuracy,
        accuracy_delta={t: a - reference_scores.accuracy[t]
                        for t, a in scores.accuracy.items()
                        if t in reference_scores.accuracy},
        notes=manifest.quantization.notes))
  return manifests, rows, reference_scores


def _export_into(staging: str, source: Source, config: ExportConfig,
                 corpus: Corpus) -> ExportResult:
  """Writes every model, verified, and the report into ``staging``."""
  model = source.model
  frontend = model.spec.frontend
  batches = corpus.segments(
      model.example_samples, config.verify.num_batches * config.batch_size,
      min_samples=frontend.patch_samples, seed=config.seed).reshape(
          config.verify.num_batches, config.batch_size, -1)
  patches, owner = corpus.patches(frontend)
  training = _export_training(
      os.path.join(staging, TRAINING_DIR), source, config, batches,
      patches[_spread(config.verify.embed_patches, len(patches))])
  manifests = {TRAINING_DIR: training}
  rows, scores = [], None
  if config.quantizations:
    variants, rows, scores = _export_variants(staging, source, config, corpus,
                                              patches, owner)
    manifests.update(variants)
    report_lib.write_quantization_csv(
        os.path.join(staging, report_lib.QUANTIZATION_CSV), rows,
        scores.accuracy)
  report_lib.write_report(
      os.path.join(staging, report_lib.REPORT_NAME),
      title=f"Export of {model.spec.task} / {model.spec.encoder.name}",
      source=training.source, training=training, rows=rows,
      reference_accuracy=scores.accuracy if scores else None,
      skipped=scores.skipped if scores else None)
  return ExportResult(out_dir=staging, manifests=manifests,
                      quantization=tuple(rows))


@dataclasses.dataclass(frozen=True)
class ExportRequest:
  """Which model ``python -m export`` exports, and the audio it verifies on.

  Attributes:
    model_dir: A run directory (holding ``model/``) or a saved-model
      directory; ``None`` with ``preset``.
    best_for: Export the run's best global model for this downstream
      metric (``<model_dir>/best/<metric>``) instead of its final model.
    preset: Export a freshly initialized encoder of this preset instead.
    task: SSL task of the train signature; default: the saved task
      (``audio2vec_cbow`` with ``preset``).
    multimodal: With ``preset``: a multimodal model.
    corpus_dir: Audio for verification, calibration and probes; default:
      the tiny built-in synthetic corpus (:func:`export.corpus.load_corpus`).
    corpus_kind: Layout of ``corpus_dir``.
  """

  model_dir: Optional[str] = None
  best_for: Optional[str] = None
  preset: Optional[str] = None
  task: Optional[str] = None
  multimodal: bool = False
  corpus_dir: Optional[str] = None
  corpus_kind: str = "synthetic"

  def __post_init__(self):
    if (self.model_dir is None) == (self.preset is None):
      raise ValueError("ExportRequest: give exactly one of model_dir and "
                       "preset")
    if self.best_for is not None and self.model_dir is None:
      raise ValueError("ExportRequest.best_for needs model_dir")


@dataclasses.dataclass(frozen=True)
class ExportRun:
  """What :func:`run_export` produced.

  Attributes:
    result: The export.
    report: Files written (size, checksum) and the verification figures.
  """

  result: ExportResult
  report: str


def run_export(request: ExportRequest, out_dir: str, config: ExportConfig, *,
               overwrite: bool = False,
               progress: Optional[Callable[[str], None]] = None) -> ExportRun:
  """Loads the requested model and corpus, then :func:`export_model`.

  Args:
    request: The model and the audio.
    out_dir: Export directory.
    config: What to export (a fresh model's weights use ``config.seed``).
    overwrite: Replace an existing export directory.
    progress: Called with a line when the export starts (and which best
      model it takes).

  Returns:
    The export and its report.

  Raises:
    The errors of :func:`export_model`, :func:`load_source` and
    :func:`export.corpus.load_corpus`.
  """
  say = progress or (lambda line: None)
  say(f"Exporting to {out_dir}; every file is converted, then verified "
      f"(--verbosity=0 shows each step)")
  model_dir = request.model_dir
  if request.best_for is not None:
    model_dir = best_models.best_model_dir(model_dir, request.best_for)
    selection = best_models.read_best_index(
        request.model_dir)[request.best_for]
    say(f"best global model for {request.best_for}: round "
        f"{selection['round']} ({selection['value']:.4g})")
  source = (load_source(model_dir, task=request.task)
            if model_dir is not None else
            fresh_source(request.preset, request.task or "audio2vec_cbow",
                         seed=config.seed, multimodal=request.multimodal))
  corpus = load_corpus(request.corpus_dir, kind=request.corpus_kind,
                       sample_rate=source.model.spec.frontend.sample_rate)
  logging.info("corpus %s: %d clips", corpus.source, len(corpus.table))
  result = export_model(source, out_dir, config, corpus=corpus,
                        overwrite=overwrite)
  training = result.manifests[TRAINING_DIR]
  train = training.verification["train"]
  lines = [f"Exported to {result.out_dir}:"]
  for manifest in result.manifests.values():
    lines.append(f"  {manifest.path}: {manifest.file.bytes:,} bytes, "
                 f"sha256 {manifest.file.sha256[:16]}...")
  lines.append(
      f"train loss {train['first_cycle_mean_loss']:.4g} -> "
      f"{train['last_cycle_mean_loss']:.4g} over {train['steps']} steps; "
      f"vs TF per step: loss {train['max_relative_loss_difference']:.2e}, "
      f"gradient {train['max_relative_gradient_error']:.2e} (relative); "
      f"embed max abs error "
      f"{training.verification['embed']['max_abs_error']:.2e}")
  lines.append(f"Report: {result.out_dir}/report.md")
  return ExportRun(result=result, report="\n".join(lines))
