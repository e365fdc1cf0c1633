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
