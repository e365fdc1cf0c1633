"""The demo launcher end to end on the tiny corpus (what `make demo` runs)."""

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_and_writes_report(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "benchmarks.demo_main", f"--out_dir={tmp_path}",
       "--corpus=tiny", "--encoder=tiny", "--task=triplet", "--rounds=2",
       "--clients_per_round=2",
       "--max_local_steps=1", "--batch_size=4"],
      capture_output=True, text=True, timeout=600,
      env={**os.environ, "PYTHONPATH": os.getcwd()})
  assert result.returncode == 0, result.stderr[-3000:]
  assert "| random init |" in result.stdout
  assert "| federated triplet |" in result.stdout
  assert "| centralized triplet |" in result.stdout
  for name in ("probe.md", "probe.csv", "probe.png"):
    assert os.path.getsize(tmp_path / "report" / name) > 0
  assert os.path.exists(tmp_path / "runs" / "federated_triplet" /
                        "quality_vs_cost.png")
  for name in ("training", "embed_float32", "embed_int8"):
    assert os.path.exists(tmp_path / "export" / name / "manifest.json"), name
  assert "Select-TF ops: none" in result.stdout
  assert "ai_edge_litert train steps on one corpus batch:" in result.stdout
  assert "| training | train |" in result.stdout
  for name in ("ondevice.md", "ondevice.png"):
    assert os.path.getsize(tmp_path / "report" / name) > 0
