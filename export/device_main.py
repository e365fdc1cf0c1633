"""Runs the Android demo app's on-device loop on the host (a virtual device).

Usage:
  python -m export.device_main --model_dir exports/cbow/training \\
      --wav_dir recordings/ --state_dir /tmp/phone --steps 20

Restores the weights saved in --state_dir (falling back to the last good
copy, then to the model's own), plays every WAV file under --wav_dir into
the microphone buffer, trains --steps steps, saves the weights and buffer,
embeds the end of every recording and writes the weight update
(<state_dir>/update.odtf), as the app does on a phone.
"""

from __future__ import annotations

from absl import flags

from export.device_session import run_session
from export.runtime import DEFAULT_RUNTIME, RUNTIMES
from model import cli

FLAGS = cli.launcher_flags()

_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Directory of model.tflite + manifest.json (a builtin "
    "training export), or the export directory holding training/.",
    required=True, flag_values=FLAGS)
_WAV_DIR = flags.DEFINE_string("wav_dir", None, "Folder of WAV files: the "
                               "microphone.", required=True, flag_values=FLAGS)
_STATE_DIR = flags.DEFINE_string("state_dir", None, "The device's storage "
                                 "(weights, buffer, update).", required=True,
                                 flag_values=FLAGS)
_STEPS = flags.DEFINE_integer("steps", 10, "Training steps.", lower_bound=0,
                              flag_values=FLAGS)
_RUNTIME = cli.define("runtime", DEFAULT_RUNTIME,
                      choices=[r for r in RUNTIMES if r != "tensorflow"],
                      flag_values=FLAGS)
_BUFFER_WINDOWS = flags.DEFINE_integer(
    "buffer_windows", 32, "Training windows the buffer keeps.", lower_bound=1,
    flag_values=FLAGS)


def main() -> None:
  session = run_session(_MODEL_DIR.value, _WAV_DIR.value, _STATE_DIR.value,
                        steps=_STEPS.value, runtime=_RUNTIME.value,
                        buffer_windows=_BUFFER_WINDOWS.value, progress=print)
  print(session.report)


def run() -> None:
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
