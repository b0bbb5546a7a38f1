"""TEST-ONLY stand-ins for the text encoders and the CLIP vision tower (never shipped in the pack).

The host's umT5-XXL (Wan), LLaVA-LLaMA + CLIP-L (HunyuanVideo) and CLIP-ViT-H vision loaders have
fixed multi-GB configs, so no tiny checkpoint can stand in for them. These two nodes produce
tensors of the real shapes instead, deterministically from their inputs:

- FocalStandInTextEncode (family, text, seed) -> CONDITIONING
    wan:           context [1, 512, 4096]; rows 0..n-1 non-zero, the rest zero padding
                   (umT5 pads to 512 and zeroes the masked rows), where n = words + 1 (end token).
    hunyuan_video: context [1, n, 4096] (the host crops the LLaMA template, no padding)
                   plus pooled_output [1, 768] (CLIP-L).
    hunyuan_video_15: Qwen2.5-VL context [1, n, 3584] and byT5 glyph rows (hunyuan_video_15.py).
  One whitespace-separated word = one token here (the real tokenizers split words into pieces).
  A row depends on (word, position, seed), so equal words at equal positions give equal rows.
- FocalStandInClipVision (image) -> CLIP_VISION_OUTPUT (comfy.clip_vision.Output) with
  penultimate_hidden_states and last_hidden_state [B, 257, 1280] and image_embeds [B, 1024]:
  the image goes through the host's CLIP preprocessing (224 centre crop), is pooled into the
  16x16 grid of 14-px ViT-H patches (plus a class token for the whole image), and those colour
  statistics are lifted to 1280 channels by a fixed random projection plus position embeddings.
  Different images therefore give different, spatially structured outputs.
- FocalStandInWordTokenizerCLIP (family) -> CLIP: a weightless host CLIP whose tokenizer matches
  FocalStandInTextEncode's words (word_tokenizer.py), for Region Anchor's ``text_encoder``.
- FocalStandInLatentToVideo (positive, negative, start_latent, length) -> positive, negative, LATENT:
  WanImageToVideo for a start picture that is already one latent frame (latent_to_video.py), for the
  prompt-following test model, which has no VAE.
- FocalStandInSigLIPVision (image) -> CLIP_VISION_OUTPUT shaped like HunyuanVideo 1.5's SigLIP
  [B, 729, 1152] (hunyuan_video_15.py).
- FocalStandInVAELoader (vae_name) -> VAE: the narrow Wan2.2 / HunyuanVideo 1.5 VAEs of
  scripts/make_tiny_models.py through the host's own detection (narrow_vae.py).

Load it only into a test or demo host: scripts/comfy_server.py links this folder into a temporary
custom_nodes directory named in an ``--extra-model-paths-config`` yaml.
"""
import hashlib

import torch
from comfy_api.latest import ComfyExtension, io

import comfy.clip_vision

from . import hunyuan_video_15
from .hunyuan_video_15 import FocalStandInSigLIPVision
from .latent_to_video import FocalStandInLatentToVideo
from .narrow_vae import FocalStandInVAELoader
from .word_tokenizer import FocalStandInWordTokenizerCLIP

CATEGORY = "testing/focal_standins"
TEXT_DIM = 4096
WAN_TEXT_LEN = 512
POOLED_DIM = 768
VISION_TOKENS = 257  # 16x16 patches of 14 px at 224 px, plus the class token
VISION_DIM = 1280
VISION_EMBED_DIM = 1024
_PROJECTION_SEED = 20260112


def _seed_of(*parts) -> int:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def _randn(shape, *parts) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(_seed_of(*parts)))


def text_tokens(text: str) -> list[str]:
    """The stand-in tokenizer: one token per whitespace-separated word, then an end token."""
    return text.split() + ["</s>"]


def encode_text(family: str, text: str, seed: int):
    if family == "hunyuan_video_15":
        return hunyuan_video_15.encode_text(text, seed)
    tokens = text_tokens(text)
    rows = torch.stack([_randn(TEXT_DIM, "token", family, seed, i, tok) for i, tok in enumerate(tokens)])
    if family == "wan":
        if len(tokens) > WAN_TEXT_LEN:
            raise ValueError(f"FocalStandInTextEncode: {len(tokens)} tokens exceed Wan's {WAN_TEXT_LEN}.")
        context = torch.zeros(1, WAN_TEXT_LEN, TEXT_DIM)
        context[0, :len(tokens)] = rows
        return [[context, {}]]
    if family == "hunyuan_video":
        pooled = _randn((1, POOLED_DIM), "pooled", family, seed, text)
        return [[rows.unsqueeze(0), {"pooled_output": pooled}]]
    raise ValueError(f"FocalStandInTextEncode: unknown family {family!r}.")


def _projection(shape, name):
    return _randn(shape, "projection", _PROJECTION_SEED, name)


def encode_image(image: torch.Tensor) -> comfy.clip_vision.Output:
    """image: IMAGE [B, H, W, C] in 0..1."""
    pixels = comfy.clip_vision.clip_preprocess(image.float().cpu(), size=224, crop=True)  # [B, 3, 224, 224]
    mean = torch.nn.functional.avg_pool2d(pixels, 14)  # [B, 3, 16, 16]
    sq = torch.nn.functional.avg_pool2d(pixels * pixels, 14)
    std = (sq - mean * mean).clamp_min(0).sqrt()
    patches = torch.cat([mean, std], dim=1).flatten(2).transpose(1, 2)  # [B, 256, 6]
    whole = torch.cat([pixels.mean(dim=(2, 3)), pixels.std(dim=(2, 3))], dim=1).unsqueeze(1)  # [B, 1, 6]
    stats = torch.cat([whole, patches], dim=1)  # [B, 257, 6]
    features = torch.cat([stats, torch.ones_like(stats[..., :1])], dim=-1)  # [B, 257, 7] (bias column)
    hidden = features @ _projection((7, VISION_DIM), "patch") + 0.5 * _projection((VISION_TOKENS, VISION_DIM), "pos")
    penultimate = torch.tanh(hidden)
    mixed = penultimate @ _projection((VISION_DIM, VISION_DIM), "last") / VISION_DIM ** 0.5
    last = torch.nn.functional.layer_norm(mixed, (VISION_DIM,))
    out = comfy.clip_vision.Output()
    out["penultimate_hidden_states"] = penultimate
    out["last_hidden_state"] = last
    out["image_embeds"] = last[:, 0] @ _projection((VISION_DIM, VISION_EMBED_DIM), "embed") / VISION_DIM ** 0.5
    out["mm_projected"] = None
    return out


class FocalStandInTextEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FocalStandInTextEncode",
            display_name="Focal Stand-in Text Encode (TEST ONLY)",
            category=CATEGORY,
            description="TEST ONLY: deterministic random conditioning shaped like umT5-XXL (Wan), "
                        "LLaVA-LLaMA + CLIP-L (HunyuanVideo) or Qwen2.5-VL + byT5 (HunyuanVideo 1.5); "
                        "one token per word plus the end or template tokens.",
            inputs=[
                io.Combo.Input("family", options=["wan", "hunyuan_video", "hunyuan_video_15"], default="wan"),
                io.String.Input("text", multiline=True, default=""),
                io.Int.Input("seed", default=0, min=0, max=0xFFFF_FFFF_FFFF_FFFF),
            ],
            outputs=[io.Conditioning.Output()],
        )

    @classmethod
    def execute(cls, family, text, seed) -> io.NodeOutput:
        return io.NodeOutput(encode_text(family, text, seed))


class FocalStandInClipVision(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FocalStandInClipVision",
            display_name="Focal Stand-in CLIP Vision Encode (TEST ONLY)",
            category=CATEGORY,
            description="TEST ONLY: a CLIP_VISION_OUTPUT shaped like CLIP-ViT-H/14 (257x1280), computed "
                        "from the image's patch colour statistics with a fixed random projection.",
            inputs=[io.Image.Input("image")],
            outputs=[io.ClipVisionOutput.Output()],
        )

    @classmethod
    def execute(cls, image) -> io.NodeOutput:
        return io.NodeOutput(encode_image(image))


class WorkerKilled(BaseException):
    """Not an Exception: the host's executor catches those per node; this one ends its prompt worker."""


class FocalStandInEndPromptWorker(io.ComfyNode):
    """TEST-ONLY: ends the host's prompt worker thread, as 0.33's worker ends on an output it cannot
    release; the server then accepts prompts and never runs them (tests/e2e/test_server.py)."""
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="FocalStandInEndPromptWorker", display_name="Focal Stand-in End Prompt Worker "
                         "(TEST ONLY)", category=CATEGORY, inputs=[io.Int.Input("seed", default=0)],
                         outputs=[io.Int.Output()], is_output_node=True)

    @classmethod
    def execute(cls, seed) -> io.NodeOutput:
        raise WorkerKilled("the test ended the prompt worker")


class FocalStandInExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [FocalStandInTextEncode, FocalStandInClipVision, FocalStandInWordTokenizerCLIP,
                FocalStandInLatentToVideo, FocalStandInSigLIPVision, FocalStandInVAELoader,
                FocalStandInEndPromptWorker]


async def comfy_entrypoint() -> FocalStandInExtension:
    return FocalStandInExtension()
