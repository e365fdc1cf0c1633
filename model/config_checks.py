"""Validation shared by the frozen config dataclasses."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

__all__ = ["require_choice"]


def require_choice(config: Any, fields: Iterable[str],
                   choices: Mapping[str, Any]) -> None:
  """Checks that each named field of ``config`` is a key of ``choices``.

  Raises:
    ValueError: ``"<Config>.<field>: unknown 'x'; expected one of [...]"``.
  """
  for field in fields:
    value = getattr(config, field)
    if value not in choices:
      raise ValueError(f"{type(config).__name__}.{field}: unknown {value!r}; "
                       f"expected one of {sorted(choices)}")
