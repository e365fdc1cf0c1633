"""Validation shared by the frozen config dataclasses.

Each check names the config class and field, the limit and the value, so a
bad flag or config file reads as ``"TrainConfig.steps must be positive, got
-1"``.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

__all__ = ["require_choice", "require_non_negative", "require_positive"]


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


def require_positive(config: Any, fields: Iterable[str]) -> None:
  """Checks that each named numeric field of ``config`` is > 0.

  A field whose value is ``None`` (an optional setting left unset) passes.

  Raises:
    ValueError: ``"<Config>.<field> must be positive, got <value>"``.
  """
  for field in fields:
    value = getattr(config, field)
    if value is not None and not value > 0:
      raise ValueError(f"{type(config).__name__}.{field} must be positive, "
                       f"got {value}")


def require_non_negative(config: Any, fields: Iterable[str]) -> None:
  """Checks that each named numeric field of ``config`` is >= 0.

  Raises:
    ValueError: ``"<Config>.<field> must be >= 0, got <value>"``.
  """
  for field in fields:
    value = getattr(config, field)
    if not value >= 0:
      raise ValueError(f"{type(config).__name__}.{field} must be >= 0, "
                       f"got {value}")
