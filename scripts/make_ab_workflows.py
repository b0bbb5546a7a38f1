"""Derive the A/B example workflows from the shipped templates and save them through the real frontend.

Each A/B workflow is its base template (example_workflows/<base>.json) plus a baseline pass: the
sampling and decode nodes after Focal Attention Transfer are copied and fed the unpatched model, so both
passes share the seed, prompt, start image and settings. Stock Image Stitch puts the baseline (left) and
the Focal Guidance pass (right) side by side in the template's one saved video, and a Semantic Layer Probe
chained after the transfer feeds a Semantic Layer Report (each block's attention as guided).

    .venv/bin/python scripts/make_ab_workflows.py          # writes example_workflows/*_ab.{json,jpg}

The workflow is loaded into the host's frontend (headless Chromium, as tests/e2e/test_browser.py drives
it) and written as the frontend serialises it, so the file is what a user's Save gives. The thumbnail is
drawn from the saved node positions.
"""
import copy
import json
import pathlib
import re
import sys
import tempfile
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from comfy_server import PACK_DIR, ComfyServer  # noqa: E402

EXAMPLES = PACK_DIR / "example_workflows"
REPORT_SIZE = [560, 702]
STITCH = "ImageStitch"
# base template: (A/B name, the transfer the Report's probe follows, the sampler whose LATENT it reads, the
# node that turns frames into the saved video, the saved video's file prefix, heading)
AB = {
    "wan2.1_i2v_480p_focal_guidance": ("wan2.1_i2v_480p_focal_guidance_ab", 19, 20, 22,
                                       "video/focal_guidance_wan21_ab", "Wan2.1 I2V 480p"),
    "wan2.2_i2v_a14b_focal_guidance": ("wan2.2_i2v_a14b_focal_guidance_ab", 19, 21, 24,
                                       "video/focal_guidance_wan22_ab", "Wan2.2 I2V A14B"),
    "hunyuan_video_i2v_focal_guidance": ("hunyuan_video_i2v_focal_guidance_ab", 19, 24, 27,
                                         "video/focal_guidance_hunyuan_ab", "HunyuanVideo I2V"),
}
AB_NOTE = (
    "## A/B: the same seed without and with Focal Guidance\n\n"
    "This is the {heading} template with a **baseline pass**: the same sampler settings, seed (`fixed`), "
    "prompt and start image, sampled from the model *before* Focal Attention Transfer. The saved video shows "
    "both side by side (stock *Image Stitch*): **left without, right with Focal Guidance**. Judge "
    "prompt-following there; the pack has not been measured on real {heading} weights.\n\n"
    "The *Semantic Layer Probe* after the transfer records every block's attention to the prompt as guided, "
    "and the *Semantic Layer Report* draws it: the curve, the weak set and each block's map. The run takes "
    "about twice as long as the plain template (two passes).\n\n"
)


def _links_by_id(wf):
    return {link[0]: link for link in wf["links"]}


def _add_link(wf, origin, origin_slot, target, target_slot, kind):
    wf["last_link_id"] += 1
    lid = wf["last_link_id"]
    wf["links"].append([lid, origin["id"], origin_slot, target["id"], target_slot, kind])
    outputs = origin["outputs"][origin_slot]
    outputs["links"] = (outputs.get("links") or []) + [lid]
    target["inputs"][target_slot]["link"] = lid
    return lid


def _unlink(wf, target, slot):
    lid = target["inputs"][slot]["link"]
    link = _links_by_id(wf)[lid]
    origin = next(n for n in wf["nodes"] if n["id"] == link[1])
    origin["outputs"][link[2]]["links"].remove(lid)
    wf["links"].remove(link)
    target["inputs"][slot]["link"] = None


def _downstream(wf, start_ids, stop_id):
    """Ids of the nodes fed (directly or not) by ``start_ids``, not going through ``stop_id``."""
    found, frontier = set(), set(start_ids)
    while frontier:
        nxt = {link[3] for link in wf["links"] if link[1] in frontier and link[3] != stop_id} - found
        found |= nxt
        frontier = nxt
    return found


def _fresh(wf, node):
    """A copy of ``node`` with a new id in ``wf`` and no links, appended to ``wf``."""
    wf["last_node_id"] += 1
    node = copy.deepcopy(node)
    node["id"] = wf["last_node_id"]
    for inp in node["inputs"]:
        inp["link"] = None
    for out in node["outputs"]:
        out["links"] = []
    wf["nodes"].append(node)
    return node


def derive(base_name):
    name, report_of, latent_of, video_id, prefix, heading = AB[base_name]
    wf = copy.deepcopy(json.loads((EXAMPLES / f"{base_name}.json").read_text(encoding="utf-8")))
    nodes = {n["id"]: n for n in wf["nodes"]}
    links = _links_by_id(wf)
    transfers = [n["id"] for n in wf["nodes"] if n["type"] == "FocalAttentionTransfer"]
    # The unpatched model each transfer receives.
    model_in = {t: links[next(i["link"] for i in nodes[t]["inputs"] if i["name"] == "model")] for t in transfers}
    chain = sorted(_downstream(wf, transfers, video_id))
    sample_group = next(g for g in wf["groups"] if g["title"].startswith("Sample"))
    x0, y0, width, height = sample_group["bounding"]
    shift = height + 60
    copies = {}
    for nid in chain:
        wf["last_node_id"] += 1
        dup = copy.deepcopy(nodes[nid])
        dup.update(id=wf["last_node_id"], pos=[dup["pos"][0], dup["pos"][1] + shift])
        dup["title"] = f"{dup.get('title') or dup['type']} · baseline"
        for inp in dup["inputs"]:
            inp["link"] = None
        for out in dup["outputs"]:
            out["links"] = []
        copies[nid] = dup
        wf["nodes"].append(dup)
    for nid in chain:
        nodes[nid]["title"] = f"{nodes[nid].get('title') or nodes[nid]['type']} · Focal Guidance"
        for slot, inp in enumerate(nodes[nid]["inputs"]):
            if inp["link"] is None:
                continue
            link = links[inp["link"]]
            origin_id, origin_slot = link[1], link[2]
            if origin_id in transfers:                       # the baseline samples the unpatched model
                origin_id, origin_slot = model_in[origin_id][1], model_in[origin_id][2]
            origin = copies.get(origin_id) or next(n for n in wf["nodes"] if n["id"] == origin_id)
            _add_link(wf, origin, origin_slot, copies[nid], slot, link[5])

    # Image Stitch: baseline left, Focal Guidance right, into the template's video node.
    video = nodes[video_id]
    (image_slot,) = [s for s, i in enumerate(video["inputs"]) if i["type"] == "IMAGE"]
    fg_frames = links[video["inputs"][image_slot]["link"]]
    fg_node = nodes[fg_frames[1]]
    _unlink(wf, video, image_slot)
    wf["last_node_id"] += 1
    stitch = {"id": wf["last_node_id"], "type": STITCH, "pos": [video["pos"][0], video["pos"][1] + shift],
              "size": [270, 130], "flags": {}, "order": 0, "mode": 0,
              "inputs": [{"name": "image1", "type": "IMAGE", "link": None},
                         {"name": "image2", "shape": 7, "type": "IMAGE", "link": None}],
              "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": []}],
              "title": "Side by side: left baseline, right Focal Guidance",
              "properties": {"Node name for S&R": STITCH}, "widgets_values": ["right", True, 16, "white"]}
    wf["nodes"].append(stitch)
    _add_link(wf, copies[fg_node["id"]], fg_frames[2], stitch, 0, "IMAGE")
    _add_link(wf, fg_node, fg_frames[2], stitch, 1, "IMAGE")
    _add_link(wf, stitch, 0, video, image_slot, "IMAGE")
    for node in wf["nodes"]:
        if node["type"] in ("SaveVideo", "SaveAnimatedWEBP"):
            node["widgets_values"][0] = prefix

    # Semantic Layer Probe chained after the transfer (it records the guided attention), and its Report on the
    # probe and the sampler's LATENT, both at their probe-workflow settings.
    probe_wf = json.loads((EXAMPLES / "focal_guidance_probe.json").read_text(encoding="utf-8"))
    probe, report = (_fresh(wf, next(n for n in probe_wf["nodes"] if n["type"] == kind))
                     for kind in ("FocalSemanticLayerProbe", "FocalSemanticLayerReport"))
    transfer = nodes[report_of]
    probe.update(pos=[transfer["pos"][0], transfer["pos"][1] + transfer["size"][1] + 50],
                 size=[transfer["size"][0], 180], title="Semantic Layer Probe (for the Report)")
    report.update(pos=[x0 + width + 65, y0 + 80], size=list(REPORT_SIZE),
                  title="Semantic Layer Report (each block, as guided)")
    (guided,) = [links[lid] for lid in transfer["outputs"][0]["links"]]
    consumer, consumer_slot = nodes[guided[3]], guided[4]
    _unlink(wf, consumer, consumer_slot)
    _add_link(wf, transfer, 0, probe, 0, "MODEL")
    _add_link(wf, probe, 0, consumer, consumer_slot, "MODEL")
    _add_link(wf, probe, 1, report, 0, "FOCAL_PROBE")
    _add_link(wf, nodes[latent_of], 0, report, 1, "LATENT")

    wf["groups"].append({"id": max(g["id"] for g in wf["groups"]) + 1,
                         "title": "Baseline: same seed, no Focal Guidance",
                         "bounding": [x0, y0 + shift, width, height], "color": "#3f789e", "font_size": 24, "flags": {}})
    wf["groups"].append({"id": max(g["id"] for g in wf["groups"]) + 1, "title": "Report",
                         "bounding": [x0 + width + 50, y0, REPORT_SIZE[0] + 30, REPORT_SIZE[1] + 100],
                         "color": "#a1309b", "font_size": 24, "flags": {}})
    note = next(n for n in wf["nodes"] if n["type"] == "MarkdownNote")
    text = note["widgets_values"][0]
    text = text[:re.search(r"The (noise )?seed is `fixed`", text).start()].rstrip() + "\n"
    note["widgets_values"][0] = AB_NOTE.format(heading=heading) + text
    note["title"] = "Focal Guidance A/B: read me"
    note["size"] = [note["size"][0], note["size"][1] + 260]
    return name, wf


# ---- the real frontend -------------------------------------------------------------------------------
SAVE = """async ([workflow, name]) => {
    const app = window.comfyAPI.app.app;
    await app.loadGraphData(workflow, true, true, name);
    return JSON.parse(JSON.stringify(app.graph.serialize()));
}"""


def save_through_frontend(workflows, models_dir):
    from playwright.sync_api import sync_playwright
    sys.path.insert(0, str(PACK_DIR / "tests" / "e2e"))
    from test_browser import CHROMIUM, CHROMIUM_ARGS, VIEWPORT
    with tempfile.TemporaryDirectory() as work, ComfyServer(pathlib.Path(work), models_dir=models_dir) as server:
        request = urllib.request.Request(f"{server.url}/settings/Comfy.TutorialCompleted", data=b"true",
                                         method="POST")
        urllib.request.urlopen(request, timeout=30).close()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(server.url + "/", wait_until="domcontentloaded")
            page.wait_for_function("() => !!window.comfyAPI?.app?.app?.graph && "
                                   "!!window.LiteGraph?.registered_node_types?.FocalAttentionTransfer",
                                   timeout=90_000)
            saved = {name: page.evaluate(SAVE, [wf, name]) for name, wf in workflows.items()}
            browser.close()
    return saved


def placeholder_models(root, workflows):
    """Empty files under every model name the workflows use, so the frontend's combos keep them."""
    folders = {"UNETLoader": "diffusion_models", "CLIPLoader": "text_encoders", "DualCLIPLoader": "text_encoders",
               "VAELoader": "vae", "CLIPVisionLoader": "clip_vision"}
    for wf in workflows.values():
        for node in wf["nodes"]:
            for value in node["widgets_values"] or []:
                if node["type"] in folders and isinstance(value, str) and value.endswith(".safetensors"):
                    (root / folders[node["type"]]).mkdir(parents=True, exist_ok=True)
                    (root / folders[node["type"]] / value).write_bytes(b"")
    return root


# ---- the thumbnail --------------------------------------------------------------------------------
def thumbnail(wf, heading, path, side=640):
    """A diagram of the saved graph: groups, nodes, and the Focal Guidance nodes named."""
    from PIL import Image, ImageDraw, ImageFont
    fonts = "/usr/share/fonts/truetype/dejavu/"
    bold = lambda size: ImageFont.truetype(fonts + "DejaVuSans-Bold.ttf", size)  # noqa: E731
    img = Image.new("RGB", (side, side), (26, 26, 28))
    draw = ImageDraw.Draw(img)
    draw.text((28, 28), "Focal Guidance A/B", font=bold(38), fill=(240, 160, 230))
    draw.text((28, 78), heading, font=bold(28), fill=(235, 235, 235))
    draw.text((28, 118), "left: without · right: with Focal Guidance",
              font=ImageFont.truetype(fonts + "DejaVuSans.ttf", 19), fill=(190, 190, 200))
    boxes = [g["bounding"] for g in wf["groups"]]
    left, top = min(b[0] for b in boxes), min(b[1] for b in boxes)
    right, bottom = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    scale = min((side - 40) / (right - left), (side - 190) / (bottom - top))
    to = lambda x, y: (20 + (x - left) * scale, 170 + (y - top) * scale)  # noqa: E731
    for g in wf["groups"]:
        x, y, w, h = g["bounding"]
        focal = g["color"] == "#a1309b"
        draw.rounded_rectangle([*to(x, y), *to(x + w, y + h)], radius=4, outline=(90, 120, 150) if not focal
                               else (170, 60, 160), fill=(30, 45, 60) if not focal else (60, 30, 60))
    labels = []
    for n in wf["nodes"]:
        if n["type"] in ("MarkdownNote", "Note"):
            continue
        x, y = n["pos"]
        w, h = n["size"]
        focal = n["type"].startswith("Focal")
        draw.rounded_rectangle([*to(x, y), *to(x + w, y + h)], radius=3,
                               fill=(125, 50, 125) if focal else (55, 55, 62),
                               outline=(255, 150, 240) if focal else (100, 100, 110), width=2 if focal else 1)
        if n["type"] in ("FocalAttentionTransfer", "FocalSemanticLayerReport", STITCH):
            labels.append((to(x, y), {"FocalAttentionTransfer": "Transfer", "FocalSemanticLayerReport": "Report",
                                      STITCH: "Side by side"}[n["type"]]))
    small = bold(13)
    for (x, y), text in labels:
        box = draw.textbbox((x, y - 18), text, font=small)
        draw.rounded_rectangle([box[0] - 4, box[1] - 3, box[2] + 4, box[3] + 3], radius=3, fill=(20, 20, 24))
        draw.text((x, y - 18), text, font=small, fill=(240, 220, 240))
    img.save(path, "JPEG", quality=88)


def main():
    derived = dict(derive(base) for base in AB)
    with tempfile.TemporaryDirectory() as models:
        saved = save_through_frontend(derived, placeholder_models(pathlib.Path(models), derived))
    for base, (name, *_, heading) in AB.items():
        wf = saved[name]
        (EXAMPLES / f"{name}.json").write_text(json.dumps(wf, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        thumbnail(wf, heading, EXAMPLES / f"{name}.jpg")
        print(f"wrote {name}.json and .jpg ({len(wf['nodes'])} nodes)")


if __name__ == "__main__":
    main()
