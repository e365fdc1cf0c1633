"""The simulation-cost benchmarks end to end, tiny."""

import csv
import math
import os

import psutil
import pytest

from benchmarks import simulation


def _read_csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def _workers_left():
  return [c for c in psutil.Process().children(recursive=True)
          if c.status() != psutil.STATUS_ZOMBIE]


def _is_png(path):
  with open(path, "rb") as f:
    return f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_simulation_benchmark_measures_and_writes(tiny_corpus_dir,
                                                   tmp_path):
  config = simulation.SimulationBenchmarkConfig(
      corpus="tiny", corpus_dir=tiny_corpus_dir, task="triplet",
      presets=("tiny",),
      clients_per_round=2, local_steps=1, batch_size=2, timed_rounds=1,
      workers=(1, 2), memory_rounds=(1, 3), memory_clients=1,
      out_dir=str(tmp_path))
  measurements = simulation.run_simulation_benchmark(config,
                                                     show_progress=False)
  assert not _workers_left()
  found = {(m.benchmark, m.workers, m.metric): m for m in measurements}
  for metric in ("TFF round", "plain tf.function round",
                 "overhead ratio (TFF)", "overhead ratio (TFF, iterator loop)",
                 "serialized datasets"):
    assert ("overhead", 1, metric) in found, metric
  for workers in (1, 2):
    assert ("throughput", workers, "client updates per second") in found
  for metric in ("RSS at round 1", "RSS at round 3", "main RSS at round 3",
                 "worker RSS at round 3", "worker RSS growth round 1 -> 3",
                 "RSS growth round 2 -> 3"):
    assert ("memory", 1, metric) in found, metric
  growth = found[("memory", 1, "RSS growth round 1 -> 3")]
  assert growth.goal == "< 10" and growth.met in ("yes", "no")
  for m in measurements:
    assert math.isfinite(m.value), m
    if m.unit in ("s", "1/s", "x", "MB"):
      assert m.value > 0, m
  # The plain loop did the same work as TFF: same weights after each round.
  assert found[("overhead", 1, "weight difference TFF vs plain")].value < 1e-4
  assert found[("memory", 1, "worker RSS at round 3")].value > 0

  rows = _read_csv(os.path.join(config.out_dir, "results.csv"))
  assert list(rows[0]) == list(simulation.COLUMNS)
  assert len(rows) == len(measurements)
  assert {r["cpu_count"] for r in rows} == {str(os.cpu_count())}
  with open(os.path.join(config.out_dir, "report.md")) as f:
    report = f.read()
  assert simulation.format_markdown(measurements) in report
  assert f"{os.cpu_count()} CPUs" in report
  assert _is_png(os.path.join(config.out_dir, "simulation.png"))


@pytest.mark.parametrize("change", [
    dict(presets=()), dict(presets=("huge",)), dict(task="unknown"),
    dict(workers=(0,)), dict(memory_rounds=(5, 5)), dict(memory_rounds=(0, 2)),
    dict(timed_rounds=0), dict(corpus="huge"),
])
def test_simulation_config_rejects_invalid_values(change):
  with pytest.raises(ValueError, match="SimulationBenchmarkConfig"):
    simulation.SimulationBenchmarkConfig(**change)


@pytest.mark.slow
def test_scale_benchmark_probes_memory_and_time(tiny_corpus_dir, tmp_path):
  from benchmarks import simulation_scale  # pylint: disable=g-import-not-at-top
  config = simulation_scale.ScaleBenchmarkConfig(
      corpus="tiny", corpus_dir=tiny_corpus_dir, rounds=4,
      clients_per_round=3,
      local_steps=1, batch_size=2, probe_every=2, out_dir=str(tmp_path))
  measurements = simulation_scale.run_scale_benchmark(config,
                                                      show_progress=False)
  by_metric = {m.metric: m for m in measurements}
  assert by_metric["population (clients)"].value == 4
  assert by_metric["client updates per second"].value > 0
  ratio = by_metric["overhead ratio (TFF / plain, probe rounds)"]
  assert math.isfinite(ratio.value) and ratio.value > 0
  assert by_metric["driver RSS at round 2"].value > 50
  assert by_metric["worker0 RSS at round 4"].value > 10
  # The worker does the clients' work, so driver + workers use CPU time.
  assert by_metric["mean round CPU time (driver + workers)"].value > 0
  rows = _read_csv(tmp_path / "rounds.csv")
  assert all(float(r["round_cpu_s"]) > 0 for r in rows)
  assert [int(r["round"]) for r in rows] == [1, 2, 3, 4]
  assert [bool(r["driver_rss_mb"]) for r in rows] == [False, True, False, True]
  assert _is_png(tmp_path / "scale.png")
  assert "| scale | tiny | 1 | total RSS growth round 2 -> 4 |" in (
      tmp_path / "report.md").read_text()
  assert not _workers_left()
  with pytest.raises(ValueError, match="clients_per_round is 9 but corpus"):
    simulation_scale.run_scale_benchmark(
        simulation_scale.ScaleBenchmarkConfig(
            corpus="tiny", corpus_dir=tiny_corpus_dir, rounds=4,
            clients_per_round=9, probe_every=2, out_dir=str(tmp_path / "x")),
        show_progress=False)
