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

import os

from absl import flags

from export.audio_buffers import NotEnoughAudioError
from export.device_session import VirtualDevice, nearest_neighbours
from export.runtime import DEFAULT_RUNTIME, RUNTIMES
from model import cli

_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Directory of model.tflite + manifest.json (a builtin "
    "training export), or the export directory holding training/.",
    required=True)
_WAV_DIR = flags.DEFINE_string("wav_dir", None, "Folder of WAV files: the "
                               "microphone.", required=True)
_STATE_DIR = flags.DEFINE_string("state_dir", None, "The device's storage "
                                 "(weights, buffer, update).", required=True)
_STEPS = flags.DEFINE_integer("steps", 10, "Training steps.", lower_bound=0)
_RUNTIME = cli.define("runtime", DEFAULT_RUNTIME,
                      choices=[r for r in RUNTIMES if r != "tensorflow"])
_BUFFER_WINDOWS = flags.DEFINE_integer(
    "buffer_windows", 32, "Training windows the buffer keeps.", lower_bound=1)


def main() -> None:
  try:
    device = VirtualDevice(_MODEL_DIR.value, _STATE_DIR.value,
                           buffer_windows=_BUFFER_WINDOWS.value,
                           runtime=_RUNTIME.value)
  except (FileNotFoundError, ValueError) as e:
    raise cli.UserError(f"cannot load the model: {e}") from e
  for message in (*device.restored.problems, *device.notes):
    print(f"warning: {message}")
  print(f"weights: {device.restored.source} ({device.examples} training "
        f"examples behind them)")

  heard = device.listen(_WAV_DIR.value)
  for path, reason in heard.skipped:
    print(f"skipped {path}: {reason}")
  print(f"microphone: {len(heard.recordings)} usable WAV files, "
        f"{sum(r.windows for r in heard.recordings)} new windows "
        f"({heard.silent_windows} silent dropped); buffer holds "
        f"{len(device.buffer)} of {device.buffer.capacity}")

  try:
    device.train(_STEPS.value, on_step=lambda step, loss: print(
        f"step {step + 1}/{_STEPS.value}: loss {loss:.4f}"))
  except NotEnoughAudioError as e:
    print(f"not training: {e}")
  device.persist()
  print(f"saved weights to {device.store.current_path}")

  if heard.recordings:
    embeddings = device.embed([r.tail for r in heard.recordings])
    for recording, nearest in zip(heard.recordings,
                                  nearest_neighbours(embeddings)):
      match = (os.path.basename(heard.recordings[nearest].path)
               if nearest >= 0 else "-")
      print(f"{os.path.basename(recording.path)}: nearest {match}")
  print(f"weight update: {device.write_delta()}")


def run() -> None:
  cli.run(main)


if __name__ == "__main__":
  run()
