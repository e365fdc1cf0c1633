"""tflite-runtime's XNNPACK delegate with chosen flags, made through ctypes.

tflite-runtime 2.14 applies a default XNNPACK delegate whose flags cannot be
set from Python: it takes no FULLY_CONNECTED with variable weights (every
matmul of a builtin training step) and no int8 operator. Its wrapper library
(``_pywrap_tensorflow_interpreter_wrapper``) exports XNNPACK's C API, so
:class:`XNNPackDelegate` makes the delegate itself
(``TfLiteXNNPackDelegateOptionsDefault``, then ``num_threads`` and ``flags``
set, then ``TfLiteXNNPackDelegateCreate``) and
:func:`tflite_runtime_interpreter` passes it in ``experimental_delegates``
with the default delegate turned off. The interpreter holds the delegate and
drops it after itself; the delegate is then deleted
(``TfLiteXNNPackDelegateDelete``).

Training files need more: tflite-runtime 2.14 sizes variable reads (and
what follows them) only when they run, and refuses a delegate for a graph
with such dynamic-sized tensors unless the delegate declares
``kTfLiteDelegateFlagsAllowDynamicTensors``; it then neither sizes the
tensors before delegating nor re-delegates after an input is resized. So a
training file is allocated first (every static shape known), the flag is set
in the delegate's ``TfLiteDelegate.flags``, the delegate applied, and the
interpreter wrapped in :class:`FixedShapeInterpreter`, which runs a signature
only at the input shapes it was allocated with: a dynamic batch (``embed``'s
``N``) is run in slices of the allocated batch. Losses, weights and
embeddings are checked against LiteRT by the tests.

This module imports only the standard library, numpy and tflite-runtime
(no TensorFlow), so a benchmark worker can load it by file path.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import logging
import os
from typing import Any, Optional

import numpy as np

__all__ = ["FLAG_QS8", "FLAG_QU8", "FLAG_DYNAMIC_FULLY_CONNECTED",
           "FLAG_VARIABLE_OPERATORS", "TFLITE_RUNTIME_FLAGS",
           "XNNPackUnavailable", "XNNPackDelegate", "create_delegate",
           "FixedShapeInterpreter", "tflite_runtime_interpreter"]

# Flag values of tflite-runtime 2.14's ``xnnpack_delegate.h``.
#: Signed 8-bit quantized operators (``TFLITE_XNNPACK_DELEGATE_FLAG_QS8``).
FLAG_QS8 = 0x01
#: Unsigned 8-bit quantized operators (``..._FLAG_QU8``).
FLAG_QU8 = 0x02
#: FULLY_CONNECTED with non-constant weights
#: (``..._FLAG_DYNAMIC_FULLY_CONNECTED``).
FLAG_DYNAMIC_FULLY_CONNECTED = 0x08
#: READ_VARIABLE / ASSIGN_VARIABLE / VAR_HANDLE inside the delegate
#: (``..._FLAG_VARIABLE_OPERATORS``).
FLAG_VARIABLE_OPERATORS = 0x10

#: Flags of every tflite-runtime interpreter the project makes: quantized
#: operators (int8 embed files), FULLY_CONNECTED with variable weights and
#: variable operators (training files). Measured (small encoder, 1 thread,
#: CPU ms medians, interleaved): int8 embed of one patch 1.00 (default
#: delegate) -> 0.44 (0x03) -> 0.38 (0x0B) -> 0.37 (0x1B); float32 embed
#: 0.43 -> 0.37 (0x0B, 0x1B); temporal_gap train step, batch 32: 420 (no
#: delegate) -> 210 (0x0B) -> 195 (0x1B). Flags for operators a file lacks
#: change nothing for it (QU8: uint8 files, which the project does not
#: make; LiteRT's default flags have it too).
TFLITE_RUNTIME_FLAGS = (FLAG_QS8 | FLAG_QU8 | FLAG_DYNAMIC_FULLY_CONNECTED
                        | FLAG_VARIABLE_OPERATORS)

#: ``kTfLiteDelegateFlagsAllowDynamicTensors`` of ``TfLiteDelegate.flags``.
_ALLOW_DYNAMIC_TENSORS = 0x1
#: Offset of ``TfLiteDelegate.flags``: after ``data_`` and four function
#: pointers (``Prepare``, ``CopyFromBufferHandle``, ``CopyToBufferHandle``,
#: ``FreeBufferHandle``), as tflite-runtime 2.14's ``common.h`` lays it out.
_DELEGATE_FLAGS_OFFSET = 5 * ctypes.sizeof(ctypes.c_void_p)

_WRAPPER = "tflite_runtime._pywrap_tensorflow_interpreter_wrapper"
_SYMBOLS = ("TfLiteXNNPackDelegateOptionsDefault",
            "TfLiteXNNPackDelegateCreate", "TfLiteXNNPackDelegateDelete")

_log = logging.getLogger(__name__)


class XNNPackUnavailable(RuntimeError):
  """The wrapper library or one of XNNPACK's C functions is missing."""


class _Options(ctypes.Structure):
  """``TfLiteXNNPackDelegateOptions``: only its leading ``num_threads`` and
  ``flags`` are set; the padding holds the fields that follow them (weights
  cache, ...), which ``TfLiteXNNPackDelegateOptionsDefault`` fills."""

  _fields_ = [("num_threads", ctypes.c_int32), ("flags", ctypes.c_uint32),
              ("_rest", ctypes.c_uint8 * 248)]


def _library() -> ctypes.CDLL:
  """tflite-runtime's wrapper library, with XNNPACK's C API typed.

  Raises:
    XNNPackUnavailable: The library cannot be found or loaded, or it lacks
      one of the functions (the message names it).
  """
  try:
    spec = importlib.util.find_spec(_WRAPPER)
  except ImportError as e:
    raise XNNPackUnavailable(f"tflite-runtime is not installed ({e})") from e
  if spec is None or not spec.origin or not os.path.exists(spec.origin):
    raise XNNPackUnavailable(f"tflite-runtime's wrapper library {_WRAPPER} "
                             f"was not found")
  try:
    library = ctypes.CDLL(spec.origin)
  except OSError as e:
    raise XNNPackUnavailable(f"cannot load {spec.origin}: {e}") from e
  for symbol in _SYMBOLS:
    if not hasattr(library, symbol):
      raise XNNPackUnavailable(f"{spec.origin} does not export {symbol}")
  library.TfLiteXNNPackDelegateOptionsDefault.argtypes = []
  library.TfLiteXNNPackDelegateOptionsDefault.restype = _Options
  library.TfLiteXNNPackDelegateCreate.argtypes = [ctypes.POINTER(_Options)]
  library.TfLiteXNNPackDelegateCreate.restype = ctypes.c_void_p
  library.TfLiteXNNPackDelegateDelete.argtypes = [ctypes.c_void_p]
  library.TfLiteXNNPackDelegateDelete.restype = None
  return library


class XNNPackDelegate:
  """An XNNPACK delegate of tflite-runtime with chosen flags.

  Pass it in ``experimental_delegates`` of ``tflite_runtime.interpreter.
  Interpreter`` (which calls :meth:`_get_native_delegate_pointer` and holds
  it until the interpreter is gone); it is deleted when the last reference
  goes, or by :meth:`close`.

  Attributes:
    flags: The delegate's flags.
    num_threads: Its thread count (1: no thread pool).
  """

  def __init__(self, flags: int = TFLITE_RUNTIME_FLAGS, num_threads: int = 1):
    """Creates the delegate.

    Args:
      flags: Bitwise OR of the ``FLAG_*`` values.
      num_threads: Threads, >= 1.

    Raises:
      ValueError: ``flags`` or ``num_threads`` out of range.
      XNNPackUnavailable: The library, a function or the delegate could not
        be had (the message says which).
    """
    self._library: Optional[ctypes.CDLL] = None
    self._pointer: Optional[int] = None
    if not 0 <= flags < 2**32:
      raise ValueError(f"XNNPACK flags must fit 32 bits, got {flags:#x}")
    if num_threads < 1:
      raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    library = _library()
    options = library.TfLiteXNNPackDelegateOptionsDefault()
    # As tflite-runtime's own default delegate: no thread pool for 1 thread.
    options.num_threads = num_threads if num_threads > 1 else 0
    options.flags = flags
    pointer = library.TfLiteXNNPackDelegateCreate(ctypes.byref(options))
    if not pointer:
      raise XNNPackUnavailable(f"TfLiteXNNPackDelegateCreate returned NULL "
                               f"(flags {flags:#x}, {num_threads} threads)")
    self._library, self._pointer = library, pointer
    self.flags = flags
    self.num_threads = num_threads

  def _get_native_delegate_pointer(self) -> int:
    """The ``TfLiteDelegate*`` (the interpreter API's delegate protocol)."""
    if self._pointer is None:
      raise ValueError("XNNPACK delegate already deleted")
    return self._pointer

  def allow_dynamic_tensors(self) -> None:
    """Sets ``kTfLiteDelegateFlagsAllowDynamicTensors`` in the delegate's
    ``TfLiteDelegate.flags`` (before it is applied): the interpreter then
    applies it to graphs with dynamic-sized tensors, and no longer
    re-applies it after an input is resized (see
    :class:`FixedShapeInterpreter`)."""
    flags = ctypes.c_int64.from_address(self._get_native_delegate_pointer()
                                        + _DELEGATE_FLAGS_OFFSET)
    flags.value |= _ALLOW_DYNAMIC_TENSORS

  @property
  def delegate_flags(self) -> int:
    """``TfLiteDelegate.flags`` (the interpreter's view of the delegate)."""
    return ctypes.c_int64.from_address(self._get_native_delegate_pointer()
                                       + _DELEGATE_FLAGS_OFFSET).value

  def close(self) -> None:
    """Deletes the delegate (idempotent). Only after its interpreter is
    gone: the interpreter keeps using it."""
    if self._library is not None and self._pointer is not None:
      self._library.TfLiteXNNPackDelegateDelete(self._pointer)
    self._library, self._pointer = None, None

  def __del__(self):
    self.close()


def create_delegate(flags: int = TFLITE_RUNTIME_FLAGS, num_threads: int = 1
                    ) -> Optional[XNNPackDelegate]:
  """:class:`XNNPackDelegate`, or ``None`` with a logged warning when the
  library cannot make one (the caller then keeps the default delegate)."""
  try:
    return XNNPackDelegate(flags, num_threads)
  except XNNPackUnavailable as e:
    _warn_once(f"XNNPACK delegate with flags {flags:#x} unavailable ({e}); "
               f"falling back to tflite-runtime's default XNNPACK delegate")
    return None


class _FixedShapeRunner:
  """A signature runner called only at its allocated input shapes."""

  def __init__(self, runner: Any, signature: str):
    self._runner = runner
    self._signature = signature
    self._details = runner.get_input_details()

  def get_input_details(self) -> dict[str, dict[str, Any]]:
    return self._runner.get_input_details()

  def get_output_details(self) -> dict[str, dict[str, Any]]:
    return self._runner.get_output_details()

  def __call__(self, **inputs: Any) -> dict[str, Any]:
    arrays = {name: np.asarray(value) for name, value in inputs.items()}
    allocated = {name: tuple(int(d) for d in self._details[name]["shape"])
                 for name in arrays if name in self._details}
    if all(arrays[name].shape == shape for name, shape in allocated.items()):
      return self._runner(**arrays)
    # A dynamic leading dimension: run slices of the allocated size.
    sizes = set()
    for name, shape in allocated.items():
      array = arrays[name]
      dynamic = int(self._details[name]["shape_signature"][0]) < 0
      if (not dynamic or array.shape[1:] != shape[1:]
          or array.shape[0] % shape[0]):
        raise ValueError(
            f"{self._signature}: input {name!r} has shape "
            f"{list(array.shape)}; this tflite-runtime interpreter runs it "
            f"at {list(shape)} or a multiple of the dynamic first dimension")
      sizes.add((array.shape[0], shape[0]))
    if len(sizes) != 1:
      raise ValueError(f"{self._signature}: inputs disagree on the first "
                       f"dimension ({sorted(sizes)})")
    total, step = sizes.pop()
    parts = [self._runner(**{name: value[i:i + step] if name in allocated
                             else value for name, value in arrays.items()})
             for i in range(0, total, step)]
    return {name: np.concatenate([part[name] for part in parts])
            for name in parts[0]}


class FixedShapeInterpreter:
  """A tflite-runtime interpreter whose signatures run only at the input
  shapes they were allocated with (its XNNPACK delegate does not follow a
  resize): an input with a larger dynamic first dimension is run in slices.

  Offers ``get_signature_list`` and ``get_signature_runner``; every other
  attribute is the wrapped interpreter's.

  Attributes:
    xnnpack_flags: Flags of the XNNPACK delegate it runs.
  """

  def __init__(self, interpreter: Any, xnnpack_flags: int):
    self._interpreter = interpreter
    self.xnnpack_flags = xnnpack_flags

  def get_signature_list(self) -> dict[str, Any]:
    return self._interpreter.get_signature_list()

  def get_signature_runner(self, signature_key: str) -> _FixedShapeRunner:
    return _FixedShapeRunner(
        self._interpreter.get_signature_runner(signature_key), signature_key)

  def __getattr__(self, name: str) -> Any:
    return getattr(self._interpreter, name)


def _with_dynamic_tensors(tflite: Any, delegate: XNNPackDelegate,
                          model_content: Optional[bytes],
                          model_path: Optional[str],
                          num_threads: int) -> FixedShapeInterpreter:
  """Applies ``delegate`` to a graph with dynamic-sized tensors (see the
  module docstring).

  Raises:
    RuntimeError: tflite-runtime refused the delegate or could not prepare
      the delegated graph.
    AttributeError: The interpreter lacks the private members used here
      (another tflite-runtime version).
  """
  interpreter = tflite.Interpreter(
      model_content=model_content, model_path=model_path,
      num_threads=num_threads, experimental_op_resolver_type=(
          tflite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
  interpreter.allocate_tensors()  # Sizes every static tensor first.
  delegate.allow_dynamic_tensors()
  # The interpreter holds the delegate (and drops it after itself), as it
  # does for ``experimental_delegates``, before the delegate is applied.
  interpreter._delegates = [delegate]  # pylint: disable=protected-access
  interpreter._interpreter.ModifyGraphWithDelegate(  # pylint: disable=protected-access
      delegate._get_native_delegate_pointer())  # pylint: disable=protected-access
  interpreter.allocate_tensors()
  return FixedShapeInterpreter(interpreter, delegate.flags)


def tflite_runtime_interpreter(*, model_content: Optional[bytes] = None,
                               model_path: Optional[str] = None,
                               num_threads: int = 1,
                               flags: Optional[int] = TFLITE_RUNTIME_FLAGS,
                               ) -> Any:
  """A ``tflite_runtime`` interpreter running XNNPACK with ``flags``,
  tensors allocated.

  A file without dynamic-sized tensors (embed-only files) gets the delegate
  through ``experimental_delegates``; one that has them (training files) is
  delegated as the module docstring says and returned as a
  :class:`FixedShapeInterpreter`. If that fails too, or the delegate cannot
  be made, the file keeps tflite-runtime's default delegate (a warning is
  logged; the default delegate then takes nothing of a training file).

  Args:
    model_content: A ``.tflite`` flatbuffer (or give ``model_path``).
    model_path: A ``.tflite`` file.
    num_threads: Threads of the interpreter and of the delegate.
    flags: XNNPACK flags; ``None`` keeps tflite-runtime's default delegate.

  Returns:
    The interpreter; its ``xnnpack_flags`` attribute holds the flags of the
    delegate it runs (``None``: the default delegate).
  """
  tflite = importlib.import_module("tflite_runtime.interpreter")
  delegate = None if flags is None else create_delegate(flags, num_threads)
  if delegate is not None:
    try:
      interpreter = tflite.Interpreter(
          model_content=model_content, model_path=model_path,
          num_threads=num_threads, experimental_delegates=[delegate],
          experimental_op_resolver_type=(
              tflite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
      interpreter.allocate_tensors()
      interpreter.xnnpack_flags = delegate.flags
      return interpreter
    except RuntimeError:  # Dynamic-sized tensors: a training file.
      pass
    # The refused delegate may still be referenced by the failed
    # interpreter until it is collected: a fresh one is used.
    delegate = create_delegate(flags, num_threads)
    try:
      return _with_dynamic_tensors(tflite, delegate, model_content,
                                   model_path, num_threads)
    except (RuntimeError, AttributeError) as e:
      _warn_once(f"tflite-runtime refused the XNNPACK delegate with flags "
                 f"{flags:#x} ({type(e).__name__}: {e}); falling back to its "
                 f"default XNNPACK delegate")
  interpreter = tflite.Interpreter(
      model_content=model_content, model_path=model_path,
      num_threads=num_threads,
      experimental_op_resolver_type=tflite.OpResolverType.AUTO)
  # Before any signature runner: only then is the default delegate applied.
  interpreter.allocate_tensors()
  interpreter.xnnpack_flags = None
  return interpreter


_warned: set[str] = set()


def _warn_once(message: str) -> None:
  """Logs ``message`` as a warning, once per process."""
  if message not in _warned:
    _warned.add(message)
    _log.warning(message)
