"""Semantic Layer Probe: record each block's response to the prompt while the sampler runs.

Two response maps per block, both reduced on the fly to one value per video token:
(a) ``attention``: the block's text-attention mass on the keyword tokens (or on all real prompt
    tokens), head-averaged, computed in query chunks; the host kernel keeps the block's output.
(b) ``hidden``: cosine between the block's output hidden state and the mean of the real prompt
    tokens of its text context.
Only [frames, h, w] maps of the recorded steps reach the CPU, all of a step's maps in one copy:
40 blocks × 4 steps × 2 metrics × 32,760 tokens × 4 bytes ≈ 42 MB for Wan 14B at 480p/81 frames.
"""
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .anchors import RegionAnchor
from .attention import TextEdit
from .metrics import (combined_score, depth_trend, morans_i, response_similarity, responsive_layers,
                      semantic_weak_layers)
from .strategy import WINDOW_OF, Handler, RunContext, TextCall

METRICS = ("attention", "hidden")


RECORDINGS_KEPT = 4  # finished runs a probe keeps for its reports: two samplers may share one probed model


@dataclass(frozen=True)
class ProbeSettings:
    steps: int                       # how many schedule steps to record, spread over the window
    start_percent: float             # schedule window, converted to sigmas per run
    end_percent: float
    branch: int = 0                  # 0 positive, 1 negative
    anchor: RegionAnchor | None = None  # measure its keyword tokens; None = all real prompt tokens
    window_of: str = WINDOW_OF[0]


@dataclass
class ProbeRecording:
    """Response maps of one sampling run: maps[metric][(step, block)] = [frames, h, w] on CPU.

    ``fingerprint`` identifies the run's output latent, so a report finds the recording of the
    very LATENT it is given.
    """
    grid: tuple
    steps: list
    maps: dict = field(default_factory=lambda: {m: {} for m in METRICS})
    fingerprint: tuple | None = None

    def store(self, entries):
        """Move ``(metric, (step, block), map on the model's device)`` entries into ``maps`` in one
        device→host copy (one sync), instead of one per block and metric."""
        if not entries:
            return
        on_cpu = torch.stack([m for _, _, m in entries]).cpu().unbind()
        for (metric, key, _), response in zip(entries, on_cpu):
            self.maps[metric][key] = response


def latent_fingerprint(latent: torch.Tensor) -> tuple:
    """(shape, every k-th value) of a latent: cheap, and equal only for the same sampled output."""
    flat = latent.detach().flatten()
    stride = max(1, flat.numel() // 4096)
    return tuple(latent.shape), flat[::stride].float().cpu()


class RunRecordings:
    """The recordings of a handler's last finished runs, newest last, found again by their latent."""

    def __init__(self, empty_hint: str = "wire the probed MODEL into the sampler whose LATENT feeds this node, "
                                          "and check the window holds a sampled step"):
        self.runs: list[ProbeRecording] = []
        self.empty_hint = empty_hint

    def publish(self, recording: ProbeRecording, output: torch.Tensor | None):
        """Keep a finished run's recording; a failed run (no output) or an empty one is dropped."""
        if output is not None and recording.steps:
            recording.fingerprint = latent_fingerprint(output)
            self.runs = (self.runs + [recording])[-RECORDINGS_KEPT:]

    def recording_for(self, latent: torch.Tensor, grid: tuple) -> ProbeRecording:
        """The recording of the run that sampled ``latent``; else the only one of its token grid."""
        if not self.runs:
            raise ValueError(f"Semantic Layer Report: nothing has been recorded; {self.empty_hint}")
        shape, values = latent_fingerprint(latent)
        for recording in reversed(self.runs):
            if recording.fingerprint[0] == shape and torch.equal(recording.fingerprint[1], values):
                return recording
        same_grid = [r for r in self.runs if tuple(r.grid) == tuple(grid)]
        if len(same_grid) == 1:
            return same_grid[0]
        grids = ", ".join(str(tuple(r.grid)) for r in self.runs)
        raise ValueError(f"Semantic Layer Report: this LATENT (token grid {tuple(grid)}) is not the output of a run "
                         f"this probe recorded (recorded grids: {grids}); connect the LATENT of the sampler that "
                         "uses the probed MODEL, with no node in between, or give each sampler its own probe")


def response_columns(anchor: RegionAnchor | None, ctx: RunContext, branch: int, node_name: str):
    """Text columns whose attention mass is a block's response: the anchor's keyword tokens, else
    every real prompt token where the model's family places it (None when unknown: all columns)."""
    if anchor is not None:
        return torch.tensor(anchor.columns) + ctx.anchor_offset(anchor, branch, node_name)
    text = ctx.text.get(branch)
    return text.prompt_columns() if text is not None and text.real else None


@dataclass
class ProbeState:
    columns: torch.Tensor | None
    text: object               # the branch's TextLayout (focal_core.families), None when unknown
    steps: set
    recording: ProbeRecording
    pending: list = field(default_factory=list)   # (metric, (step, block), map on the model's device)

    def keep(self, metric: str, step: int, block: int, response: torch.Tensor):
        """Hold a block's map on its device; a new step first moves the previous step's maps."""
        if self.pending and self.pending[-1][1][0] != step:
            self.move_to_cpu()
        self.pending.append((metric, (step, block), response.view(self.recording.grid)))

    def move_to_cpu(self):
        self.recording.store(self.pending)
        self.pending = []

    def reset(self):
        self.steps = set()
        self.pending = []


class SemanticProbe(Handler):
    node_name = "Semantic Layer Probe"
    wants_block_outputs = True  # the 'hidden' metric reads block outputs

    def __init__(self, settings: ProbeSettings, num_blocks: int):
        self.settings = settings
        self.num_blocks = num_blocks
        self.recordings = RunRecordings()

    @property
    def blocks(self) -> frozenset:
        return frozenset(range(self.num_blocks))

    def start_run(self, ctx: RunContext) -> ProbeState:
        s = self.settings
        if s.branch == 1 and ctx.cfg == 1.0:
            raise ValueError(f"{self.node_name}: branch 'negative' needs a negative pass, but cfg is 1 so "
                             "the sampler skips it; raise cfg above 1 or probe the positive branch")
        if ctx.batch > 1:
            raise ValueError(f"{self.node_name}: batch size {ctx.batch} is not supported; set batch_size to 1")
        columns = response_columns(s.anchor, ctx, s.branch, self.node_name)
        window = ctx.sigma_window(s.start_percent, s.end_percent, s.window_of)
        if window is None:
            ctx.warn_empty_window(self.node_name, s.start_percent, s.end_percent, s.window_of)
            steps = []
        else:
            sigma_start, sigma_end = window
            in_window = [i for i, sg in enumerate(ctx.sample_sigmas[:-1].tolist()) if sigma_end <= sg <= sigma_start]
            picks = torch.linspace(0, len(in_window) - 1, min(s.steps, len(in_window))).round().long().tolist()
            steps = sorted({in_window[i] for i in picks})
        return ProbeState(columns=columns, text=ctx.text.get(s.branch), steps=set(steps),
                          recording=ProbeRecording(grid=ctx.grid, steps=steps))

    def end_run(self, state: ProbeState, output):
        state.move_to_cpu()
        self.recordings.publish(state.recording, output)
        state.reset()

    def _recording(self, state: ProbeState, branch, step) -> bool:
        return branch == self.settings.branch and step in state.steps

    def edit_for(self, state: ProbeState, call: TextCall):
        if not self._recording(state, call.branch, call.step):
            return None
        columns = state.columns
        return TextEdit(record_columns=columns if columns is not None else slice(None))

    def after(self, state: ProbeState, call: TextCall, recorded):
        state.keep("attention", call.step, call.block, recorded[0].float().sum(-1))

    def on_block(self, state: ProbeState, call: TextCall, args, out, ctx: RunContext):
        if not self._recording(state, call.branch, call.step):
            return
        if state.text is None or not state.text.real:
            return
        hidden, text = ctx.family.block_states(args, out, call.row, ctx.n_video, state.text)
        cosine = F.cosine_similarity(hidden.float(), text.float().mean(0, keepdim=True), dim=-1)
        state.keep("hidden", call.step, call.block, cosine)


@dataclass(frozen=True)
class ProbeReport:
    """Per-block curves and the layer sets (everything JSON-friendly but the maps).

    ``similarity``/``morans`` are means over frames and steps; the ``*_by_frame`` lists keep the
    per-frame values ([block][frame], mean over steps), since the paper diagnoses per frame.
    """
    similarity: list
    morans: list
    similarity_by_frame: list
    morans_by_frame: list
    score: list
    trend: list
    weak: list
    responsive: list
    metric: str
    steps: list


def analyse(recording: ProbeRecording, num_blocks: int, metric: str = "attention", kappa: float = 2.0,
            top_r: int = 2, exclude_ends: int = 2, adjacency: str = "rook", trend_window: int = 5,
            progress=None):
    """Reduce a recording to per-block curves, weak blocks and responsive blocks.

    ``progress(done, total)`` is called after each block, for a host progress bar.
    """
    maps = recording.maps[metric]
    if not maps:
        raise ValueError(f"Semantic Layer Report: metric '{metric}' recorded nothing in this run; check the "
                         "probe's step window covers at least one step")
    similarity_by_frame, morans_by_frame = [], []
    for block in range(num_blocks):
        per_step = [maps[(s, block)] for s in recording.steps if (s, block) in maps]
        if not per_step:
            raise ValueError(f"Semantic Layer Report: block {block} was not recorded")
        stacked = torch.stack(per_step)                       # [s, f, h, w]
        similarity_by_frame.append(response_similarity(stacked).mean(0).tolist())
        morans_by_frame.append(morans_i(stacked, adjacency).mean(0).tolist())
        if progress is not None:
            progress(block + 1, num_blocks)
    similarity = [sum(f) / len(f) for f in similarity_by_frame]
    morans = [sum(f) / len(f) for f in morans_by_frame]
    score = combined_score(similarity, morans)
    weak = semantic_weak_layers(score, kappa=kappa, trend_window=trend_window, exclude_ends=exclude_ends)
    responsive = responsive_layers(score, top_r=top_r, exclude_ends=exclude_ends, exclude=weak)
    return ProbeReport(similarity, morans, similarity_by_frame, morans_by_frame, score.tolist(),
                       depth_trend(score, trend_window).tolist(),
                       weak, responsive, metric, list(recording.steps))
