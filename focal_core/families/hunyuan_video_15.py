"""HunyuanVideo 1.5 I2V/T2V (config HunyuanVideo15): HunyuanVideo's joint blocks, a Qwen2.5-VL context.

The network builds its text stream as [SigLIP image tokens (729, I2V) ; byT5 glyph tokens (quoted
text in the prompt) ; Qwen2.5-VL prompt tokens], so the prompt starts after the first two.
"""
from .hunyuan_video import HunyuanVideo

IM_START, USER, NEWLINE = 151644, 872, 198   # Qwen2.5 '<|im_start|>', 'user', '\n'


class HunyuanVideo15(HunyuanVideo):
    name = "HunyuanVideo 1.5"
    tokenizer = "qwen25_7b"
    latent_patch = (1, 1, 1)
    configs = ("HunyuanVideo15",)

    @staticmethod
    def prompt_range(ids: list) -> tuple[int, int]:
        """Mirror of comfy/text_encoders/qwen_image.py: the context starts at the second '<|im_start|>'
        (past its 'user' and newline tokens) and runs to the end of the template."""
        starts = [i for i, t in enumerate(ids) if t == IM_START][:2]
        start = starts[-1] if starts else 0
        if ids[start + 1:start + 3] == [USER, NEWLINE]:
            start += 3
        return start, len(ids)

    def leading_tokens(self, cond: dict) -> int:
        lead = 0
        vision = cond.get("clip_vision_output")
        if vision is not None and self.info.config.get("vision_in_dim") is not None:
            lead += vision.last_hidden_state.shape[-2]
        glyphs = cond.get("conditioning_byt5small")
        if glyphs is not None and self.info.config.get("byt5"):
            lead += glyphs.shape[-2]
        return lead
