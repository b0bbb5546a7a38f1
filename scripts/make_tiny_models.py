"""Write tiny random checkpoints, built from the host's own model classes, into a models folder.

Random weights exercise mechanics only (shapes, hooks, detection), never quality.
Files take the stock workflow file names, so the example workflows load them unchanged:

    diffusion_models/wan2.1_i2v_480p_14B_fp16.safetensors       Wan2.1 I2V (img_emb, in_dim 36)
    diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors           Wan2.1 T2V (in_dim 16)
    diffusion_models/wan2.2_i2v_high_noise_14B_fp16.safetensors Wan2.2 I2V A14B shape (no img_emb, in_dim 36)
    diffusion_models/wan2.2_i2v_low_noise_14B_fp16.safetensors  its second expert
    diffusion_models/wan2.2_ti2v_5B_fp16.safetensors            Wan2.2 TI2V-5B (48-channel latent: in/out_dim 48)
    diffusion_models/hunyuan_video_image_to_video_720p_bf16.safetensors  HunyuanVideo I2V (in_channels 33)
    diffusion_models/hunyuanvideo1.5_720p_i2v_fp16.safetensors  HunyuanVideo 1.5 I2V (SigLIP, byT5, patch 1)
    vae/wan_2.1_vae.safetensors                                  Wan2.1 VAE with a tiny base width
    vae/wan2.2_vae.safetensors                                   Wan2.2 VAE (48-channel latent, /16) at base width 8
    vae/hunyuanvideo15_vae_fp16.safetensors                      HunyuanVideo 1.5 VAE (32 channels, /16), 1/16 width

The host's loader reads the Wan2.1 VAE's width from the file but builds the Wan2.2 and HunyuanVideo 1.5
VAEs at their full, fixed widths (0.7 and 1.3 billion parameters), so the stock VAELoader refuses these
two narrow files; tests load them with the test-only FocalStandInVAELoader (tests/standin_nodes), which
runs the host's own detection with the detected class narrowed to the file's width.

Text encoders (umT5-XXL, LLaVA-LLaMA, Qwen2.5-VL) and CLIP vision towers have fixed configs in the host's
loaders, so no small file can stand in for them: see README "Stand-ins".

Usage: python scripts/make_tiny_models.py --comfy PATH_TO_COMFYUI --out MODELS_DIR
"""
import argparse
import dataclasses
import pathlib
import sys

SEED = 20260112

WAN_I2V = "wan2.1_i2v_480p_14B_fp16.safetensors"
WAN_T2V = "wan2.1_t2v_1.3B_fp16.safetensors"
WAN22_HIGH = "wan2.2_i2v_high_noise_14B_fp16.safetensors"
WAN22_LOW = "wan2.2_i2v_low_noise_14B_fp16.safetensors"
WAN22_TI2V = "wan2.2_ti2v_5B_fp16.safetensors"
HUNYUAN_I2V = "hunyuan_video_image_to_video_720p_bf16.safetensors"
HUNYUAN15_I2V = "hunyuanvideo1.5_720p_i2v_fp16.safetensors"
WAN_VAE = "wan_2.1_vae.safetensors"
WAN22_VAE = "wan2.2_vae.safetensors"
HUNYUAN15_VAE = "hunyuanvideo15_vae_fp16.safetensors"


def _randomised(module, seed):
    import torch
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for name, tensor in module.state_dict().items():
        leaf = name.rsplit(".", 1)[-1]
        is_norm_gain = leaf in ("gamma", "scale") or ("norm" in name and leaf == "weight")
        if is_norm_gain and tensor.ndim <= 4:
            sd[name] = torch.ones_like(tensor)
        else:
            sd[name] = torch.randn(tensor.shape, generator=gen) * 0.05
    return sd


def wan_state_dict(model_type="i2v", in_dim=36, num_layers=6, dim=256, seed=SEED, out_dim=16):
    """A WanModel with dim 256 (2 heads of 128: the host derives heads as dim // 128)."""
    import comfy.ops
    from comfy.ldm.wan.model import WanModel
    model = WanModel(model_type=model_type, dim=dim, ffn_dim=2 * dim, num_heads=dim // 128,
                     num_layers=num_layers, in_dim=in_dim, out_dim=out_dim,
                     operations=comfy.ops.disable_weight_init)
    return _randomised(model, seed)


def host_params(params_class, **values):
    """The values a host's params dataclass has fields for: newer hosts add fields (0.12.x requires
    HunyuanVideo's meanflow_sum and Flux's txt_ids_dims), which 0.3.75 would refuse."""
    fields = {f.name for f in dataclasses.fields(params_class)}
    return {k: v for k, v in values.items() if k in fields}


def hunyuan_state_dict(seed=SEED, **params):
    """A HunyuanVideo-network model with hidden 256 = 2 heads of 128 (the host fixes axes_dim to 128)."""
    import comfy.ops
    from comfy.ldm.hunyuan_video.model import HunyuanVideo, HunyuanVideoParams
    values = dict(hidden_size=256, num_heads=2, theta=256, qkv_bias=True, mlp_ratio=4.0, meanflow=False,
                  meanflow_sum=False, byt5=False, use_cond_type_embedding=False, vision_in_dim=None)
    model = HunyuanVideo(**host_params(HunyuanVideoParams, **{**values, **params}),
                         operations=comfy.ops.disable_weight_init)
    return _randomised(model, seed)


def hunyuan_i2v_state_dict(depth=2, depth_single=4, seed=SEED):
    """HunyuanVideo 1.0 I2V: in_channels 33, a 4096-wide LLaVA context, CLIP-L pooled vector, guidance."""
    return hunyuan_state_dict(seed, in_channels=33, out_channels=16, vec_in_dim=768, context_in_dim=4096,
                              depth=depth, depth_single_blocks=depth_single, axes_dim=[16, 56, 56],
                              patch_size=[1, 2, 2], guidance_embed=True)


def hunyuan15_i2v_state_dict(depth=2, depth_single=4, seed=SEED):
    """HunyuanVideo 1.5 I2V: 32-channel latent (in_channels 65 = noise, image, mask), patch 1, a 3584-wide
    Qwen2.5-VL context, a byT5 glyph mapper, SigLIP vision_in (1152) and the condition-type embedding."""
    return hunyuan_state_dict(seed, in_channels=65, out_channels=32, vec_in_dim=None, context_in_dim=3584,
                              depth=depth, depth_single_blocks=depth_single, axes_dim=[16, 56, 56],
                              patch_size=[1, 1, 1], guidance_embed=False, byt5=True,
                              use_cond_type_embedding=True, vision_in_dim=1152)


def wan_vae_state_dict(dim=8, seed=SEED):
    """The Wan2.1 VAE at base width 8 (the host reads the width from decoder.head.0.gamma)."""
    from comfy.ldm.wan.vae import WanVAE
    vae = WanVAE(dim=dim, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                 temperal_downsample=[False, True, True])
    return _randomised(vae, seed)


def wan22_vae_state_dict(dim=8, seed=SEED):
    """The Wan2.2 VAE (48 latent channels, 16x spatial) with encoder and decoder base width ``dim``
    (the host builds 160 / 256)."""
    from comfy.ldm.wan.vae2_2 import WanVAE
    vae = WanVAE(dim=dim, dec_dim=dim, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                 temperal_downsample=[False, True, True])
    return _randomised(vae, seed)


def hunyuan15_vae_state_dict(narrow=16, seed=SEED):
    """The HunyuanVideo 1.5 VAE (32 latent channels, 16x spatial, 4x temporal) with every block width
    divided by ``narrow`` (the host builds 128 ... 1024)."""
    from comfy.ldm.models.autoencoder import AutoencodingEngine
    config = {"block_out_channels": [c // narrow for c in (128, 256, 512, 1024, 1024)], "in_channels": 3,
              "out_channels": 3, "num_res_blocks": 2, "ffactor_spatial": 16, "ffactor_temporal": 4,
              "downsample_match_channel": True, "upsample_match_channel": True, "z_channels": 32}
    vae = AutoencodingEngine(regularizer_config={"target": "comfy.ldm.models.autoencoder.EmptyRegularizer"},
                             encoder_config={"target": "comfy.ldm.hunyuan_video.vae_refiner.Encoder", "params": config},
                             decoder_config={"target": "comfy.ldm.hunyuan_video.vae_refiner.Decoder", "params": config})
    return _randomised(vae, seed)


def write_all(out_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Write every tiny checkpoint (skipping files already present) and return their paths."""
    import torch
    from safetensors.torch import save_file
    makers = {
        f"diffusion_models/{WAN_I2V}": lambda: wan_state_dict("i2v", 36),
        f"diffusion_models/{WAN_T2V}": lambda: wan_state_dict("t2v", 16, seed=SEED + 1),
        f"diffusion_models/{WAN22_HIGH}": lambda: wan_state_dict("t2v", 36, seed=SEED + 2),
        f"diffusion_models/{WAN22_LOW}": lambda: wan_state_dict("t2v", 36, seed=SEED + 3),
        f"diffusion_models/{WAN22_TI2V}": lambda: wan_state_dict("t2v", 48, seed=SEED + 4, out_dim=48),
        f"diffusion_models/{HUNYUAN_I2V}": hunyuan_i2v_state_dict,
        f"diffusion_models/{HUNYUAN15_I2V}": hunyuan15_i2v_state_dict,
        f"vae/{WAN_VAE}": wan_vae_state_dict,
        f"vae/{WAN22_VAE}": wan22_vae_state_dict,
        f"vae/{HUNYUAN15_VAE}": hunyuan15_vae_state_dict,
    }
    written = {}
    for rel, make in makers.items():
        path = out_dir / rel
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".partial")
            save_file({k: v.to(torch.float16).contiguous() for k, v in make().items()}, str(tmp))
            tmp.rename(path)
        written[rel] = path
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfy", type=pathlib.Path, required=True, help="ComfyUI folder (the host)")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="models folder to write into")
    args = parser.parse_args()
    sys.path.insert(0, str(args.comfy.resolve()))
    import torch
    from comfy.cli_args import args as host_args
    host_args.cpu = not torch.cuda.is_available()  # the host would otherwise probe CUDA at import
    for rel, path in write_all(args.out.resolve()).items():
        print(f"{rel}: {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
