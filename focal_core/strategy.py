"""The interface between the host hook (``nodes/hooks.py``) and a Focal Guidance behaviour.

A behaviour (attention transfer, probe) is a :class:`Handler`: it sees one :class:`RunContext`
per sampling run and one :class:`TextCall` per text attention call of its blocks, and answers
with a :class:`~focal_core.attention.TextEdit`. No ComfyUI import: handlers test on plain tensors.
"""
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .attention import TextEdit


@dataclass
class RunContext:
    """What a handler learns once per sampling run (OUTER_SAMPLE)."""
    grid: tuple[int, int, int]
    sample_sigmas: torch.Tensor
    batch: int
    cfg: float
    text_tokens: dict     # branch (0 positive, 1 negative) -> real prompt-token count, when known
    context_tokens: dict  # branch -> length of the raw (padded) text context
    attention: str = "cross"  # the adapter's attention kind: "cross" (Wan) or "joint" (HunyuanVideo)
    percent_to_sigma: Callable[[float], float] = None  # the sampled model's own schedule mapping

    def sigma_window(self, start_percent: float, end_percent: float) -> tuple[float, float]:
        """(sigma_start, sigma_end) of a schedule window, from the model actually being sampled,
        so a ModelSampling node placed after a Focal Guidance node still moves the window."""
        return self.percent_to_sigma(start_percent), self.percent_to_sigma(end_percent)

    @property
    def n_video(self) -> int:
        f, h, w = self.grid
        return f * h * w

    def step_index(self, sigma: float) -> int:
        """Index of the schedule interval holding ``sigma`` (exact for euler, bracketed for heun)."""
        schedule = self.sample_sigmas.float().cpu()
        at_or_above = (schedule >= sigma * (1 - 1e-4)).nonzero()
        return int(at_or_above[-1]) if len(at_or_above) else 0


@dataclass
class TextCall:
    """One text attention call of a tagged block, for one CFG chunk."""
    block: int
    branch: int        # 0 positive, 1 negative
    sigma: float
    step: int


class Handler:
    """Strategy interface: what an installer does in its blocks. Subclasses override."""
    node_name = "Focal Guidance"

    def start_run(self, ctx: RunContext):
        """Validate the run and return per-run state (anything), or raise ValueError."""
        return {}

    def end_run(self, state):
        """Called in ``finally`` after every run."""

    def edit_for(self, state, call: TextCall) -> TextEdit | None:
        """The edit for this call, or None to leave it to the host kernel."""
        return None

    def after(self, state, call: TextCall, recorded):
        """Receives the recorded probabilities of a call whose edit asked for them."""

    def on_block(self, state, block: int, args: dict, out: dict, ctx: RunContext):
        """Optional observation of a tagged block's inputs and outputs."""
