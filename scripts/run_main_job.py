"""The main job: run the pack's Semantic Layer Probe workflow (example_workflows/focal_guidance_probe.json)
through a real ComfyUI server, on CPU.

Run after scripts/setup_host.sh, from the pack folder, with any Python 3.10+:

    python scripts/run_main_job.py [--models out/models] [--out out/main_job]

1. writes the tiny random checkpoints (scripts/make_tiny_models.py, stock file names) into --models
   (files already there are kept);
2. starts the host (``main.py --cpu`` under .venv) with the pack, plus the TEST-ONLY stand-in
   text/vision encoder nodes from tests/standin_nodes, as scripts/comfy_server.py does for the tests;
3. ``main_graph()``: converts the shipped UI-format probe workflow to API format with
   scripts/workflow_api.py against the server's /object_info, swaps the text/vision encode nodes for
   the stand-ins (their multi-GB loaders cannot run here), shrinks size, length and steps, sets the
   report's thresholds for the 6-block tiny model, and adds a SaveImage for the focal pass's frames;
4. posts it to /prompt, waits, stops the server, and checks that the report's curve and heatmaps and
   the second (focal) pass's frames were written under --out/output; writes --out/result.json.

Pass 1 (probe) -> Semantic Layer Report -> weak/responsive blocks -> Focal Attention Transfer -> pass 2.
Exit code 0 on success, 1 when anything fails (the message quotes the server log's tail).
Random weights: images and frames are noise; the job shows that the workflow runs end to end.
"""
import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import workflow_api  # noqa: E402
from comfy_server import HOST_DIR, PACK_DIR, VENV_PYTHON, ComfyServer, ServerError, make_input_image  # noqa: E402

PROBE_WORKFLOW = PACK_DIR / "example_workflows" / "focal_guidance_probe.json"
# The tiny Wan checkpoints have 6 blocks: with the template's kappa 2 / exclude_ends 2 a random model
# rarely has a weak block, and the transfer then (rightly) stops. These find one on the tiny model.
TINY_REPORT = {"kappa": 0.0, "exclude_ends": 1, "top_r": 1}
FRAMES_PREFIX = "focal_probe/focal_frame"


def load_workflow(path=PROBE_WORKFLOW):
    return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))


def start_image_name(workflow):
    """The file the workflow's LoadImage node names (the job writes its start image under it)."""
    return next(n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "LoadImage")


def _find(graph, what, test):
    found = [nid for nid, node in graph.items() if test(nid, node)]
    if not found:
        raise ValueError(f"the probe workflow has no {what}")
    return found[0]


def _source(api, node_id, name):
    value = api[node_id]["inputs"].get(name)
    return value[0] if isinstance(value, list) else None


def main_graph(object_info, workflow=None, width=160, height=96, length=9, steps=4, seed=42):
    """(API graph, notes): the probe workflow, converted, with stand-ins and tiny sizes.

    Validation errors stop the job (workflow_api.WorkflowError), except those on nodes that the
    stand-in substitution replaces or removes (the encoder loaders name files a CPU host lacks).
    """
    workflow = load_workflow() if workflow is None else workflow
    api, errors = workflow_api.convert(workflow, object_info)
    graph, notes = workflow_api.substitute_standins(api)
    replaced = {nid for nid, node in api.items()
                if nid not in graph or graph[nid]["class_type"] != node["class_type"]}
    blocking = [e for e in errors if not any(e.startswith(f"node {nid} ") for nid in replaced)]
    if blocking:
        raise workflow_api.WorkflowError(blocking)
    notes += [f"ignored (node replaced by a stand-in): {e}" for e in errors if e not in blocking]
    for node in graph.values():
        if node["class_type"] == "FocalSemanticLayerReport":
            node["inputs"].update(TINY_REPORT)
        if node["class_type"] == "KSampler":
            node["inputs"]["seed"] = seed
    workflow_api.shrink(graph, width=width, height=height, length=length, steps=steps)
    transfer = _find(graph, "Focal Attention Transfer", lambda nid, n: n["class_type"] == "FocalAttentionTransfer")
    sampler = _find(graph, "KSampler after the transfer",
                    lambda nid, n: n["class_type"] == "KSampler" and _source(graph, nid, "model") == transfer)
    decode = _find(graph, "VAEDecode of the focal pass",
                   lambda nid, n: n["class_type"] == "VAEDecode" and _source(graph, nid, "samples") == sampler)
    graph["focal_frames"] = {"class_type": "SaveImage",
                             "inputs": {"images": [decode, 0], "filename_prefix": FRAMES_PREFIX},
                             "_meta": {"title": "Save focal-pass frames (main job)"}}
    notes.append(f"report {TINY_REPORT}; size {width}x{height}, {length} frames, {steps} steps; "
                 f"added SaveImage 'focal_frames' on node {decode}")
    return graph, notes


def _outputs_by_role(graph, entry, paths):
    """{'curve', 'heatmaps', 'frames', 'baseline_video', 'focal_video'}: saved files of each role."""
    report = _find(graph, "Semantic Layer Report", lambda nid, n: n["class_type"] == "FocalSemanticLayerReport")
    roles = {}
    for nid, node in graph.items():
        src = node["inputs"].get("images") or node["inputs"].get("video")
        if nid == "focal_frames":
            roles["frames"] = paths.get(nid, [])
        elif node["class_type"] == "SaveImage" and isinstance(src, list) and src[0] == report:
            roles["curve" if src[1] == 0 else "heatmaps"] = paths.get(nid, [])
        elif node["class_type"] == "SaveVideo":
            prefix = node["inputs"].get("filename_prefix", "")
            roles["focal_video" if prefix.endswith("focal") else "baseline_video"] = paths.get(nid, [])
    panel = (entry.get("outputs", {}).get(report, {}).get("focal_probe") or [{}])[0]
    return roles, {k: panel.get(k) for k in ("weak_blocks", "responsive_blocks", "family")}


def make_models(models_dir: pathlib.Path):
    """Tiny checkpoints via make_tiny_models.py under the host's venv (it needs torch and the host)."""
    cmd = [str(VENV_PYTHON), str(PACK_DIR / "scripts" / "make_tiny_models.py"), "--comfy", str(HOST_DIR),
           "--out", str(models_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ServerError(f"make_tiny_models.py failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=pathlib.Path, default=pathlib.Path("out/models"),
                        help="models folder for the tiny checkpoints (default: out/models)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/main_job"),
                        help="job folder: output/, server.log, result.json (default: out/main_job)")
    parser.add_argument("--image", type=pathlib.Path, default=None,
                        help="start image (default: a generated 160x96 test picture)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the workflow")
    args = parser.parse_args(argv)
    models_dir, out_dir = args.models.resolve(), args.out.resolve()
    timings = {}
    began = time.monotonic()
    try:
        print(f"run_main_job: writing tiny models into {models_dir}", flush=True)
        t = time.monotonic()
        print(make_models(models_dir), end="", flush=True)
        timings["models_s"] = round(time.monotonic() - t, 2)

        for stale in ("output", "temp", "server.log", "result.json"):  # keep only this run's files
            path = out_dir / stale
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        server = ComfyServer(out_dir, models_dir=models_dir)
        print(f"run_main_job: starting ComfyUI from {server.host_dir} (log: {server.log_path})", flush=True)
        with server:
            timings["server_start_s"] = round(server.startup_seconds, 2)
            image_name = start_image_name(load_workflow())
            if args.image is None:
                make_input_image(server.input_dir / image_name, 160, 96)
            else:
                shutil.copy(args.image, server.input_dir / image_name)
            t = time.monotonic()
            graph, notes = main_graph(server.object_info())
            timings["convert_s"] = round(time.monotonic() - t, 2)
            for note in notes:
                print(f"run_main_job: {note}", flush=True)
            t = time.monotonic()
            prompt_id = server.post_prompt(graph)
            entry = server.wait(prompt_id, timeout=args.timeout)
            timings["workflow_s"] = round(time.monotonic() - t, 2)
            outputs = server.output_paths(entry)
    except (ServerError, OSError, ValueError) as err:
        print(f"run_main_job: FAILED: {err}", file=sys.stderr)
        return 1
    timings["total_s"] = round(time.monotonic() - began, 2)

    roles, sets = _outputs_by_role(graph, entry, outputs)
    needed = ("curve", "heatmaps", "frames", "focal_video")
    missing = [role for role in needed if not roles.get(role)]
    missing += [str(p) for paths in roles.values() for p in paths if not p.is_file() or p.stat().st_size == 0]
    if missing:
        print(f"run_main_job: FAILED: outputs missing: {missing}\n{json.dumps(entry.get('outputs'), indent=1)}",
              file=sys.stderr)
        return 1
    result = {"prompt_id": prompt_id, "status": entry["status"]["status_str"], "timings": timings,
              "workflow": str(PROBE_WORKFLOW), "report": sets, "notes": notes,
              "outputs": {role: [str(p) for p in paths] for role, paths in roles.items()},
              "server_log": str(server.log_path), "extra_model_paths": str(server.config_path)}
    (out_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"run_main_job: success in {timings['total_s']} s ({timings})")
    print(f"run_main_job: report on the tiny model: weak_blocks {sets['weak_blocks']!r}, "
          f"responsive_blocks {sets['responsive_blocks']!r}")
    for role, paths in roles.items():
        print(f"  {role}:")
        for path in paths:
            print(f"    {path}")
    print(f"run_main_job: outputs are in {server.output_dir}; summary {out_dir / 'result.json'}")
    print(f"run_main_job: to open the same setup in a browser: cd {server.host_dir} && {VENV_PYTHON} main.py --cpu "
          f"--extra-model-paths-config {server.config_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
