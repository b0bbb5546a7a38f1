"""What the Comfy Registry and ComfyUI-Manager's registry install unpack into custom_nodes: the archive that
comfy-cli's own ``comfy node pack`` builds (``comfy node publish`` uploads the same zip). It must hold exactly
what a user's ComfyUI needs, and the pack must load from it alone.

comfy-cli packs the git-tracked files that ``.comfyignore`` does not match. The test packs a fresh git
repository made of this checkout's tracked files as they are on disk, so uncommitted edits count too.
"""
import asyncio
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

PACK_DIR = pathlib.Path(__file__).resolve().parents[2]
USER_FILES = {"__init__.py", "README.md", "LICENSE", "pyproject.toml", "requirements.txt"}
USER_FOLDERS = ("focal_core/", "nodes/", "web/", "example_workflows/")
NODE_IDS = {"FocalSemanticLayerProbe", "FocalSemanticLayerReport", "FocalRegionAnchor", "FocalAttentionTransfer"}


def _user_needs(path: str) -> bool:
    """The decision, written out apart from .comfyignore: the package, its canvas extension, the example
    workflows (json and their template thumbnails), docs as text, metadata. Not tests, benchmarks,
    scripts, CI files or docs images."""
    return (path in USER_FILES or path.startswith(USER_FOLDERS)
            or (path.startswith("docs/") and path.count("/") == 1 and path.endswith(".md")))


def _tracked_files():
    try:
        listed = subprocess.run(["git", "-C", str(PACK_DIR), "ls-files"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.fail(f"the packaging test needs git and a git checkout of the pack ({err})")
    return [path for path in listed.stdout.splitlines() if (PACK_DIR / path).is_file()]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """node.zip as `comfy node pack` builds it from a copy of this checkout; returns its member names."""
    if importlib.util.find_spec("comfy_cli") is None:
        pytest.fail("comfy-cli is missing: pip install -r requirements-test.txt")
    repo = tmp_path_factory.mktemp("packed_repo")
    tracked = _tracked_files()
    for path in tracked:
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PACK_DIR / path, repo / path)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "--", *tracked], cwd=repo, check=True)
    home = tmp_path_factory.mktemp("comfy_cli_home")  # comfy-cli keeps its settings under HOME
    packed = subprocess.run(
        [sys.executable, "-m", "comfy_cli", "--skip-prompt", "--no-enable-telemetry", "node", "pack"],
        cwd=repo, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(home)})
    assert packed.returncode == 0 and (repo / "node.zip").is_file(), packed.stdout + packed.stderr
    with zipfile.ZipFile(repo / "node.zip") as zipped:
        return tracked, zipped.namelist(), repo / "node.zip"


def test_archive_holds_exactly_what_users_need(archive):
    tracked, members, _ = archive
    expected = {path for path in tracked if _user_needs(path)}
    assert set(members) == expected, (f"packed but not needed: {sorted(set(members) - expected)}; "
                                      f"needed but not packed: {sorted(expected - set(members))}")
    assert len(members) == len(set(members))
    assert not [m for m in members if m.startswith(("tests/", "benchmarks/", "scripts/", ".ci/"))]
    assert {"__init__.py", "web/js/probe_report.js", "docs/method.md"} <= set(members)


def test_pack_loads_its_nodes_from_the_archive_alone(archive, tmp_path):
    """Unzipped into a custom_nodes folder, the pack imports and lists its nodes without the rest of the repo."""
    _, _, zip_path = archive
    installed = tmp_path / "custom_nodes" / "comfyui-focalguidance"
    with zipfile.ZipFile(zip_path) as zipped:
        zipped.extractall(installed)
    name = "focal_guidance_from_archive"
    spec = importlib.util.spec_from_file_location(name, installed / "__init__.py",
                                                  submodule_search_locations=[str(installed)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        extension = asyncio.run(module.comfy_entrypoint())
        nodes = asyncio.run(extension.get_node_list())
        assert {node.define_schema().node_id for node in nodes} == NODE_IDS
        assert all(pathlib.Path(sys.modules[node.__module__].__file__).is_relative_to(installed) for node in nodes)
        web = installed / module.WEB_DIRECTORY
        assert sorted(p.name for p in web.glob("*.js")) == ["probe_report.js", "warnings.js"]
    finally:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[loaded]
