"""Real browser: the ComfyUI frontend (comfyui-frontend-package) loads web/js/probe_report.js, a probe
graph runs on the real host server, and the "Semantic Layer Report" node draws its canvas.

Headless Debian Chromium (``apt-get install -y chromium``) driven by the Python ``playwright`` package
with ``executable_path``; ``playwright install`` (a browser download) is never needed. Without a
Chromium the test skips, unless FOCAL_REQUIRE_BROWSER is set (CI), where it fails instead.
Override the browser with FOCAL_CHROMIUM=/path/to/chromium.
"""
import json
import os
import shutil
import time
import urllib.request

import pytest

import make_tiny_models as tiny
from comfy_server import PACK_NAME, ComfyServer

CHROMIUM = os.environ.get("FOCAL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRE_BROWSER = bool(os.environ.get("FOCAL_REQUIRE_BROWSER"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1280, "height": 1200}
REPORT = "7"  # the report node's id in PROBE_GRAPH
BLOCKS = 6    # the tiny Wan T2V checkpoint has 6 DiT blocks
RUN_TIMEOUT = 300

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
        "exclude_ends": 1, "adjacency": "rook", "frame": 0}},
}

# Page-side helpers (strings evaluated in the page; `app` is the frontend's ComfyApp).
APP = "window.comfyAPI?.app?.app"
READY = f"""() => {{
    const app = {APP};
    return !!(app && app.graph && app.canvas && window.LiteGraph?.registered_node_types?.FocalSemanticLayerReport
              && app.extensions?.some(e => e.name === "FocalGuidance.ProbeReport"));
}}"""
LOAD = f"""async (graph) => {{
    const app = {APP};
    await app.loadApiJson(graph, "focal_probe_browser_test.json");
    const node = app.graph.getNodeById({REPORT});
    return {{hasView: !!node?.focalProbe, widgets: (node?.widgets || []).map(w => w.name)}};
}}"""
FOCUS = f"""() => {{  // scale 1, the report node near the top left of the viewport
    const app = {APP}, node = app.graph.getNodeById({REPORT});
    app.canvas.ds.scale = 1;
    app.canvas.ds.offset = [-node.pos[0] + 100, -node.pos[1] + 150];
    app.canvas.setDirty(true, true);
}}"""
QUEUE = f"async () => {{ await {APP}.queuePrompt(0, 1); }}"
# Redraw until the node has grown to hold the frontend's own image preview (ui.images) below the view.
SETTLED = f"""() => {{
    const app = {APP}, node = app.graph.getNodeById({REPORT});
    app.canvas.setDirty(true, true);
    return !!node.imgs?.length && node.widgets.every(w => (w.y ?? 0) + (w.computedHeight ?? 0) <= node.size[1] + 1);
}}"""
# Fresh user folder: skip the first-run templates dialog and keep the minimap off the node.
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False, "Comfy.VueNodes.Enabled": False}
STATE = f"""() => {{
    const node = {APP}.graph.getNodeById({REPORT});
    const probe = node?.focalProbe;
    if (!probe) return null;
    const c = probe.canvas, r = c.getBoundingClientRect();
    return {{drawnBlocks: probe.drawnBlocks, selected: probe.selected, dataBlocks: c.dataset.blocks,
             dataSelected: c.dataset.selected, width: c.width, height: c.height,
             rect: {{x: r.x, y: r.y, w: r.width, h: r.height}}, cssW: c.clientWidth, cssH: c.clientHeight,
             hitboxes: probe.hitboxes}};
}}"""
PIXELS = f"""() => {{
    const c = {APP}.graph.getNodeById({REPORT}).focalProbe.canvas;
    const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
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


def _wait_drawn(page, server, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = page.evaluate(STATE)
        if state and state["drawnBlocks"] > 0 and state["dataBlocks"] != "0":
            return state
        error = _history_error(server)
        assert error is None, error + server.log_excerpt(30)
        assert server.alive(), "the server died" + server.log_excerpt()
        page.wait_for_timeout(250)
    pytest.fail(f"the report canvas was not drawn in {timeout} s; state={page.evaluate(STATE)}; "
                f"page problems={page.problems}" + server.log_excerpt(30))


def test_probe_report_canvas_draws_and_selects(page, browser_server, artifacts_dir):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    began = time.monotonic()
    served = browser_server.get("/extensions")
    assert f"/extensions/{PACK_NAME}/probe_report.js" in served, served
    _post_settings(browser_server, SETTINGS)
    page.goto(browser_server.url + "/", wait_until="domcontentloaded")
    page.wait_for_function(READY, timeout=90_000)

    loaded = page.evaluate(LOAD, PROBE_GRAPH)
    assert loaded["hasView"], f"the extension did not attach its view: {loaded}; {page.problems}"
    assert "focal_probe_view" in loaded["widgets"], loaded
    page.wait_for_timeout(300)  # the frontend settles the new workflow tab
    page.evaluate(FOCUS)
    page.evaluate(QUEUE)

    _wait_drawn(page, browser_server, RUN_TIMEOUT)
    page.evaluate(FOCUS)
    try:
        page.wait_for_function(SETTLED, timeout=5_000, polling=100)
    except PlaywrightTimeout:
        print("the node's layout did not settle in 5 s; the screenshot may show it mid-layout")
    page.wait_for_timeout(300)  # the DOM widget follows the canvas on the next frames
    state = page.evaluate(STATE)
    assert state["drawnBlocks"] == BLOCKS and state["dataBlocks"] == str(BLOCKS), state
    assert state["cssW"] > 200 and state["cssH"] > 200, f"the canvas is too small to read: {state}"
    pixels = page.evaluate(PIXELS)
    print(f"canvas pixels: {pixels}")
    assert pixels["vivid"] > 0.05 * pixels["total"], f"the canvas looks blank: {pixels}"
    assert pixels["colours"] > 20, f"the canvas has too few colours for curves and heatmaps: {pixels}"

    tiles = [h for h in state["hitboxes"] if h["area"] == "tile"]
    assert sorted(h["block"] for h in tiles) == list(range(BLOCKS)), state["hitboxes"]
    page.screenshot(path=str(artifacts_dir / "probe_report.png"))

    # A real click on a tile that is not selected selects that block.
    target = next(h for h in reversed(tiles) if h["block"] != state["selected"])
    scale = state["rect"]["w"] / state["cssW"]
    x = state["rect"]["x"] + (target["x"] + target["w"] / 2) * scale
    y = state["rect"]["y"] + (target["y"] + target["h"] / 2) * scale
    page.mouse.click(x, y)
    page.wait_for_function(f"() => {APP}.graph.getNodeById({REPORT}).focalProbe.canvas.dataset.selected"
                           f" === '{target['block']}'", timeout=5_000)
    assert page.evaluate(STATE)["selected"] == target["block"]

    # A click in the curve selects that column's block; the API selects too.
    column = next(h for h in state["hitboxes"] if h["area"] == "curve" and h["block"] == 0)
    page.mouse.click(state["rect"]["x"] + (column["x"] + column["w"] / 2) * scale,
                     state["rect"]["y"] + (column["y"] + column["h"] / 2) * scale)
    page.wait_for_function(f"() => {APP}.graph.getNodeById({REPORT}).focalProbe.selected === 0", timeout=5_000)
    assert page.evaluate(f"() => {APP}.graph.getNodeById({REPORT}).focalProbe.select({BLOCKS - 1})")
    page.wait_for_function(f"() => {APP}.graph.getNodeById({REPORT}).focalProbe.canvas.dataset.selected"
                           f" === '{BLOCKS - 1}'", timeout=5_000)
    page.screenshot(path=str(artifacts_dir / "probe_report_selected.png"))

    # Removing the node tears the view down (listeners, observer, pending frame).
    assert page.evaluate(f"""() => {{
        const app = {APP}, node = app.graph.getNodeById({REPORT});
        app.graph.remove(node);
        return node.focalProbeView === null && !app.graph.getNodeById({REPORT});
    }}""")
    ours = [p for p in page.problems if "probe_report" in p or "FocalGuidance" in p]
    assert not ours, ours
    print(f"browser test: {time.monotonic() - began:.1f} s after the server started "
          f"({browser_server.startup_seconds:.1f} s startup)")


TRANSFER = "8"
AUTO_GRAPH = {
    **{k: v for k, v in PROBE_GRAPH.items() if k not in ("2", REPORT)},
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
    page.evaluate(f"async (graph) => {{ await {APP}.loadApiJson(graph, 'focal_auto_browser_test.json'); }}",
                  AUTO_GRAPH)
    page.wait_for_timeout(300)
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
