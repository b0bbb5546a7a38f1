"""In-process helpers: load a tiny checkpoint with the host's loader, patch it through the pack's
nodes' own ``execute``, and sample it with comfy.sample."""
import torch

import comfy.clip_vision
import comfy.sample
import comfy.sd

import make_tiny_models as tiny

FILES = {
    "wan_i2v": tiny.WAN_I2V,
    "wan_t2v": tiny.WAN_T2V,
    "wan22_i2v": tiny.WAN22_HIGH,
    "hunyuan_i2v": tiny.HUNYUAN_I2V,
}
TEXT_TOKENS = 7  # real prompt tokens in the random conditioning; the rest is zero padding


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
    context = torch.randn(1, text_tokens + 8, 4096, generator=gen)
    return [[context, {"pooled_output": torch.randn(1, 768, generator=gen), "guidance": 6.0}]]


def latent(frames=5, height=64, width=96, batch=1):
    """Empty video latent: 16 channels, (frames-1)/4+1 latent frames, /8 spatially."""
    return torch.zeros(batch, 16, (frames - 1) // 4 + 1, height // 8, width // 8)


def sample(model, family, steps=3, cfg=5.0, sampler="euler", seed=0, latent_image=None, noise=None, **kw):
    latent_image = latent() if latent_image is None else latent_image
    noise = comfy.sample.prepare_noise(latent_image, seed) if noise is None else noise
    return comfy.sample.sample(model, noise, steps, cfg, sampler, "simple", conditioning(family, 1),
                               conditioning(family, 2), latent_image, seed=seed, disable_pbar=True, **kw)


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
             window_of="whole schedule"):
    """Focal Attention Transfer's output MODEL."""
    from focal_guidance.nodes.transfer import FocalAttentionTransfer
    return FocalAttentionTransfer.execute(model, weak, sources, alpha, beta, gamma, start, end, branch,
                                          heads, columns, window_of, anchor).args[0]


def probe(model, steps=2, start=0.0, end=1.0, branch="positive", anchor=None, window_of="whole schedule"):
    """Semantic Layer Probe's (MODEL, PROBE) outputs."""
    from focal_guidance.nodes.probe import SemanticLayerProbe
    return SemanticLayerProbe.execute(model, steps, start, end, branch, window_of, anchor).args
