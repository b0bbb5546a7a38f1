"""Shared by every test folder, and host-free: the pack is importable as ``focal_guidance``
(scripts/register_pack.py). tests/core runs without a host; tests/host and tests/e2e boot the real
host in their own conftest (tests/comfy_host.py).
"""
import pathlib
import sys

PACK_DIR = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK_DIR / "scripts"))

from register_pack import register_pack  # noqa: E402

register_pack(PACK_DIR)
