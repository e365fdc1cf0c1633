"""tflite-runtime's XNNPACK delegate made through ctypes (``export.xnnpack``):
created with the project's flags, runs an int8 embed file mostly in XNNPACK,
and falls back to the default delegate where it cannot be had."""

import ctypes
import logging

import numpy as np
import pytest

from export import delegation as delegation_lib
from export import xnnpack
from export.conversion import convert_embed_model
from export.exporter import fresh_source
from export.ondevice_module import EmbedModule
from export.runtime import OnDeviceModel


@pytest.fixture(scope="module")
def int8_embed():
  """A tiny int8 embed file and a few patches."""
  model = fresh_source("tiny", "temporal_gap").model
  rng = np.random.default_rng(0)
  patches = (0.1 * rng.standard_normal(
      (8, model.spec.frontend.patch_samples))).astype(np.float32)
  representative = lambda: ({"waveform": patches[i:i + 1]} for i in range(8))
  content = convert_embed_model(EmbedModule(model), "int8",
                                representative=representative).content
  return content, patches


def test_delegate_carries_the_flags():
  delegate = xnnpack.XNNPackDelegate(xnnpack.TFLITE_RUNTIME_FLAGS, 2)
  library = xnnpack._library()  # pylint: disable=protected-access
  library.TfLiteXNNPackDelegateGetFlags.argtypes = [ctypes.c_void_p]
  library.TfLiteXNNPackDelegateGetFlags.restype = ctypes.c_uint32
  pointer = delegate._get_native_delegate_pointer()  # pylint: disable=protected-access
  assert library.TfLiteXNNPackDelegateGetFlags(pointer) == (
      xnnpack.TFLITE_RUNTIME_FLAGS)
  assert xnnpack.TFLITE_RUNTIME_FLAGS & xnnpack.FLAG_QS8
  delegate.close()
  delegate.close()  # Idempotent.
  with pytest.raises(ValueError, match="already deleted"):
    delegate._get_native_delegate_pointer()  # pylint: disable=protected-access
  with pytest.raises(ValueError, match="num_threads"):
    xnnpack.XNNPackDelegate(0, 0)


def test_int8_embed_runs_mostly_in_xnnpack(int8_embed):
  content, patches = int8_embed
  lite = OnDeviceModel(content, runtime="tflite_runtime")
  assert lite.interpreter.xnnpack_flags == xnnpack.TFLITE_RUNTIME_FLAGS
  ours = delegation_lib.delegation(content, "embed", runtime="tflite_runtime")
  assert ours.delegated_nodes >= 0.6 * ours.nodes, ours
  # tflite-runtime's default delegate takes none of the int8 operators.
  default = xnnpack.tflite_runtime_interpreter(model_content=content,
                                               flags=None)
  assert default.xnnpack_flags is None
  replaced = delegation_lib._replaced(  # pylint: disable=protected-access
      default._get_ops_details())  # pylint: disable=protected-access
  assert len(replaced) < ours.delegated_nodes
  # Same embeddings as LiteRT, for a batch and after a resize.
  litert = OnDeviceModel(content, runtime="ai_edge_litert")
  for n in (3, 1):
    np.testing.assert_allclose(lite.embed(patches[:n]),
                               litert.embed(patches[:n]), atol=0.05)


def test_missing_symbol_falls_back_to_the_default_delegate(
    int8_embed, monkeypatch, caplog):
  monkeypatch.setattr(xnnpack, "_SYMBOLS",
                      xnnpack._SYMBOLS + ("TfLiteNoSuchFunction",))  # pylint: disable=protected-access
  monkeypatch.setattr(xnnpack, "_warned", set())
  with caplog.at_level(logging.WARNING, logger=xnnpack.__name__):
    interpreter = xnnpack.tflite_runtime_interpreter(
        model_content=int8_embed[0])
  assert interpreter.xnnpack_flags is None
  assert "does not export TfLiteNoSuchFunction" in caplog.text
  assert "falling back to tflite-runtime's default" in caplog.text
  runner = interpreter.get_signature_runner("embed")
  assert runner(waveform=int8_embed[1][:1])["embedding"].shape[0] == 1


def test_fixed_shape_runner_slices_the_dynamic_batch_only():
  model = fresh_source("tiny", "temporal_gap").model
  content = convert_embed_model(EmbedModule(model), "float32").content
  # An embed-only file takes the delegate directly; a training file (dynamic
  # tensors) is wrapped: wrap this one to check the slicing.
  interpreter = xnnpack.tflite_runtime_interpreter(model_content=content)
  assert not isinstance(interpreter, xnnpack.FixedShapeInterpreter)
  fixed = xnnpack.FixedShapeInterpreter(interpreter, interpreter.xnnpack_flags)
  rng = np.random.default_rng(1)
  patches = rng.standard_normal(
      (3, model.spec.frontend.patch_samples)).astype(np.float32)
  sliced = fixed.get_signature_runner("embed")(waveform=patches)
  whole = interpreter.get_signature_runner("embed")(waveform=patches)
  np.testing.assert_allclose(sliced["embedding"], whole["embedding"],
                             rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match=r"input 'waveform' has shape \[3, 7\]"):
    fixed.get_signature_runner("embed")(waveform=patches[:, :7])
