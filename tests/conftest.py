"""Shared test set-up: quiet TF logs, and no child process may outlive the suite."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import psutil  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top


@pytest.fixture(scope="session", autouse=True)
def no_leftover_processes():
  """Fails the run if a test left a child process (e.g. a TFF worker) behind."""
  yield
  children = psutil.Process().children(recursive=True)
  for child in children:
    child.kill()
  assert not children, (
      f"processes left behind by the tests: "
      f"{[(c.pid, ' '.join(c.cmdline()[:3])) for c in children]}")
