"""The ``manifest.json`` written beside every exported ``.tflite`` file.

Each exported model lives in its own directory as ``model.tflite`` plus
``manifest.json``; the manifest records how the file was made, what its
signatures are (as read back from the file) and how it was verified.
:class:`Manifest` is its typed form: :meth:`Manifest.read` parses and checks
a file, :meth:`Manifest.write` writes one atomically, and the JSON on disk is
:meth:`Manifest.to_json`. The Android core's ``Manifest.kt`` declares the same
classes with the same fields (``tests/test_android_contract.py`` compares
them).

Fields that hold measurements or provenance whose content varies by model
(``verification``, ``delegation``, ``source``, the task/encoder/front-end
configurations, optimizer hyperparameters) stay plain JSON objects.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import re
from typing import Any, Mapping, Optional

from export.files import write_atomically

__all__ = ["MANIFEST_NAME", "MODEL_NAME", "FORMAT_VERSION", "KINDS",
           "MANIFEST_MODES", "ManifestError", "FileInfo", "EncoderInfo",
           "ModelInfo", "TensorSpec", "SignatureSpec", "VariableSpec",
           "OptimizerInfo", "QuantizationInfo", "Manifest", "MANIFEST_CLASSES",
           "manifest_path", "sha256_bytes", "sha256_file", "toolkit_version"]

MANIFEST_NAME = "manifest.json"
MODEL_NAME = "model.tflite"
#: Version of the manifest's layout (bumped when keys change meaning).
FORMAT_VERSION = 1
#: What an exported file is: the on-device training model or an embed-only one.
KINDS = ("training", "embed")
#: Export modes (``export.ondevice_module.MODES``).
MANIFEST_MODES = ("builtin", "flex")
_DISTRIBUTION = "ondevice-audio-ssl"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ManifestError(ValueError):
  """A manifest is malformed or inconsistent.

  The message names the file, the field (a dotted path such as
  ``model.patch_samples``), what was expected and what was found.

  Attributes:
    source: The manifest file (or a description of the JSON).
    field: Dotted path of the offending field.
  """

  def __init__(self, source: str, field: str, expected: str, got: Any):
    super().__init__(f"{source}: {field}: expected {expected}, got {got}")
    self.source = source
    self.field = field


def _plain(value: Any) -> Any:
  """``value`` as JSON reads it back (tuples become lists), so a manifest
  built in memory equals the one read from its file."""
  return json.loads(json.dumps(value))


def _as_json(instance: Any, *names: str) -> None:
  """Replaces the free-form fields ``names`` of ``instance`` by their JSON
  form (see :func:`_plain`)."""
  for name in names:
    value = getattr(instance, name)
    if value is not None:
      object.__setattr__(instance, name, _plain(value))


def _describe(value: Any) -> str:
  if isinstance(value, bool):
    return f"a boolean ({value})"
  if isinstance(value, (int, float)):
    return f"a number ({value})"
  if isinstance(value, str):
    return f"a string ({value!r})"
  if value is None:
    return "null"
  if isinstance(value, list):
    return "an array"
  return "an object"


class _Fields:
  """Typed reads of one JSON object's members, for :class:`ManifestError`s."""

  def __init__(self, value: Any, source: str, path: str):
    if not isinstance(value, dict):
      raise ManifestError(source, path or "(top level)", "an object",
                          _describe(value))
    self.value, self.source, self.path = value, source, path
    self.read: set[str] = set()

  def where(self, key: str) -> str:
    return f"{self.path}.{key}" if self.path else key

  def raw(self, key: str, *, required: bool = True) -> Any:
    self.read.add(key)
    if key not in self.value:
      if required:
        raise ManifestError(self.source, self.where(key), "a value",
                            "nothing (missing)")
      return None
    return self.value[key]

  def typed(self, key: str, kind: type, expected: str, *,
            required: bool = True) -> Any:
    value = self.raw(key, required=required)
    if value is None and not required:
      return None
    if not isinstance(value, kind) or (isinstance(value, bool)
                                       and kind is not bool):
      raise ManifestError(self.source, self.where(key), expected,
                          _describe(value))
    return value

  def string(self, key: str, **kwargs) -> Optional[str]:
    return self.typed(key, str, "a string", **kwargs)

  def int(self, key: str, **kwargs) -> Optional[int]:
    return self.typed(key, int, "an integer", **kwargs)

  def boolean(self, key: str, **kwargs) -> Optional[bool]:
    return self.typed(key, bool, "a boolean", **kwargs)

  def obj(self, key: str, **kwargs) -> Optional[dict[str, Any]]:
    return self.typed(key, dict, "an object", **kwargs)

  def fields(self, key: str, **kwargs) -> Optional["_Fields"]:
    value = self.obj(key, **kwargs)
    return None if value is None else _Fields(value, self.source,
                                              self.where(key))

  def strings(self, key: str, **kwargs) -> Optional[tuple[str, ...]]:
    value = self.typed(key, list, "an array of strings", **kwargs)
    if value is not None and not all(isinstance(v, str) for v in value):
      raise ManifestError(self.source, self.where(key), "an array of strings",
                          value)
    return None if value is None else tuple(value)

  def ints(self, key: str, **kwargs) -> Optional[tuple[int, ...]]:
    value = self.typed(key, list, "an array of integers", **kwargs)
    if value is not None and not all(isinstance(v, int) and not isinstance(
        v, bool) for v in value):
      raise ManifestError(self.source, self.where(key), "an array of integers",
                          value)
    return None if value is None else tuple(value)

  def done(self, value: Any) -> Any:
    """``value``, once every member was read (a member that no field of
    ``value``'s class reads is an error: a newer or foreign file)."""
    cls = type(value)
    if unknown := [k for k in self.value if k not in self.read]:
      raise ManifestError(
          self.source, self.where(unknown[0]),
          f"one of the fields of {cls.__name__} "
          f"({', '.join(f.name for f in dataclasses.fields(cls))})",
          "an unknown field (written by a newer toolkit?)")
    return value


@dataclasses.dataclass(frozen=True)
class FileInfo:
  """The ``.tflite`` file a manifest describes.

  Attributes:
    name: Its file name (:data:`MODEL_NAME`).
    bytes: Its size.
    sha256: Hex sha256 of its content; weight files are bound to it.
  """

  name: str
  bytes: int
  sha256: str

  @classmethod
  def _read(cls, f: _Fields) -> "FileInfo":
    return f.done(cls(name=f.string("name"), bytes=f.int("bytes"),
                      sha256=f.string("sha256")))

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class EncoderInfo:
  """The encoder inside the model.

  Attributes:
    preset: Name of the encoder preset (``model.encoders.ENCODERS``).
    config: The ``EncoderConfig`` as a JSON object.
    num_params: Its parameter count.
  """

  preset: str
  config: Mapping[str, Any]
  num_params: int

  def __post_init__(self):
    _as_json(self, "config")

  @classmethod
  def _read(cls, f: _Fields) -> "EncoderInfo":
    return f.done(cls(preset=f.string("preset"), config=f.obj("config"),
                      num_params=f.int("num_params")))

  def to_json(self) -> dict[str, Any]:
    return {"preset": self.preset, "config": dict(self.config),
            "num_params": self.num_params}


@dataclasses.dataclass(frozen=True)
class ModelInfo:
  """The model the file was converted from.

  Attributes:
    task: The SSL task.
    task_config: The ``TaskConfig`` as a JSON object.
    encoder: The encoder.
    frontend: The ``FrontendConfig`` as a JSON object.
    sample_rate: Audio sample rate in Hz.
    example_samples: Samples ``S`` of one training example.
    patch_samples: Samples of one ``embed`` input row.
    embedding_dim: Width ``D`` of an embedding.
    multimodal: Whether the model also has the image signatures (files
      written before this field existed read as ``False``).
    image_shape: ``(H, W)`` of an image (multimodal models only).
  """

  task: str
  task_config: Mapping[str, Any]
  encoder: EncoderInfo
  frontend: Mapping[str, Any]
  sample_rate: int
  example_samples: int
  patch_samples: int
  embedding_dim: int
  multimodal: bool = False
  image_shape: Optional[tuple[int, ...]] = None

  def __post_init__(self):
    _as_json(self, "task_config", "frontend")
    if self.image_shape is not None:
      object.__setattr__(self, "image_shape", tuple(self.image_shape))

  @classmethod
  def _read(cls, f: _Fields) -> "ModelInfo":
    multimodal = f.boolean("multimodal", required=False)
    return f.done(cls(
        task=f.string("task"), task_config=f.obj("task_config"),
        encoder=EncoderInfo._read(f.fields("encoder")),
        frontend=f.obj("frontend"), sample_rate=f.int("sample_rate"),
        example_samples=f.int("example_samples"),
        patch_samples=f.int("patch_samples"),
        embedding_dim=f.int("embedding_dim"), multimodal=bool(multimodal),
        image_shape=f.ints("image_shape", required=False)))

  def to_json(self) -> dict[str, Any]:
    return {"task": self.task, "task_config": dict(self.task_config),
            "encoder": self.encoder.to_json(),
            "frontend": dict(self.frontend), "sample_rate": self.sample_rate,
            "example_samples": self.example_samples,
            "patch_samples": self.patch_samples,
            "embedding_dim": self.embedding_dim,
            "multimodal": self.multimodal,
            **({"image_shape": list(self.image_shape)}
               if self.image_shape is not None else {})}


@dataclasses.dataclass(frozen=True)
class TensorSpec:
  """A tensor of a signature, as read back from the file.

  Attributes:
    name: The tensor's name in the signature (its key in the JSON).
    dtype: NumPy dtype name, e.g. ``float32``.
    shape: Dimensions; -1 marks a dynamic one.
  """

  name: str
  dtype: str
  shape: tuple[int, ...]

  def __post_init__(self):
    object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

  def to_json(self) -> dict[str, Any]:
    return {"dtype": self.dtype, "shape": list(self.shape)}


def _tensors(f: _Fields) -> dict[str, TensorSpec]:
  tensors = {}
  for name in f.value:
    entry = f.fields(name)
    tensors[name] = entry.done(TensorSpec(
        name=name, dtype=entry.string("dtype"), shape=entry.ints("shape")))
  return tensors


@dataclasses.dataclass(frozen=True)
class SignatureSpec:
  """One signature of the model.

  Attributes:
    name: The signature key (its key in the JSON).
    inputs: Input tensors by name.
    outputs: Output tensors by name.
  """

  name: str
  inputs: Mapping[str, TensorSpec]
  outputs: Mapping[str, TensorSpec]

  def to_json(self) -> dict[str, Any]:
    return {"inputs": {k: t.to_json() for k, t in self.inputs.items()},
            "outputs": {k: t.to_json() for k, t in self.outputs.items()}}


@dataclasses.dataclass(frozen=True)
class VariableSpec:
  """A variable of the training model (a weight or optimizer state).

  Attributes:
    name: The toolkit's name, e.g. ``encoder/block0/conv_1x3/kernel``;
      weight files use it.
    key: Its tensor name in ``get_weights`` / ``set_weights``.
    role: ``weight`` or ``optimizer``.
    shape: Dimensions (static).
    dtype: NumPy dtype name.
    bytes: Size of its value.
  """

  name: str
  key: str
  role: str
  shape: tuple[int, ...]
  dtype: str
  bytes: int

  def __post_init__(self):
    object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

  @classmethod
  def _read(cls, f: _Fields) -> "VariableSpec":
    return f.done(cls(name=f.string("name"), key=f.string("key"),
                      role=f.string("role"), shape=f.ints("shape"),
                      dtype=f.string("dtype"), bytes=f.int("bytes")))

  @property
  def is_weight(self) -> bool:
    """A model weight (part of the federated update), not optimizer state."""
    return self.role == "weight"

  def to_json(self) -> dict[str, Any]:
    return {"name": self.name, "key": self.key, "role": self.role,
            "shape": list(self.shape), "dtype": self.dtype,
            "bytes": self.bytes}


@dataclasses.dataclass(frozen=True)
class OptimizerInfo:
  """The on-device optimizer of a training model.

  Attributes:
    name: Its name (``export.optimizers.OPTIMIZERS``).
    hyperparameters: Its hyperparameters by name.
  """

  name: str
  hyperparameters: Mapping[str, Any]

  def __post_init__(self):
    _as_json(self, "hyperparameters")

  @classmethod
  def _read(cls, f: _Fields) -> "OptimizerInfo":
    return f.done(cls(name=f.string("name"),
                      hyperparameters=f.obj("hyperparameters")))

  def to_json(self) -> dict[str, Any]:
    return {"name": self.name, "hyperparameters": dict(self.hyperparameters)}


@dataclasses.dataclass(frozen=True)
class QuantizationInfo:
  """How the weights of the file are stored.

  Attributes:
    type: ``float32`` for the training model, else the embed variant's
      quantization (``export.conversion.QUANTIZATIONS``).
    notes: Embed variants: the conversion route taken.
    representative_patches: ``int8``: corpus patches that calibrated it.
  """

  type: str
  notes: Optional[str] = None
  representative_patches: Optional[int] = None

  @classmethod
  def _read(cls, f: _Fields) -> "QuantizationInfo":
    return f.done(cls(
        type=f.string("type"), notes=f.string("notes", required=False),
        representative_patches=f.int("representative_patches",
                                     required=False)))

  def to_json(self) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(self).items()
            if v is not None}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Manifest:
  """The manifest of one exported ``.tflite`` file (fields in file order).

  Fields that only a training model has are ``None`` (``variables`` empty)
  in an embed-only model's manifest and are then left out of the JSON.

  Attributes:
    format_version: :data:`FORMAT_VERSION` of the layout.
    kind: One of :data:`KINDS`.
    path: The file's path relative to the export directory.
    file: Name, size and sha256 of the file.
    toolkit_version: Version of the toolkit that wrote it.
    tensorflow_version: Version of TensorFlow that converted it.
    model: The model it was converted from.
    embed_batch: ``dynamic``: ``embed`` takes any number of rows.
    operators: TFLite operators in the file.
    flex_ops: Select-TF (Flex) operators (empty for ``builtin``).
    ops_sets: The converter's target op sets.
    source: Provenance of the weights (saved model, fresh, ...).
    mode: One of :data:`MANIFEST_MODES`.
    quantization: How the weights are stored.
    signatures: Every signature by name, as read back from the file.
    batch_size: Training: static batch size ``B`` of ``train``.
    example_samples: Training: samples ``S`` of one training example.
    optimizer: Training: the on-device optimizer.
    random_seed: Training: seed of the in-graph random ops.
    variables: Training: every variable, in ``get_weights`` order.
    variable_bytes: Training: bytes of all variables.
    verification: What the export checked on the written file, and how.
    delegation: Per signature, what XNNPACK delegated (absent when the
      export was verified on TensorFlow).
  """

  format_version: int = FORMAT_VERSION
  kind: str
  path: str
  file: FileInfo
  toolkit_version: str
  tensorflow_version: str
  model: ModelInfo
  embed_batch: str = "dynamic"
  operators: tuple[str, ...]
  flex_ops: tuple[str, ...]
  ops_sets: tuple[str, ...]
  source: Mapping[str, Any]
  mode: str
  quantization: QuantizationInfo
  signatures: Mapping[str, SignatureSpec]
  batch_size: Optional[int] = None
  example_samples: Optional[int] = None
  optimizer: Optional[OptimizerInfo] = None
  random_seed: Optional[int] = None
  variables: tuple[VariableSpec, ...] = ()
  variable_bytes: Optional[int] = None
  verification: Mapping[str, Any]
  delegation: Optional[Mapping[str, Any]] = None

  def __post_init__(self):
    for name in ("operators", "flex_ops", "ops_sets", "variables"):
      object.__setattr__(self, name, tuple(getattr(self, name)))
    _as_json(self, "source", "verification", "delegation")

  # Reading.

  @classmethod
  def from_json(cls, value: Any, *, source: str = "manifest") -> "Manifest":
    """Parses and validates the JSON object of a manifest.

    Args:
      value: The parsed JSON.
      source: Names the file in error messages.

    Raises:
      ManifestError: A field is missing, mistyped, unknown, or inconsistent
        (see :meth:`validate`), or the format version is not this toolkit's.
    """
    f = _Fields(value, source, "")
    version = f.int("format_version")
    if version != FORMAT_VERSION:
      raise ManifestError(
          source, "format_version", f"{FORMAT_VERSION} (the layout this "
          f"toolkit reads)", f"{version}" + (
              ": written by a newer toolkit; upgrade to read it"
              if version > FORMAT_VERSION else ""))
    signatures = {}
    table = f.fields("signatures")
    for name in table.value:
      entry = table.fields(name)
      signatures[name] = entry.done(SignatureSpec(
          name=name, inputs=_tensors(entry.fields("inputs")),
          outputs=_tensors(entry.fields("outputs"))))
    variables = f.typed("variables", list, "an array of objects",
                        required=False) or []
    optimizer = f.fields("optimizer", required=False)
    manifest = cls(
        format_version=version, kind=f.string("kind"), path=f.string("path"),
        file=FileInfo._read(f.fields("file")),
        toolkit_version=f.string("toolkit_version"),
        tensorflow_version=f.string("tensorflow_version"),
        model=ModelInfo._read(f.fields("model")),
        embed_batch=f.string("embed_batch"),
        operators=f.strings("operators"), flex_ops=f.strings("flex_ops"),
        ops_sets=f.strings("ops_sets"), source=f.obj("source"),
        mode=f.string("mode"),
        quantization=QuantizationInfo._read(f.fields("quantization")),
        signatures=signatures,
        batch_size=f.int("batch_size", required=False),
        example_samples=f.int("example_samples", required=False),
        optimizer=optimizer and OptimizerInfo._read(optimizer),
        random_seed=f.int("random_seed", required=False),
        variables=tuple(VariableSpec._read(_Fields(v, source,
                                                   f"variables[{i}]"))
                        for i, v in enumerate(variables)),
        variable_bytes=f.int("variable_bytes", required=False),
        verification=f.obj("verification"),
        delegation=f.obj("delegation", required=False))
    f.done(manifest)
    manifest.validate(source=source)
    return manifest

  @classmethod
  def read(cls, path: str) -> "Manifest":
    """Reads and validates a manifest.

    Args:
      path: The ``manifest.json`` file, or the directory holding it.

    Raises:
      FileNotFoundError: There is no manifest (the message names the path).
      ManifestError: The file is not valid JSON or not a valid manifest.
    """
    path = manifest_path(path)
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path}: no manifest; expected a directory "
                              f"written by `python -m export`")
    with open(path, encoding="utf-8") as f:
      try:
        value = json.load(f)
      except json.JSONDecodeError as e:
        raise ManifestError(path, "(file)", "valid JSON",
                            f"{e.msg} at line {e.lineno}") from e
    return cls.from_json(value, source=path)

  # Writing.

  def to_json(self) -> dict[str, Any]:
    """The JSON object written to disk (optional fields left out when unset)."""
    value = {
        "format_version": self.format_version, "kind": self.kind,
        "path": self.path, "file": self.file.to_json(),
        "toolkit_version": self.toolkit_version,
        "tensorflow_version": self.tensorflow_version,
        "model": self.model.to_json(), "embed_batch": self.embed_batch,
        "operators": list(self.operators), "flex_ops": list(self.flex_ops),
        "ops_sets": list(self.ops_sets), "source": dict(self.source),
        "mode": self.mode, "quantization": self.quantization.to_json(),
        "signatures": {k: s.to_json() for k, s in self.signatures.items()},
        "batch_size": self.batch_size,
        "example_samples": self.example_samples,
        "optimizer": self.optimizer.to_json() if self.optimizer else None,
        "random_seed": self.random_seed,
        "variables": [v.to_json() for v in self.variables] or None,
        "variable_bytes": self.variable_bytes,
        "verification": dict(self.verification),
        "delegation": (dict(self.delegation) if self.delegation is not None
                       else None),
    }
    return {k: v for k, v in value.items() if v is not None}

  def write(self, path: str) -> str:
    """Validates and writes the manifest atomically; returns the file's path.

    Args:
      path: The ``manifest.json`` file, or the directory to write it into.

    Raises:
      ManifestError: The manifest is inconsistent (see :meth:`validate`).
    """
    path = manifest_path(path)
    self.validate(source=path)
    text = json.dumps(self.to_json(), indent=2, sort_keys=False,
                      allow_nan=False) + "\n"
    write_atomically(path, text.encode("utf-8"))
    return path

  # Checks.

  def validate(self, *, source: str = "manifest") -> None:
    """Checks the fields agree with each other.

    The version, kind and mode are known ones; the file's sha256 is 64 hex
    digits; a training model has its batch size, example length, optimizer
    and variables, its variables' bytes add up, ``get_weights`` and
    ``set_weights`` list every variable with its shape; the audio
    signatures' waveform and embedding shapes match the sizes.

    Args:
      source: Names the file in error messages.

    Raises:
      ManifestError: The first disagreement found.
    """
    def fail(field: str, expected: str, got: Any) -> None:
      raise ManifestError(source, field, expected, got)

    if self.format_version != FORMAT_VERSION:
      fail("format_version", str(FORMAT_VERSION), self.format_version)
    if self.kind not in KINDS:
      fail("kind", f"one of {KINDS}", repr(self.kind))
    if self.mode not in MANIFEST_MODES:
      fail("mode", f"one of {MANIFEST_MODES}", repr(self.mode))
    if not _SHA256.fullmatch(self.file.sha256):
      fail("file.sha256", "64 lowercase hex digits", repr(self.file.sha256))
    if self.file.bytes <= 0:
      fail("file.bytes", "a positive size", self.file.bytes)
    for name, spec in self.signatures.items():
      if spec.name != name:
        fail(f"signatures.{name}.name", repr(name), repr(spec.name))
    model = self.model
    self._expect_tensor(fail, "embed", "inputs", "waveform",
                        (-1, model.patch_samples))
    self._expect_tensor(fail, "embed", "outputs", "embedding",
                        (-1, model.embedding_dim))
    if self.kind != "training":
      return
    for key in ("batch_size", "example_samples", "optimizer", "random_seed",
                "variable_bytes"):
      if getattr(self, key) is None:
        fail(key, "a value (training models have one)", "nothing (missing)")
    if not self.variables:
      fail("variables", "the training model's variables", "none")
    if self.example_samples != model.example_samples:
      fail("example_samples", f"model.example_samples "
           f"({model.example_samples})", self.example_samples)
    total = sum(v.bytes for v in self.variables)
    if self.variable_bytes != total:
      fail("variable_bytes", f"the sum of variables[*].bytes ({total})",
           self.variable_bytes)
    if roles := sorted({v.role for v in self.variables}
                       - {"weight", "optimizer"}):
      fail("variables[*].role", "'weight' or 'optimizer'", roles)
    self._expect_tensor(fail, "train", "inputs", "waveform",
                        (self.batch_size, self.example_samples))
    for side, signature in (("outputs", "get_weights"),
                            ("inputs", "set_weights")):
      if signature not in self.signatures:
        continue
      tensors = getattr(self.signatures[signature], side)
      if set(tensors) != {v.key for v in self.variables}:
        fail(f"signatures.{signature}.{side}",
             f"one tensor per variable ({len(self.variables)})",
             f"{len(tensors)} tensors")
      for v in self.variables:
        if tensors[v.key].shape != v.shape:
          fail(f"signatures.{signature}.{side}.{v.key}.shape",
               f"variable {v.name!r}'s shape {list(v.shape)}",
               list(tensors[v.key].shape))

  def _expect_tensor(self, fail, signature: str, side: str, tensor: str,
                     shape: tuple) -> None:
    """Fails unless ``signature`` (when present) has ``tensor`` of ``shape``."""
    if signature not in self.signatures:
      return
    spec = getattr(self.signatures[signature], side).get(tensor)
    where = f"signatures.{signature}.{side}.{tensor}"
    if spec is None:
      fail(where, f"a float32 tensor of shape {list(shape)}",
           "nothing (missing)")
    if spec.dtype != "float32" or spec.shape != tuple(shape):
      fail(where, f"float32 {list(shape)}", f"{spec.dtype} {list(spec.shape)}")

  # Convenience.

  @property
  def weights(self) -> tuple[VariableSpec, ...]:
    """The model weights (not the optimizer state), in ``get_weights`` order."""
    return tuple(v for v in self.variables if v.is_weight)

  def signature(self, name: str) -> SignatureSpec:
    """The signature ``name``.

    Raises:
      KeyError: The model has no such signature (the message lists them).
    """
    if name not in self.signatures:
      raise KeyError(f"the model has no {name!r} signature; it has "
                     f"{sorted(self.signatures)}")
    return self.signatures[name]


#: Every class of the manifest's typed form (mirrored by ``Manifest.kt``).
MANIFEST_CLASSES = (Manifest, FileInfo, ModelInfo, EncoderInfo, TensorSpec,
                    SignatureSpec, VariableSpec, OptimizerInfo,
                    QuantizationInfo)


def manifest_path(path: str) -> str:
  """``path`` if it names a file, else ``<path>/manifest.json``."""
  return (os.path.join(path, MANIFEST_NAME)
          if os.path.isdir(path) or not path.endswith(".json") else path)


def sha256_bytes(content: bytes) -> str:
  """Hex sha256 of ``content``."""
  return hashlib.sha256(content).hexdigest()


def sha256_file(path: str) -> str:
  """Hex sha256 of the file at ``path``."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def toolkit_version() -> str:
  """The installed toolkit's version (``"unknown"`` in a bare checkout)."""
  try:
    return importlib.metadata.version(_DISTRIBUTION)
  except importlib.metadata.PackageNotFoundError:
    return "unknown"
