"""The README's screenshots (docs/pictures/*.png): what each is made from, and their manifest.

The browser tests take them from the real frontend on every run (into the artifacts folder). With
FOCAL_UPDATE_PICTURES=1 they also copy them into docs/pictures and record, in docs/pictures/manifest.json,
the sha256 of every input the picture shows: the files below and the graph the test runs.
tests/e2e/test_readme_pictures.py fails when an input has changed since, that is when a committed
picture is older than the code or workflow it shows. To refresh them:

    FOCAL_UPDATE_PICTURES=1 .venv/bin/python -m pytest tests/e2e -k "screenshot or report_canvas"
"""
import hashlib
import json
import os
import shutil

from comfy_server import PACK_DIR

PICTURES_DIR = PACK_DIR / "docs" / "pictures"
MANIFEST = PICTURES_DIR / "manifest.json"
UPDATE = bool(os.environ.get("FOCAL_UPDATE_PICTURES"))
# picture: the repository files whose content it shows (the canvas code, the workflow, the code that
# computes the drawn numbers, the tiny model's generator, the start image's generator make_input_image).
INPUTS = {
    "workflow_ab_on_canvas.png": ["example_workflows/wan2.1_i2v_480p_focal_guidance_ab.json",
                                  "web/js/probe_report.js", "web/js/warnings.js"],
    "report_on_canvas.png": ["web/js/probe_report.js", "nodes/probe.py", "nodes/report.py", "nodes/plots.py",
                             "focal_core/probe.py", "focal_core/recorder.py", "focal_core/report.py",
                             "focal_core/metrics.py", "scripts/make_tiny_models.py",
                             "tests/standin_nodes/__init__.py", "scripts/comfy_server.py"],
}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digests(name, graph=None):
    """{input: sha256} for a picture: its files, and the API graph it runs (if any)."""
    found = {rel: _sha256((PACK_DIR / rel).read_bytes()) for rel in INPUTS[name]}
    if graph is not None:
        found["graph"] = _sha256(json.dumps(graph, sort_keys=True).encode())
    return found


def read_manifest():
    return json.loads(MANIFEST.read_text(encoding="utf-8")) if MANIFEST.exists() else {}


def publish(name, made, graph=None, made_by=""):
    """With FOCAL_UPDATE_PICTURES set: copy the screenshot ``made`` into docs/pictures, record its inputs."""
    if not UPDATE:
        return
    PICTURES_DIR.mkdir(exist_ok=True)
    shutil.copyfile(made, PICTURES_DIR / name)
    manifest = read_manifest()
    manifest[name] = {"made_by": made_by, "inputs": digests(name, graph)}
    MANIFEST.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
