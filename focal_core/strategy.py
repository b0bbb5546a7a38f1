"""The interface between the dispatcher (``nodes/dispatch.py``) and a Focal Guidance behaviour.

A behaviour (attention transfer, probe) is a :class:`Handler`: it sees one :class:`RunContext`
per sampling run and one :class:`TextCall` per text attention call of its blocks, and answers
with a :class:`~focal_core.attention.TextEdit`. The dispatcher merges the edits of every handler
of a model into one attention computation. No ComfyUI import: handlers test on plain tensors.
"""
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .attention import TextEdit
from .families import TextLayout

WINDOW_OF = ("whole schedule", "sampled steps")


@dataclass
class RunContext:
    """What a handler learns once per sampling run (OUTER_SAMPLE)."""
    grid: tuple[int, int, int]
    sample_sigmas: torch.Tensor
    batch: int
    cfg: float
    text: dict            # branch (0 positive, 1 negative) -> its TextLayout, where its prompt is known
    family: object = None  # the model's Family: where a block's video and prompt tokens are
    percent_to_sigma: Callable[[float], float] = None  # the sampled model's own schedule mapping
    warn: Callable[..., None] = None    # (node name, message, **details): log it and show it in the UI
    inform: Callable[..., None] = None  # the same, for news that is not a problem

    @property
    def n_video(self) -> int:
        f, h, w = self.grid
        return f * h * w

    def anchor_offset(self, anchor, branch: int, node: str) -> int:
        """Text-key column of the anchor's first prompt token in this branch; refuses a keyword past the prompt."""
        text: TextLayout | None = self.text.get(branch)
        if text is None:
            return 0
        offset = text.anchor_offset(anchor.prompt_tokens)
        if max(anchor.columns) + offset >= text.prompt_end:
            raise ValueError(f"{node}: the anchor binds prompt token {max(anchor.columns)} but the prompt has "
                             f"{text.prompt_end - offset} tokens; feed Region Anchor the same prompt and text "
                             "encoder as the conditioning")
        return offset

    @property
    def steps(self) -> int:
        return len(self.sample_sigmas) - 1

    def sigma_window(self, start_percent: float, end_percent: float,
                     window_of: str = WINDOW_OF[0]) -> tuple[float, float] | None:
        """(sigma_start, sigma_end) of a window, or None when no sampled step falls in it.

        'whole schedule': percents of the model's full schedule, converted with the sampled
        model's own mapping, so a ModelSampling node placed after Focal Guidance still moves it.
        'sampled steps': percents of the steps this run samples, so a Wan2.2 expert or a
        KSamplerAdvanced start/end step range gets the window within its own steps.
        """
        schedule = self.sample_sigmas[:-1].float().cpu()
        if window_of == WINDOW_OF[1]:
            n = len(schedule)
            steps = [i for i in range(n) if start_percent * n <= i < end_percent * n]
            if not steps:
                return None
            return float(schedule[steps[0]]), float(schedule[steps[-1]])
        sigma_start, sigma_end = self.percent_to_sigma(start_percent), self.percent_to_sigma(end_percent)
        if not any(sigma_end <= s <= sigma_start for s in schedule.tolist()):
            return None
        return sigma_start, sigma_end

    def step_index(self, sigma: float) -> int:
        """Index of the schedule interval holding ``sigma`` (exact for euler, bracketed for heun)."""
        schedule = self.sample_sigmas.float().cpu()
        at_or_above = (schedule >= sigma * (1 - 1e-4)).nonzero()
        return int(at_or_above[-1]) if len(at_or_above) else 0

    def warn_empty_window(self, node: str, start_percent: float, end_percent: float, window_of: str):
        sigmas = self.sample_sigmas[:-1].float().cpu()
        self.warn(node, f"the window {start_percent:g}-{end_percent:g} ({window_of}) holds none of the "
                        f"{len(sigmas)} sampled steps (sigma {float(sigmas[0]):.3g} to {float(sigmas[-1]):.3g}), "
                        "so it does nothing in this run. A Wan2.2 expert or a KSamplerAdvanced step range samples "
                        "only part of the schedule: set window_of to 'sampled steps' or move the window.")


@dataclass
class TextCall:
    """One text attention call of a tagged block, for one CFG chunk."""
    block: int
    branch: int        # 0 positive, 1 negative
    sigma: float
    step: int
    row: int = 0       # first batch row of this chunk in the block's batch


class Handler:
    """Strategy interface: what one node does in its blocks. Subclasses override.

    A handler object is configuration plus a results sink (the probe's recordings), shared by
    every clone of the patched model: ``copy.deepcopy`` returns it unchanged, because
    ``ModelPatcher.clone()`` deep-copies ``model_options`` and a report node must read what the
    sampled clone recorded. Per-run state lives in the object ``start_run`` returns.
    """
    node_name = "Focal Guidance"
    wants_block_outputs = False  # True: on_block sees every touched block's inputs and outputs

    def __deepcopy__(self, memo):
        return self

    @property
    def blocks(self) -> frozenset:
        """Flat indices of the blocks whose text attention this handler edits or records."""
        raise NotImplementedError

    def start_run(self, ctx: RunContext):
        """Validate the run and return per-run state (with ``reset()``), or raise ValueError."""
        raise NotImplementedError

    def end_run(self, state, output: torch.Tensor | None):
        """Called in ``finally`` after every run; ``output`` is the sampled latent, None on failure."""
        state.reset()

    def edit_for(self, state, call: TextCall) -> TextEdit | None:
        """This handler's part of the call's edit, or None to leave the call alone."""
        return None

    def after(self, state, call: TextCall, recorded):
        """Receives the recorded probabilities of a call whose edit asked for them."""

    def on_block(self, state, call: TextCall, args: dict, out: dict, ctx: RunContext):
        """Observation of a block's inputs and outputs, for handlers with ``wants_block_outputs``."""
