"""Custom wire types shared by the pack's nodes, and what flows on them."""
from dataclasses import dataclass

from comfy_api.latest import io

from ..focal_core.families import Family
from ..focal_core.recorder import RunRecordings

Anchor = io.Custom("FOCAL_ANCHOR")   # a focal_core.anchors.RegionAnchor
Probe = io.Custom("FOCAL_PROBE")     # a ProbeHandle


@dataclass(frozen=True)
class ProbeHandle:
    """What flows on the PROBE wire: the recordings of the patched model's runs, its family, what
    to tell the user when nothing was recorded, and the anchor's keywords whose attention the
    'attention' maps measure (empty: all real prompt tokens). Semantic Layer Probe and Focal
    Attention Transfer's auto mode both send one."""
    recordings: RunRecordings
    family: Family
    empty_hint: str
    keywords: tuple[str, ...] = ()


def anchor_keywords(anchor) -> tuple[str, ...]:
    """The keywords a probe's 'attention' maps measure: the anchor's; none (all prompt tokens) without one."""
    return anchor.keywords if anchor is not None else ()
