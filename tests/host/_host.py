"""In-process helpers: load a tiny checkpoint with the host's loader, patch it through the pack's
nodes' own ``execute``, and sample it with comfy.sample."""
import torch

import comfy.clip_vision
import comfy.sample
import comfy.sd

import make_tiny_models as tiny
from comfy_host import COMFY_DIR
from focal_guidance.nodes.report import SemanticLayerReport

FILES = {
    "wan_i2v": tiny.WAN_I2V,
    "wan_t2v": tiny.WAN_T2V,
    "wan22_i2v": tiny.WAN22_HIGH,
    "wan22_ti2v": tiny.WAN22_TI2V,
    "hunyuan_i2v": tiny.HUNYUAN_I2V,
    "hunyuan15_i2v": tiny.HUNYUAN15_I2V,
}
TEXT_TOKENS = 7  # real prompt tokens in the random conditioning; the rest is zero padding
SIGLIP_TOKENS, GLYPH_TOKENS = 729, 5   # HunyuanVideo 1.5's image and byT5 tokens before the prompt
# Latent (channels, height, width) per family for the default 5-frame 64x96 video, so every family has
# the token grid (2, 4, 6): Wan2.2 TI2V-5B's VAE compresses 16x into 48 channels (patch 2, so a 128x192
# video), HunyuanVideo 1.5's 16x into 32 channels (patch 1).
LATENTS = {"wan22_ti2v": (48, 8, 12), "hunyuan15_i2v": (32, 4, 6)}


def load(models_dir, family):
    return comfy.sd.load_diffusion_model(str(models_dir / "diffusion_models" / FILES[family]))


def conditioning(family, seed, text_tokens=TEXT_TOKENS):
    """Random conditioning shaped like the real encoders' output for ``family``."""
    gen = torch.Generator().manual_seed(seed)
    if family.startswith("wan"):
        context = torch.zeros(1, 512, 4096)
        context[:, :text_tokens] = torch.randn(1, text_tokens, 4096, generator=gen)
        extra = {}
        if family == "wan_i2v":
            vision = comfy.clip_vision.Output()
            vision.penultimate_hidden_states = torch.randn(1, 257, 1280, generator=gen)
            extra["clip_vision_output"] = vision
        return [[context, extra]]
    if family == "hunyuan15_i2v":   # Qwen2.5-VL context, SigLIP image tokens, byT5 glyph tokens; the host's
        # HunyuanVideo conds read pooled_output, which 1.5 (no vector input) never uses
        vision = comfy.clip_vision.Output()
        vision.last_hidden_state = torch.randn(1, SIGLIP_TOKENS, 1152, generator=gen)
        return [[torch.randn(1, text_tokens, 3584, generator=gen),
                 {"clip_vision_output": vision, "pooled_output": None,
                  "conditioning_byt5small": torch.randn(1, GLYPH_TOKENS, 1472, generator=gen)}]]
    context = torch.randn(1, text_tokens + 8, 4096, generator=gen)
    return [[context, {"pooled_output": torch.randn(1, 768, generator=gen), "guidance": 6.0}]]


def latent(frames=5, height=64, width=96, batch=1, family=None):
    """Empty video latent: 16 channels, (frames-1)/4+1 latent frames, /8 spatially; LATENTS for other VAEs."""
    if family in LATENTS:
        channels, h, w = LATENTS[family]
        return torch.zeros(batch, channels, (frames - 1) // 4 + 1, h, w)
    return torch.zeros(batch, 16, (frames - 1) // 4 + 1, height // 8, width // 8)


def sample(model, family, steps=3, cfg=5.0, sampler="euler", seed=0, latent_image=None, noise=None, **kw):
    latent_image = latent(family=family) if latent_image is None else latent_image
    noise = comfy.sample.prepare_noise(latent_image, seed) if noise is None else noise
    return comfy.sample.sample(model, noise, steps, cfg, sampler, "simple", conditioning(family, 1),
                               conditioning(family, 2), latent_image, seed=seed, disable_pbar=True, **kw)


def _patcher(config_class, unet_config):
    """A ModelPatcher around a model the host builds from its own config class and a tiny config."""
    import comfy.model_patcher
    model = config_class(unet_config).get_model({}, device=torch.device("cpu"))
    return comfy.model_patcher.ModelPatcher(model, torch.device("cpu"), torch.device("cpu"))


def tiny_unsupported(name):
    """A tiny model of a family Focal Guidance must refuse: flux, hunyuan_image_21, ltxv or sd15."""
    import comfy.supported_models as sm
    from comfy.ldm.flux.model import FluxParams
    from comfy.ldm.hunyuan_video.model import HunyuanVideoParams
    if name == "sd15":
        return tiny_sd15()
    if name == "flux":
        return _patcher(sm.Flux, {"image_model": "flux", **tiny.host_params(
            FluxParams, in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=64, hidden_size=128,
            mlp_ratio=2.0, num_heads=1, depth=1, depth_single_blocks=1, axes_dim=[16, 56, 56], theta=10000,
            patch_size=2, qkv_bias=True, guidance_embed=False, txt_ids_dims=[])})
    if name == "hunyuan_image_21":   # the HunyuanVideo network with 2-d patches: an image model
        return _patcher(sm.HunyuanImage21, {"image_model": "hunyuan_video", **tiny.host_params(
            HunyuanVideoParams, in_channels=64, out_channels=64, vec_in_dim=None, context_in_dim=64,
            hidden_size=128, mlp_ratio=2.0, num_heads=1, depth=1, depth_single_blocks=1, axes_dim=[64, 64],
            theta=256, patch_size=[1, 1], qkv_bias=True, guidance_embed=False, byt5=False, meanflow=False,
            meanflow_sum=False, use_cond_type_embedding=False, vision_in_dim=None)})
    return _patcher(sm.LTXV, {"image_model": "ltxv", "num_layers": 1, "attention_head_dim": 32,
                              "num_attention_heads": 2, "cross_attention_dim": 64, "caption_channels": 64,
                              "in_channels": 128, "out_channels": 128})


def tiny_sd15():
    """A ModelPatcher around a tiny SD1.5-config UNet: a family Focal Guidance must refuse."""
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models
    config = comfy.supported_models.SD15({
        "context_dim": 64, "model_channels": 32, "use_linear_in_transformer": False, "in_channels": 4,
        "out_channels": 4, "num_res_blocks": [1], "channel_mult": [1], "transformer_depth": [1],
        "transformer_depth_output": [1, 1], "num_head_channels": 32, "transformer_depth_middle": 1,
        "use_spatial_transformer": True, "adm_in_channels": None, "use_temporal_attention": False,
        "image_size": 32})
    unet = comfy.model_base.BaseModel(config, device=torch.device("cpu"))
    return comfy.model_patcher.ModelPatcher(unet, torch.device("cpu"), torch.device("cpu"))


def transfer(model, weak="2-3", sources="1, 4", alpha=0.5, beta=0.0, gamma=0.0, start=0.0, end=1.0,
             branch="positive", heads="head mean", columns="all text tokens", anchor=None,
             window_of="whole schedule", with_report=False, **auto):
    """Focal Attention Transfer's output MODEL (and its auto_report handle when asked)."""
    from focal_guidance.nodes.transfer import FocalAttentionTransfer
    out = FocalAttentionTransfer.execute(model, weak, sources, alpha, beta, gamma, start, end, branch, heads,
                                         columns, window_of, anchor=anchor, **auto).args
    return out if with_report else out[0]


def probe(model, steps=2, start=0.0, end=1.0, branch="positive", anchor=None, window_of="whole schedule"):
    """Semantic Layer Probe's (MODEL, PROBE) outputs."""
    from focal_guidance.nodes.probe import SemanticLayerProbe
    return SemanticLayerProbe.execute(model, steps, start, end, branch, window_of, anchor).args


def context_windows(model, length=9, overlap=4, **newer):
    """Core "WAN Context Windows (Manual)" on ``model`` (pixel frames, as the node takes them): with 17
    frames (5 latent), windows of 3 latent frames. Inputs a host lacks are left out (0.3.75 has no
    freenoise, 0.33 adds retain_first_frame)."""
    import inspect
    from comfy_extras.nodes_context_windows import WanContextWindowsManualNode as node
    wanted = dict(model=model, context_length=length, context_overlap=overlap, context_schedule="standard_static",
                  context_stride=1, closed_loop=False, fuse_method="pyramid", freenoise=False, **newer)
    known = inspect.signature(node.execute).parameters
    return node.execute(**{k: v for k, v in wanted.items() if k in known}).args[0]


# Real host tokenizers with no weights (the token spans need none).
TEXT_ENCODERS = COMFY_DIR / "comfy" / "text_encoders"


def host_clip(tokenizer):
    """A host ``comfy.sd.CLIP`` with a real tokenizer and no model (the spans need no weights)."""
    from standin_nodes.word_tokenizer import weightless_clip
    return weightless_clip(tokenizer)


def wan_tokenizer():
    from comfy.text_encoders.wan import WanT5Tokenizer
    spiece = (TEXT_ENCODERS / "t5_pile_tokenizer" / "tokenizer.model").read_bytes()
    return WanT5Tokenizer(tokenizer_data={"spiece_model": spiece})


def hunyuan_tokenizer():
    """The host's HunyuanVideo tokenizer. transformers ≥ 5 rebuilds ``LlamaTokenizerFast`` with a
    sentencepiece pre-tokenizer that drops every space of LLaMA-3 text (a host/transformers
    mismatch, not ours), so the same tokenizer.json is then loaded as it is under transformers 4."""
    from comfy.text_encoders.hunyuan_video import HunyuanVideoTokenizer
    from transformers import PreTrainedTokenizerFast
    tok = HunyuanVideoTokenizer()
    # Asked as Region Anchor asks every host tokenizer (transformers, sentencepiece or the host's own
    # BPETokenizer of ComfyUI 0.33): token ids through the SDTokenizer, pieces from its inv_vocab.
    ids = [t for t, _ in tok.llama.tokenize_with_weights("a cat")[0]]
    if not any(tok.llama.inv_vocab.get(t, "").startswith("Ġ") for t in ids):
        tok.llama.tokenizer = PreTrainedTokenizerFast.from_pretrained(str(TEXT_ENCODERS / "llama_tokenizer"))
    return tok


# A Wan with planted Semantic-Weak Layers, for the probe and auto mode.
PLANTED = (5, 9)


def report(handle, latent, metric="attention", kappa=2.0, top_r=2, exclude_ends=2, frame=0, image=None):
    return SemanticLayerReport.execute(handle, {"samples": latent}, metric, kappa, top_r, exclude_ends,
                                       "rook", frame, image)


def smooth_latent(frames=2, height=16, width=24):
    """A spatially smooth latent: with zero noise the token grid stays coherent through the blocks."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    channels = [torch.sin(3 * xx * (c % 3 + 1) + c) * torch.cos(2 * yy * (c % 2 + 1)) for c in range(16)]
    return torch.stack(channels)[None, :, None].repeat(1, 1, frames, 1, 1)


def synthetic_wan(seed, planted=()):
    """A 16-block Wan T2V whose residual updates are quiet, so text responses are spatially coherent.

    In ``planted`` blocks the text key projection is zeroed: attention over the prompt becomes
    uniform, the textbook Semantic-Weak Layer (flat response, no spatial structure).
    """
    sd = tiny.wan_state_dict("t2v", 16, num_layers=16, seed=seed)
    for key in sd:
        if any(part in key for part in (".self_attn.o.", ".ffn.2.", ".cross_attn.o.")):
            sd[key] = sd[key] * 0.01
    for block in planted:
        for key in (f"blocks.{block}.cross_attn.k.weight", f"blocks.{block}.cross_attn.k.bias"):
            sd[key] = torch.zeros_like(sd[key])
    return comfy.sd.load_diffusion_model_state_dict(sd)
