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


@pytest.fixture(scope="session")
def tiny_corpus_dir(tmp_path_factory):
  """The built-in ``tiny`` corpus, generated once per test session."""
  from model.datasets import synthetic  # pylint: disable=g-import-not-at-top
  path = str(tmp_path_factory.mktemp("tiny_corpus"))
  synthetic.generate_corpus(path, synthetic.CORPUS_PRESETS["tiny"],
                            show_progress=False)
  return path
