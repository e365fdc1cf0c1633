"""The runtimes behind ``export.runtime``: LiteRT (default) and tflite-runtime
run the same builtin file to the same losses; bad names and a missing LiteRT
give clear messages."""

import builtins

import numpy as np
import pytest

from export import delegation as delegation_lib
from export import runtime as runtime_lib
from export.conversion import convert_embed_model, convert_training_model
from export.exporter import fresh_source
from export.ondevice_module import EmbedModule, OnDeviceModule
from export.optimizers import OptimizerConfig
from export.runtime import OnDeviceModel

BATCH = 2


@pytest.fixture(scope="module")
def training_file():
  model = fresh_source("tiny", "audio2vec_cbow").model
  module = OnDeviceModule(model, OptimizerConfig("sgd", learning_rate=0.05),
                          BATCH)
  content = convert_training_model(module).content
  rng = np.random.default_rng(0)
  batch = (0.1 * rng.standard_normal((BATCH, model.example_samples))
           ).astype(np.float32)
  return content, batch, model.spec.frontend.patch_samples


def test_both_runtimes_train_to_the_same_losses(training_file):
  content, batch, patch = training_file
  losses, embeddings = {}, {}
  for runtime in ("ai_edge_litert", "tflite_runtime"):
    model = OnDeviceModel(content, runtime=runtime)
    assert model.runtime == runtime
    if runtime == "tflite_runtime":  # XNNPACK with the project's flags.
      assert model.interpreter.xnnpack_flags == (
          runtime_lib.TFLITE_RUNTIME_FLAGS)
    losses[runtime] = [model.train(batch) for _ in range(4)]
    embeddings[runtime] = [model.embed(batch[:n, :patch]) for n in (2, 1)]
  assert losses["ai_edge_litert"][-1] < losses["ai_edge_litert"][0]
  np.testing.assert_allclose(losses["ai_edge_litert"],
                             losses["tflite_runtime"], rtol=1e-5)
  for ours, theirs in zip(embeddings["ai_edge_litert"],
                          embeddings["tflite_runtime"]):
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_litert_weights_round_trip(training_file):
  content, batch, _ = training_file
  model = OnDeviceModel(content)
  start = model.get_weights()
  model.train(batch)
  assert any(not np.array_equal(start[k], v)
             for k, v in model.get_weights().items())
  model.set_weights(start)
  for name, value in model.get_weights().items():
    np.testing.assert_array_equal(value, start[name])


def test_unknown_runtime_lists_the_choices(training_file):
  with pytest.raises(ValueError, match="expected one of.*ai_edge_litert"):
    OnDeviceModel(training_file[0], runtime="litert")


def test_missing_signature_lists_the_signatures(training_file):
  model = OnDeviceModel(training_file[0])
  with pytest.raises(KeyError, match="no 'train_image' signature; it has "
                     r"\['embed', 'get_weights', 'set_weights', 'train'\]"):
    model.runner("train_image")


def test_embed_only_file_has_no_train(training_file):
  model = fresh_source("tiny", "audio2vec_cbow").model
  content = convert_embed_model(EmbedModule(model), "float32").content
  lite = OnDeviceModel(content)
  with pytest.raises(KeyError, match=r"no 'train' signature; it has "
                     r"\['embed'\]"):
    lite.train(training_file[1])


def test_missing_litert_falls_back_with_a_warning(monkeypatch):
  real_import = builtins.__import__

  def failing_import(name, *args, **kwargs):
    if name.startswith("ai_edge_litert"):
      raise ImportError("libLiteRt.so: cannot open shared object file")
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", failing_import)
  monkeypatch.delitem(__import__("sys").modules,
                      "ai_edge_litert.compiled_model", raising=False)
  with pytest.warns(RuntimeWarning, match="ai-edge-litert.*falling back to "
                    "tflite_runtime"):
    assert runtime_lib.resolve_runtime("ai_edge_litert") == "tflite_runtime"


@pytest.mark.slow
def test_small_train_runs_in_xnnpack_under_litert():
  """>= 90% of the small encoder's train FLOPs run in XNNPACK (LiteRT)."""
  model = fresh_source("small", "temporal_gap").model
  content = convert_training_model(OnDeviceModule(
      model, OptimizerConfig("sgd", learning_rate=0.01), BATCH)).content
  train = delegation_lib.delegation(content, "train")
  assert train.runtime == "ai_edge_litert"
  assert train.flops_fraction >= 0.9, train
  assert "FULLY_CONNECTED" not in dict(train.not_delegated)
  # tflite-runtime 2.14 with the project's XNNPACK flags takes the
  # FULLY_CONNECTEDs too (forward and input gradients), not the
  # BATCH_MATMULs of the filter gradients (about a third of the conv
  # FLOPs), which its XNNPACK lacks.
  legacy = delegation_lib.delegation(content, "train",
                                     runtime="tflite_runtime")
  assert legacy.flops == train.flops
  assert legacy.flops_fraction >= 0.6, legacy
  assert dict(legacy.not_delegated)["BATCH_MATMUL"] < 0.4 * legacy.flops
  assert "FULLY_CONNECTED" not in dict(legacy.not_delegated)
