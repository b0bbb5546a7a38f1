"""The semantic layer probe: record each block's response to the prompt while the sampler runs.

Two response maps per block, both reduced on the fly to one value per video token:
(a) ``attention``: the block's text-attention mass on the keyword tokens (or on all real prompt
    tokens), head-averaged, computed in query chunks; the host kernel keeps the block's output.
(b) ``hidden``: cosine between the block's output hidden state and the mean of the real prompt
    tokens of its text context.
The maps reach the CPU through the recorder (``focal_core.recorder``), one copy per step.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .anchors import RegionAnchor
from .attention import TextEdit
from .families import TextLayout
from .handler import POSITIVE, Handler, RunContext, StepWindow, TextCall
from .recorder import HIDDEN, AttentionRecorder, Recording, RunRecordings


@dataclass(frozen=True)
class ProbeSettings:
    steps: int                       # how many schedule steps to record, spread over the window
    start: float                     # step window (StepWindow), converted to sigmas per run
    end: float
    branch: int = POSITIVE
    anchor: RegionAnchor | None = None  # measure its keyword tokens; None = all real prompt tokens
    within_sampled_steps: bool = False  # the window's percents count the sampled steps (StepWindow)

    @property
    def window(self) -> StepWindow:
        return StepWindow(self.start, self.end, self.within_sampled_steps)


@dataclass
class ProbeState:
    """One run of the probe: the steps it records, the branch's prompt layout, and its recorder."""
    steps: frozenset[int]
    text: TextLayout | None     # the branch's prompt place, None when unknown (no hidden map then)
    recorder: AttentionRecorder

    @property
    def recording(self) -> Recording:
        return self.recorder.recording

    def records(self, call: TextCall, branch: int) -> bool:
        return call.branch == branch and call.step in self.steps

    def reset(self):
        self.steps = frozenset()
        self.recorder.reset()


class SemanticProbe(Handler):
    wants_block_outputs = True  # the 'hidden' metric reads block outputs

    def __init__(self, settings: ProbeSettings, num_blocks: int):
        self.settings = settings
        self.num_blocks = num_blocks
        self.recordings = RunRecordings()

    @property
    def blocks(self) -> frozenset[int]:
        return frozenset(range(self.num_blocks))

    def start_run(self, ctx: RunContext) -> ProbeState:
        s = self.settings
        ctx.check_branches(frozenset({s.branch}))
        ctx.check_one_video()
        columns = ctx.response_columns(s.anchor, s.branch)
        window = ctx.sigma_window(s.window)
        steps = []
        if window is not None:
            in_window = ctx.steps_in(window)
            picks = torch.linspace(0, len(in_window) - 1, min(s.steps, len(in_window))).round().long().tolist()
            steps = sorted({in_window[i] for i in picks})
        recorder = AttentionRecorder.of_columns(columns, recording=Recording(grid=ctx.grid, planned=steps))
        return ProbeState(steps=frozenset(steps), text=ctx.text.get(s.branch), recorder=recorder)

    def end_run(self, state: ProbeState, output):
        state.recorder.flush()
        self.recordings.publish(state.recording, output)
        state.reset()

    def edit_for(self, state: ProbeState, call: TextCall) -> TextEdit | None:
        return state.recorder.edit() if state.records(call, self.settings.branch) else None

    def on_probabilities(self, state: ProbeState, call: TextCall, probabilities):
        state.recorder.keep_mass(call.step, call.block, probabilities, call.frames)

    def on_block(self, state: ProbeState, call: TextCall, args, out, ctx: RunContext):
        if not state.records(call, self.settings.branch) or state.text is None or not state.text.real:
            return
        hidden, text = ctx.family.block_states(args, out, call.row, ctx.n_video_of(call.frames), state.text)
        cosine = F.cosine_similarity(hidden.float(), text.float().mean(0, keepdim=True), dim=-1)
        state.recorder.keep(HIDDEN, call.step, call.block, cosine, call.frames)
