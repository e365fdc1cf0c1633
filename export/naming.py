"""Signature keys for variable names (keys must be valid identifiers)."""

from __future__ import annotations

import re
from typing import Sequence

__all__ = ["signature_key", "signature_keys"]

_INVALID = re.compile(r"[^0-9A-Za-z_]")


def signature_key(name: str) -> str:
  """Maps a variable name to a valid identifier.

  ``"/"`` becomes ``"__"`` and any other character outside ``[0-9A-Za-z_]``
  becomes ``"_"``; a leading digit gets a ``"_"`` prefix. For example
  ``"encoder/block0/conv_1x3/kernel"`` becomes
  ``"encoder__block0__conv_1x3__kernel"``.

  Args:
    name: A variable name such as ``SSLModel.weight_names`` holds.

  Returns:
    The signature key.

  Raises:
    ValueError: ``name`` is empty.
  """
  if not name:
    raise ValueError("signature_key: empty variable name")
  key = _INVALID.sub("_", name.replace("/", "__"))
  return "_" + key if key[0].isdigit() else key


def signature_keys(names: Sequence[str]) -> list[str]:
  """:func:`signature_key` of every name, checked to be distinct.

  Raises:
    ValueError: Two names map to the same key (the message names both).
  """
  keys: dict[str, str] = {}
  for name in names:
    key = signature_key(name)
    if key in keys:
      raise ValueError(f"variables {keys[key]!r} and {name!r} both map to the "
                       f"signature key {key!r}")
    keys[key] = name
  return list(keys)
