"""The README's screenshots are current: each was made from the inputs it shows as they are now
(tests/e2e/readme_pictures.py says how they are made and refreshed)."""
import re

import pytest

import readme_pictures as pictures
from comfy_server import PACK_DIR
from test_browser import PROBE_GRAPH

GRAPHS = {"report_on_canvas.png": PROBE_GRAPH}
REFRESH = 'refresh it: FOCAL_UPDATE_PICTURES=1 .venv/bin/python -m pytest tests/e2e -k "screenshot or report_canvas"'


@pytest.mark.parametrize("name", sorted(pictures.INPUTS))
def test_committed_picture_is_newer_than_what_it_shows(name):
    assert (pictures.PICTURES_DIR / name).is_file(), f"docs/pictures/{name} is missing; {REFRESH}"
    recorded = pictures.read_manifest().get(name, {}).get("inputs")
    current = pictures.digests(name, GRAPHS.get(name))
    changed = sorted(k for k in current if (recorded or {}).get(k) != current[k])
    assert not changed, f"docs/pictures/{name} is older than {changed}; {REFRESH}"


def test_every_picture_is_listed_and_shown_in_the_readme():
    readme = (PACK_DIR / "README.md").read_text(encoding="utf-8")
    shown = set(re.findall(r"docs/pictures/([\w.-]+\.png)", readme))
    made = {p.name for p in pictures.PICTURES_DIR.glob("*.png")}
    assert made == set(pictures.INPUTS) == shown, (made, shown)
