"""Boots the real host before any test module here imports ``comfy`` (tests/comfy_host.py)."""
from comfy_host import artifacts_dir, tiny_models  # noqa: F401  (fixtures)
