"""The error type of a user's mistake (a missing folder, a bad flag value).

Library errors that always mean wrong input derive from :class:`UserError`
as well as from their built-in type (``ValueError``, ``ConnectionError``),
so callers that catch the built-in type keep working; the command-line
launchers (:func:`model.cli.run`) print them as one ``error: ...`` line and
exit with status 2 instead of a traceback.
"""

from __future__ import annotations

__all__ = ["NonFiniteWeightsError", "UserError", "WeightsMismatchError"]


class UserError(Exception):
  """Wrong input given by the user; the message says what, where, expected
  vs got."""


class WeightsMismatchError(ValueError, UserError):
  """Saved weights do not fit the model this version builds from their spec
  (e.g. a task's head changed since they were saved); the message names the
  file, every missing, unexpected or misshapen weight and what to do."""


class NonFiniteWeightsError(ValueError):
  """Weights hold NaN or infinity, e.g. after training diverged; the message
  names the source and the weight."""
