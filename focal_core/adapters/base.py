"""Shared adapter vocabulary."""
from dataclasses import dataclass


class UnsupportedModelError(ValueError):
    """The diffusion model is not a family Focal Guidance knows how to patch."""


@dataclass(frozen=True)
class Layout:
    """What an adapter knows about one loaded model.

    family:       human-readable family name shown in errors and reports.
    block_keys:   host ``patches_replace["dit"]`` key per flat block index.
    attention:    "cross" (separate text cross-attention) or "joint" (MMDiT, video first).
    patch_size:   (t, h, w) patching of the latent into video tokens.
    text_call:    index of the text attention call among the attention calls of one block.
    heads:        attention heads per block.
    """
    family: str
    block_keys: tuple[tuple[str, int], ...]
    attention: str
    patch_size: tuple[int, int, int]
    text_call: int
    heads: int

    @property
    def num_blocks(self) -> int:
        return len(self.block_keys)

    def token_grid(self, latent_shape) -> tuple[int, int, int]:
        """(frames, height, width) of the video-token grid for a [b, c, t, h, w] latent."""
        t, h, w = latent_shape[-3:]
        pt, ph, pw = self.patch_size
        return (-(-t // pt), -(-h // ph), -(-w // pw))

    def to_heads(self, q, k, v, heads):
        """Host q/k/v → [b, h, l, d]. Cross-attention families pass [b, l, h·d]."""
        if self.attention == "joint":
            return q, k, v
        b, _, inner = q.shape
        d = inner // heads
        return tuple(t.view(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))

    @staticmethod
    def from_heads(out):
        """[b, h, l, d] → the host's attention output layout [b, l, h·d]."""
        b, h, n, d = out.shape
        return out.transpose(1, 2).reshape(b, n, h * d)
