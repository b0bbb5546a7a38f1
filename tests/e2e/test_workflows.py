"""The shipped example workflows (example_workflows/*.json, UI format): comfy-cli converts them against
the real host's /object_info, the host's /prompt validation accepts them, they run end to end on CPU, are
served as templates, and round-trip through the real frontend without losing widget values, whose own
UI -> API conversion (``graphToPrompt``) equals comfy-cli's. The host's official Wan2.2 I2V template (a
subgraph) with Focal Attention Transfer spliced in converts and runs too. The A/B workflows keep every node of
their base template, sample a baseline pass with the same settings from the unpatched model, and save one
video with the baseline on the left and the Focal Guidance pass on the right.

What the executed variants substitute, and why (the validated files themselves are never edited):

- **Models.** The diffusion models and the Wan VAE are the tiny random checkpoints from
  scripts/make_tiny_models.py under their stock file names. Text encoders (umT5-XXL, CLIP-L +
  LLaVA-LLaMA-3, Qwen2.5-VL + byT5), CLIP vision towers (clip_vision_h, llava_llama3_vision, SigLIP)
  and the HunyuanVideo VAE have fixed multi-GB configs in the host's loaders, so no small file can
  stand in for them. For those the test models folder holds EMPTY placeholder files under the stock
  names: /object_info then lists them, so the widget values validate exactly as on a user's machine,
  but they are never loaded.
- **Encoders** (tests/e2e/workflow_fixture.substitute_standins): CLIPTextEncode and
  TextEncodeHunyuanVideo_ImageToVideo become the TEST-ONLY FocalStandInTextEncode (same text, or the
  same text link; family from the CLIP loader's type); CLIPVisionEncode becomes FocalStandInClipVision
  (tests/standin_nodes). The HunyuanVideo stand-in puts no LLaVA image tokens before the prompt.
- **Region Anchor's text_encoder** needs a CLIP object with a tokenizer. No tiny loadable umT5 or
  LLaMA exists, so the CLIP loader feeding it becomes FocalStandInWordTokenizerCLIP
  (tests/standin_nodes/word_tokenizer.py): a host ``comfy.sd.CLIP`` with no weights whose
  tokenizer splits words exactly as FocalStandInTextEncode does (one token per word plus an end token;
  HunyuanVideo ids wrapped in the LLaMA-3 user-turn header that Region Anchor crops). So keyword token
  spans index the stand-in conditioning's rows, as the real tokenizer's do the real encoder's. Every
  Focal node still executes.
- **HunyuanVideo VAE** -> the tiny Wan2.1 VAE (same latent: 16 channels, /8 spatial, /4 temporal).
- **Wan2.2 and HunyuanVideo 1.5 VAEs**: narrow tiny files under the stock names, which the stock
  VAELoader builds at full width and refuses; the VAELoader becomes FocalStandInVAELoader, which runs
  the host's own detection at the file's width. HunyuanVideo 1.5's Qwen2.5-VL + byT5 encoder and its
  SigLIP vision encoder become FocalStandInTextEncode (family hunyuan_video_15) and
  FocalStandInSigLIPVision; its word-tokenizer CLIP speaks Qwen2.5's chat template.
- **Sizes**: Image Scale 96x64 (Get Image Size carries it to the I2V node and the mask), 9 frames,
  4 steps (KSamplerAdvanced ranges scaled: 0-2 / 2-4).
- **Blocks**: the templates' `middle` (every block but 2 at each end) fits the 6-block tiny models and
  stays, with no source blocks, so their fallback anchor reads its regions from the guided blocks. A
  transfer whose ``auto_report`` feeds a Report stays in auto mode with the Report's tiny-model rules
  (TINY_REPORT); explicit lists (for 40 or 60 blocks) would be out of range, so they become 2-3 / 1 (Wan)
  and 3-4 / 1 (HunyuanVideo: 2 double + 4 single); in the probe workflow they come from the report, whose
  kappa/exclude_ends/top_r are set for 6 blocks (TINY_REPORT).
- **The official Wan2.2 template** names the fp8 checkpoints and the lightx2v LoRAs: the models folder
  links the tiny Wan2.2 experts under the fp8 names and holds LoRA files with no tensors under the
  LoRA names, so every node of the template executes with its own widget values.

The browser round trip reuses tests/e2e/test_browser.py's Chromium + Playwright helpers; it skips without
Chromium unless FOCAL_REQUIRE_BROWSER is set, where it fails instead.
"""
import copy
import functools
import json
import os
import pathlib
import re
import shutil
import time
import urllib.request

import pytest

import make_tiny_models as tiny
import workflow_fixture as fixture
from comfy_server import PACK_DIR, PACK_NAME, ComfyServer, ExecutionFailed, make_input_image
from workflow_api import ConversionError, to_api

EXAMPLES = PACK_DIR / "example_workflows"
# A/B workflows (scripts/make_ab_workflows.py): their base template plus a baseline pass of the same seed.
AB_BASES = {"wan2.1_i2v_480p_focal_guidance_ab": "wan2.1_i2v_480p_focal_guidance",
            "wan2.2_i2v_a14b_focal_guidance_ab": "wan2.2_i2v_a14b_focal_guidance",
            "hunyuan_video_i2v_focal_guidance_ab": "hunyuan_video_i2v_focal_guidance"}
WORKFLOWS = ["wan2.1_i2v_480p_focal_guidance", "wan2.2_i2v_a14b_focal_guidance", "wan2.2_ti2v_5b_focal_guidance",
             "hunyuan_video_i2v_focal_guidance", "hunyuan_video_1.5_i2v_focal_guidance", "focal_guidance_probe",
             *AB_BASES]
FOCAL_NODES = {"FocalSemanticLayerProbe", "FocalSemanticLayerReport", "FocalRegionAnchor", "FocalAttentionTransfer"}
# The nodes each workflow must contain (stock graph + Focal Guidance).
REQUIRED_TYPES = {
    "wan2.1_i2v_480p_focal_guidance": {"UNETLoader", "CLIPLoader", "CLIPVisionLoader", "CLIPVisionEncode", "VAELoader",
                                       "LoadImage", "CLIPTextEncode", "WanImageToVideo", "KSampler", "VAEDecode",
                                       "CreateVideo", "SaveVideo", "FocalRegionAnchor", "FocalAttentionTransfer"},
    "wan2.2_i2v_a14b_focal_guidance": {"UNETLoader", "CLIPLoader", "VAELoader", "LoadImage", "CLIPTextEncode",
                                       "WanImageToVideo", "KSamplerAdvanced", "VAEDecode", "CreateVideo", "SaveVideo",
                                       "FocalRegionAnchor", "FocalAttentionTransfer"},
    "wan2.2_ti2v_5b_focal_guidance": {"UNETLoader", "CLIPLoader", "VAELoader", "LoadImage", "CLIPTextEncode",
                                      "Wan22ImageToVideoLatent", "ModelSamplingSD3", "KSampler", "VAEDecode",
                                      "CreateVideo", "SaveVideo", "FocalRegionAnchor", "FocalAttentionTransfer"},
    "hunyuan_video_i2v_focal_guidance": {"UNETLoader", "DualCLIPLoader", "CLIPVisionLoader", "CLIPVisionEncode",
                                         "VAELoader", "LoadImage", "TextEncodeHunyuanVideo_ImageToVideo",
                                         "HunyuanImageToVideo", "SamplerCustomAdvanced", "SaveAnimatedWEBP",
                                         "FocalRegionAnchor", "FocalAttentionTransfer"},
    "hunyuan_video_1.5_i2v_focal_guidance": {"UNETLoader", "DualCLIPLoader", "CLIPVisionLoader", "CLIPVisionEncode",
                                             "VAELoader", "LoadImage", "CLIPTextEncode", "HunyuanVideo15ImageToVideo",
                                             "ModelSamplingSD3", "CFGGuider", "SamplerCustomAdvanced", "VAEDecode",
                                             "CreateVideo", "SaveVideo", "FocalRegionAnchor", "FocalAttentionTransfer"},
    "focal_guidance_probe": {"UNETLoader", "CLIPLoader", "CLIPVisionLoader", "WanImageToVideo", "KSampler", "VAEDecode",
                             "SaveVideo", "SaveImage", "FocalSemanticLayerProbe", "FocalSemanticLayerReport",
                             "FocalAttentionTransfer"},
}
STOCK_FILES = {
    "wan2.1_i2v_480p_focal_guidance": {tiny.WAN_I2V, tiny.WAN_VAE, "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                                       "clip_vision_h.safetensors"},
    "wan2.2_i2v_a14b_focal_guidance": {tiny.WAN22_HIGH, tiny.WAN22_LOW, tiny.WAN_VAE,
                                       "umt5_xxl_fp8_e4m3fn_scaled.safetensors"},
    "wan2.2_ti2v_5b_focal_guidance": {tiny.WAN22_TI2V, tiny.WAN22_VAE, "umt5_xxl_fp8_e4m3fn_scaled.safetensors"},
    "hunyuan_video_i2v_focal_guidance": {tiny.HUNYUAN_I2V, "clip_l.safetensors", "llava_llama3_fp8_scaled.safetensors",
                                         "llava_llama3_vision.safetensors", "hunyuan_video_vae_bf16.safetensors"},
    "hunyuan_video_1.5_i2v_focal_guidance": {tiny.HUNYUAN15_I2V, tiny.HUNYUAN15_VAE,
                                             "qwen_2.5_vl_7b_fp8_scaled.safetensors",
                                             "byt5_small_glyphxl_fp16.safetensors",
                                             "sigclip_vision_patch14_384.safetensors"},
    "focal_guidance_probe": {tiny.WAN_I2V, tiny.WAN_VAE, "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                             "clip_vision_h.safetensors"},
}
REQUIRED_TYPES.update({ab: REQUIRED_TYPES[base] | {"ImageStitch", "FocalSemanticLayerProbe", "FocalSemanticLayerReport"}
                       for ab, base in AB_BASES.items()})
STOCK_FILES.update({ab: STOCK_FILES[base] for ab, base in AB_BASES.items()})
AB_SPACING = 16       # Image Stitch's white bar between the baseline (left) and the Focal Guidance pass
HUNYUAN_VAE = "hunyuan_video_vae_bf16.safetensors"
PLACEHOLDERS = ["text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors", "text_encoders/clip_l.safetensors",
                "text_encoders/llava_llama3_fp8_scaled.safetensors", "clip_vision/clip_vision_h.safetensors",
                "clip_vision/llava_llama3_vision.safetensors", f"vae/{HUNYUAN_VAE}",
                "text_encoders/qwen_2.5_vl_7b_fp8_scaled.safetensors",
                "text_encoders/byt5_small_glyphxl_fp16.safetensors",
                "clip_vision/sigclip_vision_patch14_384.safetensors"]
# What the host's official Wan2.2 template names, and the tiny file each name stands for.
# Newest first: each host's venv holds the templates package its requirements pin. 0.33's
# video_wan2_2_14B_i2v is one subgraph (with ComfySwitchNode and ComfyMathExpression); the older packages'
# template of that name is flat, and their subgraphed one has its own name.
OFFICIAL_WAN22_NAMES = ("video_wan2_2_14B_i2v", "03_video_wan2_2_14B_i2v_subgraphed")
OFFICIAL_ALIASES = {"diffusion_models/wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors": tiny.WAN22_HIGH,
                    "diffusion_models/wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors": tiny.WAN22_LOW}
EMPTY_LORAS = ["loras/wan2.2_i2v_lightx2v_4steps_lora_v1_high_noise.safetensors",
               "loras/wan2.2_i2v_lightx2v_4steps_lora_v1_low_noise.safetensors"]
WIDTH, HEIGHT, LENGTH, STEPS = 96, 64, 9, 4
TINY_BLOCKS = {"wan": ("2-3", "1"), "hunyuan_video": ("3-4", "1")}
# The Report's rules for the 6-block tiny model: with the template's kappa 2 / exclude_ends 2 a random
# model rarely has a weak block, and the transfer then (rightly) stops.
TINY_REPORT = {"kappa": 0.0, "exclude_ends": 1, "top_r": 1}
WORD_CLIP = "FocalStandInWordTokenizerCLIP"
MASKED_IMAGE = "focal_guidance_start_masked.png"
RUN_TIMEOUT = 300



def load(name):
    return json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def nodes_of(workflow, kind):
    return [n for n in workflow["nodes"] if n["type"] == kind]


def start_image_name(workflow):
    """The file the workflow's LoadImage names (the tests write their start image under it)."""
    return next(n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "LoadImage")


# ---- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workflow_models(tiny_models, tmp_path_factory):
    """The tiny checkpoints (linked, stock names), empty placeholders for the encoder files, and the
    official Wan2.2 template's file names (aliases of the tiny experts, LoRAs without tensors)."""
    root = tmp_path_factory.mktemp("workflow_models")
    for path in tiny_models.glob("*/*.safetensors"):
        (root / path.parent.name).mkdir(exist_ok=True)
        (root / path.parent.name / path.name).symlink_to(path)
    for rel in PLACEHOLDERS:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    for rel, name in OFFICIAL_ALIASES.items():
        (root / rel).symlink_to(tiny_models / "diffusion_models" / name)
    for rel in EMPTY_LORAS:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        header = b"{}      "                                          # safetensors: no tensors
        (root / rel).write_bytes(len(header).to_bytes(8, "little") + header)
    return root


def _masked_start_image(path):
    """128x64 RGBA whose alpha is 0 (MaskEditor paint = LoadImage MASK 1) on x 16..63: after the
    templates' centre crop to 96x64 (x 16..111) that is the left half of the frame."""
    from PIL import Image
    base = make_input_image(path.with_suffix(".rgb.png"), 128, 64)
    img = Image.open(base).convert("RGBA")
    alpha = Image.new("L", img.size, 255)
    alpha.paste(0, (16, 0, 64, 64))
    img.putalpha(alpha)
    img.save(path)
    base.unlink()
    return path


@pytest.fixture(scope="module")
def workflow_server(workflow_models, tmp_path_factory, artifacts_dir):
    """Its own host: the pack, the stand-ins, the word-tokenizer CLIP; stopped by pid at the end."""
    server = ComfyServer(tmp_path_factory.mktemp("workflow_server"), models_dir=workflow_models)
    make_input_image(server.input_dir / start_image_name(load("focal_guidance_probe")), WIDTH, HEIGHT)
    _masked_start_image(server.input_dir / MASKED_IMAGE)
    yield from server.serve(artifacts_dir / "workflow_server.log")


@pytest.fixture(scope="module")
def object_info(workflow_server):
    info = workflow_server.object_info()
    assert WORD_CLIP in info, "the test-only word-tokenizer CLIP did not load" + workflow_server.log_excerpt()
    return info


# ---- the files ------------------------------------------------------------------------------
def test_every_template_has_json_and_thumbnail():
    from PIL import Image
    names = sorted(p.stem for p in EXAMPLES.glob("*.json"))
    assert names == sorted(WORKFLOWS)
    for name in WORKFLOWS:
        with Image.open(EXAMPLES / f"{name}.jpg") as thumb:
            assert thumb.format == "JPEG" and min(thumb.size) >= 256, (name, thumb.format, thumb.size)


@pytest.mark.parametrize("name", WORKFLOWS)
def test_template_is_ui_format_with_notes(name):
    wf = load(name)
    assert wf["version"] == 0.4
    assert {"last_node_id", "last_link_id", "nodes", "links", "groups", "config", "extra"} <= set(wf)
    for node in wf["nodes"]:
        assert {"id", "type", "pos", "size", "flags", "order", "mode", "inputs", "outputs", "properties",
                "widgets_values"} <= set(node), node.get("type")
        assert node["mode"] == 0, f"{name}: node {node['id']} {node['type']} ships muted or bypassed"
    assert max(n["id"] for n in wf["nodes"]) <= wf["last_node_id"]
    assert all(len(link) == 6 for link in wf["links"]) and max(link[0] for link in wf["links"]) <= wf["last_link_id"]
    types = {n["type"] for n in wf["nodes"]}
    assert REQUIRED_TYPES[name] <= types, REQUIRED_TYPES[name] - types
    notes = nodes_of(wf, "MarkdownNote") + nodes_of(wf, "Note")
    assert notes, "every template explains its settings in a note"
    text = notes[0]["widgets_values"][0]
    for word in ("weak_blocks", "source_blocks", "alpha"):
        assert word in text, f"{name}: the note does not explain {word}"
    files = {v for n in wf["nodes"] for v in n["widgets_values"] if isinstance(v, str) and v.endswith(".safetensors")}
    assert files == STOCK_FILES[name]
    for sampler in nodes_of(wf, "KSampler") + nodes_of(wf, "KSamplerAdvanced") + nodes_of(wf, "RandomNoise"):
        assert "fixed" in sampler["widgets_values"], \
            "seeds ship fixed, so bypassing Focal Guidance compares like with like"


@pytest.mark.parametrize("name", [w for w in WORKFLOWS if w != "focal_guidance_probe"])
def test_region_anchor_ships_in_a_mode_that_needs_no_extra_download(name):
    wf = load(name)
    (anchor,) = nodes_of(wf, "FocalRegionAnchor")
    assert anchor["widgets_values"][2] == "model attention (fallback)"
    note = (nodes_of(wf, "MarkdownNote") + nodes_of(wf, "Note"))[0]["widgets_values"][0]
    assert "mask only" in note and "clip" in note and "fallback" in note
    linked = {i["name"] for i in anchor["inputs"] if i.get("link") is not None}
    assert {"image", "text_encoder", "prompt", "mask", "latent"} <= linked, linked


def test_probe_report_strings_are_linked_into_transfer_widget_inputs():
    wf = load("focal_guidance_probe")
    (report,), (transfer,) = nodes_of(wf, "FocalSemanticLayerReport"), nodes_of(wf, "FocalAttentionTransfer")
    links = {link[0]: link for link in wf["links"]}
    for out_slot, widget in ((2, "weak_blocks"), (3, "source_blocks")):
        (slot,) = [i for i, inp in enumerate(transfer["inputs"]) if inp["name"] == widget]
        entry = transfer["inputs"][slot]
        assert entry["widget"] == {"name": widget} and entry["type"] == "STRING" and entry["link"] is not None
        assert links[entry["link"]] == [entry["link"], report["id"], out_slot, transfer["id"], slot, "STRING"]
        assert entry["link"] in report["outputs"][out_slot]["links"]


def _upstream(api, nid):
    """Class types of every node that ``nid`` depends on (itself included)."""
    seen, todo = set(), [nid]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo += [v[0] for v in api[current]["inputs"].values() if isinstance(v, list) and len(v) == 2]
    return {api[n]["class_type"] for n in seen}


@pytest.mark.parametrize("name", AB_BASES)
def test_ab_workflow_is_its_template_plus_a_baseline_pass(name, object_info):
    """Every node of the base template is kept with its settings; the baseline pass repeats the Focal
    Guidance pass's sampling and decode nodes with the same widget values but the unpatched model; Image
    Stitch puts the baseline left (image1) and the Focal Guidance pass right (image2); a Semantic Layer Probe
    chained after the transfer feeds the Report."""
    ab, base = load(name), load(AB_BASES[name])
    ab_nodes = {n["id"]: n for n in ab["nodes"]}
    for node in base["nodes"]:
        if node["type"] in ("MarkdownNote", "SaveVideo", "SaveAnimatedWEBP"):
            continue
        assert ab_nodes[node["id"]]["type"] == node["type"]
        assert ab_nodes[node["id"]]["widgets_values"] == node["widgets_values"], (name, node["id"], node["type"])
    pairs = {}
    for node in ab["nodes"]:
        for side in ("baseline", "Focal Guidance"):
            if (node.get("title") or "").endswith(f" · {side}"):
                pairs.setdefault(node["title"].rsplit(" · ", 1)[0], {})[side] = node
    assert pairs and all(len(p) == 2 for p in pairs.values()), pairs
    for pair in pairs.values():
        assert pair["baseline"]["type"] == pair["Focal Guidance"]["type"]
        assert pair["baseline"]["widgets_values"] == pair["Focal Guidance"]["widgets_values"]

    api = to_api(ab, object_info)
    (stitch,) = [n for n in api.values() if n["class_type"] == "ImageStitch"]
    assert "FocalAttentionTransfer" not in _upstream(api, stitch["inputs"]["image1"][0])
    assert "FocalAttentionTransfer" in _upstream(api, stitch["inputs"]["image2"][0])
    assert (stitch["inputs"]["direction"], stitch["inputs"]["spacing_width"]) == ("right", AB_SPACING)
    (report,) = [n for n in api.values() if n["class_type"] == "FocalSemanticLayerReport"]
    probe = api[report["inputs"]["probe"][0]]
    assert probe["class_type"] == "FocalSemanticLayerProbe" and report["inputs"]["probe"][1] == 1
    assert api[probe["inputs"]["model"][0]]["class_type"] == "FocalAttentionTransfer"


# ---- conversion (comfy-cli) and the host's validation -----------------------------------------
@pytest.mark.parametrize("name", WORKFLOWS)
def test_template_converts_every_executable_node(name, object_info):
    wf = load(name)
    api = to_api(wf, object_info)
    assert set(api) == {str(n["id"]) for n in wf["nodes"] if n["type"] not in ("MarkdownNote", "Note")}
    assert {n["class_type"] for n in api.values()} >= REQUIRED_TYPES[name]
    for nid, node in api.items():          # every required input is given, with a value or a link
        spec = object_info[node["class_type"]]
        assert set(spec["input"].get("required", {})) <= set(node["inputs"]), (nid, node)


@pytest.mark.parametrize("name", WORKFLOWS)
def test_unmodified_template_passes_the_hosts_validation(name, workflow_server, object_info):
    """/prompt validates the whole graph before it queues it (file names, combo values, ranges, link
    types); the run then stops at the first loader whose file is an empty placeholder, or a narrow tiny
    VAE that the stock VAELoader builds at full width."""
    api = to_api(load(name), object_info)
    with pytest.raises(ExecutionFailed) as failure:
        workflow_server.run(api, timeout=RUN_TIMEOUT)
    failed = api[failure.value.error["node_id"]]
    unloadable = {rel.rsplit("/", 1)[1] for rel in PLACEHOLDERS} | fixture.NARROW_VAES
    assert {v for v in failed["inputs"].values() if isinstance(v, str)} & unloadable, failure.value.error


def test_probe_api_graph_feeds_report_strings_to_the_transfer(object_info):
    api = to_api(load("focal_guidance_probe"), object_info)
    (report,) = [k for k, n in api.items() if n["class_type"] == "FocalSemanticLayerReport"]
    (transfer,) = [n for n in api.values() if n["class_type"] == "FocalAttentionTransfer"]
    assert transfer["inputs"]["weak_blocks"] == [report, 2]
    assert transfer["inputs"]["source_blocks"] == [report, 3]


def test_a_node_comfy_cli_cannot_convert_stops_the_conversion(object_info):
    """comfy-cli logs such a node and leaves it out of the graph; to_api refuses instead."""
    wf = load("wan2.1_i2v_480p_focal_guidance")
    (sampler,) = nodes_of(wf, "KSampler")
    sampler["inputs"] = 7
    with pytest.raises(ConversionError, match=f"Failed to convert node id={sampler['id']} type=KSampler"):
        to_api(wf, object_info)


# ---- end to end through /prompt ---------------------------------------------------------------
def family_of(api):
    return "hunyuan_video" if any(n["class_type"] == "DualCLIPLoader" for n in api.values()) else "wan"


def executable(name, object_info, **anchor):
    """The template as an API graph with the test substitutions of the module docstring. A transfer whose
    auto_report feeds a Report stays in auto mode, with the Report's tiny-model rules."""
    api = to_api(load(name), object_info)
    family = family_of(api)
    api, notes = fixture.substitute_standins(api, clip_standin=WORD_CLIP)
    reported = {n["inputs"]["probe"][0] for n in api.values() if n["class_type"] == "FocalSemanticLayerReport"}
    for nid, node in api.items():
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "FocalAttentionTransfer" and nid in reported:
            inputs.update(auto_kappa=TINY_REPORT["kappa"], auto_top_r=TINY_REPORT["top_r"],
                          auto_exclude_ends=TINY_REPORT["exclude_ends"])
        elif kind == "FocalAttentionTransfer" and not isinstance(inputs["weak_blocks"], list) \
                and inputs["weak_blocks"] != "middle":
            inputs["weak_blocks"], inputs["source_blocks"] = TINY_BLOCKS[family]
        elif kind == "FocalSemanticLayerReport":
            inputs.update(TINY_REPORT)
        elif kind == "VAELoader" and inputs["vae_name"] == HUNYUAN_VAE:
            inputs["vae_name"] = tiny.WAN_VAE
        elif kind == "FocalRegionAnchor":
            inputs.update(anchor)
    fixture.shrink(api, width=WIDTH, height=HEIGHT, length=LENGTH, steps=STEPS)
    classes = {n["class_type"] for n in api.values()}
    assert not classes & {"CLIPLoader", "DualCLIPLoader", "CLIPVisionLoader", "CLIPTextEncode", "CLIPVisionEncode",
                          "TextEncodeHunyuanVideo_ImageToVideo"}, classes
    return api, notes


def video_frames(path):
    import av
    import numpy as np
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def webp_frames(path):
    import numpy as np
    from PIL import Image, ImageSequence
    with Image.open(path) as webp:
        return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(webp)])


def check_outputs(server, object_info, api, entry):
    """Every output node has outputs in /history and every file they name exists (the Report's are UI
    data only); returns {node id: [paths]}."""
    paths = server.output_paths(entry)
    for nid, node in api.items():
        if object_info[node["class_type"]].get("output_node"):
            assert nid in entry["outputs"], f"output node {nid} {node['class_type']} left nothing in /history"
            for path in paths.get(nid, []):
                assert path.is_file() and path.stat().st_size > 0, path
    return paths


def anchor_summary(api, entry):
    (anchor,) = [k for k, n in api.items() if n["class_type"] == "FocalRegionAnchor"]
    return entry["outputs"][anchor]["text"][0]


@pytest.mark.parametrize("name", WORKFLOWS)
def test_template_runs_end_to_end(name, workflow_server, object_info, artifacts_dir):
    api, notes = executable(name, object_info)
    began = time.monotonic()
    entry = workflow_server.run(api, timeout=RUN_TIMEOUT)
    seconds = time.monotonic() - began
    assert entry["status"]["status_str"] == "success"
    paths = check_outputs(workflow_server, object_info, api, entry)
    print(f"{name}: ran in {seconds:.1f} s on CPU; substitutions: {notes}")

    saves = {k: n for k, n in api.items() if n["class_type"] in ("SaveVideo", "SaveAnimatedWEBP")}
    assert saves
    width = 2 * WIDTH + AB_SPACING if name in AB_BASES else WIDTH
    for nid, node in saves.items():
        (path,) = paths[nid]
        shutil.copy(path, artifacts_dir / f"workflow_{name}_{path.name}")
        if node["class_type"] == "SaveVideo":
            frames = video_frames(path)
            assert frames.shape == (LENGTH, HEIGHT, width, 3), frames.shape
        else:                                   # HunyuanVideo: Image From Batch drops the first 4 frames
            frames = webp_frames(path)
            assert frames.shape == (LENGTH - 4, HEIGHT, width, 3), frames.shape
    if name in AB_BASES:
        (frames,) = [video_frames(paths[k][0]) if n["class_type"] == "SaveVideo" else webp_frames(paths[k][0])
                     for k, n in saves.items()]
        baseline, focal = frames[:, :, :WIDTH].astype(int), frames[:, :, WIDTH + AB_SPACING:].astype(int)
        assert abs(baseline - focal).max() > 0, "the Focal Guidance half equals the baseline half"
        (report,) = [k for k, n in api.items() if n["class_type"] == "FocalSemanticLayerReport"]
        panel = entry["outputs"][report]["focal_probe"][0]
        assert panel["weak_blocks"], f"the Report found no weak block on the tiny model: {panel}"
    if name != "focal_guidance_probe":
        summary = anchor_summary(api, entry)
        assert "mode 'model attention (fallback)'" in summary and "tokens [" in summary, summary
        return

    (report,) = [k for k, n in api.items() if n["class_type"] == "FocalSemanticLayerReport"]
    panel = entry["outputs"][report]["focal_probe"][0]
    assert panel["weak_blocks"] and panel["responsive_blocks"], panel
    assert not set(re.findall(r"\d+", panel["weak_blocks"])) & set(re.findall(r"\d+", panel["responsive_blocks"]))
    from PIL import Image
    for slot, prefix in ((0, "curve"), (1, "heatmaps")):
        (saver,) = [k for k, n in api.items()
                    if n["class_type"] == "SaveImage" and n["inputs"]["images"] == [report, slot]]
        (path,) = paths[saver]
        assert path.name.startswith(prefix)
        with Image.open(path) as img:
            assert img.size[0] >= 400 and img.size[1] >= 40, img.size
    by_prefix = {n["inputs"]["filename_prefix"]: paths[k][0] for k, n in saves.items()}
    baseline, focal = video_frames(by_prefix["focal_probe/baseline"]), video_frames(by_prefix["focal_probe/focal"])
    assert abs(baseline.astype(int) - focal.astype(int)).max() > 0, "the transfer pass equals the baseline pass"


def test_wan21_mask_only_mode_uses_the_painted_region_with_the_image_crop(workflow_server, object_info):
    """Region Anchor in 'mask only' with a painted start image (alpha = 0 on x 16..63 of 128x64): the
    template scales and centre-crops the mask with the image, so the region is the left half (50 %)."""
    api, _ = executable("wan2.1_i2v_480p_focal_guidance", object_info, mode="mask only")
    (loader,) = [n for n in api.values() if n["class_type"] == "LoadImage"]
    loader["inputs"]["image"] = MASKED_IMAGE
    entry = workflow_server.run(api, timeout=RUN_TIMEOUT)
    assert entry["status"]["status_str"] == "success"
    check_outputs(workflow_server, object_info, api, entry)
    summary = anchor_summary(api, entry)
    areas = [int(a) for a in re.findall(r"area (\d+)%", summary)]
    assert "mode 'mask only'" in summary and areas, summary
    assert all(45 <= a <= 55 for a in areas), f"expected the left half (a stretched mask gives 38 %): {summary}"


def test_templates_are_served_for_browse_templates(workflow_server):
    listed = workflow_server.get("/workflow_templates")
    assert sorted(listed.get(PACK_NAME, [])) == sorted(WORKFLOWS), listed
    for name in WORKFLOWS:
        served = workflow_server.get(f"/api/workflow_templates/{PACK_NAME}/{name}.json")
        served = json.loads(served) if isinstance(served, bytes) else served
        assert served == load(name)
        thumb = workflow_server.get(f"/api/workflow_templates/{PACK_NAME}/{name}.jpg")
        assert thumb == (EXAMPLES / f"{name}.jpg").read_bytes()


# ---- the host's official Wan2.2 I2V template: a subgraph ----------------------------------------
@functools.cache
def _official_wan22():
    """(name, workflow) of the newest official Wan2.2 I2V template made of one subgraph in the host venv's
    comfyui-workflow-templates, or a skip."""
    try:
        import comfyui_workflow_templates as templates
    except ImportError as err:
        pytest.skip(f"this host's venv lacks comfyui-workflow-templates: {err!r}")
    for name in OFFICIAL_WAN22_NAMES:
        try:
            path = pathlib.Path(templates.get_asset_path(name, f"{name}.json"))
        except KeyError:
            continue
        workflow = json.loads(path.read_text(encoding="utf-8"))
        if len(workflow.get("definitions", {}).get("subgraphs", [])) == 1:
            return name, workflow
    pytest.skip(f"this host's venv has no official template {OFFICIAL_WAN22_NAMES} made of one subgraph")


def official_wan22_name():
    return _official_wan22()[0]


def official_wan22_template():
    return copy.deepcopy(_official_wan22()[1])


def with_focal_transfer(workflow):
    """(workflow, ids): a copy of the shipped Wan2.2 template's Focal Attention Transfer (blocks for the
    tiny model) spliced into the model input of each KSamplerAdvanced inside the subgraph."""
    workflow = copy.deepcopy(workflow)
    (subgraph,) = workflow["definitions"]["subgraphs"]
    state = subgraph["state"]
    (shipped, *_) = nodes_of(load("wan2.2_i2v_a14b_focal_guidance"), "FocalAttentionTransfer")
    links = {link["id"]: link for link in subgraph["links"]}
    added = []
    for sampler in nodes_of(subgraph, "KSamplerAdvanced"):
        slot = next(i for i, inp in enumerate(sampler["inputs"]) if inp["name"] == "model")
        into_sampler = links[sampler["inputs"][slot]["link"]]
        node_id = max(state["lastNodeId"], workflow["last_node_id"]) + 1
        link_id = max(state["lastLinkId"], workflow["last_link_id"]) + 1
        state["lastNodeId"] = workflow["last_node_id"] = node_id
        state["lastLinkId"] = workflow["last_link_id"] = link_id
        node = copy.deepcopy(shipped)
        node.update(id=node_id, pos=[sampler["pos"][0], sampler["pos"][1] - 380], title="Focal Attention Transfer")
        for inp in node["inputs"]:
            inp["link"] = into_sampler["id"] if inp["name"] == "model" else None
        for out in node["outputs"]:
            out["links"] = [link_id] if out["name"] == "MODEL" else None
        node["widgets_values"][:3] = [*TINY_BLOCKS["wan"], 0.3]   # no anchor here: the Attention Cache acts
        into_sampler.update(target_id=node_id, target_slot=0)
        subgraph["links"].append({"id": link_id, "origin_id": node_id, "origin_slot": 0, "target_id": sampler["id"],
                                  "target_slot": slot, "type": "MODEL"})
        sampler["inputs"][slot]["link"] = link_id
        subgraph["nodes"].append(node)
        added.append(node_id)
    return workflow, added


def test_official_wan22_subgraph_template_with_focal_transfer_converts_and_runs(workflow_server, object_info,
                                                                               artifacts_dir):
    official = official_wan22_template()
    workflow, added = with_focal_transfer(official)
    (instance,) = [n for n in workflow["nodes"] if n["type"] == workflow["definitions"]["subgraphs"][0]["id"]]
    api = to_api(workflow, object_info)
    transfers = {k for k, n in api.items() if n["class_type"] == "FocalAttentionTransfer"}
    assert transfers == {f"{instance['id']}:{nid}" for nid in added}, sorted(api)
    samplers = [n for n in api.values() if n["class_type"] == "KSamplerAdvanced"]
    assert sorted(s["inputs"]["model"][0] for s in samplers) == sorted(transfers)
    for nid in transfers:
        inputs = api[nid]["inputs"]
        assert (inputs["weak_blocks"], inputs["source_blocks"]) == TINY_BLOCKS["wan"]
        assert api[inputs["model"][0]]["class_type"] == "ModelSamplingSD3"
    texts = [n["inputs"]["text"] for n in api.values() if n["class_type"] == "CLIPTextEncode"]
    assert instance["widgets_values"][0] in texts, "the prompt promoted onto the subgraph node was lost"

    make_input_image(workflow_server.input_dir / start_image_name(official), WIDTH, HEIGHT)
    outputs = {}
    for label, graph in (("focal", api), ("official", to_api(official, object_info))):
        graph, _ = fixture.substitute_standins(graph)
        fixture.shrink(graph, width=WIDTH, height=HEIGHT, length=LENGTH, steps=STEPS)
        entry = workflow_server.run(graph, timeout=RUN_TIMEOUT)
        paths = check_outputs(workflow_server, object_info, graph, entry)
        (save,) = [k for k, n in graph.items() if n["class_type"] == "SaveVideo"]
        (outputs[label],) = paths[save]
    shutil.copy(outputs["focal"], artifacts_dir / f"workflow_{official_wan22_name()}_focal{outputs['focal'].suffix}")
    focal, plain = video_frames(outputs["focal"]), video_frames(outputs["official"])
    assert focal.shape == plain.shape == (LENGTH, HEIGHT, WIDTH, 3), (focal.shape, plain.shape)
    assert abs(focal.astype(int) - plain.astype(int)).max() > 0, "the spliced transfers left the video unchanged"


# ---- the real frontend: load -> save round trip, and its own API conversion -------------------
@pytest.fixture(scope="module")
def frontend(workflow_server):
    """Headless Chromium on the real frontend of the workflow server (test_browser.py's helpers)."""
    from test_browser import APP, CHROMIUM, CHROMIUM_ARGS, REQUIRE_BROWSER, VIEWPORT
    if CHROMIUM is None:
        if REQUIRE_BROWSER:
            pytest.fail("FOCAL_REQUIRE_BROWSER is set but no chromium was found: apt-get install -y chromium")
        pytest.skip("no chromium on PATH (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the Python package 'playwright' is missing: pip install -r requirements-test.txt")
    # No first-run template dialog in this throwaway user folder.
    request = urllib.request.Request(f"{workflow_server.url}/settings/Comfy.TutorialCompleted",
                                     data=b"true", method="POST")
    urllib.request.urlopen(request, timeout=30).close()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
            local = workflow_server.url
            page.route("**/*",
                       lambda route: route.continue_() if route.request.url.startswith(local) else route.abort())
            page.problems = []
            page.on("pageerror", lambda err: page.problems.append(f"pageerror: {err}"))
            page.goto(local + "/", wait_until="domcontentloaded")
            # ready once the startup workflow is shown: newer frontends load it asynchronously, and it
            # would replace a graph loaded before it
            page.wait_for_function(f"""() => {{ const app = {APP};
                return !!(app && app.isGraphReady !== false && app.graph?.nodes?.length && app.canvas
                          && window.LiteGraph?.registered_node_types?.FocalAttentionTransfer); }}""", timeout=90_000)
            page.app = APP
            yield page
        finally:
            browser.close()


ROUND_TRIP = """async ([url, name]) => {
    const app = %s;
    const workflow = await (await fetch(url)).json();      // what Browse Templates fetches
    await app.loadGraphData(workflow, true, true, name);
    const first = JSON.parse(JSON.stringify(app.graph.serialize()));    // what Save writes
    const prompt = await app.graphToPrompt();
    await app.loadGraphData(JSON.parse(JSON.stringify(first)), true, true, name);
    const second = JSON.parse(JSON.stringify(app.graph.serialize()));
    return {first, second, api: prompt.output};
}"""


def _essence(workflow):
    """What a round trip must keep: per node type, mode, title, widget values, linked inputs; links.
    A node without widgets saves its values as [] or, with newer frontends (ComfyUI 0.33's), null."""
    nodes = {n["id"]: (n["type"], n.get("mode", 0), n.get("title"), n.get("widgets_values") or [],
                       sorted((i["name"], i["link"]) for i in n.get("inputs") or [] if i.get("link") is not None))
             for n in workflow["nodes"]}
    return nodes, sorted(tuple(link[:6]) for link in workflow["links"])


def _keeps(node, saved):
    """``saved`` is ``node`` after a round trip: a newer host may append widgets (with their defaults) to
    a stock node, e.g. ComfyUI 0.33's CreateVideo; every value the template set stays."""
    if saved is None:
        return False
    values, saved_values = node[3], saved[3]
    if isinstance(values, list) and isinstance(saved_values, list):
        saved_values = saved_values[:len(values)]
    return node[:3] + node[4:] == saved[:3] + saved[4:] and values == saved_values


DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"


def _static_inputs(inputs, class_type, object_info):
    """``inputs`` without a newer host's dynamic combos (ComfyUI 0.33's SaveVideo format/codec) and the
    nested keys the frontend writes for them. comfy-cli 1.23.0 predates them and maps the saved values
    by position, while frontend 1.49 re-reads an older template's values on its own terms, so the two
    conversions differ there by design; the host's validation and the runs check those nodes instead."""
    declared = object_info[class_type]["input"]
    dynamic = {n for section in ("required", "optional") for n, spec in declared.get(section, {}).items()
               if spec[0] == DYNAMIC_COMBO}
    return {k: v for k, v in inputs.items() if k.split(".")[0] not in dynamic}


def assert_same_api(theirs, ours, name, object_info):
    assert sorted(theirs) == sorted(ours), name
    for nid in ours:
        class_type = ours[nid]["class_type"]
        assert theirs[nid]["class_type"] == class_type, f"{name} node {nid}"
        assert _static_inputs(theirs[nid]["inputs"], class_type, object_info) == \
            _static_inputs(ours[nid]["inputs"], class_type, object_info), f"{name} node {nid}"


@pytest.mark.parametrize("name", WORKFLOWS)
def test_frontend_round_trip_keeps_widget_values_and_matches_its_api(name, frontend, workflow_server, object_info):
    url = f"{workflow_server.url}/api/workflow_templates/{PACK_NAME}/{name}.json"
    result = frontend.evaluate(ROUND_TRIP % frontend.app, [url, name])
    original = load(name)
    nodes, links = _essence(original)
    saved_nodes, saved_links = _essence(result["first"])
    for nid, node in nodes.items():
        assert _keeps(node, saved_nodes.get(nid)), f"{name}: node {nid} changed on load -> save:\n{node}\n" \
                                                   f"{saved_nodes.get(nid)}"
    assert saved_links == links
    assert _essence(result["second"]) == (saved_nodes, saved_links), "a second load -> save changed the workflow"

    # The frontend's own UI -> API conversion agrees with comfy-cli's.
    assert_same_api(result["api"], to_api(original, object_info), name, object_info)
    ours_problems = [p for p in frontend.problems if "Focal" in p or "focal" in p]
    assert not ours_problems, ours_problems


SHOW_GROUPS = """async ([url, name, titles, margins]) => {
    const app = %s;
    await app.extensionManager?.setting?.set?.("Comfy.Minimap.Visible", false);
    const workflow = await (await fetch(url)).json();
    await app.loadGraphData(workflow, true, true, name);
    const boxes = workflow.groups.filter(g => titles.includes(g.title)).map(g => g.bounding);
    const left = Math.min(...boxes.map(b => b[0])), top = Math.min(...boxes.map(b => b[1]));
    const right = Math.max(...boxes.map(b => b[0] + b[2])), bottom = Math.max(...boxes.map(b => b[1] + b[3]));
    // The page's menus lie over the canvas's left and top edges: the groups go below and right of them.
    const [l, t, r, b] = margins, canvas = app.canvas.canvas.getBoundingClientRect(), ds = app.canvas.ds;
    ds.scale = Math.min((canvas.width - l - r) / (right - left), (canvas.height - t - b) / (bottom - top));
    ds.offset = [l / ds.scale - left, t / ds.scale - top];
    app.canvas.setDirty(true, true);
    await new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)));
    const missing = app.graph._nodes.filter(n => !window.LiteGraph.registered_node_types[n.type]).map(n => n.type);
    const pad = 12;
    return {clip: {x: canvas.left + l - pad, y: canvas.top + t - pad,
                   width: Math.ceil((right - left) * ds.scale + 2 * pad),
                   height: Math.ceil((bottom - top) * ds.scale + 2 * pad)},
            nodes: app.graph._nodes.length, missing};
}"""
SCREENSHOT_VIEWPORT = {"width": 1800, "height": 1100}
SCREENSHOT_MARGINS = [80, 140, 30, 90]   # left, top, right, bottom: page pixels the menus may cover
SCREENSHOT_GROUPS = ["Focal Guidance", "Sample and save", "Baseline: same seed, no Focal Guidance", "Report"]


def test_ab_workflow_screenshot(frontend, workflow_server, artifacts_dir):
    """The README's picture of an A/B workflow on the real canvas (tests/e2e/readme_pictures.py): every node
    type is registered in the frontend, and the picture shows the Focal Guidance, sampling and Report groups."""
    import readme_pictures
    from test_browser import VIEWPORT
    name = "wan2.1_i2v_480p_focal_guidance_ab"
    url = f"{workflow_server.url}/api/workflow_templates/{PACK_NAME}/{name}.json"
    frontend.set_viewport_size(SCREENSHOT_VIEWPORT)
    try:
        shown = frontend.evaluate(SHOW_GROUPS % frontend.app, [url, name, SCREENSHOT_GROUPS, SCREENSHOT_MARGINS])
        assert shown["nodes"] == len(load(name)["nodes"]) and not shown["missing"], shown
        picture = artifacts_dir / "workflow_ab_on_canvas.png"
        frontend.screenshot(path=str(picture), clip=shown["clip"])
    finally:
        frontend.set_viewport_size(VIEWPORT)
    readme_pictures.publish(picture.name, picture,
                            made_by="tests/e2e/test_workflows.py::test_ab_workflow_screenshot")


TO_PROMPT = """async ([workflow, name]) => {
    const app = %s;
    await app.loadGraphData(workflow, true, true, name);
    return (await app.graphToPrompt()).output;
}"""


def test_frontend_converts_the_subgraph_template_as_comfy_cli_does(frontend, object_info):
    workflow, _ = with_focal_transfer(official_wan22_template())
    theirs = frontend.evaluate(TO_PROMPT % frontend.app, [workflow, official_wan22_name()])
    assert_same_api(theirs, to_api(workflow, object_info), official_wan22_name(), object_info)


# ---- the test fixture's own edits ------------------------------------------------------------
def test_substitute_standins_and_shrink():
    api = {
        "1": {"class_type": "CLIPLoader",
              "inputs": {"clip_name": "umt5.safetensors", "type": "wan", "device": "default"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 0], "text": ["9", 0]}},
        "3": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "v.safetensors"}},
        "4": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["3", 0], "image": ["5", 0], "crop": "none"}},
        "6": {"class_type": "FocalRegionAnchor", "inputs": {"text_encoder": ["1", 0]}},
        "7": {"class_type": "KSamplerAdvanced", "inputs": {"steps": 20, "start_at_step": 10, "end_at_step": 10000}},
        "8": {"class_type": "WanImageToVideo", "inputs": {"width": ["10", 0], "height": 480, "length": 81}},
    }
    with pytest.raises(ValueError, match="still used by"):
        fixture.substitute_standins(api)
    out, notes = fixture.substitute_standins(api, clip_standin=WORD_CLIP)
    assert out["2"]["class_type"] == "FocalStandInTextEncode" and out["2"]["inputs"]["text"] == ["9", 0]
    assert out["2"]["inputs"]["family"] == "wan"
    assert out["4"] == {"class_type": "FocalStandInClipVision", "inputs": {"image": ["5", 0]},
                        "_meta": {"title": "CLIPVisionEncode [stand-in]"}}
    assert "3" not in out and out["1"]["class_type"] == WORD_CLIP and out["1"]["inputs"] == {"family": "wan"}
    assert api["2"]["class_type"] == "CLIPTextEncode", "the input graph is not modified"
    fixture.shrink(out, width=96, height=64, length=9, steps=4)
    assert out["7"]["inputs"] == {"steps": 4, "start_at_step": 2, "end_at_step": 10000}
    assert out["8"]["inputs"] == {"width": ["10", 0], "height": 64, "length": 9}
    assert len(notes) == 4


if os.environ.get("FOCAL_PRINT_WORKFLOW_API"):      # debugging aid: dump the executed API graphs
    def test_print_executable_graphs(object_info):
        for name in WORKFLOWS:
            print(name, json.dumps(executable(name, object_info)[0], indent=1))

