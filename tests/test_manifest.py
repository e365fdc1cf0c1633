"""The typed manifest: JSON round trip, atomic write, and errors that name the
file, the field, what was expected and what was found."""

import dataclasses
import json
import os

import pytest

from export.manifest import (FORMAT_VERSION, MANIFEST_NAME, EncoderInfo,
                             FileInfo, Manifest, ManifestError, ModelInfo,
                             OptimizerInfo, QuantizationInfo, SignatureSpec,
                             TensorSpec, VariableSpec)

BATCH, EXAMPLE, PATCH, DIM = 2, 300, 100, 4


def _tensor(name, shape):
  return TensorSpec(name=name, dtype="float32", shape=tuple(shape))


def training_manifest() -> Manifest:
  """A small but consistent training-model manifest."""
  variables = (
      VariableSpec(name="encoder/w", key="encoder__w", role="weight",
                   shape=(2, 3), dtype="float32", bytes=24),
      VariableSpec(name="optimizer/step", key="optimizer__step",
                   role="optimizer", shape=(), dtype="float32", bytes=4))
  weights = {v.key: _tensor(v.key, v.shape) for v in variables}
  signatures = {
      "train": SignatureSpec(
          name="train", inputs={"waveform": _tensor("waveform",
                                                    (BATCH, EXAMPLE))},
          outputs={"loss": _tensor("loss", ())}),
      "embed": SignatureSpec(
          name="embed", inputs={"waveform": _tensor("waveform", (-1, PATCH))},
          outputs={"embedding": _tensor("embedding", (-1, DIM))}),
      "get_weights": SignatureSpec(name="get_weights", inputs={},
                                   outputs=weights),
      "set_weights": SignatureSpec(
          name="set_weights", inputs=weights,
          outputs={"ok": TensorSpec(name="ok", dtype="int32", shape=())}),
  }
  return Manifest(
      kind="training", path="training/model.tflite",
      file=FileInfo(name="model.tflite", bytes=1234, sha256="ab" * 32),
      toolkit_version="0.1.0", tensorflow_version="2.14.1",
      model=ModelInfo(task="audio2vec_cbow", task_config={"margin": 0.5},
                      encoder=EncoderInfo(preset="tiny", config={"width": 0.5},
                                          num_params=10),
                      frontend={"num_mel_bins": 64}, sample_rate=16000,
                      example_samples=EXAMPLE, patch_samples=PATCH,
                      embedding_dim=DIM),
      operators=("ADD", "MUL"), flex_ops=(), ops_sets=("TFLITE_BUILTINS",),
      source={"kind": "fresh", "seed": 0}, mode="builtin",
      quantization=QuantizationInfo(type="float32"), signatures=signatures,
      batch_size=BATCH, example_samples=EXAMPLE,
      optimizer=OptimizerInfo(name="sgd",
                              hyperparameters={"learning_rate": 0.1}),
      random_seed=0, variables=variables, variable_bytes=28,
      verification={"train": {"steps": 2}},
      delegation={"train": {"nodes": 3}})


def _written(tmp_path, value) -> str:
  path = tmp_path / MANIFEST_NAME
  path.write_text(json.dumps(value))
  return str(path)


def test_round_trip_through_the_file(tmp_path):
  manifest = training_manifest()
  path = manifest.write(str(tmp_path))
  assert path == str(tmp_path / MANIFEST_NAME)
  assert os.listdir(tmp_path) == [MANIFEST_NAME]  # No temporary left.
  with open(path) as f:
    on_disk = json.load(f)
  assert on_disk == manifest.to_json()
  assert list(on_disk)[:3] == ["format_version", "kind", "path"]
  assert Manifest.read(path) == manifest
  assert Manifest.read(str(tmp_path)) == manifest
  assert [v.name for v in manifest.weights] == ["encoder/w"]


def test_embed_manifest_leaves_training_fields_out(tmp_path):
  training = training_manifest()
  embed = dataclasses.replace(
      training, kind="embed", path="embed_int8/model.tflite",
      quantization=QuantizationInfo(type="int8", notes="full integer",
                                    representative_patches=8),
      signatures={"embed": training.signatures["embed"]}, batch_size=None,
      example_samples=None, optimizer=None, random_seed=None, variables=(),
      variable_bytes=None, delegation=None)
  on_disk = embed.to_json()
  for key in ("batch_size", "example_samples", "optimizer", "random_seed",
              "variables", "variable_bytes", "delegation"):
    assert key not in on_disk
  assert on_disk["quantization"] == {"type": "int8", "notes": "full integer",
                                     "representative_patches": 8}
  assert Manifest.read(embed.write(str(tmp_path))) == embed


def test_files_without_the_multimodal_field_stay_readable(tmp_path):
  value = training_manifest().to_json()
  del value["model"]["multimodal"]
  assert Manifest.read(_written(tmp_path, value)).model.multimodal is False


@pytest.mark.parametrize("edit, pattern", [
    (lambda m: m.pop("batch_size"),
     r"batch_size: expected a value \(training models have one\), got "
     r"nothing \(missing\)"),
    (lambda m: m["model"].pop("patch_samples"),
     r"model\.patch_samples: expected a value, got nothing \(missing\)"),
    (lambda m: m["model"].update(patch_samples="many"),
     r"model\.patch_samples: expected an integer, got a string \('many'\)"),
    (lambda m: m["variables"][1].update(shape=[1.5]),
     r"variables\[1\]\.shape: expected an array of integers, got \[1\.5\]"),
    (lambda m: m["file"].update(checksum="x"),
     r"file\.checksum: expected one of the fields of FileInfo \(name, bytes, "
     r"sha256\), got an unknown field"),
    (lambda m: m.update(format_version=FORMAT_VERSION + 1),
     rf"format_version: expected {FORMAT_VERSION} \(the layout this toolkit "
     rf"reads\), got {FORMAT_VERSION + 1}: written by a newer toolkit"),
    (lambda m: m.update(variable_bytes=27),
     r"variable_bytes: expected the sum of variables\[\*\]\.bytes \(28\), got "
     r"27"),
    (lambda m: m["signatures"]["train"]["inputs"]["waveform"].update(
        shape=[3, EXAMPLE]),
     rf"signatures\.train\.inputs\.waveform: expected float32 \[{BATCH}, "
     rf"{EXAMPLE}\], got float32 \[3, {EXAMPLE}\]"),
    (lambda m: m["signatures"]["set_weights"]["inputs"].pop("encoder__w"),
     r"signatures\.set_weights\.inputs: expected one tensor per variable "
     r"\(2\), got 1 tensors"),
    (lambda m: m.update(mode="fast"),
     r"mode: expected one of \('builtin', 'flex'\), got 'fast'"),
])
def test_errors_name_file_field_expected_and_found(tmp_path, edit, pattern):
  value = training_manifest().to_json()
  edit(value)
  path = _written(tmp_path, value)
  with pytest.raises(ManifestError, match=pattern) as caught:
    Manifest.read(path)
  assert str(caught.value).startswith(f"{path}: ")


def test_write_refuses_an_inconsistent_manifest(tmp_path):
  broken = dataclasses.replace(training_manifest(), variable_bytes=1)
  with pytest.raises(ManifestError, match="variable_bytes"):
    broken.write(str(tmp_path))
  assert not os.listdir(tmp_path)


def test_missing_and_malformed_files_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match=f"{tmp_path}.*no manifest"):
    Manifest.read(str(tmp_path))
  (tmp_path / MANIFEST_NAME).write_text("{")
  with pytest.raises(ManifestError, match="expected valid JSON"):
    Manifest.read(str(tmp_path))
