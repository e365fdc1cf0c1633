"""Remote TFF workers: other hosts (network namespaces), lost workers, resume."""

import csv
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import portpicker
import pytest

from model.datasets import synthetic
from model.datasets.audio import decode_clips
from model.encoders import ENCODERS
from model.ssl_model import ModelSpec
from tff_sim import execution
from tff_sim.partition import PartitionConfig
from tff_sim.simulation import PopulationTooSmallError, SimulationConfig, run_simulation

CONFIG = SimulationConfig(
    model=ModelSpec(task="triplet", encoder=ENCODERS["tiny"]),
    partition=PartitionConfig(method="natural"), rounds=2,
    clients_per_round=3, batch_size=2, max_local_steps=2, eval_every=10)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  table = synthetic.generate_corpus(str(tmp_path_factory.mktemp("corpus")),
                                    synthetic.CORPUS_PRESETS["tiny"],
                                    show_progress=False)
  table, waveforms, _ = decode_clips(table)
  return table, waveforms


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
  """The same run on one local worker."""
  return run_simulation(CONFIG, *corpus,
                        str(tmp_path_factory.mktemp("local") / "run"),
                        show_progress=False)


def _train_losses(run_dir):
  with open(os.path.join(run_dir, "metrics.csv")) as f:
    return [float(row["train_loss"]) for row in csv.DictReader(f)]


def _start_worker(port, prefix=()):
  return subprocess.Popen(
      [*prefix, sys.executable, "-m", "tff_sim.worker_main", f"--port={port}"],
      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL)


def _stop(processes):
  for process in processes:
    if process.poll() is None:
      process.kill()
    process.wait()


def _assert_same_run(result, reference):
  assert result.final_metrics.keys() == reference.final_metrics.keys()
  for name, value in reference.final_metrics.items():
    assert result.final_metrics[name] == pytest.approx(value, abs=1e-6), name
  np.testing.assert_allclose(_train_losses(result.run_dir),
                             _train_losses(reference.run_dir), rtol=1e-5)


def test_too_many_clients_per_round_writes_nothing(corpus, tmp_path):
  config = SimulationConfig(model=CONFIG.model, clients_per_round=50)
  with pytest.raises(PopulationTooSmallError,
                     match=r"clients_per_round is 50 .* only 4 clients"):
    run_simulation(config, *corpus, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_unreachable_address_is_named_and_writes_nothing(
    corpus, tmp_path, monkeypatch):
  monkeypatch.setattr(execution, "_REMOTE_TIMEOUT_S", 1.0)
  address = f"127.0.0.1:{portpicker.pick_unused_port()}"
  config = SimulationConfig(model=CONFIG.model, clients_per_round=2,
                            worker_addresses=(address,))
  with pytest.raises(execution.WorkerUnreachableError,
                     match=f"cannot reach TFF worker.*{address}"):
    run_simulation(config, *corpus, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
  with pytest.raises(execution.WorkerUnreachableError, match="host:port"):
    execution.check_reachable(["no-port-here"])


def _kill_after_first_round(run_dir, worker):
  """Kills ``worker`` as soon as round 1's metrics are written."""
  path = os.path.join(run_dir, "metrics.csv")
  deadline = time.monotonic() + 300
  while time.monotonic() < deadline:
    if os.path.exists(path) and len(_train_losses(run_dir)) >= 1:
      worker.kill()
      return
    time.sleep(0.05)


@pytest.mark.slow
def test_worker_lost_mid_run_fails_clearly_and_rerun_resumes(
    corpus, reference, tmp_path):
  ports = [portpicker.pick_unused_port() for _ in range(2)]
  addresses = tuple(f"localhost:{p}" for p in ports)
  workers = [_start_worker(p) for p in ports]
  run_dir = str(tmp_path / "run")
  config = SimulationConfig(**{**CONFIG.__dict__,
                               "worker_addresses": addresses})
  try:
    killer = threading.Thread(target=_kill_after_first_round,
                              args=(run_dir, workers[1]))
    killer.start()
    with pytest.raises(execution.WorkerLostError) as error:
      run_simulation(config, *corpus, run_dir, show_progress=False)
    killer.join()
    assert error.value.addresses == (addresses[1],)
    assert "round 2 failed" in str(error.value)
    assert "rerun the same command" in str(error.value)
    workers[1].wait()
    workers[1] = _start_worker(ports[1])
    resumed = run_simulation(config, *corpus, run_dir, show_progress=False)
  finally:
    _stop(workers)
  assert resumed.resumed_from == 1
  _assert_same_run(resumed, reference)


def _sh(*args):
  subprocess.run(args, check=True, capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                    reason="needs root and iproute2 to create network "
                           "namespaces joined by veth pairs")
@pytest.mark.slow
def test_workers_on_two_hosts_match_one_local_worker(
    corpus, reference, tmp_path):
  """Two 'hosts' (network namespaces, each joined to this one by a veth
  pair with its own link-local /30) run the rounds; same metrics."""
  tag = f"{os.getpid() % 100000}"
  namespaces, workers, addresses = [], [], []
  try:
    for i in range(2):
      ns, here, there = f"ssl{tag}n{i}", f"ssl{tag}h{i}", f"ssl{tag}p{i}"
      _sh("ip", "netns", "add", ns)
      namespaces.append(ns)
      _sh("ip", "link", "add", here, "type", "veth", "peer", "name", there)
      _sh("ip", "link", "set", there, "netns", ns)
      _sh("ip", "addr", "add", f"169.254.211.{4 * i + 1}/30", "dev", here)
      _sh("ip", "link", "set", here, "up")
      _sh("ip", "netns", "exec", ns, "ip", "addr", "add",
          f"169.254.211.{4 * i + 2}/30", "dev", there)
      _sh("ip", "netns", "exec", ns, "ip", "link", "set", there, "up")
      _sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
      port = 8470 + i
      workers.append(_start_worker(port, ("ip", "netns", "exec", ns)))
      addresses.append(f"169.254.211.{4 * i + 2}:{port}")
    config = SimulationConfig(**{**CONFIG.__dict__,
                                 "worker_addresses": tuple(addresses)})
    result = run_simulation(config, *corpus, str(tmp_path / "run"),
                            show_progress=False)
  finally:
    _stop(workers)
    for ns in namespaces:
      subprocess.run(["ip", "netns", "del", ns], check=False)
  _assert_same_run(result, reference)
