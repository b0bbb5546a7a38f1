"""HunyuanVideo (``comfy.ldm.hunyuan_video.model.HunyuanVideo``), I2V and T2V.

Joint attention over [video tokens ; text tokens] in 20 double-stream then 40 single-stream
blocks (HunyuanVideo 1.0). Flat block index = double index, then 20 + single index.
q/k/v arrive as [b, heads, l, d] with ``skip_reshape=True``; one attention call per block.
"""
from .base import Layout


class HunyuanVideoAdapter:
    def __init__(self, diffusion_model):
        doubles = len(diffusion_model.double_blocks)
        singles = len(diffusion_model.single_blocks)
        self.layout = Layout(
            family="HunyuanVideo",
            block_keys=tuple([("double_block", i) for i in range(doubles)]
                             + [("single_block", i) for i in range(singles)]),
            attention="joint",
            patch_size=tuple(diffusion_model.patch_size),
            text_call=0,
            heads=diffusion_model.num_heads,
        )

    @staticmethod
    def matches(diffusion_model) -> bool:
        return all(hasattr(diffusion_model, a) for a in ("double_blocks", "single_blocks", "txt_in"))
