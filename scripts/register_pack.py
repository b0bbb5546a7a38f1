"""Import the pack as the package ``focal_guidance`` from its folder, whatever the folder is called.

The folder name (``ComfyUI-FocalGuidance``) is not an identifier, and a bare ``nodes`` would shadow the
host's, so tests and benchmarks import the pack under this name. Its ``__init__`` imports no node module,
so ``focal_guidance.focal_core`` needs only torch.
"""
import importlib.util
import pathlib
import sys

PACKAGE = "focal_guidance"


def register_pack(pack_dir: pathlib.Path):
    """The pack's module, registered once in ``sys.modules``."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, pathlib.Path(pack_dir) / "__init__.py", submodule_search_locations=[str(pack_dir)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return sys.modules[PACKAGE]
