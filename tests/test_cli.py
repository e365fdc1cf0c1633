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
    '''A test launcher.'''
    from absl import flags
    from absl import logging
    from model import cli

    FLAGS = cli.launcher_flags()
    _STEPS = cli.define("steps", 3, flag_values=FLAGS)
    _SEED = cli.define("seed", 7, flag_values=FLAGS)
    _OUT = cli.define("out_dir", None, required=True, flag_values=FLAGS)
    _FAIL = flags.DEFINE_enum(
        "fail", "none", ["none", "user", "file", "config", "bug"],
        "What goes wrong.", flag_values=FLAGS)

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
      logging.info("logged at INFO")
      print(f"ok steps={_STEPS.value} seed={_SEED.value} out={_OUT.value}")

    cli.run(main, FLAGS, quiet=False)
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


def test_help_lists_the_launchers_flags_and_absls(launcher):
  short = _run(["--helpshort"], script=launcher)
  assert short.returncode == 1, short.stderr
  assert short.stdout.startswith("A test launcher.")
  for flag in ("--steps", "--seed", "--out_dir", "--fail: <none|user"):
    assert flag in short.stdout, short.stdout
  assert "--verbosity" not in short.stdout
  full = _run(["--helpfull"], script=launcher)
  assert full.returncode == 1, full.stderr
  for flag in ("--steps", "--verbosity", "--[no]logtostderr",
               "--[no]helpshort", "--[no]only_check_args"):
    assert flag in full.stdout, full.stdout


def test_absl_flags_still_work(launcher, tmp_path):
  quiet = _run([f"--out_dir={tmp_path}", "--verbosity=-1"], script=launcher)
  assert quiet.returncode == 0, quiet.stderr
  assert "logged at INFO" not in quiet.stderr
  logged = _run([f"--out_dir={tmp_path}", "--verbosity=0", "--logtostderr"],
                script=launcher)
  assert logged.returncode == 0, logged.stderr
  assert "logged at INFO" in logged.stderr
  checked = _run([f"--out_dir={tmp_path}", "--only_check_args"],
                 script=launcher)
  assert checked.returncode == 0 and "ok" not in checked.stdout


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
    "unfinished_seeds",
    pytest.param("combine_one_seed", marks=pytest.mark.slow),
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
      "unfinished_seeds": (
          ["benchmarks.federated_quality_main", "--combine_seeds",
           "--num_seeds=2", f"--out_dir={tmp_path}"],
          [str(tmp_path / "seed_0" / "config.json")]),
      "combine_one_seed": (
          ["benchmarks.federated_quality_main", "--combine_seeds",
           f"--out_dir={tmp_path}"],
          ["--combine_seeds needs --num_seeds >= 2, got 1"]),
  }[case]
  _assert_user_error(_run(args), *fragments)


#: Every launcher, a valid command line and the flag values it must give.
_LAUNCHERS = {
    "model.__main__": (["--presets=tiny", "--nocheck_conversion"],
                       {"presets": ["tiny"], "check_conversion": False}),
    "model.train_main": (["--data_dir=d", "--run_dir=r", "--steps=5"],
                         {"data_dir": "d", "steps": 5, "seed": 0}),
    "model.datasets.generate_main": (["--out=o", "--size=tiny"],
                                     {"out": "o", "size": "tiny"}),
    "tff_sim.__main__": (["--data_dir=d", "--run_dir=r", "--rounds=2"],
                         {"rounds": 2, "task": "nt_xent"}),
    "tff_sim.worker_main": (["--port=8000"], {"port": 8000}),
    "export.__main__": (["--preset=tiny", "--out_dir=e", "--batch_size=4"],
                        {"preset": "tiny", "batch_size": 4}),
    "export.device_main": (["--model_dir=m", "--wav_dir=w", "--state_dir=s"],
                           {"model_dir": "m", "steps": 10}),
    "benchmarks.__main__": (["--model_dir=a", "--model_dir=b", "--out_dir=o"],
                            {"model_dir": ["a", "b"], "threads": ["1"]}),
    "benchmarks.demo_main": (["--rounds=2", "--task=triplet"],
                             {"rounds": 2, "task": "triplet"}),
    "benchmarks.distill_main": (["--steps=3"], {"steps": 3}),
    "benchmarks.fassl_main": (["--rounds=3", "--quick"],
                              {"rounds": 3, "quick": True}),
    "benchmarks.federated_quality_main": (["--mixes=0,1"],
                                          {"mixes": ["0", "1"]}),
    "benchmarks.fedsa_main": (["--rounds=2"], {"rounds": 2}),
    "benchmarks.multimodal_main": (["--encoder=tiny"], {"encoder": "tiny"}),
    "benchmarks.quality_main": (["--steps=7"], {"steps": 7}),
    "benchmarks.simulation_main": (["--mode=scale"], {"mode": "scale"}),
    "benchmarks.train_step_main": (
        ["--out_dir=o", "--threads=2", "--embed_inputs=waveform,log_mel"],
        {"out_dir": "o", "threads": 2,
         "embed_inputs": ["waveform", "log_mel"]}),
    "benchmarks.fm_validation_main": (["--steps=9"], {"steps": 9}),
    "benchmarks.op_profile_main": (["--out_dir=o", "--task=nt_xent"],
                                   {"out_dir": "o", "task": "nt_xent"}),
}


def test_every_launcher_imports_and_parses_in_one_process(capsys):
  """All launchers share one process: each parses its own command line
  (any number of times), and a bad one is a one-line error."""
  import importlib  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel
  from model import cli  # pylint: disable=import-outside-toplevel

  launchers = {name: importlib.import_module(name) for name in _LAUNCHERS}
  for name, module in launchers.items():
    own = [flag for flag in module.FLAGS
           if not module.FLAGS.find_module_defining_flag(flag).startswith(
               "absl.")]
    assert own, name
    # The launcher's flags are its own, not on absl's global FlagValues.
    assert not set(own) & set(flags.FLAGS), name
  for _ in range(2):
    for name, (argv, expected) in _LAUNCHERS.items():
      values = launchers[name].FLAGS
      assert cli.parse(values, [name, *argv]) == [name]
      assert {flag: values[flag].value for flag in expected} == expected, name
  for name, module in launchers.items():
    if hasattr(module, "config_from_flags"):
      module.config_from_flags()  # Builds from the parsed flags.
  # Flags left out get their defaults again.
  simulation = launchers["benchmarks.simulation_main"]
  cli.parse(simulation.FLAGS, ["simulation_main"])
  assert simulation.FLAGS["mode"].value == "standard"
  capsys.readouterr()
  for name, module in launchers.items():
    with pytest.raises(SystemExit) as caught:
      cli.parse(module.FLAGS, [name, "--no_such_flag=1"])
    assert caught.value.code == 2, name
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: "), errors
    assert "no_such_flag" in errors[0], errors


def test_help_of_a_launcher_lists_its_own_flags(capsys):
  from model import cli  # pylint: disable=import-outside-toplevel
  from model import train_main  # pylint: disable=import-outside-toplevel
  with pytest.raises(SystemExit) as caught:
    cli.parse(train_main.FLAGS, ["train_main", "--helpshort"])
  assert caught.value.code == 1
  out = capsys.readouterr().out
  assert out.startswith(train_main.__doc__)
  for flag in ("--data_dir", "--run_dir", "--steps", "--[no]evaluate"):
    assert flag in out, out
  assert "--verbosity" not in out and "--helpfull" in out
