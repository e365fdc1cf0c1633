"""Host-side wrapper around a TFLite interpreter running an exported model.

:class:`OnDeviceModel` is what tests, benchmarks and the host-side virtual
device use to drive an exported file the way the Android app does: through
its signatures only. It checks every input before it reaches the
interpreter, so a wrong name, shape, dtype or a non-finite value raises a
``ValueError`` naming the tensor instead of corrupting the model's state.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import warnings
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from export import manifest as manifest_lib
from export.litert_runtime import XNNPACK_FLAGS, CompiledInterpreter
from export.xnnpack import TFLITE_RUNTIME_FLAGS, tflite_runtime_interpreter

__all__ = ["RUNTIMES", "DEFAULT_RUNTIME", "XNNPACK_FLAGS",
           "TFLITE_RUNTIME_FLAGS", "TensorInfo",
           "resolve_runtime", "make_interpreter", "OnDeviceModel"]

#: Interpreters by name: LiteRT (``ai-edge-litert``, the default: its
#: ``CompiledModel`` runs XNNPACK with :data:`XNNPACK_FLAGS`), the legacy
#: ``tflite-runtime`` 2.14 (an XNNPACK delegate made with
#: :data:`TFLITE_RUNTIME_FLAGS` through ctypes, :mod:`export.xnnpack`) and
#: TF's own interpreter (with Flex kernels, for ``flex`` exports).
RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")
#: The runtime of every host-side path unless told otherwise.
DEFAULT_RUNTIME = "ai_edge_litert"

@dataclasses.dataclass(frozen=True)
class TensorInfo:
  """A signature tensor as the interpreter reports it.

  Attributes:
    dtype: Numpy dtype name, e.g. ``"float32"``.
    shape: Shape with ``-1`` for dynamic dimensions.
  """

  dtype: str
  shape: tuple[int, ...]

  def to_dict(self) -> dict[str, Any]:
    return {"dtype": self.dtype, "shape": list(self.shape)}


def resolve_runtime(runtime: str) -> str:
  """The runtime that will run, after checking the name and the package.

  A missing or broken ``ai-edge-litert`` falls back to ``tflite_runtime``
  with a warning naming the package and the fallback.

  Args:
    runtime: One of :data:`RUNTIMES`.

  Returns:
    ``runtime``, or ``tflite_runtime`` after a fallback.

  Raises:
    ValueError: Unknown runtime (the message lists the choices).
    ImportError: The runtime's package (or, for LiteRT, the fallback's) is
      not installed.
  """
  if runtime not in RUNTIMES:
    raise ValueError(f"unknown runtime {runtime!r}; expected one of "
                     f"{RUNTIMES}")
  if runtime != "ai_edge_litert":
    return runtime
  try:
    importlib.import_module("ai_edge_litert.compiled_model")
  except Exception as e:  # ImportError, or a shared library failing to load.
    importlib.import_module("tflite_runtime.interpreter")
    warnings.warn(f"ai-edge-litert (pip package 'ai-edge-litert') failed to "
                  f"load ({type(e).__name__}: {e}); falling back to "
                  f"tflite_runtime (tflite-runtime 2.14, default XNNPACK "
                  f"delegate, slower training steps)", RuntimeWarning,
                  stacklevel=2)
    return "tflite_runtime"
  return runtime


def make_interpreter(model_content: bytes, runtime: str = DEFAULT_RUNTIME,
                     *, num_threads: int = 1) -> Any:
  """An interpreter for ``model_content``, ready to run its signatures.

  ``ai_edge_litert`` is LiteRT's ``CompiledModel`` with XNNPACK flags
  :data:`XNNPACK_FLAGS` (measured faster than LiteRT's ``Interpreter`` on
  training steps); ``tflite_runtime`` is its interpreter with an XNNPACK
  delegate made with :data:`TFLITE_RUNTIME_FLAGS`
  (:func:`export.xnnpack.tflite_runtime_interpreter`; training files run
  each signature at its allocated shapes, a larger ``embed`` batch in
  slices; the default delegate, with a warning, where that fails);
  ``tensorflow`` is TF's interpreter with its default XNNPACK delegate.
  Tensors are allocated before any signature runner is created (only then
  is a default delegate applied).

  Args:
    model_content: A ``.tflite`` flatbuffer.
    runtime: One of :data:`RUNTIMES`.
    num_threads: Threads.

  Returns:
    The interpreter.

  Raises:
    ValueError: Unknown runtime.
    ImportError: The runtime's package is not installed.
  """
  runtime = resolve_runtime(runtime)
  if runtime == "ai_edge_litert":
    return CompiledInterpreter(model_content, num_threads=num_threads)
  if runtime == "tflite_runtime":
    return tflite_runtime_interpreter(model_content=model_content,
                                      num_threads=num_threads)
  interpreter = importlib.import_module("tensorflow").lite.Interpreter(
      model_content=model_content, num_threads=num_threads)
  interpreter.allocate_tensors()
  return interpreter


def _tensor_info(details: Mapping[str, Any]) -> TensorInfo:
  return TensorInfo(dtype=np.dtype(details["dtype"]).name,
                    shape=tuple(int(d) for d in details["shape_signature"]))


class OnDeviceModel:
  """An exported ``.tflite`` model driven through its signatures.

  Weights are addressed by variable name (e.g.
  ``"encoder/block0/conv_1x3/kernel"``) when the model was given its
  variable table (:meth:`load` reads it from the manifest), otherwise by
  signature key.

  Attributes:
    runtime: The runtime running it (one of :data:`RUNTIMES`).
    interpreter: The interpreter, tensors allocated.
  """

  def __init__(self, model_content: bytes, *,
               runtime: str = DEFAULT_RUNTIME, num_threads: int = 1,
               variables: Optional[Sequence[tuple[str, str]]] = None):
    """Creates the interpreter.

    Args:
      model_content: The ``.tflite`` flatbuffer.
      runtime: One of :data:`RUNTIMES` (``flex`` exports need
        ``tensorflow``).
      num_threads: Interpreter threads.
      variables: ``(name, signature key)`` of every variable in wire order,
        as the manifest lists them; default: the signature keys, sorted.

    Raises:
      ValueError: Unknown runtime, or ``variables`` does not match the
        model's ``get_weights`` outputs.
    """
    self.runtime = resolve_runtime(runtime)
    self.interpreter = make_interpreter(model_content, self.runtime,
                                        num_threads=num_threads)
    self._runners: dict[str, Any] = {}
    self._input_infos: dict[str, dict[str, TensorInfo]] = {}
    signatures = self.interpreter.get_signature_list()
    keys = sorted(signatures.get("get_weights", {}).get("outputs", []))
    if variables is None:
      variables = [(key, key) for key in keys]
    if sorted(key for _, key in variables) != keys:
      raise ValueError(f"variable table does not match the model's "
                       f"get_weights outputs ({len(variables)} listed, "
                       f"{len(keys)} in the model)")
    self._keys = {name: key for name, key in variables}

  @classmethod
  def load(cls, path: str, *, runtime: str = DEFAULT_RUNTIME,
           num_threads: int = 1) -> "OnDeviceModel":
    """Loads an exported file and the manifest beside it.

    Args:
      path: The ``.tflite`` file, or the directory holding it.
      runtime: One of :data:`RUNTIMES`.
      num_threads: Interpreter threads.

    Raises:
      FileNotFoundError: The file or its manifest is missing.
      ValueError: The file's sha256 differs from the manifest's, or the
        manifest's mode needs another runtime.
    """
    if os.path.isdir(path):
      path = os.path.join(path, manifest_lib.MODEL_NAME)
    manifest = manifest_lib.Manifest.read(os.path.dirname(path))
    with open(path, "rb") as f:
      content = f.read()
    digest = manifest_lib.sha256_bytes(content)
    if digest != manifest.file.sha256:
      raise ValueError(f"{path}: sha256 {digest} differs from its manifest's "
                       f"{manifest.file.sha256}")
    if manifest.mode == "flex" and runtime != "tensorflow":
      raise ValueError(f"{path} is a flex export (Select-TF ops): run it with "
                       f"runtime='tensorflow', not {runtime!r}")
    return cls(content, runtime=runtime, num_threads=num_threads,
               variables=[(v.name, v.key)
                          for v in manifest.variables] or None)

  def runner(self, signature: str) -> Any:
    """The raw signature runner (no input checks).

    Raises:
      KeyError: The model has no such signature.
    """
    if signature not in self._runners:
      available = self.interpreter.get_signature_list()
      if signature not in available:
        raise KeyError(f"model has no {signature!r} signature; it has "
                       f"{sorted(available)}")
      self._runners[signature] = self.interpreter.get_signature_runner(
          signature)
    return self._runners[signature]

  def signatures(self) -> dict[str, dict[str, dict[str, TensorInfo]]]:
    """``{signature: {"inputs": {name: info}, "outputs": {name: info}}}``."""
    table = {}
    for signature in sorted(self.interpreter.get_signature_list()):
      runner = self.runner(signature)
      table[signature] = {
          "inputs": {name: _tensor_info(d) for name, d in
                     sorted(runner.get_input_details().items())},
          "outputs": {name: _tensor_info(d) for name, d in
                      sorted(runner.get_output_details().items())}}
    return table

  @property
  def variable_names(self) -> list[str]:
    """Names of the variables, in wire order."""
    return list(self._keys)

  def _check(self, signature: str, name: str, value: Any,
             expected: TensorInfo) -> np.ndarray:
    """Returns ``value`` as an array after checking dtype, shape, finiteness."""
    array = np.asarray(value)
    if array.dtype.name != expected.dtype:
      raise ValueError(f"{signature}: tensor {name!r} has dtype "
                       f"{array.dtype.name}, expected {expected.dtype}")
    if len(array.shape) != len(expected.shape) or any(
        e not in (-1, a) for a, e in zip(array.shape, expected.shape)):
      shape = [d if d >= 0 else None for d in expected.shape]
      raise ValueError(f"{signature}: tensor {name!r} has shape "
                       f"{list(array.shape)}, expected {shape}")
    if array.size == 0:
      raise ValueError(f"{signature}: tensor {name!r} is empty")
    if not np.all(np.isfinite(array)):
      raise ValueError(f"{signature}: tensor {name!r} has "
                       f"{int(np.sum(~np.isfinite(array)))} non-finite "
                       f"values")
    return array

  def _inputs(self, signature: str) -> dict[str, TensorInfo]:
    # Dtypes and shape signatures never change: read once (the runtimes'
    # detail calls cost about 5% of a one-patch embed).
    if signature not in self._input_infos:
      self._input_infos[signature] = {
          name: _tensor_info(d) for name, d in
          self.runner(signature).get_input_details().items()}
    return self._input_infos[signature]

  def train(self, waveform: np.ndarray) -> float:
    """One optimizer step on a ``[B, S]`` float32 batch; returns the loss.

    Raises:
      ValueError: Wrong dtype or shape, or non-finite samples.
    """
    waveform = self._check("train", "waveform", waveform,
                           self._inputs("train")["waveform"])
    return float(self.runner("train")(waveform=waveform)["loss"])

  def embed(self, waveform: np.ndarray) -> np.ndarray:
    """Embeddings ``[N, D]`` of ``[N, patch_samples]`` float32 waveforms.

    Raises:
      ValueError: Wrong dtype or shape, or non-finite samples.
    """
    waveform = self._check("embed", "waveform", waveform,
                           self._inputs("embed")["waveform"])
    return self.runner("embed")(waveform=waveform)["embedding"]

  def train_image(self, image: np.ndarray) -> float:
    """One optimizer step on a ``[B, H, W]`` float32 image batch (multimodal
    models); returns the loss.

    Raises:
      KeyError: The model has no ``train_image`` signature.
      ValueError: Wrong dtype or shape, or non-finite pixels.
    """
    image = self._check("train_image", "image", image,
                        self._inputs("train_image")["image"])
    return float(self.runner("train_image")(image=image)["loss"])

  def embed_image(self, image: np.ndarray) -> np.ndarray:
    """Embeddings ``[N, D]`` of ``[N, H, W]`` float32 images (multimodal
    models).

    Raises:
      KeyError: The model has no ``embed_image`` signature.
      ValueError: Wrong dtype or shape, or non-finite pixels.
    """
    image = self._check("embed_image", "image", image,
                        self._inputs("embed_image")["image"])
    return self.runner("embed_image")(image=image)["embedding"]

  def get_weights(self) -> dict[str, np.ndarray]:
    """Every model weight and optimizer variable by name, in wire order."""
    values = self.runner("get_weights")(request=np.int32(0))
    return {name: values[key] for name, key in self._keys.items()}

  def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
    """Assigns every variable; checks all of them first.

    Args:
      weights: One float32 array per variable, by name (all of them, as
        :meth:`get_weights` returns).

    Raises:
      ValueError: A name is unknown or missing, or a tensor has the wrong
        shape or dtype or non-finite values; the message names it. Nothing
        is assigned.
      RuntimeError: The model's own check rejected the tensors.
    """
    if unknown := [name for name in weights if name not in self._keys]:
      raise ValueError(f"set_weights: unknown tensor(s) {unknown[:5]}; the "
                       f"model has {len(self._keys)} variables, e.g. "
                       f"{self.variable_names[:2]}")
    if missing := [name for name in self._keys if name not in weights]:
      raise ValueError(f"set_weights: missing tensor(s) {missing[:5]}"
                       f"{' ...' if len(missing) > 5 else ''}")
    expected = self._inputs("set_weights")
    inputs = {key: self._check("set_weights", name, weights[name],
                               expected[key])
              for name, key in self._keys.items()}
    if int(self.runner("set_weights")(**inputs)["ok"]) != 1:
      raise RuntimeError("set_weights: the model rejected the tensors "
                         "(non-finite values); nothing was assigned")

  def save(self, checkpoint_path: str) -> None:
    """Writes every variable to ``checkpoint_path`` (``flex`` exports)."""
    self.runner("save")(checkpoint_path=np.array(checkpoint_path,
                                                 dtype=np.bytes_))

  def restore(self, checkpoint_path: str) -> None:
    """Reads every variable from a :meth:`save` checkpoint (``flex`` exports).

    Raises:
      RuntimeError: The checkpoint holds non-finite values (nothing was
        assigned).
    """
    result = self.runner("restore")(checkpoint_path=np.array(
        checkpoint_path, dtype=np.bytes_))
    if int(result["ok"]) != 1:
      raise RuntimeError(f"restore: {checkpoint_path} holds non-finite "
                         f"values; nothing was assigned")
