"""One attention recorder, for the probe, auto mode's observation and the transfer's sources.

A handler says which text columns it wants (and whether per head) with :meth:`AttentionRecorder.edit`;
the dispatcher hands it the probabilities the model used. A recorder with a :class:`Recording` keeps
each block's [frames, h, w] response map on the model's device and moves a whole step's maps to the
CPU in one copy (one sync): 40 blocks × 4 steps × 2 metrics × 32,760 tokens × 4 bytes ≈ 42 MB for
Wan 14B at 480p/81 frames. Finished runs are kept in :class:`RunRecordings`, found again by their latent.
"""
from dataclasses import dataclass, field

import torch

from .attention import TextEdit
from .errors import LatentNotRecorded, NothingRecorded

ALL_COLUMNS = slice(None)
ATTENTION, HIDDEN = "attention", "hidden"   # the two responses a block's map can measure
METRICS = (ATTENTION, HIDDEN)
RECORDINGS_KEPT = 4  # finished runs kept for reports: two samplers may share one probed model


@dataclass
class Recording:
    """Response maps of one sampling run: ``maps[metric][(step, block)]`` = [frames, h, w] on CPU.

    ``planned`` are the steps the handler meant to record; :attr:`steps` those it did. A step cache
    (core EasyCache, LazyCache) skips the model call at some steps, and nothing is recorded there.
    ``fingerprint`` identifies the run's output latent, so a report finds the recording of the
    very LATENT it is given.
    """
    grid: tuple[int, int, int]
    planned: list[int]
    maps: dict[str, dict[tuple[int, int], torch.Tensor]] = field(default_factory=lambda: {m: {} for m in METRICS})
    fingerprint: tuple | None = None

    @property
    def steps(self) -> list[int]:
        """The steps at which some block was recorded."""
        return sorted({step for maps in self.maps.values() for step, _ in maps})

    @property
    def skipped(self) -> list[int]:
        """Planned steps at which nothing was recorded: the model was not called there."""
        return sorted(set(self.planned) - set(self.steps))


@dataclass
class HeldMap:
    """A block's response map waiting on the model's device for its step's copy to the CPU; ``frames``:
    the grid frames it covers (a context window), None for the whole grid."""
    metric: str
    step: int
    block: int
    response: torch.Tensor
    frames: tuple[int, ...] | None = None


@dataclass
class AttentionRecorder:
    """Which text columns a handler records, and (with ``recording``) where its maps go."""
    columns: torch.Tensor | slice = field(default_factory=lambda: ALL_COLUMNS)
    per_head: bool = False
    recording: Recording | None = None
    held: list[HeldMap] = field(default_factory=list)

    @classmethod
    def of_columns(cls, columns: torch.Tensor | None, **kwargs) -> "AttentionRecorder":
        """A recorder of these columns; None (columns unknown) records every text column."""
        return cls(columns=ALL_COLUMNS if columns is None else columns, **kwargs)

    @property
    def all_columns(self) -> bool:
        return self.columns is ALL_COLUMNS

    def edit(self) -> TextEdit:
        return TextEdit(record_columns=self.columns, record_per_head=self.per_head)

    def keep_mass(self, step: int, block: int, probabilities: torch.Tensor, frames: tuple[int, ...] | None = None):
        """Keep the attention mass each video token puts on the recorded columns (the ``attention`` map)."""
        self.keep(ATTENTION, step, block, probabilities[0].float().sum(-1), frames)

    def keep(self, metric: str, step: int, block: int, response: torch.Tensor, frames: tuple[int, ...] | None = None):
        """Hold a block's map on its device; a new step first moves the previous step's maps. A context
        window's map covers its ``frames`` of the grid."""
        if self.held and self.held[-1].step != step:
            self.flush()
        f, h, w = self.recording.grid
        self.held.append(HeldMap(metric, step, block, response.reshape(f if frames is None else len(frames), h, w),
                                 frames))

    def flush(self):
        """Move the held maps into the recording in one device→host copy. Context windows' maps fill
        their frames of the block's map; where windows overlap, the later window's frames stay."""
        if not self.held:
            return
        sizes = [h.response.numel() for h in self.held]
        on_cpu = torch.cat([h.response.flatten() for h in self.held]).cpu().split(sizes)
        for held, response in zip(self.held, on_cpu):
            maps, key = self.recording.maps[held.metric], (held.step, held.block)
            if held.frames is None:
                maps[key] = response.view(held.response.shape)
            else:
                full = maps.setdefault(key, torch.zeros(self.recording.grid))
                full[list(held.frames)] = response.view(held.response.shape)
        self.held = []

    def reset(self):
        self.held = []


def latent_fingerprint(latent: torch.Tensor) -> tuple:
    """(shape, every k-th value) of a latent: cheap, and equal only for the same sampled output."""
    flat = latent.detach().flatten()
    stride = max(1, flat.numel() // 4096)
    return tuple(latent.shape), flat[::stride].float().cpu()


class RunRecordings:
    """The recordings of a handler's last finished runs, newest last, found again by their latent."""

    def __init__(self):
        self.runs: list[Recording] = []

    def publish(self, recording: Recording, output: torch.Tensor | None):
        """Keep a finished run's recording; a failed run (no output) or one that planned no step is
        dropped. One whose planned steps were all skipped is kept, so its report can say why it is empty."""
        if output is not None and recording.planned:
            recording.fingerprint = latent_fingerprint(output)
            self.runs = (self.runs + [recording])[-RECORDINGS_KEPT:]

    def recording_for(self, latent: torch.Tensor, grid: tuple) -> Recording:
        """The recording of the run that sampled ``latent``; else the only one of its token grid."""
        if not self.runs:
            raise NothingRecorded()
        shape, values = latent_fingerprint(latent)
        for recording in reversed(self.runs):
            if recording.fingerprint[0] == shape and torch.equal(recording.fingerprint[1], values):
                return recording
        same_grid = [r for r in self.runs if tuple(r.grid) == tuple(grid)]
        if len(same_grid) == 1:
            return same_grid[0]
        raise LatentNotRecorded(tuple(grid), [tuple(r.grid) for r in self.runs])
