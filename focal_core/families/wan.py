"""Wan2.1 I2V/T2V, Wan2.2 I2V A14B and Wan2.2 TI2V-5B (``WanModel``): separate text cross-attention.

Each block runs self-attention, then (Wan2.1 I2V) an image cross-attention on 257 CLIP tokens,
then the text cross-attention on the padded umT5 context (512 keys). The text call is the one
whose key count is the context length; the CLIP tokens lead the block's text stream but have
their own call, so the prompt starts the text keys. q/k/v arrive as [b, l, heads·d].
"""
from einops import rearrange

from ..fused import fused_text_cross_attention
from .base import Family, ModelInfo, TextLayout, count_real

SUPPORTED = {"WAN21_I2V": "Wan2.1 I2V", "WAN21_T2V": "Wan2.1 T2V / Wan2.2 I2V A14B", "WAN22_T2V": "Wan2.2 TI2V-5B"}
# Wan models whose video sequence carries reference, audio or control tokens the token grid does not cover.
REFUSED = {
    "WAN22_Animate": "Wan Animate prepends reference-frame tokens to the video tokens",
    "WAN22_S2V": "Wan S2V appends reference and motion tokens to the video tokens",
    "WAN21_HuMo": "Wan HuMo appends reference tokens to the video tokens",
    "WAN21_FunControl2V": "Wan Fun Control prepends ref_conv reference tokens to the video tokens",
    "WAN21_Vace": "Wan VACE adds control blocks between the video blocks",
    "WAN21_Camera": "Wan camera control adds camera tokens to the video blocks",
    "WAN22_Camera": "Wan camera control adds camera tokens to the video blocks",
}


class Wan(Family):
    name = "Wan"
    tokenizer = "umt5xxl"
    latent_patch = (1, 2, 2)
    separate_text_call = True

    def __init__(self, info: ModelInfo):
        super().__init__(info)
        self.block_keys = tuple(("double_block", i) for i in range(info.config["num_layers"]))
        self.patch_size = tuple(info.config.get("patch_size", self.latent_patch))
        self.has_image_branch = info.config_class == "WAN21_I2V"

    @classmethod
    def matches(cls, info: ModelInfo) -> bool:
        return info.config_class in SUPPORTED and info.network_class == "WanModel"

    @classmethod
    def refusal(cls, info: ModelInfo) -> str | None:
        if info.config.get("in_dim_ref_conv") is not None:
            return "this Wan model prepends ref_conv reference tokens to the video tokens"
        return REFUSED.get(info.config_class)

    @property
    def variant(self) -> str:
        return f"{SUPPORTED.get(self.info.config_class, self.name)} ({self.info.config_class})"

    def text_layout(self, cond: dict) -> TextLayout | None:
        context = cond.get("cross_attn")
        if context is None or context.ndim != 3:
            return None
        vision = cond.get("clip_vision_output")
        clip_tokens = vision.penultimate_hidden_states.shape[-2] if self.has_image_branch and vision is not None else 0
        return TextLayout(keys=context.shape[1], prompt_start=0, stream_start=clip_tokens, real=count_real(context))

    def check_run(self, conds: dict, text: dict, grid: tuple) -> None:
        if any("time_dim_concat" in cond for cond in conds.values()):
            raise ValueError("the conditioning appends reference frames to the video (time_dim_concat, e.g. "
                             "Phantom subject images); Focal Guidance cannot tell them from the video's own frames. "
                             "Sample without the reference images")
        f, h, w = grid
        if any(f * h * w == t.keys for t in text.values()):
            raise ValueError(f"the video has {f * h * w} tokens, as many as the text context, so its "
                             "self-attention cannot be told from its text attention by key length; change the "
                             "width or height by one step (16 pixels)")

    def is_text_call(self, q, k, n_video: int, text: dict) -> bool:
        return k.shape[1] != q.shape[1] and any(k.shape[1] == t.keys for t in text.values())

    def edit(self, q, k, v, heads: int, n_video: int, edits, mask, need_output: bool):
        if q.shape[1] != n_video:
            raise ValueError(f"the text attention has {q.shape[1]} query tokens but the latent's token grid has "
                             f"{n_video}: this model adds tokens to the video sequence, which Focal Guidance does "
                             "not support")
        qh, kh, vh = (rearrange(t, "b n (h d) -> b h n d", h=heads) for t in (q, k, v))
        key_mask = None if mask is None else mask.float()
        out, recorded = fused_text_cross_attention(qh, kh, vh, edits, key_mask=key_mask, need_output=need_output)
        if out is not None:
            out = rearrange(out, "b h n d -> b n (h d)")
        return out, recorded

    def block_states(self, args: dict, out: dict, row: int, n_video: int, text: TextLayout):
        start = text.stream_start + text.prompt_start
        return out["img"][row, :n_video], args["txt"][row, start:start + text.real]

