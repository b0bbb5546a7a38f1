"""The main job: run the pack's Wan I2V Focal Guidance workflow through a real ComfyUI server, on CPU.

Run after scripts/setup_host.sh, from the pack folder, with any Python 3.10+:

    python scripts/run_main_job.py [--models out/models] [--out out/main_job]

1. writes the tiny random checkpoints (scripts/make_tiny_models.py, stock file names) into --models
   (files already there are kept);
2. starts the host (``main.py --cpu`` under .venv) with the pack, plus the TEST-ONLY stand-in
   text/vision encoder nodes from tests/standin_nodes, as scripts/comfy_server.py does for the tests;
3. posts ``main_graph()`` (API format) to /prompt, waits for it, and stops the server;
4. prints the saved files (video + frames) under --out/output and writes --out/result.json.

Exit code 0 on success, 1 when anything fails (the message quotes the server log's tail).
Random weights: the frames are noise; the job shows that the workflow runs end to end.
To replace the workflow (e.g. with the Semantic Layer Probe one), edit ``main_graph``.
"""
import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from comfy_server import HOST_DIR, PACK_DIR, VENV_PYTHON, ComfyServer, ServerError, make_input_image  # noqa: E402

# Stock file names written by make_tiny_models.py (kept literal so this file needs no torch).
WAN_I2V = "wan2.1_i2v_480p_14B_fp16.safetensors"
WAN_VAE = "wan_2.1_vae.safetensors"
IMAGE_NAME = "focal_main_job_start.png"


def main_graph(image=IMAGE_NAME, width=160, height=96, length=9, steps=4, cfg=5.0, seed=42):
    """Wan2.1 I2V with Focal Attention Transfer, in API format (node id -> class_type + inputs)."""
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": WAN_I2V, "weight_dtype": "default"}},
        "2": {"class_type": "FocalAttentionTransfer", "inputs": {
            "model": ["1", 0], "weak_blocks": "2-3", "source_blocks": "1", "alpha": 0.3, "beta": 1.0,
            "gamma": 0.5, "start_percent": 0.0, "end_percent": 0.5, "branch": "positive",
            "cache_heads": "head mean", "cache_columns": "all text tokens"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": WAN_VAE}},
        "4": {"class_type": "LoadImage", "inputs": {"image": image}},
        "5": {"class_type": "FocalStandInClipVision", "inputs": {"image": ["4", 0]}},
        "6": {"class_type": "FocalStandInTextEncode", "inputs": {
            "family": "wan", "text": "a red ball rolls past a blue box on a sunny street", "seed": 1}},
        "7": {"class_type": "FocalStandInTextEncode", "inputs": {
            "family": "wan", "text": "blurry, static, low quality", "seed": 2}},
        "8": {"class_type": "WanImageToVideo", "inputs": {
            "positive": ["6", 0], "negative": ["7", 0], "vae": ["3", 0], "width": width, "height": height,
            "length": length, "batch_size": 1, "clip_vision_output": ["5", 0], "start_image": ["4", 0]}},
        "9": {"class_type": "KSampler", "inputs": {
            "model": ["2", 0], "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": "euler",
            "scheduler": "simple", "positive": ["8", 0], "negative": ["8", 1], "latent_image": ["8", 2],
            "denoise": 1.0}},
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["3", 0]}},
        "11": {"class_type": "SaveAnimatedWEBP", "inputs": {
            "images": ["10", 0], "filename_prefix": "focal_main_job/video", "fps": 16.0, "lossless": False,
            "quality": 90, "method": "default"}},
        "12": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "focal_main_job/frame"}},
    }


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
            if args.image is None:
                make_input_image(server.input_dir / IMAGE_NAME, 160, 96)
            else:
                shutil.copy(args.image, server.input_dir / IMAGE_NAME)
            t = time.monotonic()
            prompt_id = server.post_prompt(main_graph())
            entry = server.wait(prompt_id, timeout=args.timeout)
            timings["workflow_s"] = round(time.monotonic() - t, 2)
            outputs = server.output_paths(entry)
    except (ServerError, OSError) as err:
        print(f"run_main_job: FAILED: {err}", file=sys.stderr)
        return 1
    timings["total_s"] = round(time.monotonic() - began, 2)

    files = [p for paths in outputs.values() for p in paths]
    missing = [p for p in files if not p.is_file()]
    if not files or missing:
        print(f"run_main_job: FAILED: outputs missing: {missing or 'none saved'}\n"
              f"{json.dumps(entry.get('outputs'), indent=1)}", file=sys.stderr)
        return 1
    result = {"prompt_id": prompt_id, "status": entry["status"]["status_str"], "timings": timings,
              "outputs": {node: [str(p) for p in paths] for node, paths in outputs.items()},
              "server_log": str(server.log_path), "extra_model_paths": str(server.config_path)}
    (out_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"run_main_job: success in {timings['total_s']} s ({timings})")
    for node, paths in outputs.items():
        label = "animated" if entry["outputs"][node].get("animated") == [True] else "images"
        print(f"  node {node} ({label}):")
        for path in paths:
            print(f"    {path}")
    print(f"run_main_job: outputs are in {server.output_dir}; summary {out_dir / 'result.json'}")
    print(f"run_main_job: to open the same setup in a browser: cd {server.host_dir} && {VENV_PYTHON} main.py --cpu "
          f"--extra-model-paths-config {server.config_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
