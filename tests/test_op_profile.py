"""Per-operator profile of a tiny exported train signature."""

import os

import pytest

from benchmarks import op_profile
from export import tflite_flops


@pytest.fixture(scope="module")
def tiny_train():
  content, title = op_profile.training_model("tiny", "temporal_gap", 2)
  assert title == "tiny / temporal_gap / batch 2 / delegate"
  return content


def test_profile_covers_every_node(tiny_train, tmp_path):
  result = op_profile.profile(tiny_train, "train", repeats=2, whole_repeats=3)
  costs = tflite_flops.op_costs(tiny_train, "train")
  assert [r.op for r in result.rows] == [name for name, _ in costs]
  assert [r.flops for r in result.rows] == [flops for _, flops in costs]
  for row in result.rows:
    assert (row.ms is None) == (row.op in op_profile.NOT_TIMED), row
  timed = [r for r in result.rows if r.ms is not None]
  assert {"FULLY_CONNECTED", "CONCATENATION", "BATCH_MATMUL"} <= {
      r.op for r in timed}
  assert all(r.bytes > 0 for r in timed if r.op == "FULLY_CONNECTED")
  # The encoder's layers and their gradients are named (block 0's
  # one-channel conv pair is composed into one conv).
  layers = {(r.layer, r.backward) for r in timed}
  assert {(layer, backward) for layer in ("block0/conv_1x3_conv_3x1",
                                          "block1/conv_1x3")
          for backward in (False, True)} <= layers
  # Operators alone miss fusion and cache effects, but not by 5x.
  assert 0.2 * result.whole_ms < result.timed_ms < 5 * result.whole_ms, (
      result.timed_ms, result.whole_ms)
  assert sum(g.count for g in op_profile.by_op(result)) == len(result.rows)
  assert sum(g.count for g in op_profile.by_layer(result)) == len(result.rows)
  report = op_profile.format_report(result, title="tiny")
  assert "## By operator type" in report and "FULLY_CONNECTED" in report
  # Figures from different hosts differ: the report names the machine.
  from benchmarks.latency import host_machine  # pylint: disable=import-outside-toplevel
  assert f"host {host_machine().label}, load average" in report
  op_profile.write_csv(str(tmp_path / "p.csv"), result)
  op_profile.plot(str(tmp_path / "p.png"), result)
  with open(tmp_path / "p.csv", encoding="utf-8") as f:
    assert len(f.readlines()) == len(result.rows) + 1
  assert os.path.getsize(tmp_path / "p.png") > 0


def test_profile_unknown_signature(tiny_train):
  with pytest.raises(KeyError, match="has \\['embed'"):
    op_profile.profile(tiny_train, "fit")


@pytest.mark.parametrize("quantization", ["float32", "int8"])
def test_profile_of_embed_with_a_dynamic_batch(quantization):
  """``embed`` (dynamic batch) is profiled at the actual shapes of one call."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  from export.conversion import convert_embed_model  # pylint: disable=import-outside-toplevel
  from export.exporter import fresh_source  # pylint: disable=import-outside-toplevel
  from export.ondevice_module import EmbedModule  # pylint: disable=import-outside-toplevel
  model = fresh_source("tiny", "temporal_gap").model
  samples = model.spec.frontend.patch_samples
  rng = np.random.default_rng(0)
  representative = lambda: ({"waveform": (0.1 * rng.standard_normal(
      (1, samples))).astype(np.float32)} for _ in range(4))
  content = convert_embed_model(EmbedModule(model), quantization,
                                representative=representative).content
  result = op_profile.profile(content, "embed", repeats=2, whole_repeats=3)
  matmuls = [r for r in result.rows
             if r.op in ("FULLY_CONNECTED", "BATCH_MATMUL", "CONV_2D")]
  assert {r.op for r in matmuls} >= {"FULLY_CONNECTED", "CONV_2D"}
  assert all(r.ms is not None and r.delegated for r in matmuls), matmuls
  # The log-mel's shapes, not the file's batch-1 placeholders.
  frames, bins = model.spec.frontend.patch_shape
  assert any(f"1x{frames}x{bins}" in r.outputs for r in result.rows
             if r.layer.startswith("frontend")), result.rows
  layers = {r.layer.split("/")[0] for r in result.rows if r.ms is not None}
  assert {"frontend", "block0"} <= layers
  if quantization == "int8":
    assert "QUANTIZE" in {r.op for r in result.rows if r.ms is not None}
