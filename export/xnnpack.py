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

This module imports only the standard library and tflite-runtime (no
TensorFlow, no numpy), so a benchmark worker can load it by file path.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import logging
import os
from typing import Any, Optional

__all__ = ["FLAG_QS8", "FLAG_QU8", "FLAG_DYNAMIC_FULLY_CONNECTED",
           "FLAG_VARIABLE_OPERATORS", "TFLITE_RUNTIME_FLAGS",
           "XNNPackUnavailable", "XNNPackDelegate", "create_delegate",
           "tflite_runtime_interpreter"]

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
#: operators (int8 embed files) and FULLY_CONNECTED with variable weights
#: (training files). Flags that only apply to operators a file lacks change
#: nothing for it.
TFLITE_RUNTIME_FLAGS = FLAG_QS8 | FLAG_QU8 | FLAG_DYNAMIC_FULLY_CONNECTED

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
    if not 0 <= flags < 2**32:
      raise ValueError(f"XNNPACK flags must fit 32 bits, got {flags:#x}")
    if num_threads < 1:
      raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    self._library: Optional[ctypes.CDLL] = None
    self._pointer: Optional[int] = None
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


def tflite_runtime_interpreter(*, model_content: Optional[bytes] = None,
                               model_path: Optional[str] = None,
                               num_threads: int = 1,
                               flags: Optional[int] = TFLITE_RUNTIME_FLAGS,
                               ) -> Any:
  """A ``tflite_runtime`` interpreter running XNNPACK with ``flags``,
  tensors allocated.

  tflite-runtime applies a delegate to the whole file at once and refuses
  it for a graph that has dynamic-sized tensors when the delegate is applied
  (every training file: its SLICE outputs and variable reads are sized only
  when they run); tflite-runtime's own default delegate is then silently
  dropped as well. Such a file keeps the default delegate, with a warning.

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
  resolver = tflite.OpResolverType
  delegate = None if flags is None else create_delegate(flags, num_threads)
  interpreter = None
  if delegate is not None:
    try:
      interpreter = tflite.Interpreter(
          model_content=model_content, model_path=model_path,
          num_threads=num_threads, experimental_delegates=[delegate],
          experimental_op_resolver_type=(
              resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    except RuntimeError as e:  # ModifyGraphWithDelegate refused the delegate.
      _warn_once(f"tflite-runtime refused the XNNPACK delegate with flags "
                 f"{flags:#x} ({str(e) or 'the graph has dynamic-sized tensors'}"
                 f"); falling back to its default XNNPACK delegate")
  if interpreter is None:
    delegate = None
    interpreter = tflite.Interpreter(
        model_content=model_content, model_path=model_path,
        num_threads=num_threads, experimental_op_resolver_type=resolver.AUTO)
  # Before any signature runner: only then is a default delegate applied.
  interpreter.allocate_tensors()
  interpreter.xnnpack_flags = delegate.flags if delegate else None
  return interpreter


_warned: set[str] = set()


def _warn_once(message: str) -> None:
  """Logs ``message`` as a warning, once per process."""
  if message not in _warned:
    _warned.add(message)
    _log.warning(message)
