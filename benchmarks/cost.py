"""What Focal Guidance costs against the plain model: per attention call, per block and per step.

One process, configurations interleaved round by round (the first one rotates), each timed by the
CPU time of the main thread with torch on one thread (``time.thread_time``), so the other load on a
shared machine barely moves the figures; on CUDA by synchronised wall time. Each figure is the
median over rounds of (configuration / plain) with its interquartile range; rounds continue until
the median's standard error is under --resolve (default 0.4 %) or the section's round cap. The
ratio of the minimum times is printed too: contention from other processes only adds CPU time.
Peak memory per call: torch.profiler's allocation events (CPU) or the CUDA allocator's peak, net of
the inputs. Random weights: this measures cost, never quality. A timing is not a test.

Configurations:
- plain:  the host's attention kernel (the block as the user runs it);
- weak:   anchor bias on 8 keyword columns + cache blend (alpha 0.3, head mean, all text columns);
- source: records the head-mean probabilities of all text columns (a transfer's source block);
- probe:  records the head-mean probabilities of the 8 keyword columns (Semantic Layer Probe).
Recording blocks keep the host kernel's output, as the dispatcher runs them. Wan: the host call plus
a record-only call. HunyuanVideo on the host's SDPA (plain here): one joint attention, the pack's
fused kernel, whose output is SDPA's own; "… 2 calls" is the same block under another attention
kernel or another pack's override, where the host call stays and the recording adds a second one.
"… fused" is the same edit on focal_core.fused (fused kernel + log-sum-exp); a fused recording is
one call where that kernel is SDPA's own (its output is then SDPA's, bit for bit), else two. Each
section prints the kernel each fused configuration took.

    python benchmarks/cost.py                  # CPU, reduced sizes (printed), about 8 min of CPU time
    python benchmarks/cost.py --device cuda    # Wan2.1-14B 480p and HunyuanVideo 720p widths and tokens
    python benchmarks/cost.py --dry-run        # no host, no GPU: the kernel each CUDA edit would take
"""
import argparse
import importlib.util
import itertools
import math
import pathlib
import statistics
import sys
import time

PACK_DIR = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_HOST = PACK_DIR / ".host" / "ComfyUI"
KEYWORDS = 8          # keyword columns the anchor and the probe touch
WAN_KINDS = ("weak", "weak fused", "source", "source fused", "probe", "probe fused")
HUNYUAN_KINDS = ("weak", "weak fused", "source", "source fused", "source 2 calls", "probe", "probe fused",
                 "probe 2 calls")
WAN_TEXT = 512        # umT5 context length
HUNYUAN_TEXT = 256    # LLaMA crop length


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--comfy", type=pathlib.Path, default=DEFAULT_HOST, help="ComfyUI host folder")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="default: bfloat16 on CUDA and on CPUs with bf16 units, else float32")
    p.add_argument("--heads", type=int, help="attention heads of 128 (default: CPU 2; CUDA Wan 40, Hunyuan 24)")
    p.add_argument("--wan-call-tokens", type=int, help="video tokens of the Wan text-call section "
                   "(default 32760 = Wan2.1-14B 480p, 81 frames)")
    p.add_argument("--wan-block-tokens", type=int, help="video tokens per Wan block (CPU default 3120, CUDA 32760)")
    p.add_argument("--hunyuan-tokens", type=int, help="video tokens per HunyuanVideo call and block "
                   "(CPU default 3120, CUDA 118800 = 720p, 129 frames)")
    p.add_argument("--step-tokens", type=int, help="video tokens of the whole-step section (CPU 1560, CUDA 32760)")
    p.add_argument("--resolve", type=float, default=0.004, help="target standard error of each median ratio")
    p.add_argument("--max-rounds", type=int, default=30)
    p.add_argument("--min-rounds", type=int, default=9)
    p.add_argument("--section-seconds", type=float, help="stop adding rounds to a section after this many "
                   "seconds (at least 3 rounds; default: none on CPU, 60 on CUDA, so a run fits 10 minutes)")
    p.add_argument("--dry-run", action="store_true", help="print the kernel each CUDA edit would take and exit")
    p.add_argument("--skip", default="", help="comma-separated sections to skip: wan-call, wan-block, "
                   "hunyuan-call, hunyuan-block, step, auto")
    return p.parse_args(argv)


class Bench:
    def __init__(self, args, torch):
        self.args, self.torch = args, torch
        self.cuda = args.device == "cuda"

    def clock(self, fn):
        torch = self.torch
        if self.cuda:
            torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            return time.perf_counter() - start
        start = time.thread_time()
        fn()
        return time.thread_time() - start

    def peak(self, fn):
        """Bytes allocated at the call's peak, net of what was alive before it."""
        torch = self.torch
        if self.cuda:
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            fn()
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - base
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                        key=lambda e: e.start_ns())
        now = top = 0
        for e in events:
            now += e.nbytes()
            top = max(top, now)
        return top

    def compare(self, title, configs, memory=True):
        """Interleaved rounds; prints each configuration's median time ratio to 'plain' and its peak."""
        names = list(configs)
        for fn in configs.values():   # warm-up: kernels, allocator, caches
            fn()
        times = {name: [] for name in names}
        ratios = {name: [] for name in names[1:]}
        deltas = {name: [] for name in names[1:]}
        rounds, started = 0, time.perf_counter()
        budget = self.args.section_seconds or (60.0 if self.cuda else math.inf)
        while rounds < self.args.max_rounds and (rounds < 3 or time.perf_counter() - started < budget):
            order = names[rounds % len(names):] + names[:rounds % len(names)]
            got = {name: self.clock(configs[name]) for name in order}
            for name in names:
                times[name].append(got[name])
            for name in names[1:]:
                ratios[name].append(got[name] / got["plain"])
                deltas[name].append(got[name] - got["plain"])
            rounds += 1
            if rounds >= self.args.min_rounds and all(_median_se(r) <= self.args.resolve for r in ratios.values()):
                break
        peaks = {name: self.peak(fn) for name, fn in configs.items()} if memory else {}
        unit = "s (CUDA wall)" if self.cuda else "s (thread CPU)"
        print(f"\n## {title}\n{rounds} interleaved rounds")
        print(f"| config | median {unit} | ratio to plain (median) | IQR of ratio | SE of median | "
              "ratio of minima | peak MiB |")
        print("|---|---|---|---|---|---|---|")
        for name in names:
            t = statistics.median(times[name])
            mem = f"{peaks[name] / 2**20:.1f}" if memory else "-"
            if name == "plain":
                print(f"| {name} | {t:.4f} | 1 | - | - | 1 | {mem} |")
                continue
            r = ratios[name]
            q1, _, q3 = statistics.quantiles(r, n=4)
            print(f"| {name} | {t:.4f} | {statistics.median(r):.4f} | {q1:.4f}-{q3:.4f} | {_median_se(r):.4f} | "
                  f"{min(times[name]) / min(times['plain']):.4f} | {mem} |")
        if memory:
            base = peaks["plain"]
            extra = {n: peaks[n] - base for n in names[1:]}
            print("extra peak over plain (MiB): " + ", ".join(f"{n} {v / 2**20:+.1f}" for n, v in extra.items())
                  + f"; each <= plain's peak ({base / 2**20:.1f} MiB): {all(v <= base for v in extra.values())}")
        return {n: (statistics.median(r), statistics.median(deltas[n])) for n, r in ratios.items()}


def _median_se(values):
    """Standard error of a median from the IQR (normal approximation: 1.2533·σ/√n, σ = IQR/1.349)."""
    if len(values) < 4:
        return math.inf
    q1, _, q3 = statistics.quantiles(values, n=4)
    return 1.2533 * (q3 - q1) / 1.349 / math.sqrt(len(values))


def boot(args):
    sys.path.insert(0, str(args.comfy.resolve()))
    sys.path.insert(0, str(PACK_DIR / "scripts"))
    from comfy.cli_args import args as host_args
    host_args.cpu = args.device == "cpu"
    host_args.use_pytorch_cross_attention = True   # plain = SDPA, the host's default on GPUs (CPU: sub-quad)
    return load_pack()


def load_pack():
    """torch, with the pack importable as ``focal_guidance`` (its __init__ imports no host module)."""
    import torch
    from register_pack import register_pack
    register_pack(PACK_DIR)
    return torch


def dry_run():
    """The kernel each edit would take on CUDA, by focal_core.fused's own rules, for each kernel SDPA
    may pick there (flash: Ampere/Ada 16-bit; cuDNN: Hopper 16-bit, torch >= 2.5; memory-efficient:
    fp32 or masked). A check of the dispatch logic without a GPU, not a measurement."""
    torch = load_pack()
    from focal_guidance.focal_core import fused, kernels
    from torch.nn.attention import SDPBackend
    print(f"# Dry run of the CUDA kernel choice, torch {torch.__version__} (cuDNN takes a bias: "
          f"{kernels.CUDNN_TAKES_BIAS}); head dim 128; 'one call': a recording's output is SDPA's own, so the "
          "block needs one attention")
    print("| family, edit | dtype | key mask | SDPA picks | kernel | one call |\n|---|---|---|---|---|---|")
    picks = {"flash": SDPBackend.FLASH_ATTENTION, "cuDNN": SDPBackend.CUDNN_ATTENTION,
             "efficient": SDPBackend.EFFICIENT_ATTENTION}
    rows = (("Wan text call, weak", True), ("Wan text call, source/probe", False),
            ("HunyuanVideo joint, any edit", False))
    for (label, bias), dtype, masked, (pick, choice) in itertools.product(
            rows, (torch.bfloat16, torch.float16, torch.float32), (False, True), picks.items()):
        if (dtype == torch.float32 and pick != "efficient") or (masked and pick == "flash"):
            continue   # SDPA picks neither flash nor cuDNN for fp32, nor flash with a mask
        path = kernels.choose_kernel(kernels.KernelQuery("cuda", dtype, 128, 128, True, bias, masked, int(choice)))
        one_call = "-" if bias else ("checked once at run time" if (path, pick) == (kernels.CUDA_CUDNN, "cuDNN") else
                                     "yes" if (path, pick) in ((kernels.CUDA_FLASH, "flash"),
                                                               (kernels.CUDA_EFFICIENT, "efficient")) else "no")
        print(f"| {label} | {str(dtype).split('.')[1]} | {masked} | {pick} | {path} | {one_call} |")
    for gamma in (0.5, 1.5, 3.0):
        fits = {str(d).split(".")[1]: math.exp(gamma) * torch.finfo(d).eps / 2 <= fused.MAX_ROUNDING_ERROR
                for d in (torch.bfloat16, torch.float16, torch.float32)}
        print(f"HunyuanVideo anchor bias down to -{gamma}: fused (rank-c) in " +
              ", ".join(d for d, ok in fits.items() if ok) + "; explicit in " +
              (", ".join(d for d, ok in fits.items() if not ok) or "none"))


def edits(torch, n, n_text, device):
    """The three edit kinds, shaped as the pack builds them (per-run tensors already on the device)."""
    from focal_guidance.focal_core.attention import TextEdit
    gen = torch.Generator().manual_seed(0)
    columns = torch.arange(KEYWORDS, device=device)
    bias = (torch.rand(n, KEYWORDS, generator=gen) * 1.5 - 0.5).to(device)
    source = torch.softmax(torch.randn(n, n_text, generator=gen), -1).to(device)
    return {"weak": [TextEdit(bias=bias, bias_columns=columns, source=source, alpha=0.3)],
            "source": [TextEdit(record_columns=slice(None))],
            "probe": [TextEdit(record_columns=columns)]}


def wan_text_attention(kind, edit_kinds):
    """An attention override doing what the Wan family does for the text call (k has WAN_TEXT keys).
    "… fused": the same on focal_core.fused; a recording is then one call where the fused kernel is
    SDPA's own (the wiring focal_core.fused proposes), else the host call plus a record-only one."""
    from focal_guidance.focal_core.attention import text_cross_attention
    from focal_guidance.focal_core.fused import fused_text_cross_attention
    from focal_guidance.focal_core.kernels import output_is_sdpas
    edit, is_fused = kind.split()[0], kind.endswith("fused")
    attend = fused_text_cross_attention if is_fused else text_cross_attention

    def run(q, k, v, heads, host):
        b, n, inner = q.shape
        qh, kh, vh = (t.view(b, -1, heads, inner // heads).transpose(1, 2) for t in (q, k, v))
        record_only = edit != "weak"
        one_call = is_fused and record_only and output_is_sdpas(qh, kh, vh)
        out = host() if record_only and not one_call else None
        res, _ = attend(qh, kh, vh, edit_kinds[edit], need_output=not record_only or one_call)
        return out if out is not None else res.transpose(1, 2).reshape(b, n, inner)

    def override(func, *args, **kwargs):
        q, k, v = args[:3]
        heads = args[3] if len(args) > 3 else kwargs["heads"]
        if kind == "plain" or k.shape[1] != WAN_TEXT:
            return func(*args, **kwargs)
        return run(q, k, v, heads, lambda: func(*args, **kwargs))
    return run, override


def hunyuan_joint_attention(kind, edit_kinds, n_video):
    """An attention override doing what the dispatcher does for HunyuanVideo's joint call ("… fused":
    with focal_core.fused wired into the family)."""
    from focal_guidance.focal_core.attention import (
        joint_attention_text_edit,
        lse_output_is_sdpas,
    )
    from focal_guidance.focal_core.fused import fused_joint_attention_text_edit
    from focal_guidance.focal_core.kernels import output_is_sdpas
    edit, is_fused = kind.split()[0], "fused" in kind
    attend, one_call_is_sdpas = ((fused_joint_attention_text_edit, output_is_sdpas) if is_fused
                                 else (joint_attention_text_edit, lse_output_is_sdpas))
    noted = set()

    def run(q, k, v, mask, host):
        two_calls = kind.endswith("2 calls")
        if edit in ("source", "probe") and not two_calls and not one_call_is_sdpas(q, k, v, mask):
            if kind not in noted:
                noted.add(kind)
                print(f"note: the kernel giving the log-sum-exp here is not SDPA's own, so '{kind}' makes two "
                      "calls, as the dispatcher does")
            two_calls = True
        out = host() if two_calls else None
        res, _ = attend(q, k, v, n_video, edit_kinds[edit], key_mask=mask)
        if out is not None:
            return out
        b, h, n, d = res.shape
        return res.transpose(1, 2).reshape(b, n, h * d)

    def override(func, *args, **kwargs):
        if kind == "plain":
            return func(*args, **kwargs)
        q, k, v = args[:3]
        return run(q, k, v, kwargs.get("mask"), lambda: func(*args, **kwargs))
    return run, override


def print_paths(configs):
    """The path each fused configuration took, as focal_core logs it at debug level (one more call each)."""
    import logging
    logger = logging.getLogger("focal_guidance.focal_core")
    messages = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: messages.append(record.getMessage())
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        for name, fn in configs.items():
            if name.endswith("fused"):
                messages.clear()
                fn()
                paths = list(dict.fromkeys(m.removeprefix("focal attention: ") for m in messages))
                print(f"path, {name}: " + "; ".join(paths))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def section_wan_call(bench, torch, dev, dtype, heads, n):
    from comfy.ldm.modules.attention import optimized_attention
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(1, n, heads * 128, generator=gen).to(dev, dtype)
    k, v = (torch.randn(1, WAN_TEXT, heads * 128, generator=gen).to(dev, dtype) for _ in range(2))
    kinds = edits(torch, n, WAN_TEXT, dev)
    configs = {"plain": lambda: optimized_attention(q, k, v, heads)}
    for kind in WAN_KINDS:
        run, _ = wan_text_attention(kind, kinds)
        configs[kind] = lambda run=run: run(q, k, v, heads, lambda: optimized_attention(q, k, v, heads))
    result = bench.compare(f"Wan text cross-attention call: {n} video tokens x {WAN_TEXT} text keys, "
                           f"{heads} heads of 128, {dtype}", configs)
    print_paths(configs)
    return result


def wan_block_at(bench, torch, dev, dtype, heads, n, calls):
    """Per-block ratios at ``n`` tokens composed from the call section: 1 + Δcall / plain block time.

    The extra work of an edited block is all in its text call, so this holds as long as the
    block's own time is measured at the same ``n`` (once: it is a scale, not a difference)."""
    block, inputs = _wan_block(torch, dev, dtype, heads, n)
    with torch.no_grad():
        if bench.cuda:   # the first CUDA call also loads kernels and libraries
            bench.clock(lambda: block(*inputs, transformer_options={}))
        seconds = bench.clock(lambda: block(*inputs, transformer_options={}))
    print(f"\n## Wan block at {n} tokens, composed: plain block {seconds:.3f} s (one timing)")
    print("| config | block ratio = 1 + median Δcall / block |\n|---|---|")
    for name, (_, delta) in calls.items():
        print(f"| {name} | {1 + delta / seconds:.4f} |")
    print("Wan 14B step, 8 weak + 2 source blocks of 40 (composed: 1 + (8 Δweak + 2 Δsource) / (40 blocks)): "
          + "; ".join(f"{label} {1 + (8 * calls[w][1] + 2 * calls[s][1]) / (40 * seconds):.4f}"
                      for label, w, s in (("explicit", "weak", "source"), ("fused", "weak fused", "source fused"))))


def _random_weights(block, torch, seed, dev, dtype):
    """A host block with seeded N(0, 0.02) weights (the host's ops leave them uninitialised)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.02)
    return block.to(dev, dtype)


def _wan_block(torch, dev, dtype, heads, n):
    import comfy.ops
    from comfy.ldm.wan.model import WanAttentionBlock
    dim = heads * 128
    block = _random_weights(WanAttentionBlock("t2v_cross_attn", dim, int(dim * 13824 / 5120), heads,
                                              operation_settings={"operations": comfy.ops.manual_cast}),
                            torch, 2, dev, dtype)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, n, dim, generator=gen).to(dev, dtype)
    e = torch.randn(1, 6, dim, generator=gen).to(dev, dtype)
    context = torch.randn(1, WAN_TEXT, dim, generator=gen).to(dev, dtype)
    return block, (x, e, _wan_freqs(torch, n, dev), context)


def section_wan_block(bench, torch, dev, dtype, heads, n):
    block, inputs = _wan_block(torch, dev, dtype, heads, n)
    dim = heads * 128
    kinds = edits(torch, n, WAN_TEXT, dev)
    configs = {}
    for kind in ("plain",) + WAN_KINDS:
        options = {"optimized_attention_override": wan_text_attention(kind, kinds)[1]}

        def call(options=options):
            with torch.no_grad():
                block(*inputs, transformer_options=options)
        configs[kind] = call
    return bench.compare(f"Wan block (host WanAttentionBlock, t2v): {n} video tokens, dim {dim} = {heads} heads, "
                         f"ffn {int(dim * 13824 / 5120)}, {dtype}", configs, memory=False)


def _wan_freqs(torch, n, dev):
    """RoPE frequencies as WanModel.rope_encode builds them (tokens laid along one axis: cost only)."""
    from comfy.ldm.flux.layers import EmbedND
    ids = torch.zeros(1, n, 3)
    ids[0, :, 2] = torch.arange(n)
    return EmbedND(dim=128, theta=10000.0, axes_dim=[44, 42, 42])(ids).movedim(1, 2).to(dev)


def section_hunyuan_call(bench, torch, dev, dtype, heads, n_video):
    from comfy.ldm.modules.attention import optimized_attention
    total = n_video + HUNYUAN_TEXT
    gen = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(1, heads, total, 128, generator=gen).to(dev, dtype) for _ in range(3))
    kinds = edits(torch, n_video, HUNYUAN_TEXT, dev)

    def host():
        return optimized_attention(q, k, v, heads, skip_reshape=True)
    configs = {"plain": host}
    for kind in HUNYUAN_KINDS:
        run, _ = hunyuan_joint_attention(kind, kinds, n_video)
        configs[kind] = lambda run=run: run(q, k, v, None, host)
    result = bench.compare(f"HunyuanVideo joint attention call: {n_video} video + {HUNYUAN_TEXT} text tokens, "
                           f"{heads} heads of 128, {dtype}", configs)
    print_paths(configs)
    return result


def section_hunyuan_block(bench, torch, dev, dtype, heads, n_video):
    import comfy.ops
    from comfy.ldm.flux.layers import DoubleStreamBlock
    hidden = heads * 128
    block = _random_weights(DoubleStreamBlock(hidden, heads, mlp_ratio=4.0, qkv_bias=True,
                                              operations=comfy.ops.manual_cast), torch, 5, dev, dtype)
    gen = torch.Generator().manual_seed(6)
    img = torch.randn(1, n_video, hidden, generator=gen).to(dev, dtype)
    txt = torch.randn(1, HUNYUAN_TEXT, hidden, generator=gen).to(dev, dtype)
    vec = torch.randn(1, hidden, generator=gen).to(dev, dtype)
    kinds = edits(torch, n_video, HUNYUAN_TEXT, dev)
    configs = {}
    for kind in ("plain",) + HUNYUAN_KINDS:
        options = {"optimized_attention_override": hunyuan_joint_attention(kind, kinds, n_video)[1]}

        def call(options=options):
            with torch.no_grad():
                block(img, txt, vec, None, transformer_options=options)
        configs[kind] = call
    result = bench.compare(f"HunyuanVideo double-stream block (host DoubleStreamBlock, no RoPE): {n_video} video + "
                           f"{HUNYUAN_TEXT} text tokens, hidden {hidden} = {heads} heads, {dtype}", configs,
                           memory=False)
    print("HunyuanVideo step with a probe on every block (composed: every block pays the block ratio): "
          f"explicit {result['probe'][0]:.4f}, fused {result['probe fused'][0]:.4f}")
    return result


def section_steps(bench, torch, dev, dtype, n_video):
    """One sampling step (cfg 5: cond and uncond) through the pack's own nodes and the host's sampler."""
    import comfy.clip_vision
    import comfy.sample
    import comfy.sd
    import make_tiny_models as tiny
    from focal_guidance.nodes.probe import SemanticLayerProbe
    from focal_guidance.nodes.transfer import FocalAttentionTransfer
    frames, h = max(1, n_video // (30 * 52)), 60
    w = 2 * (n_video // (frames * h // 2))
    results = {}
    for family, sd in (("Wan2.1 I2V, 4 blocks", tiny.wan_state_dict("i2v", 36, num_layers=4)),
                       ("HunyuanVideo I2V, 2 double + 2 single blocks",
                        tiny.hunyuan_i2v_state_dict(depth=2, depth_single=2))):
        model = comfy.sd.load_diffusion_model_state_dict({k: t.to(dtype) for k, t in sd.items()},
                                                         model_options={"dtype": dtype})
        is_wan = family.startswith("Wan")
        channels = 16
        latent = torch.zeros(1, channels, frames, h, w)
        noise = comfy.sample.prepare_noise(latent, 0)
        models = {"plain": model,
                  "transfer (weak 1-2, source 0)": FocalAttentionTransfer.execute(
                      model, "1-2", "0", 0.3, 0.0, 0.0, 0.0, 1.0, "positive", "head mean", "all text tokens",
                      "whole schedule").args[0],
                  "probe (all blocks)": SemanticLayerProbe.execute(model, 1, 0.0, 1.0, "positive",
                                                                   "whole schedule", None).args[0]}

        def cond(seed, is_wan=is_wan):
            gen = torch.Generator().manual_seed(seed)
            if is_wan:
                context = torch.zeros(1, WAN_TEXT, 4096)
                context[:, :24] = torch.randn(1, 24, 4096, generator=gen)
                vision = comfy.clip_vision.Output()
                vision.penultimate_hidden_states = torch.randn(1, 257, 1280, generator=gen)
                return [[context, {"clip_vision_output": vision}]]
            return [[torch.randn(1, 40, 4096, generator=gen), {"pooled_output": torch.randn(1, 768, generator=gen),
                                                               "guidance": 6.0}]]
        if not is_wan:
            latent = torch.zeros(1, 16, frames, h, w)
        configs = {}
        for name, m in models.items():   # the families run their edits on the fused kernels, as shipped
            def step(m=m, latent=latent, noise=noise):
                comfy.sample.sample(m, noise, 1, 5.0, "euler", "simple", cond(1), cond(2), latent, seed=0,
                                    disable_pbar=True)
            configs[name] = step
        results[family] = bench.compare(f"Whole step, {family}, dim 256 = 2 heads, {frames}x{h // 2}x{w // 2} = "
                                        f"{frames * (h // 2) * (w // 2)} video tokens, cfg batch 2, {dtype}",
                                        configs, memory=False)
    return results


def section_auto_run(bench, torch, dev, dtype, n_video, steps=8):
    """A whole run: auto mode (observe step 0, then pick and guide) against the same transfer with
    hand-picked blocks and against the plain model. Target: auto at most 1.05x the hand-picked run."""
    import comfy.sample
    import comfy.sd
    import make_tiny_models as tiny
    from focal_guidance.focal_core.blocks import format_block_list
    from focal_guidance.focal_core.report import analyse
    from focal_guidance.nodes.transfer import FocalAttentionTransfer
    frames, h = max(1, n_video // (30 * 52)), 60
    w = 2 * (n_video // (frames * h // 2))
    model = comfy.sd.load_diffusion_model_state_dict(
        {k: t.to(dtype) for k, t in tiny.wan_state_dict("t2v", 36, num_layers=8).items()},
        model_options={"dtype": dtype})
    common = (0.3, 0.0, 0.0, 0.0, 1.0, "positive", "head mean", "all text tokens", "whole schedule")
    rules = {"auto_kappa": 0.0, "auto_exclude_ends": 1}   # kappa 0: some block is always picked
    auto, auto_report = FocalAttentionTransfer.execute(model, "auto", "auto", *common, **rules).args
    latent = torch.zeros(1, 16, frames, h, w)
    noise = comfy.sample.prepare_noise(latent, 0)

    def cond(seed):
        context = torch.zeros(1, WAN_TEXT, 4096)
        context[:, :24] = torch.randn(1, 24, 4096, generator=torch.Generator().manual_seed(seed))
        return [[context, {}]]

    def run(m):
        return comfy.sample.sample(m, noise, steps, 5.0, "euler", "simple", cond(1), cond(2), latent, seed=0,
                                   disable_pbar=True)
    run(auto)   # the picks are a function of the run: read them from its recording, as the Report does
    report = analyse(auto_report.recordings.runs[-1], 8, "attention", rules["auto_kappa"], 2,
                     rules["auto_exclude_ends"])
    weak, sources = format_block_list(report.weak), format_block_list(report.responsive)
    hand = FocalAttentionTransfer.execute(model, weak, sources, *common).args[0]
    return bench.compare(f"Whole run, Wan T2V-shaped (in_dim 36), 8 blocks, {steps} steps, cfg 5, "
                         f"{frames * (h // 2) * (w // 2)} video tokens, {dtype}; auto picked weak {weak}, "
                         f"sources {sources}", {"plain": lambda: run(model), "hand-picked transfer": lambda: run(hand),
                                                "auto transfer": lambda: run(auto)}, memory=True)


def main():
    args = parse_args()
    if args.dry_run:
        dry_run()
        return
    torch = boot(args)
    cuda = args.device == "cuda"
    if not cuda:
        torch.set_num_threads(1)
    bf16_cpu = not cuda and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    dtype = getattr(torch, args.dtype or ("bfloat16" if cuda or bf16_cpu else "float32"))
    dev = torch.device(args.device)
    processor = torch.cuda.get_device_name() if cuda else f"CPU {torch.backends.cpu.get_cpu_capability()}, 1 thread"
    print(f"# Focal Guidance cost, {args.device} ({processor}), "
          f"torch {torch.__version__}, {dtype}" + ("" if cuda or bf16_cpu else " (this CPU has no bf16 matmul units)"))
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    wan_heads = args.heads or (40 if cuda else 2)
    hy_heads = args.heads or (24 if cuda else 2)
    bench = Bench(args, torch)
    if "wan-call" not in skip:
        n = args.wan_call_tokens or 32760
        calls = section_wan_call(bench, torch, dev, dtype, wan_heads, n)
        wan_block_at(bench, torch, dev, dtype, wan_heads, n, calls)
    if "wan-block" not in skip:
        section_wan_block(bench, torch, dev, dtype, wan_heads, args.wan_block_tokens or (32760 if cuda else 3120))
    if "hunyuan-call" not in skip:
        section_hunyuan_call(bench, torch, dev, dtype, hy_heads, args.hunyuan_tokens or (118800 if cuda else 3120))
    if "hunyuan-block" not in skip:
        section_hunyuan_block(bench, torch, dev, dtype, hy_heads, args.hunyuan_tokens or (118800 if cuda else 3120))
    kornia = importlib.util.find_spec("kornia") is not None
    if not kornia and not {"step", "auto"} <= skip:
        print("\nskipped the whole-step and auto sections: kornia is not installed (the pack's nodes import it); "
              "the composed step ratios above stand in")
    if "step" not in skip and kornia:
        section_steps(bench, torch, dev, dtype, args.step_tokens or (32760 if cuda else 1560))
    if "auto" not in skip and kornia:
        section_auto_run(bench, torch, dev, dtype, args.step_tokens or (32760 if cuda else 1560))
    print(f"\ntotal process CPU time {time.process_time():.0f} s")


if __name__ == "__main__":
    main()
