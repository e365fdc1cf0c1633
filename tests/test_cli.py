"""Launchers: shared flags, and a user's mistake as one ``error:`` line with
exit status 2 (no traceback), while a bug keeps its traceback."""

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A launcher without TensorFlow: fast to start.
_LAUNCHER = textwrap.dedent("""
    from absl import flags
    from model import cli

    _STEPS = cli.define("steps", 3)
    _SEED = cli.define("seed", 7)
    _OUT = cli.define("out_dir", None, required=True)
    _FAIL = flags.DEFINE_enum(
        "fail", "none", ["none", "user", "file", "config", "bug"], "")

    class Config:
      def __init__(self, steps):
        if steps < 1:
          raise ValueError(f"Config.steps must be positive, got {steps}")

    def main():
      cli.build_config(Config, _STEPS.value)
      if _FAIL.value == "user":
        raise cli.UserError("--out_dir: expected an empty folder,\\ngot one "
                            "with 3 files")
      if _FAIL.value == "file":
        open(_OUT.value + "/missing.csv")
      if _FAIL.value == "bug":
        raise KeyError("a bug")
      print(f"ok steps={_STEPS.value} seed={_SEED.value} out={_OUT.value}")

    cli.run(main, quiet=False)
""")


def _run(args, *, script=None, timeout=300):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  command = ([sys.executable, str(script)] if script else
             [sys.executable, "-m"]) + list(args)
  return subprocess.run(command, capture_output=True, text=True, env=env,
                        cwd=ROOT, timeout=timeout, check=False)


def _assert_user_error(result, *fragments):
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
  assert len(errors) == 1, result.stderr[-2000:]
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  for fragment in fragments:
    assert fragment in errors[0], errors[0]


@pytest.fixture(name="launcher")
def fixture_launcher(tmp_path):
  path = tmp_path / "launcher.py"
  path.write_text(_LAUNCHER)
  return path


def test_shared_flags_keep_the_launchers_defaults(launcher, tmp_path):
  result = _run([f"--out_dir={tmp_path}"], script=launcher)
  assert result.returncode == 0, result.stderr
  assert f"ok steps=3 seed=7 out={tmp_path}" in result.stdout
  result = _run([f"--out_dir={tmp_path}", "--steps=5", "--seed=1"],
                script=launcher)
  assert f"ok steps=5 seed=1 out={tmp_path}" in result.stdout


@pytest.mark.parametrize("args,fragments", [
    (["--fail=user"], ["--out_dir: expected an empty folder, got one"]),
    (["--fail=file"], ["No such file or directory", "missing.csv"]),
    (["--steps=-2"], ["Config.steps must be positive, got -2"]),
    (["--steps=x"], ["--steps", "'x'"]),
    (["--no_such_flag"], ["no_such_flag"]),
    (["positional"], ["unexpected arguments ['positional']"]),
])
def test_user_errors_are_one_line_with_exit_2(launcher, tmp_path, args,
                                              fragments):
  _assert_user_error(_run([f"--out_dir={tmp_path}", *args], script=launcher),
                     *fragments)


def test_missing_required_flag_is_a_user_error(launcher):
  _assert_user_error(_run([], script=launcher), "--out_dir")


def test_unexpected_errors_keep_their_traceback(launcher, tmp_path):
  result = _run([f"--out_dir={tmp_path}", "--fail=bug"], script=launcher)
  assert result.returncode == 1
  assert "Traceback" in result.stderr and "KeyError: 'a bug'" in result.stderr
  assert not any(l.startswith("error:") for l in result.stderr.splitlines())


def _corrupt_manifest(tmp_path):
  """A manifest whose only clip is a corrupt audio file."""
  (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00not audio")
  (tmp_path / "clips.csv").write_text("path,client_id\nbroken.wav,a\n")
  return str(tmp_path / "clips.csv")


# Real launchers, failing before any training (each starts TensorFlow).
@pytest.mark.parametrize("case", [
    "negative_steps", "both_sources",
    pytest.param("missing_folder", marks=pytest.mark.slow),
    pytest.param("corrupt_audio", marks=pytest.mark.slow),
    pytest.param("missing_model", marks=pytest.mark.slow),
])
def test_launchers_report_bad_input_in_one_line(tmp_path, case):
  missing = tmp_path / "no_such_corpus"
  run_dir = f"--run_dir={tmp_path / 'run'}"
  args, fragments = {
      "negative_steps": (
          ["model.train_main", f"--data_dir={missing}", run_dir,
           "--steps=-1"], ["TrainConfig.steps", "-1"]),
      "both_sources": (
          ["export", "--preset=tiny", f"--model_dir={missing}",
           f"--out_dir={tmp_path / 'e'}"],
          ["exactly one of --model_dir and --preset"]),
      "missing_folder": (
          ["tff_sim", f"--data_dir={missing}", run_dir],
          [str(missing), "does not exist"]),
      "corrupt_audio": (
          ["model.train_main", "--dataset=manifest",
           f"--data_dir={_corrupt_manifest(tmp_path)}", run_dir],
          ["broken.wav", "unreadable"]),
      "missing_model": (
          ["export.device_main", f"--model_dir={missing}",
           f"--wav_dir={tmp_path}", f"--state_dir={tmp_path / 's'}"],
          ["cannot load the model", str(missing)]),
  }[case]
  _assert_user_error(_run(args), *fragments)
