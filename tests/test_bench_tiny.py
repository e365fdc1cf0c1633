"""Cost benchmarks of a tiny export: FLOPs against the analytic encoder count
and tf.profiler, every signature timed on the host with verified XNNPACK
settings, the report with a federated run, and the aarch64 emulation check."""

import csv
import json
import os

import pytest

from benchmarks import adb
from benchmarks import arm64
from benchmarks import flops
from benchmarks import latency
from benchmarks import report
from export.corpus import load_corpus
from export.exporter import ExportConfig, export_model, fresh_source
from export.manifest import Manifest
from export.verification import VerifyConfig
from model.datasets.synthetic import CORPUS_PRESETS, generate_corpus
from model.encoders import ENCODERS
from model.features import FrontendConfig

BATCH = 2
TASK = "audio2vec_cbow"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
  """A builtin tiny export (train batch 2), float32 and int8 embed models."""
  root = tmp_path_factory.mktemp("bench")
  generate_corpus(str(root / "corpus"), CORPUS_PRESETS["tiny"],
                  show_progress=False)
  config = ExportConfig(
      batch_size=BATCH, quantizations=("float32", "int8"),
      verify=VerifyConfig(train_steps=4, num_batches=2, embed_patches=8))
  export_model(fresh_source("tiny", TASK), str(root / "tiny"), config,
               corpus=load_corpus(str(root / "corpus")))
  return str(root / "tiny")


def _content(export_dir, variant="training"):
  with open(os.path.join(export_dir, variant, "model.tflite"), "rb") as f:
    return f.read()


def _composition_macs(encoder):
  """Block 0's composed 3x3 kernel and per-row bias (``ops.conv_pair``),
  made once per call from the variables of a training file (constant-folded
  in the inference files): 3 taps x (3 kernel + 1 bias rows) x c x c."""
  c = encoder.channels[0]
  return 3 * (3 + 1) * c * c


def test_embed_flops_match_the_analytic_encoder_count(export_dir):
  """Documented margin: the file's embed MACs are the encoder's analytic MACs
  plus the front-end's (the DFT matmuls of the delegate formulation + mel
  matmul) exactly; its FLOPs are 2 x MACs plus at most 6% elementwise,
  pooling and bias ops."""
  n = 3
  manifest = Manifest.read(os.path.join(export_dir, "training"))
  frontend = FrontendConfig(**manifest.model.frontend)
  encoder = ENCODERS["tiny"]
  analytic = n * (encoder.forward_macs(frontend.patch_shape)
                  + flops.frontend_macs(frontend, frontend.patch_frames,
                                        dft_by_matmul=True))
  composition = _composition_macs(encoder)
  for variant in ("training", "embed_float32", "embed_int8"):
    counted = flops.count_flops(_content(export_dir, variant), "embed",
                                batch=n)
    assert counted.examples == n
    assert counted.macs == analytic + (
        composition if variant == "training" else 0), variant
    assert 2 * analytic < counted.flops <= 1.06 * 2 * analytic, variant
    conv_macs = n * (encoder.forward_macs(frontend.patch_shape)
                     - encoder.channels[-1] * encoder.embedding_dim)
    by_op = {o.op: o for o in counted.by_op}
    if variant == "training":  # FULLY_CONNECTED convs (delegate formulation).
      assert "CONV_2D" not in by_op
      assert by_op["FULLY_CONNECTED"].macs >= conv_macs
    else:
      assert by_op["CONV_2D"].macs == conv_macs


def test_cross_checks(export_dir):
  manifest = Manifest.read(os.path.join(export_dir, "training"))
  counts = flops.count_model_flops(_content(export_dir))
  assert set(counts) == {"train", "embed", "get_weights", "set_weights"}
  assert counts["train"].examples == BATCH
  # One 1-element SUM per scalar variable (the optimizer's step).
  assert counts["get_weights"].flops == sum(
      not v.shape for v in manifest.variables)
  assert not counts["train"].uncounted
  for signature in ("train", "embed"):
    checks = {c.reference: c for c in
              flops.cross_check(counts[signature], manifest)}
    profiler = checks["tf.profiler"]
    # The delegate front-end is matmuls (no RFFT2D): the profiler counts it.
    assert profiler.explanation.startswith("tf.profiler counts"), profiler
    assert abs(profiler.residual) < 0.05, profiler
    analytic = checks["analytic"]
    assert analytic.reference_flops == flops.analytic_flops(
        manifest, signature, batch=counts[signature].examples)
    assert "front-end" in analytic.explanation
  # The analytic count, the front-end and the elementwise ops account for
  # every FLOP of embed but the per-call kernel composition.
  embed_check = flops.cross_check(counts["embed"], manifest)[1]
  assert embed_check.residual * embed_check.reference_flops == pytest.approx(
      2 * _composition_macs(ENCODERS["tiny"]))


def test_xnnpack_settings_are_applied_and_verified(export_dir):
  path = os.path.join(export_dir, "embed_float32", "model.tflite")
  assert latency.delegate_partitions(path, "embed",
                                     runtime="ai_edge_litert") > 0
  probe = {"path": path, "signature": "embed", "runtime": "ai_edge_litert",
           "threads": 1, "probe": True}
  assert latency.run_request({**probe, "xnnpack": False}) == {
      "delegate_nodes": 0}
  off = latency.measure(path, "embed", latency.TimingConfig(
      runtime="ai_edge_litert", xnnpack=False, runs=2, warmup=0),
                        label="tiny/embed_float32", xnnpack_partitions=3)
  assert off.xnnpack_partitions is None and not off.xnnpack


def _federated_run(directory):
  """A minimal federated run directory as tff_sim writes it."""
  os.makedirs(directory)
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump({"model": {"task": TASK, "encoder": {"name": "tiny"}}}, f)
  for name, rows in (
      ("eval.csv", [{"round": 1, "keyword": 0.2, "cumulative_client_flops":
                     1e9, "cumulative_bytes_up": 1e5,
                     "cumulative_examples": 16},
                    {"round": 2, "keyword": 0.3, "cumulative_client_flops":
                     2e9, "cumulative_bytes_up": 2e5,
                     "cumulative_examples": 32}]),
      ("metrics.csv", [{"round": 2, "cumulative_client_flops": 2e9,
                        "cumulative_examples": 32}])):
    with open(os.path.join(directory, name), "w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=list(rows[0]))
      writer.writeheader()
      writer.writerows(rows)


def _fake_adb(directory) -> str:
  """An ``adb`` with one booted arm64 emulator whose benchmark_model prints
  the upstream output format."""
  script = directory / "adb"
  script.write_text("""#!/bin/bash
[ "$1" = "-s" ] && shift 2
case "$1 $2" in
  "devices ") printf 'List of devices attached\\nemulator-5554\\tdevice\\n' ;;
  "shell getprop") [ "$3" = ro.kernel.qemu ] && echo 1 || echo sdk ;;
  "shell cat") echo 0-3 ;;
  "shell "*--graph=*)
    echo "INFO: count=5 first=2100 curr=2000 min=1900 max=2100 avg=2000 std=70"
    echo "INFO: Inference timings in us: Init: 900, First inference: 2100," \\
      "Warmup (avg): 2100, Inference (avg): 2000"
    echo "INFO: Memory footprint delta from the start of the tool (MB):" \\
      "init=3.5 overall=9.25" ;;
esac
exit 0
""")
  script.chmod(0o755)
  return str(script)


def test_every_signature_is_timed_and_the_report_renders(export_dir,
                                                          tmp_path):
  run_dir = str(tmp_path / "runs" / "fedavg_tiny")
  _federated_run(run_dir)
  binary = tmp_path / "benchmark_model"
  binary.write_bytes(b"\x7fELF")
  built = report.build_report(
      [export_dir], str(tmp_path / "report"),
      report.ReportConfig(
          xnnpack=(False,), warmup=0, runs=2, cross_check=False,
          adb=adb.AdbConfig(binary=str(binary), adb=_fake_adb(tmp_path))),
      run_dirs=[run_dir])
  for path in built.files:
    assert os.path.getsize(path) > 0, path
  device = [r for r in built.rows if r.runner == "adb"]
  assert len(device) == 6 and all(r.emulated and r.median_ms == 2.0
                                  and r.model_rss_mb == 9.25 for r in device)
  measured = {(r.variant, r.signature): r for r in built.rows
              if r.runner == "host"}
  assert set(measured) == {("training", s) for s in
                           ("train", "embed", "get_weights", "set_weights")
                           } | {("embed_float32", "embed"),
                                ("embed_int8", "embed")}
  for row in measured.values():
    assert row.runner == "host" and row.median_ms > 0 and row.runs == 2
    assert row.peak_rss_mb > row.model_rss_mb > 0
    assert not row.xnnpack and row.xnnpack_partitions is None
    assert row.machine == latency.host_machine().label
  train = measured[("training", "train")]
  assert train.examples == BATCH and train.gflops_per_s > 0
  assert train.examples_per_s == pytest.approx(
      BATCH / (train.median_ms / 1e3))
  assert report.read_rows(os.path.join(built.out_dir, report.RESULTS_CSV)
                          ) == list(built.rows)
  lines = built.headline.splitlines()
  assert sum(line.startswith("| tiny/") for line in lines) == 4
  text = open(built.files[0]).read()
  assert "## Quality vs cost of federated runs" in text
  assert "## XNNPACK delegation" in text
  delegated = [line for line in text.splitlines()
               if line.startswith("| tiny/training | ai_edge_litert | train |")]
  assert len(delegated) == 1 and "%" in delegated[0]
  run_line = next(line for line in text.splitlines()
                  if line.startswith("| fedavg_tiny |"))
  assert f"{train.flops_per_example / 1e6:,.1f}" in run_line


@pytest.mark.slow
def test_arm64_signatures_match_the_host(export_dir):
  try:
    python = arm64.setup()
  except arm64.Arm64Unavailable as e:
    pytest.skip(f"emulated aarch64 Python unavailable: {e}")
  checks = arm64.check_model(os.path.join(export_dir, "training"), python,
                             label="tiny/training",
                             signatures=("train", "embed"), calls=2)
  assert [c.signature for c in checks] == ["train", "embed"]
  for check in checks:
    assert check.ok, check
    assert check.emulated.emulated and check.emulated.machine.arch == "aarch64"
    assert not check.host.emulated
