"""End-to-end tests of the export package: every task exports builtin-only and
trains under the on-device runtimes; flex mode saves and restores; bad
weights are rejected; manifests describe their files; quantized embed models
are produced and measured."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from export import manifest as manifest_lib
from export.conversion import QUANTIZATIONS, operator_input_types
from export.delegation import delegation
from export.corpus import load_corpus
from export.exporter import (TRAINING_DIR, ExportConfig, embed_dir,
                             export_model, fresh_source, load_source)
from export.ondevice_module import OnDeviceModule
from export.optimizers import OptimizerConfig
from export.report import QUANTIZATION_CSV, REPORT_NAME
from export.runtime import OnDeviceModel
from export.verification import VerificationError, VerifyConfig
from model import ops
from model.datasets.pipeline import training_segments
from model.datasets.synthetic import CORPUS_PRESETS, generate_corpus
from model.encoders import ENCODERS
from model.features import FrontendConfig
from model.ssl_model import ModelSpec, save_model
from model.tasks import SSL_TASKS
from model.tflite_compat import select_tf_ops
from model.train import TrainConfig, train_centralized

BATCH = 2
FAST = VerifyConfig(train_steps=4, num_batches=2, embed_patches=8)
#: Optimizer of each task's export (both kinds with state are covered).
OPTIMIZERS = {
    "audio2vec_cbow": OptimizerConfig("adam", learning_rate=1e-3),
    "audio2vec_skipgram": OptimizerConfig("sgd", learning_rate=1e-5,
                                          momentum=0.9),
    "temporal_gap": OptimizerConfig("adam", learning_rate=1e-3),
    "triplet": OptimizerConfig("sgd", learning_rate=0.05, momentum=0.9),
    "nt_xent": OptimizerConfig("adam", learning_rate=1e-3),
    "barlow_twins": OptimizerConfig("sgd", learning_rate=0.01, momentum=0.9),
    "simsiam": OptimizerConfig("adam", learning_rate=1e-3),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("corpus"))
  generate_corpus(directory, CORPUS_PRESETS["tiny"], show_progress=False)
  return load_corpus(directory)


@pytest.fixture(scope="module")
def exports(tmp_path_factory, corpus):
  """Lazily exports each task once (builtin); cbow also gets every variant."""
  root = tmp_path_factory.mktemp("exports")
  done = {}

  def get(task):
    if task not in done:
      config = ExportConfig(
          batch_size=max(BATCH, SSL_TASKS[task].min_batch_size),
          optimizer=OPTIMIZERS[task], verify=FAST,
          quantizations=QUANTIZATIONS if task == "audio2vec_cbow" else ())
      done[task] = export_model(fresh_source("tiny", task),
                                str(root / task), config, corpus=corpus)
    return done[task]

  return get


def _batch(model, seed=0):
  shape = model.runner("train").get_input_details()["waveform"]["shape"]
  rng = np.random.default_rng(seed)
  t = np.arange(shape[1]) / 16000.0
  tones = np.sin(2 * np.pi * rng.uniform(150, 2000, (shape[0], 1)) * t)
  return (0.3 * tones + 0.05 * rng.standard_normal(tuple(shape))).astype(
      np.float32)


def _training(result, runtime="tflite_runtime"):
  return OnDeviceModel.load(os.path.join(result.out_dir, TRAINING_DIR),
                            runtime=runtime)


def _equal(a, b):
  return list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)


# audio2vec_cbow's export is shared by the fast tests below; every other
# task's export takes ~10-25 s.
@pytest.mark.parametrize("task", [
    t if t == "audio2vec_cbow" else pytest.param(t, marks=pytest.mark.slow)
    for t in sorted(SSL_TASKS)])
def test_builtin_export_trains_under_tflite_runtime(task, exports):
  result = exports(task)
  path = os.path.join(result.out_dir, TRAINING_DIR, manifest_lib.MODEL_NAME)
  with open(path, "rb") as f:
    assert not select_tf_ops(f.read())
  manifest = result.manifests[TRAINING_DIR]
  assert manifest.flex_ops == () and manifest.mode == "builtin"
  assert manifest.verification["set_weights"]["non_finite_rejected"]

  model = _training(result)
  before = model.get_weights()
  losses = [model.train(_batch(model)) for _ in range(3)]
  assert np.all(np.isfinite(losses))
  after = model.get_weights()
  changed = [n for n in before if not np.array_equal(before[n], after[n])]
  assert "encoder/block0/conv_1x3/kernel" in changed
  assert after["optimizer/step"] == 3.0


def test_cbow_trajectory_tracks_tensorflow(exports):
  result = exports("audio2vec_cbow")
  model = _training(result)
  x = _batch(model)
  ours = [model.train(x) for _ in range(6)]
  source = fresh_source("tiny", "audio2vec_cbow")  # Same seed: same weights.
  reference = OnDeviceModule(source.model, OPTIMIZERS["audio2vec_cbow"],
                             BATCH).train_function()
  theirs = [float(reference(waveform=tf.constant(x))["loss"])
            for _ in range(6)]
  np.testing.assert_allclose(ours, theirs, rtol=1e-4)
  assert ours[-1] < ours[0]
  train = result.manifests[TRAINING_DIR].verification["train"]
  assert train["random_ops"] == []
  assert train["max_relative_loss_difference"] < 1e-4
  assert train["max_relative_gradient_error"] < 1e-2


@pytest.mark.slow
def test_ai_edge_litert_runs_the_same_file(exports):
  result = exports("temporal_gap")
  ours, theirs = _training(result), _training(result, "ai_edge_litert")
  x = _batch(ours)
  patches = x[:, :result.manifests[TRAINING_DIR].model.patch_samples]
  np.testing.assert_allclose(theirs.embed(patches), ours.embed(patches),
                             atol=1e-5)
  # Same file, same seeds: a fresh interpreter's first step draws the same
  # crops in both runtimes.
  np.testing.assert_allclose(theirs.train(x), ours.train(x), rtol=1e-5)
  assert np.isfinite([theirs.train(x) for _ in range(2)]).all()
  assert not _equal(theirs.get_weights(), ours.get_weights())


@pytest.mark.slow
def test_flex_export_runs_under_tf_lite_with_save_restore(tmp_path, corpus):
  result = export_model(
      fresh_source("tiny", "temporal_gap"), str(tmp_path / "flex"),
      ExportConfig(mode="flex", batch_size=BATCH, quantizations=(),
                   optimizer=OptimizerConfig("sgd", learning_rate=0.01),
                   verify=FAST), corpus=corpus)
  manifest = result.manifests[TRAINING_DIR]
  assert manifest.mode == "flex"
  assert "FlexConv2DBackpropFilter" in manifest.flex_ops
  assert {"save", "restore"} <= set(manifest.signatures)
  assert manifest.verification["save_restore"]["round_trip_exact"]
  directory = os.path.join(result.out_dir, TRAINING_DIR)
  with pytest.raises(ValueError, match="flex export"):
    OnDeviceModel.load(directory, runtime="tflite_runtime")

  model = OnDeviceModel.load(directory, runtime="tensorflow")
  x = _batch(model)
  assert np.isfinite(model.train(x))
  saved = model.get_weights()
  checkpoint = str(tmp_path / "checkpoint")
  model.save(checkpoint)
  model.train(x)
  assert not _equal(model.get_weights(), saved)
  model.restore(checkpoint)
  assert _equal(model.get_weights(), saved)


@pytest.mark.parametrize("name, value, message", [
    ("encoder/block9/kernel", None, "unknown tensor"),
    ("encoder/block0/conv_1x3/kernel", "shape", "has shape"),
    ("encoder/block0/conv_1x3/kernel", "dtype", "has dtype float64"),
    ("encoder/embedding/bias", "nan", "non-finite"),
])
def test_set_weights_rejects_bad_tensors(name, value, message, exports):
  model = _training(exports("audio2vec_cbow"))
  before = model.get_weights()
  bad = dict(before)
  good = before.get(name)
  if value is None:
    bad[name] = np.zeros(3, np.float32)
  elif value == "shape":
    bad[name] = np.zeros(good.shape + (1,), np.float32)
  elif value == "dtype":
    bad[name] = good.astype(np.float64)
  else:
    bad[name] = good.copy()
    bad[name][0] = np.nan
  for other in before:  # Valid changes elsewhere must not be applied either.
    if other != name:
      bad[other] = before[other] + 1.0
  with pytest.raises(ValueError, match=message) as error:
    model.set_weights(bad)
  assert name in str(error.value)
  assert _equal(model.get_weights(), before)


def test_set_weights_needs_every_tensor(exports):
  model = _training(exports("audio2vec_cbow"))
  before = model.get_weights()
  partial = {k: v + 1.0 for k, v in before.items() if k != "optimizer/step"}
  with pytest.raises(ValueError, match="missing.*optimizer/step"):
    model.set_weights(partial)
  assert _equal(model.get_weights(), before)


def test_train_and_embed_check_their_inputs(exports):
  model = _training(exports("audio2vec_cbow"))
  before = model.get_weights()
  x = _batch(model)
  with pytest.raises(ValueError, match="'waveform' has shape"):
    model.train(x[:1])
  with pytest.raises(ValueError, match="'waveform' has dtype float64"):
    model.train(x.astype(np.float64))
  x[0, 0] = np.inf
  with pytest.raises(ValueError, match="non-finite"):
    model.train(x)
  with pytest.raises(ValueError, match="has shape"):
    model.embed(np.zeros((2, 100), np.float32))
  assert _equal(model.get_weights(), before)


def test_in_graph_ok_flag_rejects_nan_without_changes(exports):
  model = _training(exports("audio2vec_cbow"))
  before = model.get_weights()
  keys = model.runner("get_weights")(request=np.int32(0))
  raw = {key: (value + 1.0).astype(np.float32) for key, value in keys.items()}
  raw["encoder__embedding__bias"][3] = np.nan
  assert int(model.runner("set_weights")(**raw)["ok"]) == 0
  assert _equal(model.get_weights(), before)
  raw["encoder__embedding__bias"][3] = 0.0
  assert int(model.runner("set_weights")(**raw)["ok"]) == 1
  assert model.get_weights()["encoder/embedding/bias"][0] == (
      before["encoder/embedding/bias"][0] + 1.0)


def test_manifest_matches_file(exports):
  result = exports("audio2vec_cbow")
  for name, manifest in result.manifests.items():
    directory = os.path.join(result.out_dir, name)
    assert manifest_lib.Manifest.read(directory) == manifest
    with open(os.path.join(directory, manifest_lib.MANIFEST_NAME)) as f:
      assert json.load(f) == json.loads(json.dumps(manifest.to_json()))
    path = os.path.join(directory, manifest_lib.MODEL_NAME)
    assert manifest.file.sha256 == manifest_lib.sha256_file(path)
    assert manifest.file.bytes == os.path.getsize(path)
    with open(path, "rb") as f:
      interpreter = OnDeviceModel(f.read())
    read_back = {s: {side: {t: info.to_dict() for t, info in tensors.items()}
                     for side, tensors in table.items()}
                 for s, table in interpreter.signatures().items()}
    assert manifest.to_json()["signatures"] == read_back
  training = result.manifests[TRAINING_DIR]
  signatures = training.signatures
  assert signatures["train"].inputs["waveform"].shape == (
      BATCH, training.example_samples)
  assert signatures["embed"].inputs["waveform"].shape == (
      -1, training.model.patch_samples)
  assert signatures["embed"].outputs["embedding"].shape == (
      -1, training.model.embedding_dim)
  keys = {v.key: v for v in training.variables}
  assert set(keys) == set(signatures["get_weights"].outputs)
  assert set(keys) == set(signatures["set_weights"].inputs)
  for key, variable in keys.items():
    outputs = signatures["get_weights"].outputs
    assert outputs[key].shape == variable.shape
  assert keys["encoder__block0__conv_1x3__kernel"].name == (
      "encoder/block0/conv_1x3/kernel")
  assert training.optimizer.to_json() == {
      "name": "adam", "hyperparameters": {
          "learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.999,
          "epsilon": 1e-7}}
  assert training.model.encoder.preset == "tiny"
  assert training.model.frontend["num_mel_bins"] == 64


@pytest.mark.parametrize("task, slots", [
    ("audio2vec_cbow", ("m", "v")),
    pytest.param("audio2vec_skipgram", ("momentum",), marks=pytest.mark.slow)])
def test_optimizer_state_round_trips(task, slots, exports):
  result = exports(task)
  first = _training(result)
  x = _batch(first)
  for _ in range(2):
    first.train(x)
  state = first.get_weights()
  kernel = "encoder/block0/conv_1x3/kernel"
  for slot in slots:
    assert np.any(state[f"optimizer/{kernel}/{slot}"] != 0)
  second = _training(result)
  second.set_weights(state)
  assert _equal(second.get_weights(), state)
  # The state is really used: the next step is identical in both.
  assert first.train(x) == second.train(x)
  assert _equal(first.get_weights(), second.get_weights())


def test_quantized_embed_models(exports):
  result = exports("audio2vec_cbow")
  rows = {row.variant: row for row in result.quantization}
  assert list(rows) == list(QUANTIZATIONS)
  for variant, row in rows.items():
    path = os.path.join(result.out_dir, row.path)
    assert os.path.getsize(path) == row.bytes
    assert row.mean_cosine > (0.99999 if variant in ("float32", "float16")
                              else 0.9)
    assert set(row.accuracy) == set(row.accuracy_delta)
    model = OnDeviceModel.load(os.path.dirname(path))
    assert model.embed(np.zeros((3, 15600), np.float32)).shape == (3, 32)
  assert rows["float16"].bytes < 0.7 * rows["float32"].bytes
  assert rows["dynamic_int8"].bytes < rows["float16"].bytes
  with open(os.path.join(result.out_dir, embed_dir("int8"),
                         manifest_lib.MODEL_NAME), "rb") as f:
    content = f.read()
  types = operator_input_types(content)
  # The encoder's 7 convs (block 0's pair is one composed conv,
  # ops.conv_pair): int8 but for the first (one input channel), which stays
  # float32 (faster under XNNPACK), and so does the ADD of its per-row bias.
  assert sum(n for kinds, n in types["CONV_2D"].items()
             if kinds[:2] == ("INT8", "INT8")) == 6
  assert types["CONV_2D"][("FLOAT32", "FLOAT32", "FLOAT32")] == 1
  assert types["ADD"] == {("FLOAT32", "FLOAT32"): 1}
  # Under LiteRT XNNPACK runs every node, though the fresh encoder's biases
  # are all zero: as int8, that bias's ~4e-9 scale made XNNPACK refuse the
  # ADD (TFLite's reference broadcast ADD then took half the call).
  shares = delegation(content, "embed")
  assert shares.delegated_nodes == shares.nodes, shares.not_delegated
  with open(os.path.join(result.out_dir, QUANTIZATION_CSV)) as f:
    lines = f.read().splitlines()
  assert lines[0].startswith("variant,path,bytes,mean_cosine")
  assert [line.split(",")[0] for line in lines[1:]] == ["tf_float32",
                                                       *QUANTIZATIONS]
  with open(os.path.join(result.out_dir, REPORT_NAME)) as f:
    report = f.read()
  assert "| int8 |" in report and "max relative loss difference" in report


@pytest.mark.slow
def test_wrong_gradient_fails_verification_and_leaves_nothing(
    tmp_path, corpus, monkeypatch):
  """The multi-axis REVERSE_V2 trap: right in TF, wrong in TFLite 2.14
  (tflite-runtime; LiteRT 2.3 reverses correctly)."""
  monkeypatch.setattr(ops, "_flip_spatial", lambda k: tf.reverse(k, [0, 1]))
  monkeypatch.setattr(ops, "_flip_spatial_slices",
                      lambda k: tf.reverse(k, [0, 1]))
  out = tmp_path / "out"
  with pytest.raises(VerificationError, match="gradient differs from TF's"):
    export_model(fresh_source("tiny", "triplet"), str(out),
                 ExportConfig(batch_size=BATCH, quantizations=(),
                              optimizer=OPTIMIZERS["triplet"],
                              verify=dataclasses.replace(
                                  FAST, runtime="tflite_runtime")),
                 corpus=corpus)
  assert os.listdir(tmp_path) == []


def test_existing_output_is_not_overwritten(tmp_path, corpus):
  (tmp_path / "keep.txt").write_text("x")
  with pytest.raises(FileExistsError, match="not empty"):
    export_model(fresh_source("tiny", "triplet"), str(tmp_path),
                 ExportConfig(batch_size=BATCH), corpus=corpus)
  assert os.listdir(tmp_path) == ["keep.txt"]


def test_load_source_from_run_or_model_dir(tmp_path):
  model = fresh_source("tiny", "triplet").model
  save_model(model, str(tmp_path / "run" / "model"))
  saved = load_source(str(tmp_path / "run"))
  assert saved.model.spec.task == "triplet"
  assert saved.description["head"] == "saved"
  other = load_source(str(tmp_path / "run" / "model"), task="temporal_gap")
  assert other.model.spec.task == "temporal_gap"
  assert other.description["head"] == "fresh"
  np.testing.assert_array_equal(other.model.encoder.weights[0].numpy(),
                                model.encoder.weights[0].numpy())
  with pytest.raises(FileNotFoundError, match="no saved model"):
    load_source(str(tmp_path))


@pytest.mark.slow
def test_non_default_front_end_trains_exports_and_verifies(tmp_path, corpus):
  """The front-end alone sets the patch shape: 48 mel bins, 64-frame patches
  reach the encoder, the task, training, the .tflite and its verification."""
  frontend = FrontendConfig(num_mel_bins=48, patch_frames=64)
  spec = ModelSpec(task="triplet", encoder=ENCODERS["tiny"],
                   frontend=frontend)
  segments = training_segments(corpus.waveforms, spec).waveforms
  assert segments.shape[1] == spec.example_samples == (
      frontend.samples_for_frames(64 + spec.task_config.positive_span_frames))
  trained = train_centralized(
      spec, TrainConfig(steps=3, batch_size=BATCH, log_every=1), segments,
      str(tmp_path / "run"), show_progress=False)
  assert np.all(np.isfinite([loss for _, loss in trained.losses]))
  result = export_model(load_source(str(tmp_path / "run")),
                        str(tmp_path / "export"),
                        ExportConfig(batch_size=BATCH,
                                     optimizer=OPTIMIZERS["triplet"],
                                     verify=FAST),
                        corpus=corpus)
  training = result.manifests[TRAINING_DIR]
  checks = training.verification  # The file passed them (else it raises).
  assert checks["embed"]["max_abs_error"] <= checks["embed"]["tolerance"]
  assert checks["train"]["steps"] == FAST.train_steps
  assert training.model.frontend["num_mel_bins"] == 48
  assert training.model.patch_samples == frontend.patch_samples
  signatures = training.signatures
  assert tuple(signatures["train"].inputs["waveform"].shape) == (
      BATCH, spec.example_samples)
  assert tuple(signatures["embed"].inputs["waveform"].shape) == (
      -1, frontend.samples_for_frames(64))
  patches = corpus.patches(frontend)[0][:4]
  want = trained.model.embed_patches(patches).numpy()
  np.testing.assert_allclose(_training(result).embed(patches), want,
                             atol=1e-3 * max(1.0, np.max(np.abs(want))))
