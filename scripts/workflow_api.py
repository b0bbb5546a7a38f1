"""Convert a ComfyUI workflow from the frontend's UI format (what "Save" writes) to the API format
that ``POST /prompt`` takes, and validate it against a host's ``/object_info``.

Standard library only, so any Python 3.10+ can run it (scripts/comfy_server.py's rule too).

    from workflow_api import convert
    api, errors = convert(json.load(open("example_workflows/x.json")), server.object_info())

    python scripts/workflow_api.py example_workflows/x.json --server http://127.0.0.1:8188 [-o api.json]
    python scripts/workflow_api.py example_workflows/x.json --object-info object_info.json

Conversion rules (they mirror the frontend's ``graphToPrompt`` and widget constructors, frontend 1.32):

- A node's widgets are the inputs of its ``/object_info`` entry, ``required`` then ``optional`` (in
  ``input_order``), whose type is a widget type: a list or ``COMBO`` (combo), ``INT``, ``FLOAT``,
  ``STRING``, ``BOOLEAN``, unless ``forceInput`` is set. Every other type is a link-only socket.
- ``widgets_values`` holds one value per widget, in that order, plus the frontend-only values:
  an INT widget with ``control_after_generate`` (or, when the option is absent, one named ``seed`` or
  ``noise_seed``) is followed by its control value ("fixed", "randomize", ...); a combo with
  ``control_after_generate`` by the control value and a filter string; and one value per
  ``image_upload``/``video_upload``/``audio_upload``/``animated_image_upload`` input (the upload
  button) after the required widgets. Those values never reach the API graph. Values past the
  last widget (frontend-only widgets such as LoadAudio's player) are ignored. A dict
  ``widgets_values`` (some custom nodes) is read by widget name.
- A linked input becomes ``[source_node_id_str, source_slot]``; a link into a widget input (an input
  entry with ``"widget": {"name": ...}``) replaces that widget's value.
- Frontend-only nodes never reach the API graph: ``Note``, ``MarkdownNote`` and other nodes that
  ``/object_info`` lacks but that have no links (reported as errors when they do), ``Reroute``
  (followed to its source), ``PrimitiveNode`` (its value is the target widget's own value, which the
  frontend keeps in sync). Muted nodes (mode 2) are dropped; bypassed nodes (mode 4) are dropped
  and each of their outputs is wired to the input of the same type (the same slot first).
- Subgraphs (``definitions.subgraphs``) and group nodes are not supported and are reported.

Validation (``errors``, readable strings naming node id, type and title): node types exist; link
table and node slots agree; every required input is given; widget values are legal (combo value in
its options, numbers of the right kind inside [min, max], strings, booleans); a link's source output
type equals the input type, or either is ``*``; the graph has an output node.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import urllib.request
import zlib

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload")
SEED_NAMES = ("seed", "noise_seed")
MODE_NEVER, MODE_BYPASS = 2, 4
NOTE_TYPES = {"Note", "MarkdownNote"}
FRONTEND_ONLY = NOTE_TYPES | {"Reroute", "PrimitiveNode"}


class WorkflowError(ValueError):
    """Raised by :func:`to_api` with the list of problems in ``errors``."""

    def __init__(self, errors):
        super().__init__("invalid workflow:\n  " + "\n  ".join(errors))
        self.errors = list(errors)


# ---- object_info helpers ---------------------------------------------------------------------
def _ordered_inputs(spec, section):
    inputs = (spec.get("input") or {}).get(section) or {}
    order = (spec.get("input_order") or {}).get(section) or list(inputs)
    return [(name, inputs[name]) for name in order if name in inputs]


def _type_and_options(entry):
    if isinstance(entry, str):        # some hidden inputs are bare strings
        return entry, {}
    kind = entry[0]
    opts = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
    return kind, opts


def combo_options(kind, opts):
    return list(kind) if isinstance(kind, list) else list(opts.get("options") or [])


def is_widget(kind, opts) -> bool:
    if opts.get("forceInput"):
        return False
    return isinstance(kind, list) or kind in WIDGET_TYPES


def widget_layout(spec):
    """The node's widgets in ``widgets_values`` order: [(name, kind, opts, extra_values_after)].

    ``extra_values_after`` counts the frontend-only values that follow the widget's own value.
    Upload buttons are returned as (None, "UPLOAD", {}, 0) entries after the required widgets.
    """
    layout = []
    for section in ("required", "optional"):
        uploads = 0
        for name, entry in _ordered_inputs(spec, section):
            kind, opts = _type_and_options(entry)
            if not is_widget(kind, opts):
                continue
            combo = isinstance(kind, list) or kind == "COMBO"
            extra = 0
            control = opts.get("control_after_generate")
            if kind == "INT" and (control if control is not None else name in SEED_NAMES):
                extra = 1
            elif combo and control:
                extra = 2
            if isinstance(kind, list):
                opts = {**opts, "options": list(kind)}
            layout.append((name, "COMBO" if combo else kind, opts, extra))
            uploads += sum(1 for flag in UPLOAD_FLAGS if opts.get(flag))
        layout += [(None, "UPLOAD", {}, 0)] * uploads
    return layout


def input_spec(spec, name):
    """(kind, opts, required) of a named input, or None."""
    for section, required in (("required", True), ("optional", False)):
        entry = ((spec.get("input") or {}).get(section) or {}).get(name)
        if entry is not None:
            kind, opts = _type_and_options(entry)
            return kind, opts, required
    return None


# ---- the UI graph ----------------------------------------------------------------------------
def _links(workflow):
    """link id -> (from_node, from_slot, to_node, to_slot, type), for list and dict link forms."""
    out = {}
    for link in workflow.get("links") or []:
        if isinstance(link, dict):
            out[link["id"]] = (link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"],
                               link.get("type"))
        else:
            out[link[0]] = tuple(link[1:6])
    return out


def _label(node, object_info=None):
    title = node.get("title")
    if not title and object_info and node.get("type") in object_info:
        title = object_info[node["type"]].get("display_name")
    return f"node {node.get('id')} {node.get('type')}" + (f" ('{title}')" if title else "")


class _Graph:
    def __init__(self, workflow, object_info):
        self.info = object_info
        self.nodes = {n["id"]: n for n in workflow.get("nodes") or []}
        self.links = _links(workflow)
        self.errors = []

    def error(self, node, message):
        self.errors.append(f"{_label(node, self.info)}: {message}")

    def check_structure(self):
        for link_id, (src, src_slot, dst, dst_slot, _) in self.links.items():
            if src not in self.nodes or dst not in self.nodes:
                self.errors.append(f"link {link_id} joins missing node(s) {src} -> {dst}")
                continue
            inputs = self.nodes[dst].get("inputs") or []
            if dst_slot >= len(inputs) or inputs[dst_slot].get("link") != link_id:
                self.error(self.nodes[dst], f"input slot {dst_slot} does not hold link {link_id}")
            outputs = self.nodes[src].get("outputs") or []
            if src_slot >= len(outputs) or link_id not in (outputs[src_slot].get("links") or []):
                self.error(self.nodes[src], f"output slot {src_slot} does not list link {link_id}")
        for node in self.nodes.values():
            for inp in node.get("inputs") or []:
                if inp.get("link") is not None and inp["link"] not in self.links:
                    self.error(node, f"input '{inp.get('name')}' names link {inp['link']}, which the "
                                     "links table lacks")

    def source(self, link_id, seen=()):
        """(node, slot) feeding a link after Reroutes and bypassed nodes; ("primitive", node) for a
        PrimitiveNode; None when nothing feeds it (a muted node, an unconnected reroute)."""
        if link_id is None or link_id not in self.links:
            return None
        src, slot = self.links[link_id][:2]
        node = self.nodes.get(src)
        if node is None or src in seen:
            return None
        seen = (*seen, src)
        if node.get("type") == "Reroute":
            return self.source((node.get("inputs") or [{}])[0].get("link"), seen)
        if node.get("type") == "PrimitiveNode":
            return "primitive", node
        if node.get("mode") == MODE_NEVER:
            return None
        if node.get("mode") == MODE_BYPASS:
            return self.source(self._bypass_input(node, slot), seen)
        return node, slot

    @staticmethod
    def _bypass_input(node, slot):
        outputs, inputs = node.get("outputs") or [], node.get("inputs") or []
        kind = outputs[slot].get("type") if slot < len(outputs) else None
        if slot < len(inputs) and inputs[slot].get("type") == kind and inputs[slot].get("link") is not None:
            return inputs[slot]["link"]
        return next((i["link"] for i in inputs if i.get("type") == kind and i.get("link") is not None), None)


# ---- values ----------------------------------------------------------------------------------
def check_value(name, kind, opts, value):
    """A readable problem with a widget value, or None."""
    if kind == "COMBO" or isinstance(kind, list):
        options = combo_options(kind, opts)
        if opts.get("multiselect") and isinstance(value, list):
            bad = [v for v in value if v not in options]
            return f"'{name}' values {bad} are not among its options" if bad else None
        if value not in options:
            shown = options if len(options) <= 8 else options[:8] + ["..."]
            return f"'{name}' value {value!r} is not among its options {shown}"
        return None
    if kind == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                return f"'{name}' value {value!r} is not an integer"
    elif kind == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"'{name}' value {value!r} is not a number"
    elif kind == "STRING":
        return None if isinstance(value, str) else f"'{name}' value {value!r} is not a string"
    elif kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"'{name}' value {value!r} is not true/false"
    else:
        return None
    lo, hi = opts.get("min"), opts.get("max")
    if lo is not None and value < lo:
        return f"'{name}' value {value} is below its minimum {lo}"
    if hi is not None and value > hi:
        return f"'{name}' value {value} is above its maximum {hi}"
    return None


def types_match(output_type, input_type) -> bool:
    if output_type == "*" or input_type == "*":
        return True
    if isinstance(input_type, list):          # a legacy combo input
        input_type = "COMBO"
    outs = set(str(output_type).split(","))
    ins = set(str(input_type).split(","))
    return bool(outs & ins)


def _widget_values(graph, node, layout):
    """{widget name: value} from widgets_values, or None after reporting a length mismatch."""
    values = node.get("widgets_values")
    if values is None:
        values = []
    if isinstance(values, dict):
        return {name: values[name] for name, *_ in layout if name and name in values}
    expected = sum(1 + extra for *_, extra in layout)
    if len(values) < expected:      # more is fine: frontend-only widgets (e.g. LoadAudio's player) follow
        names = [name or "upload" for name, *_ in layout]
        graph.error(node, f"widgets_values has {len(values)} values but its widgets {names} (with control "
                          f"and upload values) need {expected}")
        return None
    out, i = {}, 0
    for name, kind, _, extra in layout:
        if name is not None:
            out[name] = values[i]
        i += 1 + extra
    return out


# ---- conversion ------------------------------------------------------------------------------
def convert(workflow, object_info):
    """(api_graph, errors): the API-format graph (node id str -> class_type, inputs, _meta) and a list
    of readable problems (empty when the workflow is valid against ``object_info``)."""
    graph = _Graph(workflow, object_info)
    if (workflow.get("definitions") or {}).get("subgraphs"):
        graph.errors.append("the workflow contains subgraphs, which this converter does not support")
    if (workflow.get("extra") or {}).get("groupNodes"):
        graph.errors.append("the workflow contains group nodes, which this converter does not support")
    graph.check_structure()
    api = {}
    for node in sorted(graph.nodes.values(), key=lambda n: (n.get("order", 0), n["id"])):
        kind = node.get("type")
        if node.get("mode") in (MODE_NEVER, MODE_BYPASS):
            continue
        if kind in FRONTEND_ONLY:
            continue
        spec = object_info.get(kind)
        if spec is None:
            linked = any(i.get("link") is not None for i in node.get("inputs") or []) or \
                any(o.get("links") for o in node.get("outputs") or [])
            if linked or not kind:
                graph.error(node, "this node type is not installed on the host (not in /object_info)")
            continue
        entry = _convert_node(graph, node, spec)
        if entry is not None:
            api[str(node["id"])] = entry
    if api and not any(object_info[e["class_type"]].get("output_node") for e in api.values()):
        graph.errors.append("the workflow has no output node (e.g. SaveImage, SaveVideo)")
    return api, graph.errors


def _convert_node(graph, node, spec):
    layout = widget_layout(spec)
    values = _widget_values(graph, node, layout)
    inputs = {}
    widget_names = {name for name, *_ in layout if name}
    linked = {}
    for inp in node.get("inputs") or []:
        name = (inp.get("widget") or {}).get("name") or inp.get("name")
        if inp.get("link") is None:
            continue
        linked[name] = graph.source(inp["link"])
    if values is not None:
        for name, kind, opts, _ in layout:
            if name is None or name not in values:
                continue
            if name in linked and linked[name] is not None and linked[name][0] != "primitive":
                continue          # the link wins over the widget value
            value = values[name]
            problem = check_value(name, kind, opts, value)
            if problem:
                graph.error(node, problem)
            inputs[name] = value
    for name, source in linked.items():
        found = input_spec(spec, name)
        if found is None:
            graph.error(node, f"has a link into '{name}', which the node does not declare")
            continue
        if source is None or source[0] == "primitive":
            continue
        src_node, slot = source
        src_spec = graph.info.get(src_node.get("type"))
        if src_spec is None:
            graph.error(src_node, "this node type is not installed on the host (not in /object_info)")
            continue
        outputs = src_spec.get("output") or []
        if slot >= len(outputs):
            graph.error(node, f"'{name}' is linked to output slot {slot} of {_label(src_node, graph.info)}, "
                              f"which has only {len(outputs)} outputs")
            continue
        kind = found[0]
        if not types_match(outputs[slot], kind):
            shown = "COMBO" if isinstance(kind, list) else kind
            graph.error(node, f"'{name}' expects {shown} but is linked to {outputs[slot]} output {slot} of "
                              f"{_label(src_node, graph.info)}")
        inputs[name] = [str(src_node["id"]), slot]
    for name, entry in _ordered_inputs(spec, "required"):
        if name not in inputs:
            kind, opts = _type_and_options(entry)
            what = "widget value" if is_widget(kind, opts) and name in widget_names else "link"
            graph.error(node, f"required input '{name}' is not given (no {what})")
    title = node.get("title") or spec.get("display_name") or node.get("type")
    return {"class_type": node["type"], "inputs": inputs, "_meta": {"title": title}}


def to_api(workflow, object_info):
    """The API graph, or WorkflowError listing every problem."""
    api, errors = convert(workflow, object_info)
    if errors:
        raise WorkflowError(errors)
    return api


def validate(workflow, object_info):
    """The list of problems (empty when valid)."""
    return convert(workflow, object_info)[1]


# ---- editing API graphs: test and demo helpers -----------------------------------------------
# The stock loaders for text encoders and CLIP vision have fixed multi-GB configs, so a CPU test or
# demo cannot load them. These helpers swap the ENCODE nodes for the TEST-ONLY stand-ins from
# tests/standin_nodes (loaded only into test/demo hosts by scripts/comfy_server.py) and drop the
# loaders nothing uses any more. Never part of a user's workflow.
STANDIN_TEXT = "FocalStandInTextEncode"
STANDIN_VISION = "FocalStandInClipVision"
TEXT_ENCODE_NODES = {"CLIPTextEncode": "text", "TextEncodeHunyuanVideo_ImageToVideo": "prompt"}
VISION_ENCODE_NODES = {"CLIPVisionEncode": "image"}
CLIP_LOADERS = {"CLIPLoader", "DualCLIPLoader"}
VISION_LOADERS = {"CLIPVisionLoader"}
FAMILIES = {"wan": "wan", "hunyuan_video": "hunyuan_video"}


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
                         f"stand-in text encoder for it (families: {sorted(FAMILIES)})")
    return family


def substitute_standins(api, clip_standin=None):
    """(new API graph, notes): text/vision encode nodes replaced by the stand-ins.

    - CLIPTextEncode / TextEncodeHunyuanVideo_ImageToVideo -> FocalStandInTextEncode(family from the
      CLIP loader's type, the same text or text link, seed = crc32 of the node id, so positive and
      negative differ). The stand-in has no image tokens in the HunyuanVideo text stream.
    - CLIPVisionEncode -> FocalStandInClipVision(the same image).
    - A CLIP loader still used by another node (e.g. Region Anchor's ``text_encoder``) becomes
      ``clip_standin`` (a node class taking ``family``) when given; otherwise it is an error.
    - Loaders nobody uses any more are removed.
    """
    api = copy.deepcopy(api)
    notes = []
    for nid, node in list(api.items()):
        kind = node["class_type"]
        if kind in TEXT_ENCODE_NODES:
            clip = node["inputs"].get("clip")
            family = clip_family(api, clip[0])
            text = node["inputs"].get(TEXT_ENCODE_NODES[kind], "")
            api[nid] = {"class_type": STANDIN_TEXT, "inputs": {
                "family": family, "text": text, "seed": zlib.crc32(nid.encode()) & 0xFFFFFFFF},
                "_meta": {"title": f"{node.get('_meta', {}).get('title', kind)} [stand-in]"}}
            notes.append(f"{nid} {kind} -> {STANDIN_TEXT} ({family})")
        elif kind in VISION_ENCODE_NODES:
            api[nid] = {"class_type": STANDIN_VISION, "inputs": {"image": node["inputs"]["image"]},
                        "_meta": {"title": f"{node.get('_meta', {}).get('title', kind)} [stand-in]"}}
            notes.append(f"{nid} {kind} -> {STANDIN_VISION}")
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
                        "_meta": {"title": f"{kind} [stand-in]"}}
            notes.append(f"{nid} {kind} -> {clip_standin} ({family}) for {users}")
        else:
            raise ValueError(f"node {nid} {kind} is still used by {users} after substitution and has no stand-in")
    return api, notes


def shrink(api, width=None, height=None, length=None, steps=None):
    """Set literal width/height/length values and sampler steps (in place; returns ``api``).

    Linked sizes are left alone (they follow their source). KSamplerAdvanced step ranges are scaled
    to the new step count, keeping 10000-style "to the end" values; BasicScheduler steps too.
    """
    sizes = {"width": width, "height": height, "length": length}
    for node in api.values():
        inputs = node["inputs"]
        for name, value in sizes.items():
            if value is not None and name in inputs and not isinstance(inputs[name], list):
                inputs[name] = value
        if steps is None or not isinstance(inputs.get("steps"), int):
            continue
        if node["class_type"] in ("KSampler", "KSamplerAdvanced", "BasicScheduler"):
            old = inputs["steps"]
            inputs["steps"] = steps
            for key in ("start_at_step", "end_at_step"):
                if isinstance(inputs.get(key), int) and inputs[key] < old:
                    inputs[key] = round(inputs[key] * steps / old)
    return api


# ---- command line ----------------------------------------------------------------------------
def fetch_object_info(server):
    with urllib.request.urlopen(server.rstrip("/") + "/object_info", timeout=60) as resp:
        return json.loads(resp.read())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workflow", help="UI-format workflow JSON")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--server", help="URL of a running host, e.g. http://127.0.0.1:8188")
    source.add_argument("--object-info", help="a saved /object_info JSON")
    parser.add_argument("-o", "--out", help="write the API graph here (default: stdout)")
    args = parser.parse_args(argv)
    with open(args.workflow, encoding="utf-8") as f:
        workflow = json.load(f)
    if args.server:
        info = fetch_object_info(args.server)
    else:
        with open(args.object_info, encoding="utf-8") as f:
            info = json.load(f)
    api, errors = convert(workflow, info)
    text = json.dumps(api, indent=2, ensure_ascii=False) + "\n"
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    for problem in errors:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
