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
