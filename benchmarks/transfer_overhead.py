"""Step time and peak memory of Focal Attention Transfer against the unpatched model, in one run.

Builds a random-weight Wan I2V with the host's own class (40 blocks, like Wan 14B) and samples it
with and without Focal Guidance (8 weak + 2 source blocks by default). Each variant runs in its
own subprocess so peak memory is measured cleanly (CUDA: max_memory_allocated; CPU: max RSS).
Random weights: this measures cost, never quality. A timing is not a test.

    python benchmarks/transfer_overhead.py                       # CPU: small width, 2 latent frames
    python benchmarks/transfer_overhead.py --device cuda --dim 5120 --frames 21   # Wan 14B 480p
"""
import argparse
import json
import pathlib
import subprocess
import sys
import time

PACK_DIR = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_HOST = PACK_DIR / ".host" / "ComfyUI"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--comfy", type=pathlib.Path, default=DEFAULT_HOST, help="ComfyUI host folder")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dim", type=int, default=256, help="model width (multiple of 128; Wan 14B: 5120)")
    p.add_argument("--blocks", type=int, default=40)
    p.add_argument("--frames", type=int, default=2, help="latent frames (480p/81 frames: 21)")
    p.add_argument("--height", type=int, default=60, help="latent height (480p: 60)")
    p.add_argument("--width", type=int, default=104, help="latent width (832 px: 104)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--weak", default="12-19")
    p.add_argument("--sources", default="10, 30")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--repeats", type=int, default=2, help="interleaved runs per variant; the best counts")
    p.add_argument("--variant", choices=["base", "fg"], help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run_variant(args):
    """Runs in a child process: sample once to warm up, then time ``args.steps`` steps."""
    sys.path.insert(0, str(args.comfy.resolve()))
    sys.path.insert(0, str(PACK_DIR / "scripts"))
    import importlib.util
    import torch
    from comfy.cli_args import args as host_args
    host_args.cpu = args.device == "cpu"
    import comfy.clip_vision
    import comfy.model_management
    import comfy.sample
    import comfy.sd
    import make_tiny_models

    spec = importlib.util.spec_from_file_location("focal_guidance", PACK_DIR / "__init__.py",
                                                  submodule_search_locations=[str(PACK_DIR)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["focal_guidance"] = pack
    spec.loader.exec_module(pack)
    from focal_guidance.nodes.transfer import FocalAttentionTransfer

    dtype = getattr(torch, args.dtype)
    sd = make_tiny_models.wan_state_dict("i2v", 36, num_layers=args.blocks, dim=args.dim)
    model = comfy.sd.load_diffusion_model_state_dict({k: v.to(dtype) for k, v in sd.items()},
                                                     model_options={"dtype": dtype})
    if args.variant == "fg":
        model = FocalAttentionTransfer.execute(model, args.weak, args.sources, 0.3, 0.0, 0.0, 0.0, 1.0,
                                               "positive", "head mean", "all text tokens").args[0]

    def cond(seed):
        gen = torch.Generator().manual_seed(seed)
        context = torch.zeros(1, 512, 4096)
        context[:, :24] = torch.randn(1, 24, 4096, generator=gen)
        vision = comfy.clip_vision.Output()
        vision.penultimate_hidden_states = torch.randn(1, 257, 1280, generator=gen)
        return [[context, {"clip_vision_output": vision}]]

    latent = torch.zeros(1, 16, args.frames, args.height, args.width)
    noise = comfy.sample.prepare_noise(latent, 0)

    def sample(steps):
        return comfy.sample.sample(model, noise, steps, 5.0, "euler", "simple", cond(1), cond(2), latent,
                                   seed=0, disable_pbar=True)

    sample(1)  # warm-up: model load, kernels
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    sample(args.steps)
    if args.device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    seconds = (time.perf_counter() - start) / args.steps
    print(json.dumps({"seconds_per_step": seconds, "peak_bytes": peak,
                      "tokens": args.frames * (args.height // 2) * (args.width // 2)}))


def main():
    args = parse_args()
    if args.variant:
        return run_variant(args)
    results = {}
    for _ in range(args.repeats):  # interleaved, best of each: background load hits both alike
        for variant in ("base", "fg"):
            cmd = [sys.executable, __file__, *sys.argv[1:], "--variant", variant]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                sys.exit(f"{variant} run failed:\n{out.stderr[-3000:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            best = results.setdefault(variant, r)
            best["seconds_per_step"] = min(best["seconds_per_step"], r["seconds_per_step"])
            best["peak_bytes"] = min(best["peak_bytes"], r["peak_bytes"])
    base, fg = results["base"], results["fg"]
    print(f"Wan I2V, random weights, {args.blocks} blocks, dim {args.dim}, {args.dtype}, {args.device}; "
          f"{base['tokens']} video tokens; weak '{args.weak}', sources '{args.sources}', batch 2 (cfg)")
    print(f"best of {args.repeats} interleaved runs each")
    print(f"{'':12}{'s/step':>10}{'peak MB':>12}")
    for name, r in results.items():
        print(f"{name:12}{r['seconds_per_step']:>10.3f}{r['peak_bytes'] / 2**20:>12.1f}")
    print(f"{'FG / base':12}{fg['seconds_per_step'] / base['seconds_per_step']:>10.3f}"
          f"{fg['peak_bytes'] / base['peak_bytes']:>12.3f}")


if __name__ == "__main__":
    main()
