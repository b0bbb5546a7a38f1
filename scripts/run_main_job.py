"""The main job: the pack's probe workflow (example_workflows/focal_guidance_probe.json) on the trained
prompt-following test model (benchmarks/prompt_following), through a real ComfyUI server on CPU, every
Focal Guidance node at the workflow's own settings, and both passes scored exactly.

    bash scripts/setup_host.sh && .venv/bin/python scripts/run_main_job.py [--clips 8] [--out out/main_job]

Run it under the host's venv: it needs torch to write the start latents and score the results.

1. Links the trained model into --models/diffusion_models and starts the host (``main.py --cpu``)
   with the pack and the TEST-ONLY stand-in nodes (tests/standin_nodes), as scripts/comfy_server.py
   does for the tests.
2. For each of the first --clips clips of the task's held-out test split (never trained or tuned on;
   the harness's seeds), writes the clip's start picture, one Wan latent frame, as a ``.latent`` file
   into the server's input folder, and builds the graph: ``api_graph`` converts the shipped UI-format
   workflow against the server's /object_info (comfy-cli's converter), ``task_graph`` adapts it:
   - UNETLoader loads the trained model;
   - the text encoders become FocalStandInTextEncode (TEST ONLY; the real umT5 cannot run here): the
     clip's prompt, and the empty prompt as the negative, both with the stand-in seed the model was
     trained with (it learned its unconditional branch from the empty prompt);
   - LoadImage -> Image Scale -> WanImageToVideo (with VAE and CLIP vision) becomes a stock
     LoadLatent of that file -> FocalStandInLatentToVideo (TEST ONLY): the model works in latent
     space and has no VAE; its clips are 3 latent frames of 16x16;
   - both KSamplers sample as the model was trained and measured (harness.py: euler, simple, 8 steps,
     CFG 5) with the harness's seed for the clip; ModelSamplingSD3 keeps the workflow's shift 8;
   - the VAE decode and video saving become a stock SaveLatent on each pass;
   - Semantic Layer Probe, Semantic Layer Report and Focal Attention Transfer keep the workflow's
     values; those that differ from the node defaults are listed in the notes. The workflow runs the
     paper's pipeline (the Report's weak and responsive blocks wired into the transfer, its Attention
     Cache at the pack's first defaults, no anchor), not the family templates' defaults (every middle
     block, anchor bias only), which need an anchor the stand-in graph does not have.
3. Posts the graphs to /prompt, waits, stops the server, scores each pass's latent with task.score,
   and writes under --out: graphs/ (the API graph posted for each clip), output/ (per clip the
   report's curve and heatmaps and both latents), strips.png (per clip: the target, the baseline and
   the Focal Guidance frames, with their scores), result.json and server.log.

When the Report finds no Semantic-Weak block, the transfer passes the model through unchanged and the
focal pass equals the baseline; the job says so for every such clip, and overall.
Exit code 0 when every graph ran and every output was written (whatever the scores), 1 otherwise.
"""
import argparse
import dataclasses
import json
import pathlib
import shutil
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import workflow_api  # noqa: E402
from comfy_server import HOST_DIR, PACK_DIR, VENV_PYTHON, ComfyServer, ServerError  # noqa: E402

BENCHMARK = PACK_DIR / "benchmarks" / "prompt_following"
sys.path.insert(0, str(BENCHMARK))
import harness  # noqa: E402
import task  # noqa: E402

PROBE_WORKFLOW = PACK_DIR / "example_workflows" / "focal_guidance_probe.json"
FOCAL_NODES = ("FocalSemanticLayerProbe", "FocalSemanticLayerReport", "FocalAttentionTransfer")
REMOVED = ("CLIPLoader", "CLIPVisionLoader", "CLIPVisionEncode", "VAELoader", "VAEDecode", "CreateVideo",
           "SaveVideo", "LoadImage", "ImageScale", "GetImageSize")
TEXT_NODE = "CLIPTextEncode"
VIDEO_LENGTH = 4 * (task.FRAMES - 1) + 1       # Wan: 4 video frames per latent frame after the first


def load_workflow(path=PROBE_WORKFLOW):
    return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))


def api_graph(workflow, object_info):
    """The UI-format workflow as an API graph, converted against the server's /object_info."""
    return workflow_api.to_api(workflow, object_info)


def _find(graph, what, test):
    found = [nid for nid, node in graph.items() if test(node)]
    if not found:
        raise ValueError(f"the probe workflow has no {what}")
    return found


def _source(graph, nid, name):
    value = graph[nid]["inputs"].get(name)
    return value[0] if isinstance(value, list) else None


def non_default_focal_inputs(graph, object_info):
    """['node input: value (default d)'] for every Focal node widget that differs from its node default."""
    differ = []
    for nid, node in graph.items():
        if node["class_type"] not in FOCAL_NODES:
            continue
        spec = object_info[node["class_type"]]["input"]
        entries = {**spec.get("required", {}), **spec.get("optional", {})}
        for name, value in node["inputs"].items():
            if isinstance(value, list) or name not in entries:
                continue
            options = entries[name][1] if len(entries[name]) > 1 else {}
            if "default" in options and value != options["default"]:
                differ.append(f"{nid} {node['class_type']} {name}: {value!r} (default {options['default']!r})")
    return differ


def start_latent_name(index: int) -> str:
    return f"prompt_following_test{index:02d}.latent"


def write_start_latent(path: pathlib.Path, scene: task.Scene):
    """The clip's start picture as LoadLatent reads it: one frame of the reference, in the host's
    outer latent space (what a VAE encode returns; the sampler applies process_latent_in)."""
    import torch
    from safetensors.torch import save_file
    frame = wan_latent_format().process_out(task.reference(scene)[None, :, :1])
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"latent_tensor": frame.contiguous(), "latent_format_version_0": torch.tensor([])}, str(path))


def wan_latent_format():
    if str(HOST_DIR) not in sys.path:
        sys.path.insert(0, str(HOST_DIR))
    import comfy.latent_formats
    return comfy.latent_formats.Wan21()


def task_graph(api, index: int, scene: task.Scene, seed: int):
    """(graph, notes): the converted probe workflow adapted to one task clip (see the module docstring)."""
    graph = json.loads(json.dumps(api))
    notes = []
    conditioner = _find(graph, "WanImageToVideo", lambda n: n["class_type"] == "WanImageToVideo")[0]
    samplers = _find(graph, "KSampler", lambda n: n["class_type"] == "KSampler")
    transfer = _find(graph, "Focal Attention Transfer", lambda n: n["class_type"] == "FocalAttentionTransfer")[0]
    for nid, node in graph.items():
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "UNETLoader":
            inputs["unet_name"] = harness.MODEL_FILE.name
        elif kind == TEXT_NODE:
            positive = nid == _source(graph, conditioner, "positive")
            text = scene.prompt if positive else ""
            node.update(class_type="FocalStandInTextEncode",
                        inputs={"family": "wan", "text": text, "seed": harness.TEXT_SEED})
            meta = node.setdefault("_meta", {})
            meta["title"] = f"{meta.get('title', kind)} [stand-in]"
            notes.append(f"{nid} {kind} -> FocalStandInTextEncode, text {text!r}")
        elif kind == "KSampler":
            inputs.update(seed=seed, steps=harness.STEPS, cfg=harness.CFG, sampler_name=harness.SAMPLER,
                          scheduler=harness.SCHEDULER)
        elif kind == "SaveImage":
            inputs["filename_prefix"] += f"_test{index:02d}"
    graph["start_latent"] = {"class_type": "LoadLatent", "inputs": {"latent": start_latent_name(index)},
                             "_meta": {"title": "Load start latent (task clip)"}}
    graph[conditioner] = {"class_type": "FocalStandInLatentToVideo", "_meta": {"title": "Latent To Video [stand-in]"},
                          "inputs": {"positive": graph[conditioner]["inputs"]["positive"],
                                     "negative": graph[conditioner]["inputs"]["negative"],
                                     "start_latent": ["start_latent", 0], "length": VIDEO_LENGTH}}
    for sampler in samplers:
        role = "focal" if _source(graph, sampler, "model") == transfer else "baseline"
        graph[f"save_{role}"] = {"class_type": "SaveLatent", "_meta": {"title": f"Save {role} latent"},
                                 "inputs": {"samples": [sampler, 0],
                                            "filename_prefix": f"focal_probe/{role}_test{index:02d}"}}
    for nid in [nid for nid, node in graph.items() if node["class_type"] in REMOVED]:
        del graph[nid]
    notes.append(f"{conditioner} WanImageToVideo -> LoadLatent + FocalStandInLatentToVideo; video saving -> SaveLatent")
    _check_links(graph)
    return graph, notes


def _check_links(graph):
    dangling = [f"{nid}.{name} -> {value[0]}" for nid, node in graph.items() for name, value in node["inputs"].items()
                if isinstance(value, list) and value[0] not in graph]
    if dangling:
        raise ValueError(f"the adapted probe workflow links to removed nodes: {dangling}")


def main_graphs(object_info, clips: int, workflow=None):
    """[(graph, scene, seed)] for the first ``clips`` test clips, and the notes of the adaptation.
    The host validates each graph when it is posted."""
    api = api_graph(load_workflow() if workflow is None else workflow, object_info)
    differ = non_default_focal_inputs(api, object_info)
    scenes, seeds = harness.split_with_seeds("test", clips)
    jobs = [(task_graph(api, i, scene, seed), scene, seed) for i, (scene, seed) in enumerate(zip(scenes, seeds))]
    notes = jobs[0][0][1] + ([f"the probe workflow's own settings (node defaults in brackets): {'; '.join(differ)}"]
                             if differ else [])
    return [(graph, scene, seed) for (graph, _), scene, seed in jobs], notes


def link_model(models_dir: pathlib.Path) -> pathlib.Path:
    target = models_dir / "diffusion_models" / harness.MODEL_FILE.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    try:
        target.symlink_to(harness.MODEL_FILE)
    except OSError:
        shutil.copy(harness.MODEL_FILE, target)
    return target


def read_latent(path: pathlib.Path):
    """A SaveLatent file as the model's internal latent [16, frames, h, w] (what task.score reads)."""
    from safetensors.torch import load_file
    return wan_latent_format().process_in(load_file(str(path))["latent_tensor"].float())[0]


def clip_result(index, scene, seed, graph, entry, outputs):
    report_id = _find(graph, "Semantic Layer Report", lambda n: n["class_type"] == "FocalSemanticLayerReport")[0]
    panel = (entry.get("outputs", {}).get(report_id, {}).get("focal_probe") or [{}])[0]
    files = {}
    for nid, node in graph.items():
        if nid in ("save_baseline", "save_focal"):
            files[nid.removeprefix("save_")] = outputs.get(nid, [])
        elif node["class_type"] == "SaveImage":
            files["curve" if graph[nid]["inputs"]["images"][1] == 0 else "heatmaps"] = outputs.get(nid, [])
    missing = [role for role in ("curve", "heatmaps", "baseline", "focal") if not files.get(role)]
    missing += [str(p) for paths in files.values() for p in paths if not p.is_file() or p.stat().st_size == 0]
    if missing:
        raise ServerError(f"test clip {index}: outputs missing: {missing}")
    clips = {role: read_latent(files[role][0]) for role in ("baseline", "focal")}
    weak = panel.get("weak_blocks") or ""
    return {"index": index, "prompt": scene.prompt, "seed": seed,
            "report": {k: panel.get(k) for k in ("weak_blocks", "responsive_blocks")},
            "patched": bool(weak.strip()),
            "focal_equals_baseline": bool((clips["baseline"] == clips["focal"]).all()),
            **{role: dataclasses.asdict(task.score(scene, clip)) for role, clip in clips.items()},
            "files": {role: [str(p) for p in paths] for role, paths in files.items()}}, clips


def summary(results):
    n = len(results)
    base = [r["baseline"] for r in results]
    focal = [r["focal"] for r in results]
    patched = [r for r in results if r["patched"]]
    return {"clips": n, "patched": len(patched),
            "followed": {"baseline": sum(s["followed"] for s in base), "focal": sum(s["followed"] for s in focal)},
            "exact": {"baseline": sum(s["exact"] for s in base), "focal": sum(s["exact"] for s in focal)},
            "mean_progress": {kind: {role: _mean_progress(results, role, kind) for role in ("baseline", "focal")}
                              for kind in ("moves", "turns")},
            "wins": sum(r["focal"]["followed"] and not r["baseline"]["followed"] for r in results),
            "losses": sum(r["baseline"]["followed"] and not r["focal"]["followed"] for r in results),
            "changed": sum(not r["focal_equals_baseline"] for r in results)}


def _mean_progress(results, role, kind):
    """Mean progress of one action kind ('moves' or 'turns'); moves and colour changes are never averaged
    together (a move's progress runs from -1, the wrong way, a colour change's from 0). None: no such clip."""
    picked = [r[role]["progress"] for r in results if r["prompt"].split()[3] == kind]
    return sum(picked) / len(picked) if picked else None


def verdict(s, kappa):
    n = s["clips"]
    if s["patched"] == 0:
        return (f"With the probe workflow's settings Focal Guidance patched NOTHING on this model: the Semantic Layer "
                f"Report (kappa {kappa:g}) found no Semantic-Weak block in any of the {n} clips, so Focal Attention "
                f"Transfer passed the model through and every focal pass equals its baseline.")
    others = n - s["patched"]
    unpatched = f" (the Report found no Semantic-Weak block in the other {others})" if others else ""
    return (f"With the probe workflow's settings Focal Guidance patched {s['patched']} of {n} clips{unpatched}. "
            f"Followed the prompt: baseline {s['followed']['baseline']}/{n}, Focal Guidance "
            f"{s['followed']['focal']}/{n} ({s['wins']} won, {s['losses']} lost); mean progress of the asked "
            f"action (1: all of it), baseline → Focal Guidance: "
            + "; ".join(f"{label} {_two(s['mean_progress'][kind])}"
                        for kind, label in (("turns", "colour changes"), ("moves", "moves"))) + ".")


def _two(pair):
    if pair["baseline"] is None:
        return "none in these clips"
    return f"{pair['baseline']:.2f} → {pair['focal']:.2f}"


def _score_text(s):
    return (f"progress {s['progress']:.2f} off {s['across']:.0f} drift {s['distractor_drift']:.0f}: "
            f"{'FOLLOWED' if s['followed'] else 'missed'}")


def save_strips(path: pathlib.Path, results, scenes, clips):
    """One row per clip: the prompt and the report's blocks, then the target clip | baseline | Focal
    Guidance, each under its score. Frame 0 is sampled too (the start picture is only conditioning);
    each object's colour pattern is painted in its colour (harness.to_rgb)."""
    from PIL import Image, ImageDraw
    cell, gap, line = task.SIZE * harness.IMAGE_SCALE, 16, 14
    third = task.FRAMES * (cell + 2)
    height = cell + 2 * line + 8
    sheet = Image.new("RGB", (3 * third + 2 * gap, len(results) * height + line), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 1), "target (what the prompt asks for)   |   baseline (probe pass)   |   Focal Guidance "
                      "(focal pass); latent frames 0, 1, 2", fill=(160, 160, 160))
    for r, (result, scene, (base, focal)) in enumerate(zip(results, scenes, clips)):
        top = line + r * height
        report = result["report"]
        blocks = (f"weak {report['weak_blocks']} <- sources {report['responsive_blocks']}" if result["patched"]
                  else "Report: no weak block, so not patched")
        draw.text((4, top + 1), f"test {result['index']}: {result['prompt']}   [{blocks}]", fill=(230, 230, 230))
        panels = ((task.render(scene), None), (base, result["baseline"]), (focal, result["focal"]))
        for side, (clip, score) in enumerate(panels):
            left = side * (third + gap)
            if score is not None:
                draw.text((left + 4, top + line), _score_text(score),
                          fill=(120, 220, 120) if score["followed"] else (230, 150, 120))
            pics = (harness.to_rgb(clip) * 255).byte().numpy()
            for f in range(task.FRAMES):
                sheet.paste(Image.fromarray(pics[f]), (left + f * (cell + 2), top + 2 * line + 4))
    sheet.save(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=pathlib.Path, default=pathlib.Path("out/models"),
                        help="models folder; the trained model is linked into diffusion_models/ (default: out/models)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/main_job"),
                        help="job folder: output/, strips.png, result.json, server.log (default: out/main_job)")
    parser.add_argument("--clips", type=int, default=8, help="held-out test clips to run (default: 8)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for each clip's graph")
    args = parser.parse_args(argv)
    if args.clips < 1:
        parser.error("--clips must be at least 1")
    models_dir, out_dir = args.models.resolve(), args.out.resolve()
    timings = {}
    began = time.monotonic()
    try:
        model = link_model(models_dir)
        print(f"run_main_job: model {model} -> {harness.MODEL_FILE}", flush=True)
        for stale in ("output", "temp", "input", "graphs", "server.log", "result.json", "strips.png"):
            path = out_dir / stale
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        server = ComfyServer(out_dir, models_dir=models_dir)
        for index, scene in enumerate(task.split_scenes("test", args.clips)):
            write_start_latent(server.input_dir / start_latent_name(index), scene)
        print(f"run_main_job: starting ComfyUI from {server.host_dir} (log: {server.log_path})", flush=True)
        with server:
            timings["server_start_s"] = round(server.startup_seconds, 2)
            jobs, notes = main_graphs(server.object_info(), args.clips)
            for note in notes:
                print(f"run_main_job: {note}", flush=True)
            for index, (graph, _, _) in enumerate(jobs):
                path = out_dir / "graphs" / f"test{index:02d}.json"
                path.parent.mkdir(exist_ok=True)
                path.write_text(json.dumps(graph, indent=1) + "\n", encoding="utf-8")
            t = time.monotonic()
            posted = [(server.post_prompt(graph), graph, scene, seed) for graph, scene, seed in jobs]
            done = [(prompt_id, graph, scene, seed, server.wait(prompt_id, timeout=args.timeout))
                    for prompt_id, graph, scene, seed in posted]
            timings["workflows_s"] = round(time.monotonic() - t, 2)
            results, clips = [], []
            for index, (prompt_id, graph, scene, seed, entry) in enumerate(done):
                result, pair = clip_result(index, scene, seed, graph, entry, server.output_paths(entry))
                results.append({"prompt_id": prompt_id, **result})
                clips.append((pair["baseline"], pair["focal"]))
    except (ServerError, OSError, ValueError) as err:
        print(f"run_main_job: FAILED: {err}", file=sys.stderr)
        return 1
    timings["total_s"] = round(time.monotonic() - began, 2)
    totals = summary(results)
    strips = out_dir / "strips.png"
    save_strips(strips, results, [scene for _, scene, _ in jobs], clips)
    kappa = next(n["inputs"]["kappa"] for n in jobs[0][0].values() if n["class_type"] == "FocalSemanticLayerReport")
    result = {"verdict": verdict(totals, kappa), "summary": totals, "clips": results, "timings": timings,
              "workflow": str(PROBE_WORKFLOW), "model": str(harness.MODEL_FILE),
              "sampling": {"steps": harness.STEPS, "cfg": harness.CFG, "sampler": harness.SAMPLER,
                           "scheduler": harness.SCHEDULER},
              "notes": notes, "strips": str(strips), "server_log": str(server.log_path),
              "extra_model_paths": str(server.config_path)}
    (out_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"run_main_job: ran {args.clips} held-out test clips in {timings['total_s']} s ({timings})")
    print(f"{'clip':>4}  {'report weak <- sources':<24} {'baseline':<40} focal")
    for r in results:
        blocks = f"{r['report']['weak_blocks'] or '-'} <- {r['report']['responsive_blocks'] or '-'}"
        same = " (same as baseline)" if r["focal_equals_baseline"] else ""
        print(f"{r['index']:>4}  {blocks:<24} {_score_text(r['baseline']):<40} {_score_text(r['focal'])}{same}")
    print(f"run_main_job: {result['verdict']}")
    print(f"run_main_job: strips {strips}; curves and heatmaps in {server.output_dir / 'focal_probe'}; "
          f"summary {out_dir / 'result.json'}")
    print(f"run_main_job: to open the same setup in a browser: cd {server.host_dir} && {VENV_PYTHON} main.py --cpu "
          f"--extra-model-paths-config {server.config_path} --input-directory {server.input_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
