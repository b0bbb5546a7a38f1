"""Nodes "Semantic Layer Probe" (records while sampling) and "Semantic Layer Report" (after it)."""
from dataclasses import asdict, dataclass
import json

import comfy.utils
import torch
from comfy_api.latest import io

from ..focal_core.blocks import format_block_list
from ..focal_core.probe import METRICS, ProbeSettings, RunRecordings, SemanticProbe, analyse
from . import _inputs
from ._types import Anchor, Probe
from .dispatch import install
from .plots import PALETTE, curve_image, heatmap_grid

PROBE_NODE = "Semantic Layer Probe"
REPORT_NODE = "Semantic Layer Report"
HEATMAP_MAX_SIDE = 48  # heatmaps sent to the canvas are pooled to at most this many tokens a side


@dataclass(frozen=True)
class ProbeHandle:
    """What flows on the PROBE wire: the recordings of the patched model's runs, and its layout.
    Semantic Layer Probe and Focal Attention Transfer's auto mode both send one."""
    recordings: RunRecordings
    layout: object


class SemanticLayerProbe(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FocalSemanticLayerProbe",
            display_name=PROBE_NODE,
            category=_inputs.CATEGORY,
            description="Record every DiT block's response to the prompt while sampling, to find "
                        "Semantic-Weak Layers. Sampler output is unchanged (bit-identical).",
            inputs=[
                io.Model.Input("model", tooltip="A Wan2.1/2.2 or HunyuanVideo diffusion model."),
                io.Int.Input("steps", default=4, min=1, max=100,
                             tooltip="How many sampling steps to record, spread evenly over the window."),
                *_inputs.window_inputs(0.1, 0.7),
                _inputs.branch_input(("positive", "negative"),
                                     "Which CFG pass to measure. 'negative' needs cfg > 1."),
                _inputs.window_of_input(),
                Anchor.Input("anchor", optional=True,
                             tooltip="Measure the keyword tokens of this Region Anchor instead of all "
                                     "real prompt tokens."),
            ],
            outputs=[
                io.Model.Output(tooltip="The model with recording hooks; wire it into the sampler."),
                Probe.Output(display_name="probe", tooltip="Handle for Semantic Layer Report."),
            ],
        )

    @classmethod
    def execute(cls, model, steps, start_percent, end_percent, branch, window_of=_inputs.WINDOW_OF[0],
                anchor=None) -> io.NodeOutput:
        _inputs.check_window(start_percent, end_percent, PROBE_NODE)
        layout = _inputs.model_layout(model, PROBE_NODE, anchor)
        probe = SemanticProbe(ProbeSettings(
            steps=steps, start_percent=start_percent, end_percent=end_percent,
            branch=min(_inputs.BRANCHES[branch]), anchor=anchor, window_of=window_of), layout.num_blocks)
        return io.NodeOutput(install(model, layout, probe), ProbeHandle(probe.recordings, layout))


class SemanticLayerReport(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FocalSemanticLayerReport",
            display_name=REPORT_NODE,
            category=_inputs.CATEGORY,
            description="Per-block similarity and Moran's I curves, heatmaps, and the Semantic-Weak and "
                        "responsive block sets for Focal Attention Transfer.",
            is_output_node=True,
            inputs=[
                Probe.Input("probe", tooltip="From Semantic Layer Probe."),
                io.Latent.Input("latent", tooltip="The sampler's output, so the report runs after sampling."),
                io.Combo.Input("metric", options=list(METRICS), default="attention",
                               tooltip="'attention': text-attention mass per video token; 'hidden': cosine "
                                       "of block output and pooled prompt."),
                io.Float.Input("kappa", default=2.0, min=0.0, max=10.0, step=0.1,
                               tooltip="A block is weak when its score is more than kappa robust sigmas "
                                       "below the depth trend. Lower finds more."),
                io.Int.Input("top_r", default=2, min=1, max=16,
                             tooltip="How many responsive (source) blocks to output."),
                io.Int.Input("exclude_ends", default=2, min=0, max=16,
                             tooltip="Blocks at each end that are never weak or responsive."),
                io.Combo.Input("adjacency", options=["rook", "queen"], default="rook",
                               tooltip="Moran's I neighbours: 4 (rook) or 8 (queen) per token."),
                io.Int.Input("frame", default=0, min=0, max=1000,
                             tooltip="Latent frame shown in the heatmaps (0 = reference frame)."),
            ],
            outputs=[
                io.Image.Output(display_name="curve", tooltip="Similarity and Moran's I against block index."),
                io.Image.Output(display_name="heatmaps", tooltip="Each block's response map for the frame."),
                io.String.Output(display_name="weak_blocks", tooltip="Semantic-Weak blocks, e.g. '12-14, 20'."),
                io.String.Output(display_name="responsive_blocks", tooltip="Responsive blocks (cache sources)."),
                io.String.Output(display_name="json", tooltip="All curves and sets as JSON."),
            ],
        )

    @classmethod
    def execute(cls, probe, latent, metric, kappa, top_r, exclude_ends, adjacency, frame) -> io.NodeOutput:
        _inputs.check_finite(REPORT_NODE, kappa=kappa)
        samples = latent["samples"]
        recording = probe.recordings.recording_for(samples, probe.layout.token_grid(samples.shape))
        bar = comfy.utils.ProgressBar(probe.layout.num_blocks)
        report = analyse(recording, probe.layout.num_blocks, metric, kappa, top_r, exclude_ends, adjacency,
                         progress=lambda done, total: bar.update_absolute(done, total))
        frames = recording.grid[0]
        if frame >= frames:
            raise ValueError(f"{REPORT_NODE}: frame {frame} does not exist; the latent has {frames} frames")
        maps = _block_maps(recording.maps[metric], recording.steps, probe.layout.num_blocks, frame)
        labels = [f"{b}{' W' if b in report.weak else ' R' if b in report.responsive else ''}"
                  for b in range(len(maps))]
        curve, grid = curve_image(report), heatmap_grid(maps, labels)
        data = {**asdict(report), "family": probe.layout.variant, "grid": list(recording.grid),
                "weak_blocks": format_block_list(report.weak),
                "responsive_blocks": format_block_list(report.responsive)}
        # The canvas view draws this panel; the PNGs are outputs to save, never previews drawn on the node.
        panel = {**data, "frame": frame, "heatmaps": [_pooled(m).tolist() for m in maps], "palette": PALETTE}
        return io.NodeOutput(curve, grid, data["weak_blocks"], data["responsive_blocks"], json.dumps(data),
                             ui={"focal_probe": [panel]})


def _block_maps(maps, steps, num_blocks, frame):
    """Mean over the recorded steps of each block's [h, w] map at ``frame``."""
    return [torch.stack([maps[(s, b)][frame] for s in steps if (s, b) in maps]).mean(0) for b in range(num_blocks)]


def _pooled(m: torch.Tensor) -> torch.Tensor:
    h, w = m.shape
    factor = max(1, -(-max(h, w) // HEATMAP_MAX_SIDE))
    pooled = torch.nn.functional.avg_pool2d(m[None, None], factor, ceil_mode=True)[0, 0] if factor > 1 else m
    return pooled.mul(1e4).round().div(1e4)
