"""Shared fixtures: a real ComfyUI host (in-process, CPU) and tiny real-architecture checkpoints.

The host lives in ``.host/ComfyUI`` (made by ``scripts/setup_host.sh``). Point the suite at another
core with ``FOCAL_COMFYUI=/path/to/ComfyUI`` and run pytest under a Python that has that core's
requirements; the test servers then use that Python too (scripts/comfy_server.py). The pack is
imported as the package ``focal_guidance`` because its folder name is not an identifier and a bare
``nodes`` would shadow the host's. Artifacts go to test-artifacts/comfyui-VERSION, one folder per core.
"""
import importlib.util
import os
import pathlib
import sys

import pytest

PACK_DIR = pathlib.Path(__file__).resolve().parents[1]
COMFY_DIR = pathlib.Path(os.environ.get("FOCAL_COMFYUI", PACK_DIR / ".host" / "ComfyUI")).resolve()


def _boot_host():
    if not (COMFY_DIR / "comfy").is_dir():
        raise pytest.UsageError(f"no ComfyUI host at {COMFY_DIR}: run scripts/setup_host.sh first")
    sys.path.insert(0, str(COMFY_DIR))
    from comfy.cli_args import args
    args.cpu = True  # tests are CPU-only and deterministic
    spec = importlib.util.spec_from_file_location(
        "focal_guidance", PACK_DIR / "__init__.py", submodule_search_locations=[str(PACK_DIR)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["focal_guidance"] = module
    spec.loader.exec_module(module)
    sys.path.insert(0, str(PACK_DIR / "scripts"))


_boot_host()
import comfyui_version  # noqa: E402  (the host's, on sys.path now)

ARTIFACTS = PACK_DIR / "test-artifacts" / f"comfyui-{comfyui_version.__version__}"


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
