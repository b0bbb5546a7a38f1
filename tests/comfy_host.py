"""The real ComfyUI host (in-process, CPU) and tiny real-architecture checkpoints, for tests/host and
tests/e2e (their conftest imports this module, which boots the host, and re-exports the fixtures).

The host lives in ``.host/ComfyUI`` (made by ``scripts/setup_host.sh``). Point the suite at another
core with ``FOCAL_COMFYUI=/path/to/ComfyUI`` and run pytest under a Python that has that core's
requirements; the test servers then use that Python too (scripts/comfy_server.py). Artifacts go to
test-artifacts/comfyui-VERSION, one folder per core.
"""
import os
import pathlib
import sys

import pytest

PACK_DIR = pathlib.Path(__file__).resolve().parents[1]
COMFY_DIR = pathlib.Path(os.environ.get("FOCAL_COMFYUI", PACK_DIR / ".host" / "ComfyUI")).resolve()


def boot():
    """Put the host and scripts/ on sys.path once, CPU forced; returns the artifacts folder."""
    if not (COMFY_DIR / "comfy").is_dir():
        raise pytest.UsageError(f"no ComfyUI host at {COMFY_DIR}: run scripts/setup_host.sh first")
    if str(COMFY_DIR) not in sys.path:
        sys.path.insert(0, str(COMFY_DIR))
        sys.path.insert(0, str(PACK_DIR / "scripts"))
    from comfy.cli_args import args
    args.cpu = True  # tests are CPU-only and deterministic
    _import_host_nodes()
    import comfyui_version
    return PACK_DIR / "test-artifacts" / f"comfyui-{comfyui_version.__version__}"


def _import_host_nodes():
    """Import the host's top-level ``nodes`` module now, while the host leads ``sys.path``.

    The pack has a ``nodes/`` package too. pytest puts the pack folder itself on ``sys.path`` when
    its name is not an identifier (``ComfyUI-FocalGuidance``, as ``git clone`` names it), and the
    host's ``comfy_extras`` run a bare ``import nodes``: cached here, it is always the host's.
    """
    import nodes
    if pathlib.Path(nodes.__file__).resolve() != COMFY_DIR / "nodes.py":
        raise pytest.UsageError(f"'import nodes' found {nodes.__file__}, not the host's {COMFY_DIR / 'nodes.py'}")


ARTIFACTS = boot()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Folder with every tiny checkpoint from scripts/make_tiny_models.py, by stock file name."""
    import make_tiny_models
    out = tmp_path_factory.mktemp("models")
    make_tiny_models.write_all(out)
    return out


@pytest.fixture(scope="session")
def artifacts_dir():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
