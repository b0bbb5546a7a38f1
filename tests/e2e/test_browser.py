"""Real browser: the ComfyUI frontend (comfyui-frontend-package) loads web/js/probe_report.js, a probe
graph runs on the real host server, and the "Semantic Layer Report" node shows one chart: its canvas, with no
image previews under it, its maps drawn over the start image the graph gives it. The test reads only what the
page shows (the canvas pixels, the node's properties, the executed message); the extension has no test hooks.
Waits are on conditions, each with a bound.

Headless Debian Chromium (``apt-get install -y chromium``) driven by the Python ``playwright`` package
with ``executable_path``; ``playwright install`` (a browser download) is never needed. Without a
Chromium the test skips, unless FOCAL_REQUIRE_BROWSER is set (CI), where it fails instead.
Override the browser with FOCAL_CHROMIUM=/path/to/chromium.
"""
import base64
import io
import json
import os
import shutil
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

import make_tiny_models as tiny
import readme_pictures
from comfy_server import PACK_NAME, ComfyServer, make_input_image

CHROMIUM = os.environ.get("FOCAL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRE_BROWSER = bool(os.environ.get("FOCAL_REQUIRE_BROWSER"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1280, "height": 1200}
REPORT = "7"  # the report node's id in PROBE_GRAPH
BLOCKS = 6    # the tiny Wan T2V checkpoint has 6 DiT blocks
RUN_TIMEOUT = 300
IMAGE_NAME = "focal_report_picture.png"   # make_input_image's picture (a red disc, a blue bar), 96x64
WIDTH, HEIGHT = 96, 64

pytestmark = pytest.mark.skipif(CHROMIUM is None and not REQUIRE_BROWSER,
                                reason="no chromium on PATH (apt-get install -y chromium); "
                                       "set FOCAL_REQUIRE_BROWSER=1 to fail instead")

# API format; numeric ids because the frontend's loadApiJson keeps them as node ids.
PROBE_GRAPH = {
    "1": {"class_type": "UNETLoader", "inputs": {"unet_name": tiny.WAN_T2V, "weight_dtype": "default"}},
    "2": {"class_type": "FocalSemanticLayerProbe", "inputs": {
        "model": ["1", 0], "steps": 2, "start_percent": 0.0, "end_percent": 1.0, "branch": "positive"}},
    "3": {"class_type": "FocalStandInTextEncode", "inputs": {
        "family": "wan", "text": "a red ball rolls past a blue box", "seed": 1}},
    "4": {"class_type": "FocalStandInTextEncode", "inputs": {"family": "wan", "text": "blurry", "seed": 2}},
    "5": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 96, "height": 64, "length": 5,
                                                             "batch_size": 1}},
    "6": {"class_type": "KSampler", "inputs": {
        "model": ["2", 0], "seed": 7, "steps": 2, "cfg": 5.0, "sampler_name": "euler", "scheduler": "simple",
        "positive": ["3", 0], "negative": ["4", 0], "latent_image": ["5", 0], "denoise": 1.0}},
    REPORT: {"class_type": "FocalSemanticLayerReport", "inputs": {
        "probe": ["2", 1], "latent": ["6", 0], "metric": "attention", "kappa": 1.0, "top_r": 1,
        "exclude_ends": 1, "adjacency": "rook", "frame": 0, "image": ["10", 0]}},
    "10": {"class_type": "LoadImage", "inputs": {"image": IMAGE_NAME}},
}

# Page-side helpers (strings evaluated in the page; `app` is the frontend's ComfyApp). The test reads what a
# user sees: the view's <canvas> (the node's DOM widget), its pixels, the node's properties and the executed
# message; the extension exposes nothing for tests.
APP = "window.comfyAPI?.app?.app"
NODE = f"{APP}.graph.getNodeById({REPORT})"
VIEW = f"{NODE}?.widgets?.find(w => w.name === 'focal_probe_view')?.element?.querySelector('canvas')"
# Ready once the frontend has set up and shown its startup workflow (the default graph for a new user):
# newer frontends (ComfyUI 0.33's) load it asynchronously, and a graph loaded before it would be replaced.
READY = f"""() => {{
    const app = {APP};
    return !!(app && app.isGraphReady !== false && app.graph?.nodes?.length && app.canvas
              && window.LiteGraph?.registered_node_types?.FocalSemanticLayerReport
              && app.extensions?.some(e => e.name === "FocalGuidance.ProbeReport"));
}}"""
# Newer frontends' loadApiJson adds to the open graph instead of replacing it: clear it first.
LOAD_API = f"""async ([graph, name]) => {{ {APP}.graph.clear(); await {APP}.loadApiJson(graph, name); }}"""
LOAD = f"""async (graph) => {{
    await ({LOAD_API})([graph, "focal_probe_browser_test.json"]);
    return ({NODE}?.widgets || []).map(w => w.name);
}}"""
VIEW_SHOWN = f"() => {{ const c = {VIEW}; return !!c?.isConnected && c.clientWidth > 0 && c.clientHeight > 0; }}"
VIEW_STATE = f"""() => {{
    const w = {NODE}?.widgets?.find(w => w.name === 'focal_probe_view'), c = w?.element?.querySelector('canvas');
    return {{widget: !!w, element: w?.element?.tagName, connected: !!w?.element?.isConnected,
             canvas: !!c, width: c?.clientWidth, height: c?.clientHeight}};
}}"""
FOCUS_AT = f"""(top) => {{  // scale 1, the report node near the top left of the viewport, ``top`` px down
    const app = {APP}, node = {NODE};
    app.canvas.ds.scale = 1;
    app.canvas.ds.offset = [-node.pos[0] + 100, -node.pos[1] + top];
    app.canvas.setDirty(true, true);
}}"""
FOCUS = f"() => ({FOCUS_AT})(150)"
PICTURE_TOP = 260   # the README's picture of the node: clear of the workflow name shown at the top left
QUEUE = f"async () => {{ await {APP}.queuePrompt(0, 1); }}"
# Heatmap tiles as the canvas shows them: the tallest band of rows that cross exactly n drawn runs at least
# 20 px wide. Drawn pixels are far from the view's two backgrounds (#1b1b1f, #25252b); the tiles (maps, alone or
# over the picture's dark grey) are, text is narrow. Returns the band and each tile's x range in canvas pixels,
# or null while fewer or more than n tiles are drawn.
TILES = f"""(n) => {{
    const c = {VIEW};
    if (!c?.width || !c?.height) return null;
    const W = c.width, H = c.height, data = c.getContext("2d").getImageData(0, 0, W, H).data;
    const far = (i, bg) => bg.some((v, k) => Math.abs(data[i + k] - v) > 16);
    const drawn = (x, y) => {{
        const i = (y * W + x) * 4;
        return far(i, [27, 27, 31]) && far(i, [37, 37, 43]);
    }};
    let best = null, band = null;
    for (let y = 0; y <= H; y++) {{
        const runs = [];
        for (let x = 0, start = -1; y < H && x <= W; x++) {{
            const on = x < W && drawn(x, y);
            if (on && start < 0) start = x;
            if (!on && start >= 0) {{ if (x - start >= 20) runs.push([start, x]); start = -1; }}
        }}
        if (runs.length === n) band = band ? {{...band, bottom: y}} : {{top: y, bottom: y, runs}};
        else {{
            if (band && (!best || band.bottom - band.top > best.bottom - best.top)) best = band;
            band = null;
        }}
    }}
    return best && best.bottom - best.top >= 8 ? {{...best, width: W, height: H}} : null;
}}"""
RECT = f"""() => {{
    const c = {VIEW}, r = c.getBoundingClientRect();
    return {{x: r.x, y: r.y, w: r.width, h: r.height, cssW: c.clientWidth, cssH: c.clientHeight}};
}}"""
# Redraw until the node has grown to hold its widgets and the DOM widget sits inside the node.
SETTLED = f"""() => {{
    const app = {APP}, node = {NODE}, c = {VIEW}, ds = app.canvas.ds;
    app.canvas.setDirty(true, true);
    if (!node.widgets.every(w => (w.y ?? 0) + (w.computedHeight ?? 0) <= node.size[1] + 1)) return false;
    const page = app.canvas.canvas.getBoundingClientRect(), r = c.getBoundingClientRect();
    const left = page.left + (node.pos[0] + ds.offset[0]) * ds.scale;
    const top = page.top + (node.pos[1] + ds.offset[1]) * ds.scale;
    return r.left >= left - 1 && r.right <= left + node.size[0] * ds.scale + 1
        && r.top >= top - 1 && r.bottom <= top + node.size[1] * ds.scale + 1;
}}"""
# The report node on the page, title bar included, with a margin: the README's picture of it.
NODE_CLIP = f"""() => {{
    const app = {APP}, node = {NODE}, ds = app.canvas.ds, page = app.canvas.canvas.getBoundingClientRect();
    const title = window.LiteGraph.NODE_TITLE_HEIGHT, margin = 16;
    return {{x: page.left + (node.pos[0] + ds.offset[0]) * ds.scale - margin,
             y: page.top + (node.pos[1] - title + ds.offset[1]) * ds.scale - margin,
             width: node.size[0] * ds.scale + 2 * margin, height: (node.size[1] + title) * ds.scale + 2 * margin}};
}}"""
CHECKSUM = f"""() => {{
    const c = {VIEW}, data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let sum = 0;
    for (let i = 0; i < data.length; i += 1) sum = (sum * 31 + data[i]) % 2147483647;
    return sum;
}}"""
HAS_COLOUR = f"""([r, g, b]) => {{
    const c = {VIEW}, data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < data.length; i += 4) if (data[i] === r && data[i + 1] === g && data[i + 2] === b) return true;
    return false;
}}"""
SELECTED_IS = f"(block) => {NODE}.properties['selected block'] === block"
SNAPSHOT = f"() => {VIEW}.toDataURL('image/png')"
# Fresh user folder: skip the first-run templates dialog and keep the minimap off the node.
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False, "Comfy.VueNodes.Enabled": False}
PIXELS = f"""() => {{
    const c = {VIEW}, data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    const colours = new Set();
    let vivid = 0;  // saturated pixels: heatmap ramps, curves, bands (the backgrounds are grey)
    for (let i = 0; i < data.length; i += 4) {{
        const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
        if (Math.max(r, g, b) - Math.min(r, g, b) > 60) vivid++;
        if (i % 16 === 0) colours.add((r << 16) | (g << 8) | b);
    }}
    return {{vivid, total: data.length / 4, colours: colours.size}};
}}"""


@pytest.fixture(scope="module")
def sync_playwright():
    """Playwright's sync entry point, checked before any server starts."""
    if CHROMIUM is None:
        pytest.fail("FOCAL_REQUIRE_BROWSER is set but no chromium was found: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # a Chromium is here, so a missing driver is an error, never a skip
        pytest.fail("the Python package 'playwright' is missing: pip install -r requirements-test.txt "
                    "(never 'playwright install': the Debian chromium is used)")
    return sync_playwright


@pytest.fixture(scope="module")
def browser_server(sync_playwright, tiny_models, tmp_path_factory, artifacts_dir):
    """Its own host for this module (stopped by pid when the module ends), so it never waits on others."""
    server = ComfyServer(tmp_path_factory.mktemp("browser_server"), models_dir=tiny_models)
    yield from server.serve(artifacts_dir / "browser_server.log")


@pytest.fixture
def page(sync_playwright, browser_server):
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
            page.problems = []
            page.on("pageerror", lambda err: page.problems.append(f"pageerror: {err}"))
            page.on("console", lambda msg: msg.type == "error" and page.problems.append(f"console: {msg.text}"))
            yield page
        finally:
            browser.close()


def _post_settings(server, settings):
    req = urllib.request.Request(server.url + "/settings", data=json.dumps(settings).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as reply:
        assert reply.status == 200, reply.status


def _history_error(server):
    for prompt_id, entry in (server.get("/history") or {}).items():
        status = entry.get("status") or {}
        if status.get("status_str") == "error":
            error = next((d for e, d in status.get("messages", []) if e == "execution_error"), {})
            return f"prompt {prompt_id} failed in {error.get('node_type')}: {error.get('exception_message')}"
    return None


def _wait_tiles(page, server, timeout):
    """The canvas once it shows all the tiles; between bounded waits, fail fast if the run failed."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return page.wait_for_function(TILES, arg=BLOCKS, timeout=2_000, polling=250).json_value()
        except PlaywrightTimeout:
            error = _history_error(server)
            assert error is None, error + server.log_excerpt(30)
            assert server.alive(), "the server died" + server.log_excerpt()
    pytest.fail(f"the report canvas did not show {BLOCKS} tiles in {timeout} s; page problems={page.problems}"
                + server.log_excerpt(30))


def _report_output(server):
    """The Report node's executed message, as the server recorded it."""
    outputs = [entry["outputs"][REPORT] for entry in (server.get("/history") or {}).values()
               if REPORT in entry.get("outputs", {})]
    assert len(outputs) == 1, outputs
    return outputs[0]


def _rgb(hex_colour):
    return [int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]


def _click(page, rect, tiles, x, y):
    """A real mouse click at canvas pixel (x, y)."""
    page.mouse.click(rect["x"] + x * rect["w"] / tiles["width"], rect["y"] + y * rect["h"] / tiles["height"])


def test_probe_report_canvas_draws_one_chart_and_selects(page, browser_server, artifacts_dir):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    began = time.monotonic()
    served = browser_server.get("/extensions")
    assert f"/extensions/{PACK_NAME}/probe_report.js" in served, served
    _post_settings(browser_server, SETTINGS)
    make_input_image(browser_server.input_dir / IMAGE_NAME, WIDTH, HEIGHT)
    page.goto(browser_server.url + "/", wait_until="domcontentloaded")
    page.wait_for_function(READY, timeout=90_000)

    widgets = page.evaluate(LOAD, PROBE_GRAPH)
    assert "focal_probe_view" in widgets, f"the extension did not attach its view: {widgets}; {page.problems}"
    page.evaluate(FOCUS)
    try:
        page.wait_for_function(VIEW_SHOWN, timeout=10_000)
    except PlaywrightTimeout:
        pytest.fail(f"the view's canvas is not on the page: {page.evaluate(VIEW_STATE)}; {page.problems}")
    page.evaluate(QUEUE)

    tiles = _wait_tiles(page, browser_server, RUN_TIMEOUT)
    output = _report_output(browser_server)
    assert set(output) == {"focal_probe"}, f"only the canvas panel reaches the node, no image previews: {set(output)}"
    panel = output["focal_probe"][0]
    page.evaluate(FOCUS)
    try:
        page.wait_for_function(SETTLED, timeout=5_000, polling=100)
    except PlaywrightTimeout:
        pytest.fail(f"the chart did not settle inside the node in 5 s: {page.evaluate(RECT)}")
    assert page.evaluate(f"() => {NODE}.imgs?.length ?? 0") == 0, "the node draws image previews under the chart"
    rect = page.evaluate(RECT)
    assert rect["cssW"] > 200 and rect["cssH"] > 200, f"the canvas is too small to read: {rect}"
    pixels = page.evaluate(PIXELS)
    print(f"canvas pixels: {pixels}")
    assert pixels["vivid"] > 0.05 * pixels["total"], f"the canvas looks blank: {pixels}"
    assert pixels["colours"] > 20, f"the canvas has too few colours for curves and heatmaps: {pixels}"
    page.screenshot(path=str(artifacts_dir / "probe_report.png"))
    picture = artifacts_dir / "report_on_canvas.png"
    page.evaluate(FOCUS_AT, PICTURE_TOP)
    page.wait_for_function(SETTLED, timeout=5_000, polling=100)
    page.screenshot(path=str(picture), clip=page.evaluate(NODE_CLIP))
    page.evaluate(FOCUS)
    page.wait_for_function(SETTLED, timeout=5_000, polling=100)
    readme_pictures.publish(picture.name, picture, graph=PROBE_GRAPH,
                            made_by="tests/e2e/test_browser.py::test_probe_report_canvas_draws_one_chart_and_selects")
    _check_picture_under_the_maps(page, panel, tiles)

    # A real click on a tile selects that block: kept in the node's properties, redrawn, saved.
    shown = panel["weak"][0] if panel["weak"] else panel["responsive"][0] if panel["responsive"] else 0
    target = BLOCKS - 1 if shown != BLOCKS - 1 else 0
    before = page.evaluate(CHECKSUM)
    left, right = tiles["runs"][target]
    _click(page, rect, tiles, (left + right) / 2, (tiles["top"] + tiles["bottom"]) / 2)
    page.wait_for_function(SELECTED_IS, arg=target, timeout=5_000)
    page.wait_for_function(f"(before) => ({CHECKSUM})() !== before", arg=before, timeout=5_000)
    saved = page.evaluate(f"() => {NODE}.serialize()")
    assert saved["properties"]["selected block"] == target, saved["properties"]

    # A click in the curve selects that column's block (the curve's columns sit over the tiles).
    column = next(b for b in range(BLOCKS) if b not in (target, shown))
    left, right = tiles["runs"][column]
    _click(page, rect, tiles, (left + right) / 2, tiles["top"] * 0.5)
    page.wait_for_function(SELECTED_IS, arg=column, timeout=5_000)
    page.screenshot(path=str(artifacts_dir / "probe_report_selected.png"))

    # The view draws with the palette the message brings (nodes/plots.py owns it): a colour the message
    # changes shows up on the canvas (the legend swatch is drawn at whole pixels, so exactly).
    assert page.evaluate(HAS_COLOUR, _rgb(panel["palette"]["similarity"]))
    recoloured = {**panel, "palette": {**panel["palette"], "similarity": "#12ab34"}}
    assert not page.evaluate(HAS_COLOUR, _rgb("#12ab34"))
    page.evaluate(f"(message) => {NODE}.onExecuted(message)", {"focal_probe": [recoloured]})
    page.wait_for_function(HAS_COLOUR, arg=_rgb("#12ab34"), timeout=5_000)

    # Removing the node takes its view off the page.
    view = page.evaluate_handle(f"() => {VIEW}")
    page.evaluate(f"() => {APP}.graph.remove({NODE})")
    page.wait_for_function("(c) => !c.isConnected", arg=view, timeout=5_000)
    ours = [p for p in page.problems if "probe_report" in p or "FocalGuidance" in p]
    assert not ours, ours
    print(f"browser test: {time.monotonic() - began:.1f} s after the server started "
          f"({browser_server.startup_seconds:.1f} s startup)")


def _snapshot(page):
    """The view's canvas pixels, [H, W, 3]."""
    url = page.evaluate(SNAPSHOT)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"), dtype=int)


def _without_disc(png_url):
    """The panel's backdrop with make_input_image's red disc painted over in the grey of the ring around it."""
    grey = np.asarray(Image.open(io.BytesIO(base64.b64decode(png_url.split(",", 1)[1]))).convert("L"), float)
    h, w = grey.shape
    y, x = np.mgrid[0:h, 0:w]
    distance = np.hypot(x + 0.5 - 0.72 * w, y + 0.5 - 0.47 * h) / (0.28 * min(h, w))
    grey[distance <= 1.15] = grey[(distance > 1.15) & (distance <= 1.4)].mean()
    buffer = io.BytesIO()
    Image.fromarray(grey.round().astype(np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _check_picture_under_the_maps(page, panel, tiles):
    """The start image shows under every tile and under the detail view: the same panel with the picture's
    red disc painted out changes the canvas in one disc-shaped spot per map drawn, and nowhere else; in each
    tile the spot sits where the disc is in the picture. The canvas is then redrawn as the run left it."""
    assert panel["picture"]["subject"] == "prompt", panel["picture"]
    shown = _snapshot(page)
    before = page.evaluate(CHECKSUM)
    painted = {**panel, "picture": {**panel["picture"], "png": _without_disc(panel["picture"]["png"])}}
    page.evaluate(f"(message) => {NODE}.onExecuted(message)", {"focal_probe": [painted]})
    page.wait_for_function(f"(before) => ({CHECKSUM})() !== before", arg=before, timeout=5_000)
    changed = np.abs(_snapshot(page) - shown).max(-1) >= 3
    page.evaluate(f"(message) => {NODE}.onExecuted(message)", {"focal_probe": [panel]})
    page.wait_for_function(f"(before) => ({CHECKSUM})() === before", arg=before, timeout=5_000)
    spots, count = ndimage.label(changed, structure=np.ones((3, 3)))
    boxes = ndimage.find_objects(spots)
    print(f"disc spots on the canvas: {[(b[1].start, b[0].start, b[1].stop, b[0].stop) for b in boxes]}")
    assert count == BLOCKS + 1, f"expected the disc under {BLOCKS} tiles and the detail view, found {count} spots"
    sizes = [(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in boxes]
    assert all(8 <= h and 0.75 <= h / w <= 1.33 for h, w in sizes), f"the spots are not discs: {sizes}"
    detail = max(range(count), key=lambda i: sizes[i][0])
    assert boxes[detail][0].start > tiles["bottom"], "the largest spot is not in the detail view under the tiles"
    in_tiles = sorted(((b[1].start + b[1].stop) / 2 for i, b in enumerate(boxes) if i != detail))
    for (left, right), centre in zip(tiles["runs"], in_tiles):
        assert (centre - left) / (right - left) == pytest.approx(0.72, abs=0.06), (left, right, centre)


TRANSFER = "8"
AUTO_GRAPH = {
    **{k: v for k, v in PROBE_GRAPH.items() if k not in ("2", REPORT, "10")},
    TRANSFER: {"class_type": "FocalAttentionTransfer", "inputs": {
        "model": ["1", 0], "weak_blocks": "auto", "source_blocks": "auto", "alpha": 0.3, "beta": 1.0,
        "gamma": 0.5, "start_percent": 0.0, "end_percent": 1.0, "branch": "positive", "cache_heads": "head mean",
        "cache_columns": "all text tokens", "auto_kappa": 0.0, "auto_exclude_ends": 1}},
    "6": {**PROBE_GRAPH["6"], "inputs": {**PROBE_GRAPH["6"]["inputs"], "model": [TRANSFER, 0], "steps": 3}},
    "9": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": "focal_auto"}},
}
PICKS = f"""() => {{
    const w = {APP}.graph.getNodeById({TRANSFER})?.widgets?.find(w => w.name === "auto picks");
    return w ? w.value : null;
}}"""


def test_auto_mode_shows_its_picks_on_the_transfer_node(page, browser_server, artifacts_dir):
    _post_settings(browser_server, SETTINGS)
    page.goto(browser_server.url + "/", wait_until="domcontentloaded")
    page.wait_for_function(READY, timeout=90_000)
    page.evaluate(LOAD_API, [AUTO_GRAPH, "focal_auto_browser_test.json"])
    page.wait_for_function(f"() => !!{APP}.graph.getNodeById({TRANSFER})", timeout=10_000)
    assert page.evaluate(PICKS) is None
    page.evaluate(QUEUE)
    page.wait_for_function(PICKS, timeout=RUN_TIMEOUT * 1000, polling=200)
    picks = page.evaluate(PICKS)
    assert picks.startswith("weak ") and " | sources " in picks, picks
    weak = picks.split("weak ")[1].split(" |")[0]
    assert weak != "none" and all(part.strip() for part in weak.split(",")), picks   # kappa 0 always picks
    saved = page.evaluate(f"() => {APP}.graph.getNodeById({TRANSFER}).serialize().widgets_values")
    assert picks not in saved, "the picks display must never be saved into the workflow"
    page.screenshot(path=str(artifacts_dir / "auto_picks.png"))
    ours = [p for p in page.problems if "warnings" in p or "FocalGuidance" in p]
    assert not ours, ours
