"""The keyword-focus figure: how much of each keyword's attention falls inside its anchor region.

A keyword's attention on a video token is the probability mass the token's text attention puts on
the keyword's tokens. Its focus is the share of that mass, summed over the reference frame's tokens,
that lies in the keyword's region, the region weighted by the anchor's own token-grid mask (the mask
the bias scales ``β·M``, so a soft edge counts as much as the bias pushes there). It is measured on the
reference frame only: the masks describe that frame; later frames' objects may have moved.
"""
from dataclasses import dataclass, field

import torch


def region_shares(keyword_mass: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """[K] share of each keyword's attention mass inside its region.

    keyword_mass: [K, h·w] the reference frame's attention on each keyword's tokens.
    masks: [K, h·w] the regions' weights in [0, 1] on the same token grid.
    A keyword with no attention mass at all has share 0.
    """
    inside = (keyword_mass * masks).sum(-1)
    return inside / keyword_mass.sum(-1).clamp_min(1e-30)


@dataclass
class KeywordFocus:
    """A run's running mean of the focus per keyword, with the weak edit and without it.

    positions: per keyword, the places of its tokens among the recorded columns. masks: [K, h·w].
    """
    keywords: tuple[str, ...]
    positions: list[list[int]]
    masks: torch.Tensor
    calls: int = 0
    blocks: set[int] = field(default_factory=set)
    step: int | None = None   # the one step measured: the first guided step the anchor's regions are known at

    def measures(self, step: int) -> bool:
        """Whether a weak call of this step is measured. One step per run: a measured call runs on the
        explicit attention path (the unedited probabilities), every other call on the fused kernel."""
        if self.step is None:
            self.step = step
        return step == self.step

    def __post_init__(self):
        self.with_edit, self.without_edit = torch.zeros(len(self.keywords)), torch.zeros(len(self.keywords))

    def add(self, block: int, final: torch.Tensor, unedited: torch.Tensor):
        """One call's reference-frame rows [h·w, columns] of the final and the unedited probabilities; summed
        on their device (the masks move there once), read back once at the end of the run."""
        if self.masks.device != final.device:
            self.masks = self.masks.to(final.device)
            self.with_edit, self.without_edit = self.with_edit.to(final.device), self.without_edit.to(final.device)
        self.with_edit += region_shares(self._keyword_mass(final), self.masks)
        self.without_edit += region_shares(self._keyword_mass(unedited), self.masks)
        self.calls += 1
        self.blocks.add(block)

    def _keyword_mass(self, p: torch.Tensor) -> torch.Tensor:
        return torch.stack([p[:, places].float().sum(-1) for places in self.positions])

    def means(self) -> tuple[list[float], list[float]]:
        """The mean share per keyword over the calls, with and without the edit."""
        return (self.with_edit / self.calls).tolist(), (self.without_edit / self.calls).tolist()
