"""Timing loop and configuration of the train-step / embed benchmark."""

import pytest

from benchmarks import train_step


def test_round_robin_runs_bursts_of_consecutive_calls():
  order = []
  calls = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
  times = train_step._time_round_robin(calls, 2, 1, burst=3)  # pylint: disable=protected-access
  assert order == ["a", "b"] + ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3
  for name in calls:
    cpu, wall = times[name]
    assert len(cpu) == len(wall) == 6
    assert all(t >= 0 for t in cpu + wall)


def test_config_rejects_an_empty_burst():
  with pytest.raises(ValueError, match="embed_burst"):
    train_step.TrainStepConfig(embed_burst=0)


def test_flex_and_tf_rows_count_the_flops_of_a_builtin_file():
  """The flex file leaves TF's filter gradients (Select-TF) uncounted."""
  # pylint: disable=import-outside-toplevel
  from export import tflite_flops
  from export.conversion import convert_training_model
  from export.exporter import fresh_source
  from export.ondevice_module import OnDeviceModule
  config = train_step.TrainStepConfig(
      presets=("tiny",), tasks=("temporal_gap",), batch_sizes=(2,),
      variants=("flex/tf.lite", "TF graph/TF gradients"), quantizations=(),
      steps=1, warmup=0)
  rows = train_step.run(config)
  model = fresh_source("tiny", "temporal_gap").model
  count = lambda mode, formulation: tflite_flops.count_flops(
      convert_training_model(OnDeviceModule(
          model, config.optimizer, 2, mode=mode,
          formulation=formulation)).content, "train")
  # TF's arithmetic: the custom formulation's file (TF's forward ops, RFFT
  # front-end; the delegate one composes block 0's conv pair).
  builtin, flex = count("builtin", "custom"), count("flex", "tf")
  assert "FlexConv2DBackpropFilter" in flex.uncounted
  assert flex.flops < builtin.flops
  assert [r.flops for r in rows] == [builtin.flops, builtin.flops]


def test_config_names_an_unknown_or_missing_embed_input():
  with pytest.raises(ValueError, match=r"embed_inputs: unknown \['mfcc'\]"):
    train_step.TrainStepConfig(embed_inputs=("mfcc",))
  with pytest.raises(ValueError, match="embed_inputs: empty"):
    train_step.TrainStepConfig(embed_inputs=())
  # No quantizations, no embed rows: no input needed.
  train_step.TrainStepConfig(quantizations=(), embed_inputs=())


def test_encoder_only_rows_time_the_encoder_of_the_exported_embed():
  """The log-mel rows run the same encoder without the front-end: the same
  embedding for the front-end's features, fewer FLOPs, and a front-end
  table that pairs every waveform row with its encoder-only row."""
  # pylint: disable=import-outside-toplevel
  import numpy as np
  import tensorflow as tf
  from export.conversion import convert_embed_model
  from export.corpus import load_corpus
  from export.exporter import fresh_source
  from export.ondevice_module import EmbedModule
  from export.runtime import OnDeviceModel
  model = fresh_source("tiny", "temporal_gap").model
  frontend = model.spec.frontend
  waveforms = load_corpus().patches(frontend)[0][:4]
  log_mel = tf.reshape(model.features(tf.constant(waveforms)),
                       [-1, frontend.patch_frames,
                        frontend.num_mel_bins]).numpy()
  whole = OnDeviceModel(convert_embed_model(EmbedModule(model),
                                            "float32").content)
  encoder = OnDeviceModel(convert_embed_model(
      train_step._EncoderOnly(model), "float32").content)  # pylint: disable=protected-access
  np.testing.assert_allclose(
      encoder.runner("embed")(log_mel=log_mel)["embedding"],
      whole.embed(waveforms), rtol=1e-4, atol=1e-4)

  config = train_step.TrainStepConfig(
      presets=("tiny",), variants=(), quantizations=("float32", "int8"),
      embed_inputs=("waveform", "log_mel"), steps=1, warmup=0, embed_burst=1)
  rows = train_step.run(config)
  by_name = {(r.variant, r.runtime): r for r in rows}
  assert len(by_name) == len(rows) == 2 * 2 * len(train_step.EMBED_RUNTIMES)
  for quantization in config.quantizations:
    for runtime in train_step.EMBED_RUNTIMES:
      with_front = by_name[f"embed {quantization}", runtime]
      alone = by_name[f"embed {quantization}, log-mel in (encoder only)",
                      runtime]
      assert 0 < alone.flops < with_front.flops
  table = train_step.format_table(rows, config)
  from benchmarks.latency import host_machine  # pylint: disable=import-outside-toplevel
  assert f"host {host_machine().label}, load average" in table.splitlines()[0]
  front = table[table.index("Front-end share"):].splitlines()
  assert len([l for l in front if l.startswith("| tiny |")]) == 4


def _row(kind, variant, ms, preset="tiny", runtime="ai_edge_litert"):
  return train_step.Row(preset=preset, task="-", batch=1, threads=1,
                        kind=kind, variant=variant, runtime=runtime,
                        file_bytes=1, flops=1, delegated=1.0, cpu_ms=(ms,),
                        wall_ms=(ms,))


def test_plot_draws_train_and_embed_panels(tmp_path):
  train = [_row("train", "builtin/LiteRT", 20.0)]
  embed = [_row("embed", "embed float32", 0.4),
           _row("embed", "embed int8", 0.3, runtime="tflite_runtime")]
  for rows, panels in ((train, 1), (embed, 1), (train + embed, 2)):
    path = tmp_path / f"plot_{len(rows)}.png"
    train_step.plot(str(path), rows)
    header = path.read_bytes()[:24]  # PNG signature, then IHDR: w, h.
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(header[20:24], "big") == int(120 * 4.5 * panels)
  train_step.plot(str(tmp_path / "none.png"), [])
  assert not (tmp_path / "none.png").exists()
