"""Wan2.1 / Wan2.2 (``comfy.ldm.wan.model.WanModel``).

Each block makes its attention calls in a fixed order: self-attention, then for I2V models
with ``img_emb`` (Wan2.1 I2V, 257 CLIP tokens prepended to the context) the image
cross-attention, then the text cross-attention. Wan2.2 I2V A14B and T2V have no image branch.
q/k/v reach the attention function as [b, l, heads·d] with ``heads`` as a keyword.
"""
from .base import Layout


class WanAdapter:
    def __init__(self, diffusion_model):
        cross = diffusion_model.blocks[0].cross_attn
        has_image_branch = hasattr(cross, "k_img")
        kind = "I2V (CLIP image branch)" if has_image_branch else "T2V / Wan2.2 I2V (text only)"
        self.layout = Layout(
            family=f"Wan {kind}",
            block_keys=tuple(("double_block", i) for i in range(len(diffusion_model.blocks))),
            attention="cross",
            patch_size=tuple(diffusion_model.patch_size),
            text_call=2 if has_image_branch else 1,
            heads=diffusion_model.num_heads,
        )

    @staticmethod
    def matches(diffusion_model) -> bool:
        blocks = getattr(diffusion_model, "blocks", None)
        return (hasattr(diffusion_model, "text_embedding") and blocks is not None
                and len(blocks) > 0 and hasattr(blocks[0], "cross_attn"))
