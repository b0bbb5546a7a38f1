"""TEST-ONLY stand-ins for HunyuanVideo 1.5's encoders (Qwen2.5-VL-7B + byT5 text, SigLIP vision), whose
host loaders have fixed multi-GB configs. They give the real shapes, deterministically from their inputs:

- encode_text (FocalStandInTextEncode, family ``hunyuan_video_15``): context [1, n, 3584] with one row
  per word and then the 5 template tokens the host keeps after the prompt ('<|im_end|>', newline,
  '<|im_start|>', 'assistant', newline), no pooled output; quoted text in the prompt adds
  conditioning_byt5small [1, m, 1472], one row per UTF-8 byte of the host's 'Text "...". ' glyph
  string plus its end token, as the byT5 tokenizer counts them.
- FocalStandInSigLIPVision (image) -> CLIP_VISION_OUTPUT shaped like sigclip_vision_patch14_384:
  last_hidden_state and penultimate_hidden_states [B, 729, 1152] (27x27 patches of 14 px at 384 px,
  no class token) and image_embeds [B, 1152], from the patches' colour statistics.
"""
import re

import torch
from comfy_api.latest import io

import comfy.clip_vision

QWEN_DIM, BYT5_DIM = 3584, 1472
TEMPLATE_TAIL = ["<|im_end|>", "\n", "<|im_start|>", "assistant", "\n"]
GLYPH_QUOTES = (r'\"(.*?)\"', r"‘(.*?)’", r"“(.*?)”")   # the host's HunyuanImageTokenizer patterns, in order
SIGLIP_SIZE, SIGLIP_PATCH, SIGLIP_DIM = 384, 14, 1152


def glyph_text(text: str) -> str:
    """The string the host's tokenizer gives byT5: every quoted span as 'Text "...". '."""
    quoted = [m for pattern in GLYPH_QUOTES for m in re.findall(pattern, text)]
    return "".join(f'Text "{q}". ' for q in quoted)


def encode_text(text: str, seed: int):
    from . import _randn
    tokens = text.split() + TEMPLATE_TAIL
    context = torch.stack([_randn(QWEN_DIM, "token", "hunyuan_video_15", seed, i, t) for i, t in enumerate(tokens)])
    extra = {"pooled_output": None}
    glyphs = glyph_text(text)
    if glyphs:
        rows = len(glyphs.encode("utf-8")) + 1
        extra["conditioning_byt5small"] = _randn((1, rows, BYT5_DIM), "byt5", seed, glyphs)
    return [[context.unsqueeze(0), extra]]


def encode_siglip(image: torch.Tensor) -> comfy.clip_vision.Output:
    """image: IMAGE [B, H, W, C] in 0..1."""
    from . import _projection
    pixels = comfy.clip_vision.clip_preprocess(image.float().cpu(), size=SIGLIP_SIZE, mean=[0.5] * 3, std=[0.5] * 3,
                                               crop=True)                         # [B, 3, 384, 384]
    mean = torch.nn.functional.avg_pool2d(pixels, SIGLIP_PATCH)                   # [B, 3, 27, 27]
    sq = torch.nn.functional.avg_pool2d(pixels * pixels, SIGLIP_PATCH)
    std = (sq - mean * mean).clamp_min(0).sqrt()
    stats = torch.cat([mean, std, torch.ones_like(mean[:, :1])], dim=1).flatten(2).transpose(1, 2)   # [B, 729, 7]
    tokens = stats.shape[1]
    penultimate = torch.tanh(stats @ _projection((7, SIGLIP_DIM), "siglip patch")
                             + 0.5 * _projection((tokens, SIGLIP_DIM), "siglip pos"))
    mixed = penultimate @ _projection((SIGLIP_DIM, SIGLIP_DIM), "siglip last") / SIGLIP_DIM ** 0.5
    last = torch.nn.functional.layer_norm(mixed, (SIGLIP_DIM,))
    out = comfy.clip_vision.Output()
    out["penultimate_hidden_states"] = penultimate
    out["last_hidden_state"] = last
    out["image_embeds"] = last.mean(dim=1)
    out["mm_projected"] = None
    return out


class FocalStandInSigLIPVision(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FocalStandInSigLIPVision",
            display_name="Focal Stand-in SigLIP Vision Encode (TEST ONLY)",
            category="testing/focal_standins",
            description="TEST ONLY: a CLIP_VISION_OUTPUT shaped like SigLIP so400m/14 at 384 px (729x1152), "
                        "computed from the image's patch colour statistics with a fixed random projection.",
            inputs=[io.Image.Input("image")],
            outputs=[io.ClipVisionOutput.Output()],
        )

    @classmethod
    def execute(cls, image) -> io.NodeOutput:
        return io.NodeOutput(encode_siglip(image))
