"""The family protocol: what Focal Guidance must know about a model, asked of one place only.

A family is matched from a plain description of the host's model (its class names and detected
config, never attribute probing), then answers for the loaded model: the block layout, which
attention call is the text one (by its key length), where the video tokens sit among the
queries, where the prompt sits among the text keys, which tokenizer an anchor's
token spans must come from, and how the text attention is edited (cross or joint).
"""
from dataclasses import dataclass

import torch


class UnsupportedModelError(ValueError):
    """The model is not a family Focal Guidance can patch."""


@dataclass(frozen=True)
class ModelInfo:
    """What the node layer tells the families about a MODEL; plain values, no host import.

    config_class:  the host's detected model config class (``comfy.supported_models``), e.g. "WAN21_I2V".
    network_class: the diffusion network's class, e.g. "WanModel".
    config:        the detected ``unet_config`` (block counts, channels, heads).
    """
    config_class: str
    network_class: str
    config: dict


@dataclass(frozen=True)
class TextLayout:
    """Where one CFG branch's prompt sits in the text attention call.

    keys:          text keys of the call (Wan: the padded context; HunyuanVideo: its whole text stream).
    prompt_start:  first context token among those keys (HunyuanVideo 1.5: after SigLIP and byT5 tokens).
    stream_start:  where those keys begin in the block's own text stream (Wan I2V: after its 257 CLIP
                   tokens, which have their own attention call; HunyuanVideo: 0).
    real:          real (non-padding) context tokens.
    anchor_at_end: an anchor's prompt ends where the real context ends (HunyuanVideo puts image tokens
                   inside the context, before the prompt); otherwise it starts at ``prompt_start``.
    """
    keys: int
    prompt_start: int
    stream_start: int
    real: int
    anchor_at_end: bool = False

    @property
    def prompt_end(self) -> int:
        return self.prompt_start + self.real

    def prompt_columns(self) -> torch.Tensor:
        """Text-key columns of every real prompt token."""
        return torch.arange(self.prompt_start, self.prompt_end)

    def anchor_offset(self, prompt_tokens: int | None) -> int:
        """Text-key column of an anchor's first prompt token (its spans count from there)."""
        if self.anchor_at_end and prompt_tokens is not None:
            return self.prompt_start + max(0, self.real - prompt_tokens)
        return self.prompt_start


class Family:
    """One model family. Subclasses set the class attributes and override the methods."""
    name = ""                  # shown in errors, anchors and reports
    tokenizer = ""             # the text encoder's token key (ComfyUI's embedding key) anchors must carry
    latent_patch = (1, 2, 2)   # (t, h, w) latent patching, for the anchor node's latent check
    # The text attention is a call of its own (cross-attention), cheap beside the block: the dispatcher
    # then lets the host compute the whole CFG batch and replaces only the edited rows, so unedited
    # branches get the unpatched output bit for bit on any processor (GEMM kernels round by batch size).
    # A joint attention is the block's whole attention: splitting off the unedited rows is cheaper.
    separate_text_call = False

    def __init__(self, info: ModelInfo):
        self.info = info
        self.block_keys: tuple = ()   # host ``patches_replace["dit"]`` key per flat block index
        self.patch_size = self.latent_patch

    @classmethod
    def matches(cls, info: ModelInfo) -> bool:
        raise NotImplementedError

    @classmethod
    def refusal(cls, info: ModelInfo) -> str | None:
        """Why a model of this family's lineage cannot be patched, or None."""
        return None

    @staticmethod
    def prompt_range(ids: list) -> tuple[int, int]:
        """[start, end) of the tokenized prompt that reaches the DiT (the text encoder's template crop)."""
        return 0, len(ids)

    @property
    def num_blocks(self) -> int:
        return len(self.block_keys)

    @property
    def variant(self) -> str:
        """The family name with the host's model config, e.g. 'Wan (WAN21_I2V)'."""
        return f"{self.name} ({self.info.config_class})"

    def token_grid(self, latent_shape) -> tuple[int, int, int]:
        """(frames, height, width) of the video-token grid for a [b, c, t, h, w] latent."""
        t, h, w = latent_shape[-3:]
        pt, ph, pw = self.patch_size
        return (-(-t // pt), -(-h // ph), -(-w // pw))

    def text_layout(self, cond: dict) -> TextLayout | None:
        """The prompt's place in the text call for one branch's host cond dict, or None without a context."""
        raise NotImplementedError

    def check_run(self, conds: dict, text: dict, grid: tuple) -> None:
        """Refuse a run whose tokens this family cannot locate (ValueError). conds: branch -> host cond
        dict; text: branch -> :class:`TextLayout`; grid: the video-token grid."""

    def is_text_call(self, q, k, n_video: int, text: dict) -> bool:
        """Whether an attention call of a block is its text attention, by its key length."""
        raise NotImplementedError

    def records_with_sdpas_output(self, q, k, v, mask) -> bool:
        """Whether :meth:`edit`, for a chunk with only recording edits, returns exactly the output the
        host's SDPA kernel gives for this call, so the dispatcher can skip the host call. Only a joint
        attention gains from it: its recording needs one whole attention anyway."""
        return False

    def edit(self, q, k, v, heads: int, n_video: int, edits, mask, need_output: bool):
        """The edited attention of one CFG chunk in the host's layout: ``(out or None, recorded)``."""
        raise NotImplementedError

    def block_states(self, args: dict, out: dict, row: int, n_video: int, text: TextLayout):
        """(video tokens [n, c], real prompt tokens [l, c]) of a block's output, for one batch row."""
        raise NotImplementedError


def count_real(context: torch.Tensor) -> int:
    """Real tokens of a padded context: encoders pad with zero rows."""
    return int((context[0].abs().sum(-1) != 0).sum())
