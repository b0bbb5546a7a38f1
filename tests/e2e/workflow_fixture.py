"""TEST-ONLY edits that let a converted workflow (scripts/workflow_api.to_api) run on a CPU test host.

The stock text and vision encoders have fixed multi-GB configs, so ``substitute_standins`` swaps their
encode nodes for the stand-ins of tests/standin_nodes, and ``shrink`` makes sizes and steps small.
Never part of a user's workflow.

A new workflow whose loaders or encoders are not in the swap table below: add its node types there.
"""
import copy
import zlib

# ---- the swap table -----------------------------------------------------------------------------
STANDIN_TEXT = "FocalStandInTextEncode"
STANDIN_VISION = "FocalStandInClipVision"
STANDIN_VAE = "FocalStandInVAELoader"
TEXT_ENCODE_NODES = {"CLIPTextEncode": "text", "TextEncodeHunyuanVideo_ImageToVideo": "prompt"}  # type: text input
VISION_ENCODE_NODES = {"CLIPVisionEncode": "image"}                                              # type: image input
CLIP_LOADERS = {"CLIPLoader", "DualCLIPLoader"}
VISION_LOADERS = {"CLIPVisionLoader"}
FAMILIES = {"wan": "wan", "hunyuan_video": "hunyuan_video",  # a CLIP loader's ``type``: the stand-in's family
            "hunyuan_video_15": "hunyuan_video_15"}
VISION_STANDINS = {"sigclip_vision_patch14_384.safetensors": "FocalStandInSigLIPVision"}  # else STANDIN_VISION
# The narrow tiny VAEs of scripts/make_tiny_models.py that the stock VAELoader cannot build (it fixes
# their full widths); STANDIN_VAE loads them through the host's own detection.
NARROW_VAES = {"wan2.2_vae.safetensors", "hunyuanvideo15_vae_fp16.safetensors"}


def _refs(api):
    """{node id: [(consumer id, input name)]} for every link in an API graph."""
    refs = {}
    for nid, node in api.items():
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                refs.setdefault(value[0], []).append((nid, name))
    return refs


def clip_family(api, loader_id):
    loader = api[loader_id]
    family = FAMILIES.get(loader["inputs"].get("type"))
    if loader["class_type"] not in CLIP_LOADERS or family is None:
        raise ValueError(f"node {loader_id} {loader['class_type']} type {loader['inputs'].get('type')!r}: no "
                         f"stand-in text encoder for it (families: {sorted(FAMILIES)}); extend "
                         "tests/e2e/workflow_fixture.py's swap table")
    return family


def _title(node, kind):
    return f"{node.get('_meta', {}).get('title', kind)} [stand-in]"


def substitute_standins(api, clip_standin=None):
    """(new API graph, notes): text/vision encode nodes replaced by the stand-ins.

    Text encoders become FocalStandInTextEncode (family from the CLIP loader's type, the same text or
    text link, seed crc32 of the node id so positive and negative differ); vision encoders become
    FocalStandInClipVision (FocalStandInSigLIPVision for SigLIP); the narrow Wan2.2 / HunyuanVideo 1.5
    VAEs load with FocalStandInVAELoader. A CLIP loader still used elsewhere (Region Anchor's
    ``text_encoder``) becomes ``clip_standin`` when given, else it is an error. Loaders nobody uses any
    more go.
    """
    api = copy.deepcopy(api)
    notes = []
    for nid, node in list(api.items()):
        kind = node["class_type"]
        if kind in TEXT_ENCODE_NODES:
            family = clip_family(api, node["inputs"]["clip"][0])
            api[nid] = {"class_type": STANDIN_TEXT, "_meta": {"title": _title(node, kind)}, "inputs": {
                "family": family, "text": node["inputs"].get(TEXT_ENCODE_NODES[kind], ""),
                "seed": zlib.crc32(nid.encode()) & 0xFFFFFFFF}}
            notes.append(f"{nid} {kind} -> {STANDIN_TEXT} ({family})")
        elif kind in VISION_ENCODE_NODES:
            loader = api[node["inputs"]["clip_vision"][0]]
            standin = VISION_STANDINS.get(loader["inputs"].get("clip_name"), STANDIN_VISION)
            api[nid] = {"class_type": standin, "_meta": {"title": _title(node, kind)},
                        "inputs": {"image": node["inputs"][VISION_ENCODE_NODES[kind]]}}
            notes.append(f"{nid} {kind} -> {standin}")
        elif kind == "VAELoader" and node["inputs"]["vae_name"] in NARROW_VAES:
            api[nid] = {"class_type": STANDIN_VAE, "_meta": {"title": _title(node, kind)},
                        "inputs": dict(node["inputs"])}
            notes.append(f"{nid} {kind} -> {STANDIN_VAE} ({node['inputs']['vae_name']})")
    refs = _refs(api)
    for nid, node in list(api.items()):
        kind = node["class_type"]
        if kind not in CLIP_LOADERS | VISION_LOADERS:
            continue
        users = refs.get(nid, [])
        if not users:
            del api[nid]
            notes.append(f"{nid} {kind} removed (unused after substitution)")
        elif kind in CLIP_LOADERS and clip_standin:
            family = clip_family(api, nid)
            api[nid] = {"class_type": clip_standin, "inputs": {"family": family},
                        "_meta": {"title": _title(node, kind)}}
            notes.append(f"{nid} {kind} -> {clip_standin} ({family}) for {users}")
        else:
            raise ValueError(f"node {nid} {kind} is still used by {users} after substitution and has no stand-in")
    return api, notes


# Nodes that only compute a constant from widgets (the official Wan2.2 template of ComfyUI 0.33 sets its
# length, steps and step split through them): an input linked to one is a setting, shrunk like a literal.
CONSTANT_SOURCES = {"PrimitiveInt", "PrimitiveFloat", "PrimitiveBoolean", "ComfySwitchNode", "ComfyMathExpression"}


def _setting(api, value):
    """(is_setting, literal): a literal, or a link to a constant-computing node with its value where it
    resolves through primitives and switches (None for an expression)."""
    if not isinstance(value, list):
        return True, value
    node = api.get(value[0])
    if node is None or node["class_type"] not in CONSTANT_SOURCES:
        return False, None
    inputs = node["inputs"]
    if node["class_type"].startswith("Primitive"):
        return True, _setting(api, inputs.get("value"))[1]
    if node["class_type"] == "ComfySwitchNode":
        switch = _setting(api, inputs.get("switch"))[1]
        return True, None if switch is None else _setting(api, inputs.get("on_true" if switch else "on_false"))[1]
    return True, None


def shrink(api, width=None, height=None, length=None, steps=None):
    """Set width/height/length values and sampler steps (in place; returns ``api``).

    Sizes computed by other nodes (an image's size) follow their source; literal ones and those set
    through primitives, switches or expressions (CONSTANT_SOURCES) are replaced by the literal.
    KSamplerAdvanced step ranges are scaled to the new step count, keeping 10000-style "to the end"
    values; BasicScheduler steps too.
    """
    sizes = {"width": width, "height": height, "length": length}
    for node in api.values():
        inputs = node["inputs"]
        for name, value in sizes.items():
            if value is not None and name in inputs and _setting(api, inputs[name])[0]:
                inputs[name] = value
        if steps is None or node["class_type"] not in ("KSampler", "KSamplerAdvanced", "BasicScheduler"):
            continue
        is_setting, old = _setting(api, inputs.get("steps"))
        if not is_setting or not isinstance(old, int):
            continue
        inputs["steps"] = steps
        for key in ("start_at_step", "end_at_step"):
            is_setting, at = _setting(api, inputs.get(key))
            if is_setting and isinstance(at, int) and at < old:
                inputs[key] = round(at * steps / old)
    return api
