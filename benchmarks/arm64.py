"""Signatures run by the emulated aarch64 tflite-runtime, checked on the host.

:func:`setup` builds, once, a cache folder with an aarch64 Python 3.11 from
Debian's arm64 packages (``apt-get download`` + ``dpkg -x``, no root needed)
and the aarch64 ``tflite_runtime`` and ``numpy`` wheels (``pip download
--platform ... --only-binary=:all:``, unpacked). The worker of
:mod:`benchmarks.latency` then runs there as ``qemu-aarch64-static -L <root>
<root>/usr/bin/python3.11``, and :func:`check_model` runs every signature of
an export on the host and under emulation with the same inputs and compares
the outputs. The arm64 build is the one Android phones run (same TFLite
version, aarch64 kernels), so this catches ABI- and kernel-specific
breakage without a phone. Emulated times are kept for reference only and
marked emulated: they are never device latencies.

System prerequisites (root, once): ``apt-get install qemu-user-static`` and
``dpkg --add-architecture arm64 && apt-get update``.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from typing import Mapping, Optional, Sequence

import numpy as np

from benchmarks import latency
from export.manifest import MODEL_NAME, Manifest

#: The runtime of both sides of :func:`check_model`.
EMULATED_RUNTIME = "tflite_runtime"

__all__ = ["EMULATED_RUNTIME", "DEBIAN_PACKAGES", "HOST_APT_PACKAGES", "Arm64Config",
           "Arm64Unavailable", "Arm64Python", "setup", "find",
           "SignatureCheck", "check_model", "default_cache_dir"]

#: Debian arm64 packages unpacked into the root: the interpreter, its
#: standard library and the shared libraries it, numpy and tflite_runtime
#: load.
DEBIAN_PACKAGES = (
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib",
    "libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libexpat1", "libffi8",
    "libssl3", "libbz2-1.0", "liblzma5", "libcrypt1", "libuuid1")
#: Host packages (amd64) the emulation needs, installed by root.
HOST_APT_PACKAGES = ("qemu-user-static",)
_SYSTEM_SETUP = ("as root: apt-get install -y qemu-user-static && "
                 "dpkg --add-architecture arm64 && apt-get update")


def default_cache_dir() -> str:
  """``$XDG_CACHE_HOME/ondevice-audio-ssl/arm64`` (``~/.cache`` by default)."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return os.path.join(base, "ondevice-audio-ssl", "arm64")


class Arm64Unavailable(RuntimeError):
  """A piece of the emulated aarch64 Python cannot be provided (says which)."""


@dataclasses.dataclass(frozen=True)
class Arm64Config:
  """The emulated aarch64 Python.

  Attributes:
    cache_dir: Where the root and wheels are unpacked (reused).
    qemu: The user-mode emulator.
    debian_packages: Debian arm64 packages of the root.
    tflite_runtime: Version of the ``tflite-runtime`` wheel
      (``manylinux_2_34_aarch64``).
    numpy: Version of the ``numpy`` wheel (``manylinux2014_aarch64``, one
      with a cp311 build; the project's pinned version).
    timeout_s: Each download, unpack or emulated run is killed after this.
  """

  cache_dir: str = dataclasses.field(default_factory=default_cache_dir)
  qemu: str = "qemu-aarch64-static"
  debian_packages: tuple[str, ...] = DEBIAN_PACKAGES
  tflite_runtime: str = "2.14.0"
  numpy: str = "1.25.2"
  timeout_s: float = 1800.0

  @property
  def key(self) -> str:
    """Cache subfolder name of this configuration."""
    return f"py311-tflite{self.tflite_runtime}-numpy{self.numpy}"


@dataclasses.dataclass(frozen=True)
class Arm64Python:
  """A ready emulated Python.

  Attributes:
    root: The unpacked Debian arm64 root.
    site: The unpacked wheels.
    qemu: Path of the emulator.
    emulation: Description for results (``qemu-aarch64 user-mode on ...``).
  """

  root: str
  site: str
  qemu: str
  emulation: str

  @property
  def command(self) -> list[str]:
    """Starts the emulated interpreter (no site-packages: ``-S -s``)."""
    return [self.qemu, "-L", self.root,
            os.path.join(self.root, "usr", "bin", "python3.11"), "-S", "-s"]

  def env(self) -> dict[str, str]:
    """This environment without Python variables, the wheels on the path."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = self.site
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(command: list[str], *, timeout_s: float, cwd: Optional[str] = None,
         env: Optional[Mapping[str, str]] = None) -> str:
  """Runs a set-up command; returns its stdout.

  Raises:
    Arm64Unavailable: The program is missing, failed or timed out.
  """
  try:
    process = subprocess.run(command, capture_output=True, text=True,
                             timeout=timeout_s, cwd=cwd, env=env, check=False)
  except FileNotFoundError as e:
    raise Arm64Unavailable(f"{command[0]} not found: the emulated Python is "
                           f"built with apt-get, dpkg and pip") from e
  except subprocess.TimeoutExpired as e:
    raise Arm64Unavailable(f"`{' '.join(command[:4])} ...` ran past "
                           f"{timeout_s:.0f} s and was killed") from e
  if process.returncode != 0:
    raise Arm64Unavailable(
        f"`{' '.join(command[:6])} ...` failed ({process.returncode}): "
        f"{(process.stderr or process.stdout).strip()[-1500:]}")
  return process.stdout


def _qemu(config: Arm64Config) -> str:
  path = shutil.which(config.qemu)
  if path is None:
    raise Arm64Unavailable(f"{config.qemu} not found: {_SYSTEM_SETUP}")
  return path


def _python(config: Arm64Config, qemu: str) -> Arm64Python:
  directory = os.path.join(config.cache_dir, config.key)
  host = latency.host_machine()
  return Arm64Python(
      root=os.path.join(directory, "root"),
      site=os.path.join(directory, "site"), qemu=qemu,
      emulation=f"qemu-aarch64 user-mode ({os.path.basename(qemu)}) on "
                f"{host.arch} {host.cpu}")


def _probe(python: Arm64Python, timeout_s: float) -> str:
  """Imports numpy and tflite_runtime emulated; returns the machine name."""
  return _run([*python.command, "-c",
               "import platform, numpy, tflite_runtime.interpreter; "
               "print(platform.machine())"],
              timeout_s=timeout_s, env=python.env()).strip()


def find(config: Arm64Config = Arm64Config()) -> Arm64Python:
  """The emulated Python if :func:`setup` has built it.

  Raises:
    Arm64Unavailable: qemu is missing or the cache is not set up.
  """
  python = _python(config, _qemu(config))
  marker = os.path.join(os.path.dirname(python.root), "ready.json")
  if not os.path.exists(marker):
    raise Arm64Unavailable(f"no emulated aarch64 Python in {config.cache_dir}:"
                           f" run `python -m benchmarks --setup_arm64`")
  return python


def _download_debs(config: Arm64Config, directory: str) -> list[str]:
  try:
    _run(["apt-get", "download",
          *(f"{p}:arm64" for p in config.debian_packages)],
         timeout_s=config.timeout_s, cwd=directory)
  except Arm64Unavailable as e:
    if "Unable to locate package" in str(e):
      raise Arm64Unavailable(f"apt has no arm64 package lists: "
                             f"{_SYSTEM_SETUP}") from e
    raise
  return sorted(glob.glob(os.path.join(directory, "*.deb")))


def _download_wheels(config: Arm64Config, directory: str) -> list[str]:
  wheels = (("tflite-runtime", config.tflite_runtime, "manylinux_2_34_aarch64"),
            ("numpy", config.numpy, "manylinux2014_aarch64"))
  for name, version, platform_tag in wheels:
    _run([sys.executable, "-m", "pip", "download", "--quiet",
          "--disable-pip-version-check", "--no-deps", "--only-binary=:all:",
          "--platform", platform_tag, "--python-version", "3.11",
          "--implementation", "cp", "--abi", "cp311", "--dest", directory,
          f"{name}=={version}"], timeout_s=config.timeout_s)
  return sorted(glob.glob(os.path.join(directory, "*.whl")))


def setup(config: Arm64Config = Arm64Config()) -> Arm64Python:
  """Builds the emulated Python in the cache (idempotent, reused when ready).

  Args:
    config: What to build and where.

  Returns:
    The ready Python.

  Raises:
    Arm64Unavailable: qemu, apt's arm64 lists, apt-get/dpkg, pip or the
      network cannot provide a piece (the message says which and how to fix
      it).
  """
  try:
    return find(config)
  except Arm64Unavailable:
    pass
  python = _python(config, _qemu(config))
  directory = os.path.dirname(python.root)
  os.makedirs(config.cache_dir, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f".{config.key}.tmp-",
                             dir=config.cache_dir)
  try:
    downloads = os.path.join(staging, "downloads")
    os.makedirs(downloads)
    root, site = os.path.join(staging, "root"), os.path.join(staging, "site")
    for deb in _download_debs(config, downloads):
      _run(["dpkg", "-x", deb, root], timeout_s=config.timeout_s)
    for wheel in _download_wheels(config, downloads):
      with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    shutil.rmtree(downloads)
    staged = dataclasses.replace(python, root=root, site=site)
    arch = _probe(staged, config.timeout_s)
    if arch != "aarch64":
      raise Arm64Unavailable(f"the emulated Python reports machine {arch!r}, "
                             f"expected 'aarch64'")
    with open(os.path.join(staging, "ready.json"), "w",
              encoding="utf-8") as f:
      json.dump({**dataclasses.asdict(config), "machine": arch}, f, indent=2)
    shutil.rmtree(directory, ignore_errors=True)
    os.rename(staging, directory)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return python


@dataclasses.dataclass(frozen=True)
class SignatureCheck:
  """One signature run on the host and emulated, with the same inputs.

  Attributes:
    signature: Signature key.
    outputs: Output tensors compared (every call's).
    max_abs_error: Largest absolute difference.
    max_rel_error: ``max_abs_error`` over the host outputs' largest
      magnitude.
    tolerance: Limit of ``max_rel_error``.
    host: The host run.
    emulated: The emulated run (its times are emulated, not device ones).
  """

  signature: str
  outputs: int
  max_abs_error: float
  max_rel_error: float
  tolerance: float
  host: latency.LatencyResult
  emulated: latency.LatencyResult

  @property
  def ok(self) -> bool:
    return self.max_rel_error <= self.tolerance


def _inputs(manifest: Manifest, signature: str, batch: int,
            seed: int) -> dict[str, np.ndarray]:
  """Random float32 inputs N(0, 0.1) of the manifest's signature shapes."""
  rng = np.random.default_rng(seed)
  inputs = {}
  for name, tensor in sorted(
      manifest.signature(signature).inputs.items()):
    shape = [batch if d < 0 else d for d in tensor.shape]
    if tensor.dtype != "float32":
      raise Arm64Unavailable(f"{signature}: input {name!r} has dtype "
                             f"{tensor.dtype}; only float32 inputs are "
                             f"generated")
    inputs[name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
  return inputs


def check_model(model_dir: str, python: Arm64Python, *, label: str,
                signatures: Sequence[str] = (), calls: int = 3,
                batch: int = 2, tolerance: float = 1e-4,
                quantized_tolerance: float = 5e-2,
                seed: int = 0) -> list[SignatureCheck]:
  """Runs every signature on the host and emulated; compares the outputs.

  Each signature starts from a fresh interpreter on both sides and is called
  ``calls`` times with the same inputs (``train`` thus takes the same
  ``calls`` optimizer steps), XNNPACK on as users run it.

  Args:
    model_dir: Directory with ``model.tflite`` and ``manifest.json`` (a
      ``builtin`` export: the on-device runtimes have no Flex kernels).
    python: The emulated Python (:func:`setup`).
    label: Model label for the results.
    signatures: Signatures to check (default: all).
    calls: Calls per signature (at least 2).
    batch: Value of dynamic input dimensions.
    tolerance: Limit of the relative output difference of float models.
    quantized_tolerance: The limit for quantized models: the float
      front-end's last-bit differences flip int8 roundings, which propagate
      (a few output quantization steps; 3.4% for the tiny int8 model).
    seed: Seed of the inputs.

  Returns:
    One check per signature.

  Raises:
    Arm64Unavailable: A flex export.
    benchmarks.latency.BenchmarkError: A run failed.
  """
  manifest = Manifest.read(model_dir)
  if manifest.mode == "flex":
    raise Arm64Unavailable(f"{model_dir} is a flex export: tflite_runtime has "
                           f"no Select-TF kernels")
  quantized = manifest.quantization.type != "float32"
  limit = quantized_tolerance if quantized else tolerance
  path = os.path.join(model_dir, MODEL_NAME)
  # The emulated root holds the aarch64 tflite_runtime wheel (LiteRT's is
  # not installed there): both sides run tflite_runtime, so that they
  # differ only in the CPU architecture.
  config = latency.TimingConfig(batch=batch, warmup=0, runs=calls - 1,
                                seed=seed, runtime=EMULATED_RUNTIME)
  checks = []
  with tempfile.TemporaryDirectory(prefix="arm64_check_") as directory:
    for signature in signatures or sorted(manifest.signatures):
      inputs = os.path.join(directory, f"{signature}_inputs.npz")
      np.savez(inputs, **_inputs(manifest, signature, batch, seed))
      runs = {}
      for side in ("host", "emulated"):
        outputs = os.path.join(directory, f"{signature}_{side}.npz")
        emulated = side == "emulated"
        result = latency.measure(
            path, signature, config, label=label, inputs=inputs,
            outputs=outputs,
            python=python.command if emulated else (sys.executable,),
            env=python.env() if emulated else None,
            emulation=python.emulation if emulated else "",
            runner="qemu-aarch64" if emulated else "host")
        with np.load(outputs) as data:
          runs[side] = (result, {k: data[k] for k in data.files})
      host, emulated = runs["host"][1], runs["emulated"][1]
      errors = [float(np.max(np.abs(host[k].astype(np.float64)
                                    - emulated[k].astype(np.float64)),
                             initial=0.0)) for k in host]
      scale = max(float(np.max(np.abs(v), initial=0.0)) for v in
                  host.values())
      worst = max(errors, default=0.0)
      checks.append(SignatureCheck(
          signature=signature, outputs=len(host), max_abs_error=worst,
          max_rel_error=worst / scale if scale else worst, tolerance=limit,
          host=runs["host"][0], emulated=runs["emulated"][0]))
  return checks
