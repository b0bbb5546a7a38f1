"""Shared by every test folder, and host-free: the pack is importable as ``focal_guidance``.

The pack's folder name is not an identifier, and a bare ``nodes`` would shadow the host's, so the
pack is registered as the package ``focal_guidance``. Its ``__init__`` imports no node module, so
``focal_guidance.focal_core`` needs only torch (tests/core runs without a host). tests/host and
tests/e2e boot the real host in their own conftest (tests/comfy_host.py).
"""
import importlib.util
import pathlib
import sys

PACK_DIR = pathlib.Path(__file__).resolve().parents[1]


def _register_pack():
    if "focal_guidance" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        "focal_guidance", PACK_DIR / "__init__.py", submodule_search_locations=[str(PACK_DIR)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["focal_guidance"] = module
    spec.loader.exec_module(module)


_register_pack()
