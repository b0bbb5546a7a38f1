"""The layer report's reduction: a recording's per-block curves, weak and responsive blocks.

Used by the report after sampling and by auto mode within the run, so both pick by the same rules.
"""
from dataclasses import dataclass

import torch

from .errors import BlockNotRecorded, MetricNotRecorded, StepsNotComputed
from .metrics import (combined_score, depth_trend, morans_i, response_contrast, response_similarity,
                      responsive_layers, semantic_weak_layers, weak_layers)
from .recorder import Recording


@dataclass(frozen=True)
class LayerReport:
    """Per-block curves and the layer sets (everything JSON-friendly but the maps).

    ``similarity``/``morans`` are means over frames and steps; the ``*_by_frame`` lists keep the
    per-frame values ([block][frame], mean over steps), since the paper diagnoses per frame.
    ``steps`` are the recorded steps; ``skipped_steps`` those a step cache skipped. ``contrast``
    (attention maps only, else empty): each block's response contrast, the second sign of a
    Semantic-Weak block (metrics.weak_layers).
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
    skipped_steps: list
    contrast: list


def analyse(recording: Recording, num_blocks: int, metric: str = "attention", kappa: float = 2.0,
            top_r: int = 2, exclude_ends: int = 2, adjacency: str = "rook", trend_window: int = 5,
            progress=None):
    """Reduce a recording to per-block curves, weak blocks and responsive blocks.

    ``progress(done, total)`` is called after each block, for a host progress bar.
    """
    if not recording.steps:
        raise StepsNotComputed(recording.planned)
    maps = recording.maps[metric]
    if not maps:
        raise MetricNotRecorded(metric)
    similarity_by_frame, morans_by_frame, contrast = [], [], []
    for block in range(num_blocks):
        per_step = [maps[(s, block)] for s in recording.steps if (s, block) in maps]
        if not per_step:
            raise BlockNotRecorded(block)
        stacked = torch.stack(per_step)                       # [s, f, h, w]
        similarity_by_frame.append(response_similarity(stacked).mean(0).tolist())
        morans_by_frame.append(morans_i(stacked, adjacency).mean(0).tolist())
        if metric == "attention":   # contrast needs non-negative maps: attention mass, not cosines
            contrast.append(float(response_contrast(stacked).mean()))
        if progress is not None:
            progress(block + 1, num_blocks)
    similarity = [sum(f) / len(f) for f in similarity_by_frame]
    morans = [sum(f) / len(f) for f in morans_by_frame]
    score = combined_score(similarity, morans)
    if contrast:   # a dip below the depth trend, or a loss of contrast (a block whose text logits went flat)
        weak = weak_layers(score, contrast, kappa=kappa, trend_window=trend_window, exclude_ends=exclude_ends)
    else:
        weak = semantic_weak_layers(score, kappa=kappa, trend_window=trend_window, exclude_ends=exclude_ends)
    responsive = responsive_layers(score, top_r=top_r, exclude_ends=exclude_ends, exclude=weak)
    return LayerReport(similarity, morans, similarity_by_frame, morans_by_frame, score.tolist(),
                       depth_trend(score, trend_window).tolist(),
                       weak, responsive, metric, recording.steps, recording.skipped, contrast)
