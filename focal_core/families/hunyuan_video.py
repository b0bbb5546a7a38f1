"""HunyuanVideo 1.0 T2V/I2V (``HunyuanVideo`` network, config HunyuanVideo / HunyuanVideoI2V / SkyReels I2V).

Joint attention over [video tokens ; text stream] in 20 double-stream then 40 single-stream blocks;
flat block index = double index, then the double count + single index. One attention call per
block, q/k/v as [b, heads, l, d] (the output as [b, l, heads·d]); its keys are the video tokens
plus the text stream, so the text call is the one with more keys than video tokens. The LLaMA
context of the I2V model starts with the LLaVA image tokens, whose count depends on the encoder
node's ``image_interleave``; an anchor is placed from the context's end, where its prompt ends.
"""
from einops import rearrange

from ..fused import fused_joint_attention_text_edit
from ..kernels import output_is_sdpas
from .base import Family, ModelInfo, TextLayout, count_real

# LLaMA-3 ids of the user turn; ComfyUI crops the HunyuanVideo template there.
HEADER, USER, HEADER_END, BLANK_LINE, EOT = 128006, 882, 128007, 271, 128009


class HunyuanVideo(Family):
    name = "HunyuanVideo 1.0"
    tokenizer = "llama"
    latent_patch = (1, 2, 2)
    configs = ("HunyuanVideo", "HunyuanVideoI2V", "HunyuanVideoSkyreelsI2V")

    def __init__(self, info: ModelInfo):
        super().__init__(info)
        doubles, singles = info.config["depth"], info.config["depth_single_blocks"]
        self.block_keys = tuple([("double_block", i) for i in range(doubles)]
                                + [("single_block", i) for i in range(singles)])
        self.patch_size = tuple(info.config["patch_size"])

    @classmethod
    def matches(cls, info: ModelInfo) -> bool:
        return info.config_class in cls.configs and info.network_class == "HunyuanVideo"

    @staticmethod
    def prompt_range(ids: list) -> tuple[int, int]:
        """Mirror of comfy/text_encoders/hunyuan_video.py: the DiT's context starts after the last
        '<|start_header_id|>user<|end_header_id|>' (+ the blank-line token) and ends with its '<|eot_id|>'."""
        start, end = 0, len(ids)
        for i in range(len(ids) - 2):
            if ids[i:i + 3] == [HEADER, USER, HEADER_END]:
                start = i + 4 if i + 3 < len(ids) and ids[i + 3] == BLANK_LINE else i + 2
                end = next((j + 1 for j in range(start, len(ids)) if ids[j] == EOT), len(ids))
        return start, end

    def leading_tokens(self, cond: dict) -> int:
        """Text-stream tokens the network puts before the encoder's context."""
        return 0

    def text_layout(self, cond: dict) -> TextLayout | None:
        context = cond.get("cross_attn")
        if context is None or context.ndim != 3:
            return None
        lead = self.leading_tokens(cond)
        return TextLayout(keys=lead + context.shape[1], prompt_start=lead, stream_start=0,
                          real=count_real(context), anchor_at_end=True)

    def check_run(self, conds: dict, text: dict, grid: tuple) -> None:
        if any("ref_latent" in cond for cond in conds.values()):
            raise ValueError("the conditioning prepends a reference latent (ref_latent) to the video tokens; "
                             "Focal Guidance cannot tell its tokens from the video's. Sample without it")

    def is_text_call(self, q, k, n_video: int, text: dict) -> bool:
        return k.shape[-2] == q.shape[-2] and k.shape[-2] > n_video

    def records_with_sdpas_output(self, q, k, v, mask) -> bool:
        return output_is_sdpas(q, k, v, _key_mask(mask))

    def edit(self, q, k, v, heads: int, n_video: int, edits, mask, need_output: bool):
        out, recorded = fused_joint_attention_text_edit(q, k, v, n_video, edits, key_mask=_key_mask(mask))
        return rearrange(out, "b h n d -> b n (h d)"), recorded   # the host's layout

    def block_states(self, args: dict, out: dict, row: int, n_video: int, text: TextLayout):
        stream = out["txt"][row] if "txt" in out else out["img"][row, n_video:]   # double / single block
        start = text.stream_start + text.prompt_start
        return out["img"][row, :n_video], stream[start:start + text.real]


def _key_mask(mask):
    """The host's joint mask (additive, [1, 1, L] in the model dtype) shaped as the host's SDPA call shapes it."""
    if mask is not None and mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if mask is not None and mask.ndim == 3:
        mask = mask.unsqueeze(1)
    return mask
