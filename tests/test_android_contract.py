"""The Android demo app uses only what an exported model's manifest holds.

Exports a tiny builtin training model, lexes the Kotlin sources of
``android_demo/`` and fails if the app names a signature, tensor or manifest
key the export does not have, spells such a name outside ``Contract.kt``,
hard-codes a size the manifest holds, or disagrees with the virtual device
(``export/device_session.py`` and the modules it uses) on file names and the
tensor-file layout, or declares manifest classes whose fields differ from
``export/manifest.py``'s. Mutated copies of the sources check that the checks
are strict.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess

import pytest

from export import audio_buffers
from export import device_session
from export import tensor_file
from export import manifest as manifest_lib
from export import weight_store
from export.exporter import TRAINING_DIR

ANDROID = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "android_demo")
#: Kotlin source sets the app ships (tests excluded).
SOURCE_SETS = ("core/src/main", "app/src/main")
CONTRACT = "Contract.kt"
#: A batch size no Kotlin source may contain by accident.
BATCH = 2  # conftest.TINY_EXPORT_BATCH
#: Calls whose first argument names a signature, tensor or manifest key.
NAMED_CALLS = {"obj", "objects", "string", "int", "ints", "long", "boolean",
               "strings", "has", "signature",
               "run", "runSignature", "getInputTensorFromSignature",
               "getOutputTensorFromSignature"}
#: Identifiers of a size the manifest holds: no literal may share their line.
SIZE_WORDS = re.compile(r"batch|samples|sample_?rate|embedding_?dim|patch",
                        re.IGNORECASE)
#: Manifest entries whose value is a size the app must read, not spell.
SIZE_KEYS = (("batch_size",), ("example_samples",), ("model", "sample_rate"),
             ("model", "patch_samples"), ("model", "embedding_dim"))


@dataclasses.dataclass(frozen=True)
class Token:
  kind: str  # "string" (template-free text), "template", "number", "name", "op"
  text: str
  line: int


def _string_end(source: str, start: int, raw: bool) -> tuple[int, bool]:
  """End of the string literal at ``start``; whether it has templates."""
  quote = '"""' if raw else '"'
  at, templated = start + len(quote), False
  while True:
    if at >= len(source):
      raise ValueError(f"unterminated string at offset {start}")
    if source.startswith(quote, at):
      if raw:
        while source.startswith('"', at + 3):  # """" ends with extra quotes.
          at += 1
      return at + len(quote), templated
    char = source[at]
    if char == "\\" and not raw:
      at += 2
    elif char == "$" and source.startswith("${", at):
      templated, at = True, _code_end(source, at + 2)
    elif char == "$" and re.match(r"\$[A-Za-z_]", source[at:at + 2]):
      templated, at = True, at + 1
    else:
      at += 1


def _code_end(source: str, at: int) -> int:
  """Index after the ``}`` closing the template expression at ``at``."""
  depth = 1
  while depth:
    if source.startswith('"""', at):
      at = _string_end(source, at, raw=True)[0]
    elif source[at] == '"':
      at = _string_end(source, at, raw=False)[0]
    else:
      depth += {"{": 1, "}": -1}.get(source[at], 0)
      at += 1
  return at


_LEXEMES = re.compile(r"""
    (?P<space>\s+)
  | (?P<line_comment>//[^\n]*)
  | (?P<block_comment>/\*.*?\*/)
  | (?P<char>'(?:\\u[0-9a-fA-F]{4}|\\.|[^\\'])')
  | (?P<number>0[xX][0-9a-fA-F_]+[uUL]*
               |(?:\d[\d_]*)?\.?\d[\d_]*(?:[eE][+-]?\d+)?[fFL]?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>.)
""", re.VERBOSE | re.DOTALL)


def kotlin_tokens(source: str) -> list[Token]:
  """Names, numbers, strings and operators of Kotlin source (comments dropped).

  A string literal's token holds its text when it has no ``$`` template,
  else kind ``template`` (its fixed parts are not a name anyway).
  """
  tokens, at = [], 0
  while at < len(source):
    line = source.count("\n", 0, at) + 1
    if source.startswith('"', at):
      raw = source.startswith('"""', at)
      end, templated = _string_end(source, at, raw)
      quote = 3 if raw else 1
      text = source[at + quote:end - quote]
      tokens.append(Token("template" if templated else "string",
                          text if raw else _unescape(text), line))
      at = end
      continue
    match = _LEXEMES.match(source, at)
    kind = match.lastgroup
    if kind in ("number", "name", "op"):
      tokens.append(Token(kind, match.group(), line))
    at = match.end()
  return tokens


def _unescape(text: str) -> str:
  return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", lambda m: chr(int(m.group(1)[1:], 16))
                if m.group(1).startswith("u") else
                {"n": "\n", "t": "\t", "r": "\r", "b": "\b"}.get(
                    m.group(1), m.group(1)), text)


def _number_value(text: str) -> float | None:
  if text.lower().startswith("0x"):
    return None
  return float(text.replace("_", "").rstrip("fFL"))


def kotlin_sources(root: str) -> dict[str, str]:
  """Every ``*.kt`` file of the app's source sets, by path under ``root``."""
  sources = {}
  for source_set in SOURCE_SETS:
    for directory, _, names in os.walk(os.path.join(root, source_set)):
      for name in sorted(names):
        if name.endswith(".kt"):
          path = os.path.join(directory, name)
          with open(path, encoding="utf-8") as f:
            sources[os.path.relpath(path, root)] = f.read()
  return sources


def contract_constants(tokens: list[Token]) -> dict[str, object]:
  """``const val NAME = <string or number>`` declarations, by name (constants
  computed from expressions are left out)."""
  constants = {}
  for i in range(len(tokens) - 4):
    head, name, equals, value = tokens[i:i + 2], *tokens[i + 2:i + 5]
    simple = value.kind in ("string", "number") and (
        i + 5 == len(tokens) or tokens[i + 5].line != value.line)
    if [t.text for t in head] == ["const", "val"] and equals.text == "=" and (
        simple):
      constants[name.text] = (value.text if value.kind == "string" else
                              _number_value(value.text))
  return constants


def _manifest_keys(value: object, chosen: bool = False) -> set[str]:
  """Keys at every depth, except names chosen by the model (``chosen``): the
  signature names under ``signatures`` and tensor names under ``inputs`` /
  ``outputs``."""
  keys = set()
  if isinstance(value, dict):
    for key, child in value.items():
      if not chosen:
        keys.add(key)
      keys |= _manifest_keys(child, not chosen and key in (
          "signatures", "inputs", "outputs"))
  elif isinstance(value, list):
    for child in value:
      keys |= _manifest_keys(child)
  return keys


def _manifest_values(value: object) -> set[str]:
  if isinstance(value, dict):
    return set().union(*map(_manifest_values, value.values()))
  if isinstance(value, list):
    return set().union(*map(_manifest_values, value)) if value else set()
  return {value} if isinstance(value, str) else set()


def schema_keys() -> set[str]:
  """Every key the manifest's typed form can write (optional ones too)."""
  return {f.name for cls in manifest_lib.MANIFEST_CLASSES
          for f in dataclasses.fields(cls)}


def kotlin_classes(source: str) -> dict[str, list[str]]:
  """``class Name(val a: ..., val b: ...)``: the primary constructor's
  properties of every class, by class name."""
  classes = {}
  for match in re.finditer(r"^class (\w+)\(", source, re.MULTILINE):
    depth, at = 1, match.end()
    while depth:
      depth += {"(": 1, ")": -1}.get(source[at], 0)
      at += 1
    classes[match.group(1)] = re.findall(r"\bval (\w+)\s*:",
                                         source[match.end():at - 1])
  return classes


def _snake(name: str) -> str:
  return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def manifest_field_problems(kotlin_source: str,
                            classes: tuple[type, ...]) -> list[str]:
  """How ``Manifest.kt``'s classes differ from the dataclasses ``classes``
  (same class names; Kotlin camelCase properties = Python fields)."""
  kotlin = kotlin_classes(kotlin_source)
  problems = []
  for cls in classes:
    if cls.__name__ not in kotlin:
      problems.append(f"Manifest.kt has no class {cls.__name__}")
      continue
    python_fields = [f.name for f in dataclasses.fields(cls)]
    kotlin_fields = [_snake(n) for n in kotlin[cls.__name__]]
    missing = [f for f in python_fields if f not in kotlin_fields]
    extra = [f for f in kotlin_fields if f not in python_fields]
    if missing:
      problems.append(f"{cls.__name__}: Manifest.kt lacks {missing}")
    if extra:
      problems.append(f"{cls.__name__}: export/manifest.py lacks {extra}")
    if not (missing or extra) and python_fields != kotlin_fields:
      problems.append(f"{cls.__name__}: field order differs: "
                      f"{python_fields} vs {kotlin_fields}")
  return problems


def check_app(root: str, manifest: manifest_lib.Manifest) -> list[str]:
  """Every way the Kotlin sources under ``root`` break the contract."""
  manifest = manifest.to_json()  # As the app reads it.
  sources = {path: kotlin_tokens(text)
             for path, text in kotlin_sources(root).items()}
  contract_paths = [p for p in sources if os.path.basename(p) == CONTRACT]
  if len(contract_paths) != 1:
    return [f"expected one {CONTRACT}, found {contract_paths}"]
  constants = contract_constants(sources[contract_paths[0]])
  signatures = manifest["signatures"]
  tensors = {name for entry in signatures.values()
             for side in ("inputs", "outputs") for name in entry[side]}
  problems = []

  def check_constants(prefix: str, allowed: set, what: str) -> None:
    found = {n: v for n, v in constants.items() if n.startswith(prefix)}
    if not found:
      problems.append(f"{CONTRACT} declares no {prefix}* constant")
    for name, value in found.items():
      if value not in allowed:
        problems.append(f"{CONTRACT}: {name} = {value!r} is not {what}")

  check_constants("SIGNATURE_", set(signatures), "a signature of the model")
  check_constants("TENSOR_", tensors, "a tensor of any signature")
  check_constants("KEY_", _manifest_keys(manifest) | schema_keys(),
                  "a key of manifest.json")
  check_constants("VALUE_", _manifest_values(manifest),
                  "a value in manifest.json")

  used = {t.text for path, tokens in sources.items() for t in tokens
          if t.kind == "name" and path not in contract_paths}
  problems += [f"{CONTRACT}: {name} is never used" for name in constants
               if name not in used]

  # Which tensor each call passes to or reads from which signature.
  model_file = " ".join(t.text for path, tokens in sources.items()
                        if path.endswith("OnDeviceModel.kt") for t in tokens)
  pairs = (re.findall(r"run \( SIGNATURE_(\w+) , mapOf \( TENSOR_(\w+) to ",
                      model_file)
           + re.findall(r"output \( \w+ , SIGNATURE_(\w+) , TENSOR_(\w+) \)",
                        model_file))
  for signature, tensor in pairs:
    name = constants.get(f"SIGNATURE_{signature}")
    entry = signatures.get(name, {"inputs": {}, "outputs": {}})
    if constants.get(f"TENSOR_{tensor}") not in {**entry["inputs"],
                                                 **entry["outputs"]}:
      problems.append(f"OnDeviceModel.kt: TENSOR_{tensor} is not a tensor of "
                      f"signature {name!r}")
  unpaired = {n[len("TENSOR_"):] for n in constants if n.startswith(
      "TENSOR_")} - {tensor for _, tensor in pairs}
  if unpaired:
    problems.append(f"OnDeviceModel.kt: no signature call found for "
                    f"TENSOR_{sorted(unpaired)}")

  model_names = set(signatures) | tensors
  sizes = {manifest[path[0]] if len(path) == 1 else manifest[path[0]][path[1]]
           for path in SIZE_KEYS}
  for path, tokens in sources.items():
    for i, token in enumerate(tokens):
      where = f"{path}:{token.line}"
      if (token.kind == "string" and token.text in model_names
          and path not in contract_paths):
        problems.append(f"{where}: spells the model's name {token.text!r}; "
                        f"use the {CONTRACT} constant")
      if (token.kind == "name" and token.text in NAMED_CALLS
          and i + 2 < len(tokens) and tokens[i + 1].text == "("
          and tokens[i + 2].kind in ("string", "template")):
        problems.append(f"{where}: {token.text}() takes a literal name; use a "
                        f"{CONTRACT} constant")
      if token.kind != "number":
        continue
      value = _number_value(token.text)
      line = [t for t in tokens if t.line == token.line]
      if value in sizes and value >= 100:
        problems.append(f"{where}: hard-codes {token.text}, a size the "
                        f"manifest holds")
      elif value not in (None, 0, 1) and any(
          t.kind == "name" and SIZE_WORDS.search(t.text) for t in line):
        problems.append(f"{where}: literal {token.text} next to a size the "
                        f"manifest holds")
      elif value not in (None, 0, 1) and any(
          t.text in ("intArrayOf", "longArrayOf") for t in line):
        problems.append(f"{where}: literal {token.text} in a tensor shape")
  return problems


@pytest.fixture(scope="module")
def exported(tiny_cbow_export):
  """The session's tiny builtin training export and its manifest."""
  return (tiny_cbow_export.out_dir,
          tiny_cbow_export.manifests[TRAINING_DIR])


@pytest.fixture
def app_copy(tmp_path):
  """A copy of the app's Kotlin sources to mutate."""
  for source_set in SOURCE_SETS:
    shutil.copytree(os.path.join(ANDROID, source_set),
                    os.path.join(tmp_path, source_set))
  return str(tmp_path)


def _mutate(root: str, file_name: str, old: str, new: str) -> None:
  [path] = [os.path.join(d, file_name) for d, _, names in os.walk(root)
            if file_name in names]
  with open(path, encoding="utf-8") as f:
    text = f.read()
  assert old in text, f"{old!r} not in {file_name}"
  with open(path, "w", encoding="utf-8") as f:
    f.write(text.replace(old, new, 1))


def test_app_uses_only_what_the_manifest_holds(exported):
  _, manifest = exported
  assert check_app(ANDROID, manifest) == []


def test_app_shares_file_names_and_layout_with_the_virtual_device():
  constants = {}
  kinds = {}
  for path, text in kotlin_sources(ANDROID).items():
    constants.update(contract_constants(kotlin_tokens(text)))
    if path.endswith("TensorFile.kt"):
      enum = text[text.index("enum class TensorFileKind"):]
      kinds = {name: int(code) for name, code in re.findall(
          r"^\s*(\w+)\((\d+)\)", enum[:enum.index("\n}")], re.MULTILINE)}
  assert constants["FILE_MODEL"] == manifest_lib.MODEL_NAME
  assert constants["FILE_MANIFEST"] == manifest_lib.MANIFEST_NAME
  assert constants["MANIFEST_FORMAT_VERSION"] == manifest_lib.FORMAT_VERSION
  assert constants["STATE_WEIGHTS"] == weight_store.WEIGHTS_FILE
  assert constants["STATE_PREVIOUS_WEIGHTS"] == (
      weight_store.PREVIOUS_WEIGHTS_FILE)
  assert constants["STATE_WINDOWS"] == device_session.WINDOWS_FILE
  assert constants["STATE_DELTA"] == device_session.DELTA_FILE
  assert constants["FORMAT_MAGIC"] == tensor_file.MAGIC.decode("ascii")
  assert constants["FORMAT_VERSION"] == tensor_file.FORMAT_VERSION
  assert constants["FORMAT_WINDOWS_TENSOR"] == audio_buffers.WINDOWS_TENSOR
  assert constants["MIN_WINDOW_RMS"] == audio_buffers.MIN_RMS
  assert kinds == {kind.name: kind.value for kind in tensor_file.Kind}


@pytest.mark.parametrize("file_name, old, new, expected", [
    (CONTRACT, 'SIGNATURE_TRAIN = "train"', 'SIGNATURE_TRAIN = "train_step"',
     "SIGNATURE_TRAIN = 'train_step' is not a signature"),
    (CONTRACT, 'TENSOR_LOSS = "loss"', 'TENSOR_LOSS = "cost"',
     "TENSOR_LOSS = 'cost' is not a tensor"),
    (CONTRACT, 'KEY_PATCH_SAMPLES = "patch_samples"',
     'KEY_PATCH_SAMPLES = "patch_size"', "'patch_size' is not a key"),
    ("OnDeviceModel.kt", "runner.run(SIGNATURE_EMBED,", 'runner.run("embed",',
     "spells the model's name 'embed'"),
    ("OnDeviceModel.kt", "output(outputs, SIGNATURE_TRAIN, TENSOR_LOSS)",
     "output(outputs, SIGNATURE_TRAIN, TENSOR_EMBEDDING)",
     "TENSOR_EMBEDDING is not a tensor of signature 'train'"),
    ("Manifest.kt", "model.int(KEY_PATCH_SAMPLES)",
     'model.int("patch_samples")',
     "int() takes a literal name"),
    ("MainActivity.kt", "AudioCapture(session.manifest.sampleRate)",
     "AudioCapture(16_000)", "hard-codes 16_000"),
    ("DeviceSession.kt", "buffer.batch(manifest.batchSize, examples)",
     f"buffer.batch({BATCH}, examples)", f"literal {BATCH} next to a size"),
    ("OnDeviceModel.kt", "Tensor(intArrayOf(count, width), data)",
     f"Tensor(intArrayOf({BATCH}, width), data)",
     f"literal {BATCH} in a tensor shape"),
])
def test_checks_catch_a_broken_app(exported, app_copy, file_name, old, new,
                                   expected):
  _, manifest = exported
  assert check_app(app_copy, manifest) == []
  _mutate(app_copy, file_name, old, new)
  problems = check_app(app_copy, manifest)
  assert any(expected in p for p in problems), problems


def _manifest_kt() -> str:
  [path] = [os.path.join(d, "Manifest.kt") for d, _, names in os.walk(
      os.path.join(ANDROID, "core", "src", "main")) if "Manifest.kt" in names]
  with open(path, encoding="utf-8") as f:
    return f.read()


def test_kotlin_manifest_mirrors_the_python_dataclasses():
  assert manifest_field_problems(_manifest_kt(),
                                 manifest_lib.MANIFEST_CLASSES) == []


def test_a_field_added_on_one_side_fails_the_comparison():
  source = _manifest_kt()
  field = "  val randomSeed: Long,\n"
  assert field in source
  kotlin_extra = source.replace(field, field + "  val warmup: Int,\n")
  assert manifest_field_problems(kotlin_extra, (manifest_lib.Manifest,)) == [
      "Manifest: export/manifest.py lacks ['warmup']"]
  python_extra = dataclasses.make_dataclass(
      "FileInfo", [*((f.name, f.type) for f in dataclasses.fields(
          manifest_lib.FileInfo)), ("created", str)])
  assert manifest_field_problems(source, (python_extra,)) == [
      "FileInfo: Manifest.kt lacks ['created']"]
  renamed = source.replace("class QuantizationInfo(", "class Quantization(")
  assert manifest_field_problems(renamed, (manifest_lib.QuantizationInfo,)) == [
      "Manifest.kt has no class QuantizationInfo"]


def test_lexer_keeps_strings_comments_and_chars_apart():
  source = ('val a = "x\\"$b // y" // "train"\n'
            "/* \"embed\" */ val c = '\"' + \"\"\"raw ${f(\"z\")}\"\"\" + "
            '"${g("w")}" + 16_000L')
  tokens = kotlin_tokens(source)
  assert [t.text for t in tokens if t.kind == "string"] == []
  assert [t.kind for t in tokens if t.kind in ("template", "number")] == [
      "template", "template", "template", "number"]
  assert _number_value(tokens[-1].text) == 16000
  assert "train" not in [t.text for t in tokens]


def test_every_signature_the_app_runs_has_an_input(exported):
  """TensorFlow Lite's Java Interpreter.runSignature rejects an empty input map."""
  _, manifest = exported
  inputless = [name for name, entry in manifest.signatures.items()
               if not entry.inputs]
  assert not inputless


def test_copy_model_script_checks_and_copies(exported, tmp_path):
  out_dir, manifest = exported
  script = os.path.join(ANDROID, "copy_model.sh")
  assets = tmp_path / "assets"
  subprocess.run([script, out_dir, str(assets)], check=True,
                 capture_output=True)
  assert manifest_lib.sha256_file(str(assets / manifest_lib.MODEL_NAME)) == (
      manifest.file.sha256)
  assert manifest_lib.Manifest.read(str(assets)) == manifest_lib.Manifest.read(
      os.path.join(out_dir, TRAINING_DIR))

  damaged = tmp_path / "damaged"
  shutil.copytree(os.path.join(out_dir, TRAINING_DIR), damaged)
  with open(damaged / manifest_lib.MODEL_NAME, "ab") as f:
    f.write(b"\0")
  result = subprocess.run([script, str(damaged), str(tmp_path / "other")],
                          capture_output=True, text=True)
  assert result.returncode != 0 and "different exports" in result.stderr
  assert not (tmp_path / "other").exists()


def test_app_runs_on_litert_with_xnnpack():
  """The app depends on LiteRT (not tensorflow-lite) and turns XNNPACK on."""
  with open(os.path.join(ANDROID, "app", "build.gradle.kts"),
            encoding="utf-8") as f:
    gradle = f.read()
  dependencies = re.findall(r'implementation\("([^"]+)"\)', gradle)
  assert any(d.startswith("com.google.ai.edge.litert:litert:")
             for d in dependencies), dependencies
  assert not any(d.startswith("org.tensorflow:") for d in dependencies)
  sources = []
  for directory, _, names in os.walk(os.path.join(ANDROID, "app", "src")):
    for name in names:
      if name.endswith(".kt"):
        with open(os.path.join(directory, name), encoding="utf-8") as f:
          sources.append(f.read())
  assert any("setUseXNNPACK(true)" in s for s in sources)
