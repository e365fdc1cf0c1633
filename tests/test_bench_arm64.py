"""The emulated aarch64 Python's set-up says what is missing and how to fix it;
its command line keeps the host's Python environment out."""

import os

import pytest

from benchmarks import arm64


def test_missing_qemu_names_the_apt_packages(tmp_path):
  config = arm64.Arm64Config(cache_dir=str(tmp_path),
                             qemu="no-such-qemu-aarch64-static")
  for step in (arm64.find, arm64.setup):
    with pytest.raises(arm64.Arm64Unavailable,
                       match="apt-get install -y qemu-user-static"):
      step(config)
  assert not os.listdir(tmp_path)


def test_find_without_set_up_names_the_command(tmp_path):
  config = arm64.Arm64Config(cache_dir=str(tmp_path), qemu="sh")
  with pytest.raises(arm64.Arm64Unavailable, match="--setup_arm64"):
    arm64.find(config)


def test_command_and_environment(monkeypatch):
  python = arm64.Arm64Python(root="/cache/root", site="/cache/site",
                             qemu="/usr/bin/qemu-aarch64-static",
                             emulation="qemu-aarch64 user-mode")
  assert python.command == ["/usr/bin/qemu-aarch64-static", "-L",
                            "/cache/root", "/cache/root/usr/bin/python3.11",
                            "-S", "-s"]
  monkeypatch.setenv("PYTHONHOME", "/host/venv")
  monkeypatch.setenv("VIRTUAL_ENV", "/host/venv")
  env = python.env()
  assert env["PYTHONPATH"] == "/cache/site"
  assert "PYTHONHOME" not in env and "VIRTUAL_ENV" not in env
  assert "python3.11-minimal" in arm64.DEBIAN_PACKAGES
