"""The adb runner: benchmark_model command lines, its output parser (upstream
format), missing pieces reported clearly, and a full run against a fake adb."""

import dataclasses
import os
import shlex
import stat

import pytest

from benchmarks import adb
from export.manifest import (EncoderInfo, FileInfo, Manifest, ModelInfo,
                             QuantizationInfo, SignatureSpec, TensorSpec)

#: benchmark_model output in the upstream format (TFLite 2.14 tool with
#: --signature_to_run_for, XNNPACK and --enable_op_profiling), as printed on
#: an arm64 phone.
OUTPUT = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Min num runs: [20]
INFO: Num threads: [1]
INFO: Graph: [/data/local/tmp/ondevice_audio_ssl/small_training.tflite]
INFO: Signature to run: [train]
INFO: Enable op profiling: [1]
INFO: #threads used for CPU inference: [1]
INFO: Use xnnpack: [1]
INFO: Loaded model /data/local/tmp/ondevice_audio_ssl/small_training.tflite
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: XNNPACK delegate created.
INFO: Explicitly applied XNNPACK delegate, and the model graph will be partially executed by the delegate w/ 27 delegate kernels.
INFO: The input model file size (MB): 13.4412
INFO: Initialized session in 48.207ms.
INFO: Running benchmark for at least 3 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=3 first=412870 curr=301554 min=298112 max=412870 avg=337512 std=53318 p5=298112 median=301554 p95=412870

INFO: Running benchmark for at least 20 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=20 first=300981 curr=297214 min=291004 max=318442 avg=299876 std=6410 p5=291004 median=298765 p95=318442

INFO: Inference timings in us: Init: 48207, First inference: 412870, Warmup (avg): 337512, Inference (avg): 299876
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=22.6172 overall=61.3828
INFO: Profiling Info for Benchmark Initialization:
============================== Run Order ==============================
\t             [node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]
\t         AllocateTensors\t    3.112\t    3.112\t100.000%\t100.000%\t     0.000\t        1\tAllocateTensors/0

============================== Summary by node type ==============================
\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]
\t         AllocateTensors\t        1\t     3.112\t   100.000%\t   100.000%\t     0.000\t        1

Timings (microseconds): count=1 curr=3112
Memory (bytes): count=0
1 nodes observed

INFO: Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Summary by node type ==============================
\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]
\t                 CONV_2D\t       32\t   231.402\t    77.290%\t    77.290%\t     0.000\t       32
\t         FULLY_CONNECTED\t        3\t    31.104\t    10.389%\t    87.679%\t     0.000\t        3
\t   TfLiteXNNPackDelegate\t       27\t    20.551\t     6.864%\t    94.543%\t     0.000\t       27
\t                  RFFT2D\t        1\t    16.327\t     5.453%\t    99.996%\t     0.000\t        1

Timings (microseconds): count=20 first=300412 curr=296843 min=290611 max=317986 avg=299398 std=6398
Memory (bytes): count=0
914 nodes observed
"""

#: The older format (no percentiles, no log prefix), as in the upstream README.
OLD_OUTPUT = """\
STARTING!
Num threads: [4]
Graph: [/data/local/tmp/model.tflite]
Loaded model /data/local/tmp/model.tflite
Initialized session in 20.283ms.
count=2 first=339304 curr=266325 min=266325 max=339304 avg=302814 std=36489
count=50 first=266601 curr=266931 min=265837 max=268116 avg=2.66473e+05 std=419
Inference timings in us: Init: 20283, First inference: 339304, Warmup (avg): 302814, Inference (avg): 2.66473e+05
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Memory footprint delta from the start of the tool (MB): init=6.14844 overall=109.848
"""

FLEX_FAILURE = """\
INFO: Loaded model /data/local/tmp/x.tflite
ERROR: Select TensorFlow op(s), included in the given model, is(are) not supported by this interpreter. Make sure you apply/link the Flex delegate before inference. For the Android, it can be resolved by adding "org.tensorflow:tensorflow-lite-select-tf-ops" dependency. See instructions: https://www.tensorflow.org/lite/guide/ops_select
ERROR: Node number 12 (FlexConv2DBackpropFilter) failed to prepare.
ERROR: Failed to allocate tensors!
ERROR: Benchmarking failed.
"""


def test_parse_current_format():
  output = adb.parse_benchmark_output(OUTPUT)
  assert (output.init_us, output.first_us, output.warmup_avg_us,
          output.avg_us) == (48207, 412870, 337512, 299876)
  assert output.stats["count"] == 20  # The steady state, not the profiler's.
  assert output.stats["median"] == 298765
  assert output.stats["p95"] == 318442
  assert (output.memory_init_mb, output.memory_overall_mb) == (22.6172,
                                                               61.3828)
  assert output.peak_memory_mb is None
  assert output.xnnpack_partitions == 27
  assert [p.node_type for p in output.op_profile] == [
      "CONV_2D", "FULLY_CONNECTED", "TfLiteXNNPackDelegate", "RFFT2D"]
  assert output.op_profile[0].count == 32
  assert output.op_profile[0].avg_ms == pytest.approx(231.402)
  assert output.op_profile[0].percent == pytest.approx(77.29)


def test_parse_old_format_with_exponents():
  output = adb.parse_benchmark_output(OLD_OUTPUT)
  assert output.avg_us == pytest.approx(266473)
  assert output.stats["count"] == 50 and "median" not in output.stats
  assert output.memory_overall_mb == pytest.approx(109.848)
  assert output.xnnpack_partitions is None
  assert output.op_profile == ()


def test_parse_failures_say_what_is_wrong():
  with pytest.raises(adb.AdbError, match="benchmark_model_plus_flex"):
    adb.parse_benchmark_output(FLEX_FAILURE)
  with pytest.raises(adb.AdbError, match="(?s)no inference timings.*Segfault"):
    adb.parse_benchmark_output("INFO: STARTING!\nSegfault\n")


def test_benchmark_command():
  config = adb.AdbConfig(binary="/tmp/benchmark_model", threads=2,
                         xnnpack=False, warmup_runs=1, num_runs=7,
                         op_profiling=True, cpu_mask="f0")
  command = adb.benchmark_command(config, "/data/local/tmp/bm",
                                  "/data/local/tmp/m.tflite", "train")
  assert command == [
      "taskset", "f0", "/data/local/tmp/bm", "--graph=/data/local/tmp/m.tflite",
      "--signature_to_run_for=train", "--num_threads=2", "--use_xnnpack=false",
      "--warmup_runs=1", "--num_runs=7", "--enable_op_profiling=true"]
  plain = adb.benchmark_command(adb.AdbConfig(binary="b"), "bm", "m", "embed")
  assert plain[0] == "bm" and "--use_xnnpack=true" in plain
  assert not any(c.startswith("--enable_op") for c in plain)
  assert adb.adb_command(dataclasses.replace(config, serial="emulator-5554"),
                         "devices") == ["adb", "-s", "emulator-5554",
                                        "devices"]
  with pytest.raises(ValueError, match="hex"):
    adb.AdbConfig(binary="b", cpu_mask="big")


def test_parse_devices():
  text = ("* daemon started successfully\nList of devices attached\n"
          "emulator-5554\tdevice\nR58M12ABC\tunauthorized\n\n")
  assert adb.parse_devices(text) == {"emulator-5554": "device",
                                     "R58M12ABC": "unauthorized"}


def _fake_adb(tmp_path, devices: str, benchmark_output: str = OUTPUT) -> str:
  """An ``adb`` stand-in: answers devices/getprop/push, logs every call."""
  (tmp_path / "output.txt").write_text(benchmark_output)
  script = tmp_path / "adb"
  script.write_text(f"""#!/bin/bash
echo "$@" >> {tmp_path}/calls.log
[ "$1" = "-s" ] && shift 2
case "$1" in
  devices) printf 'List of devices attached\\n{devices}\\n' ;;
  push) ;;
  shell)
    case "$2 $3" in
      "getprop ro.product.model") echo "sdk_gphone64_arm64" ;;
      "getprop ro.product.cpu.abi") echo "arm64-v8a" ;;
      "getprop ro.build.version.release") echo "14" ;;
      "getprop ro.soc.model") echo "" ;;
      "getprop ro.board.platform") echo "goldfish_arm64" ;;
      "getprop ro.kernel.qemu") echo "1" ;;
      "getprop "*) echo "" ;;
      "cat /sys/devices/system/cpu/possible") echo "0-3" ;;
      *) if [[ "$*" == *--graph=* ]]; then cat {tmp_path}/output.txt; fi ;;
    esac ;;
esac
""")
  script.chmod(script.stat().st_mode | stat.S_IEXEC)
  return str(script)


MANIFEST = Manifest(
    kind="training", path="training/model.tflite",
    file=FileInfo(name="model.tflite", bytes=1,
                  sha256="0123456789abcdef" * 4),
    toolkit_version="test", tensorflow_version="test",
    model=ModelInfo(task="audio2vec_cbow", task_config={},
                    encoder=EncoderInfo(preset="small", config={},
                                        num_params=0),
                    frontend={}, sample_rate=16000, example_samples=77040,
                    patch_samples=15600, embedding_dim=32),
    operators=(), flex_ops=(), ops_sets=(), source={}, mode="builtin",
    quantization=QuantizationInfo(type="float32"),
    signatures={"train": SignatureSpec(
        name="train", inputs={"waveform": TensorSpec(
            name="waveform", dtype="float32", shape=(8, 77040))},
        outputs={})},
    verification={})


def test_full_run_against_a_fake_emulator(tmp_path):
  binary = tmp_path / "benchmark_model"
  binary.write_bytes(b"\x7fELF")
  config = adb.AdbConfig(binary=str(binary),
                         adb=_fake_adb(tmp_path, "emulator-5554\\tdevice"),
                         cpu_mask="f0")
  result = adb.run_signature(str(tmp_path), MANIFEST, "train", config,
                             label="small/training")
  assert result.runner == "adb" and result.runtime == "benchmark_model"
  assert result.median_ms == pytest.approx(298.765)
  assert result.mean_ms == pytest.approx(299.876)
  assert result.first_ms == pytest.approx(412.870)
  assert result.model_rss_mb == pytest.approx(61.3828)
  assert result.examples == 8 and result.runs == 20
  assert result.xnnpack_partitions == 27
  assert result.p90_ms is None
  assert result.emulated and "not a device latency" in result.notes
  assert result.machine.arch == "arm64-v8a" and result.machine.cores == 4
  calls = (tmp_path / "calls.log").read_text().splitlines()
  run = next(c for c in calls if "--graph" in c)
  command = shlex.split(run.split(" ", 3)[3])
  assert command[:2] == ["taskset", "f0"]
  assert command[2].startswith(
      "/data/local/tmp/ondevice_audio_ssl/benchmark_model-")
  assert command[3] == ("--graph=/data/local/tmp/ondevice_audio_ssl/"
                        "small_training-0123456789ab.tflite")
  assert "--signature_to_run_for=train" in command
  pushes = [c for c in calls if c.startswith("-s emulator-5554 push")]
  assert len(pushes) == 2 and pushes[1].endswith(
      "small_training-0123456789ab.tflite")


def test_missing_pieces_are_named(tmp_path):
  binary = tmp_path / "benchmark_model"
  with pytest.raises(adb.AdbError, match="adb not found"):
    adb.check_setup(adb.AdbConfig(binary=str(binary),
                                  adb=str(tmp_path / "no-adb")))
  fake = _fake_adb(tmp_path, "")
  with pytest.raises(adb.AdbError, match="binary not found.*cannot be "
                     "downloaded"):
    adb.check_setup(adb.AdbConfig(binary=str(binary), adb=fake))
  binary.write_bytes(b"\x7fELF")
  with pytest.raises(adb.AdbError, match="no Android device"):
    adb.check_setup(adb.AdbConfig(binary=str(binary), adb=fake))
  two = _fake_adb(tmp_path, "a\\tdevice\\nb\\tdevice")
  with pytest.raises(adb.AdbError, match="several devices"):
    adb.check_setup(adb.AdbConfig(binary=str(binary), adb=two))
  one = _fake_adb(tmp_path, "a\\tdevice")
  flex = dataclasses.replace(MANIFEST, mode="flex",
                             flex_ops=("FlexConv2DBackpropFilter",))
  with pytest.raises(adb.AdbError, match="flex export.*plus_flex"):
    adb.run_signature(str(tmp_path), flex, "train",
                      adb.AdbConfig(binary=str(binary), adb=one), label="x")
  assert os.path.exists(tmp_path / "calls.log")
