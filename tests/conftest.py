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


#: Train batch of :func:`tiny_cbow_export`.
TINY_EXPORT_BATCH = 2


@pytest.fixture(scope="session")
def tiny_cbow_export(tiny_corpus_dir, tmp_path_factory):
  """A builtin ``tiny`` audio2vec_cbow export (train batch
  :data:`TINY_EXPORT_BATCH`, no embed-only models), made once per session.

  Shared read-only by the app-contract and virtual-device tests.
  """
  # pylint: disable=g-import-not-at-top
  from export.corpus import load_corpus
  from export.exporter import ExportConfig, export_model, fresh_source
  from export.verification import VerifyConfig
  config = ExportConfig(
      batch_size=TINY_EXPORT_BATCH, quantizations=(),
      verify=VerifyConfig(train_steps=2, num_batches=1, embed_patches=4))
  return export_model(fresh_source("tiny", "audio2vec_cbow"),
                      str(tmp_path_factory.mktemp("cbow_export") / "export"),
                      config, corpus=load_corpus(tiny_corpus_dir))
