"""Node "Semantic Layer Report": per-block curves, heatmaps and block sets, after sampling."""
from dataclasses import asdict
import json

import comfy.utils
import torch
from comfy_api.latest import io

from ..focal_core.blocks import format_block_list
from ..focal_core import errors
from ..focal_core.errors import FocalError
from ..focal_core.recorder import METRICS
from ..focal_core.report import analyse
from . import _inputs, _voice
from ._types import Probe
from .notify import warn
from .plots import OVERLAY_ALPHA, PALETTE, backdrop, backdrop_png, curve_image, heatmap_grid, overlay_grid

NODE = "Semantic Layer Report"
ADJACENCY = ("rook", "queen")
HEATMAP_MAX_SIDE = 48  # heatmaps sent to the canvas are pooled to at most this many tokens a side
# The token grid is the latent's, whose sides are the picture's divided and rounded down: a picture of the
# same video differs in aspect by that rounding only (Region Anchor allows the same).
ASPECT_TOLERANCE = 0.08


class SemanticLayerReport(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FocalSemanticLayerReport",
            display_name=NODE,
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
                                       "below the depth trend, or (attention metric) its map's contrast is "
                                       "below the median block's by a factor exp(0.6·kappa). Lower finds more."),
                io.Int.Input("top_r", default=2, min=1, max=16,
                             tooltip="How many responsive (source) blocks to output."),
                io.Int.Input("exclude_ends", default=2, min=0, max=16,
                             tooltip="Blocks at each end that are never weak or responsive."),
                io.Combo.Input("adjacency", options=list(ADJACENCY), default=ADJACENCY[0],
                               tooltip="Moran's I neighbours: 4 (rook) or 8 (queen) per token."),
                io.Int.Input("frame", default=0, min=0, max=1000,
                             tooltip="Latent frame shown in the heatmaps (0 = reference frame)."),
                io.Image.Input("image", optional=True,
                               tooltip="The start image (or a decoded frame) of this video: each block's map is "
                                       "drawn over it, in the heatmaps and on the canvas. One picture, of the "
                                       "video's aspect, shown under the maps of whichever frame is shown."),
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
    def execute(cls, probe, latent, metric, kappa, top_r, exclude_ends, adjacency, frame,
                image=None) -> io.NodeOutput:
        metric = _inputs.choice(NODE, "metric", metric, list(METRICS))
        adjacency = _inputs.choice(NODE, "adjacency", adjacency, list(ADJACENCY))
        _inputs.check_finite(NODE, kappa=kappa)
        samples = latent["samples"]
        num_blocks = probe.family.num_blocks
        bar = comfy.utils.ProgressBar(num_blocks)
        try:
            recording = probe.recordings.recording_for(samples, probe.family.token_grid(samples.shape))
            report = analyse(recording, num_blocks, metric, kappa, top_r, exclude_ends, adjacency,
                             progress=lambda done, total: bar.update_absolute(done, total))
        except FocalError as err:
            raise ValueError(_report_error(err, probe.empty_hint)) from None
        if recording.skipped:
            warn(NODE, f"the model was not called at step(s) {format_block_list(recording.skipped)} (a step cache such "
                       "as EasyCache or LazyCache reused an earlier output there), so the report uses step(s) "
                       f"{format_block_list(recording.steps)}.")
        frames = recording.grid[0]
        if frame >= frames:
            _voice.fail(NODE, f"frame {frame} does not exist; the latent has {frames} frames",
                        f"set frame between 0 and {frames - 1}")
        grey = None if image is None else backdrop(_picture(image, recording.grid))
        maps = _block_maps(recording.maps[metric], recording.steps, num_blocks, frame)
        labels = [f"{b}{' W' if b in report.weak else ' R' if b in report.responsive else ''}"
                  for b in range(len(maps))]
        subject = _subject(probe.keywords, metric)
        curve = curve_image(report)
        grid = (heatmap_grid(maps, labels) if grey is None else
                overlay_grid(maps, grey, [_title(b, report, subject) for b in range(len(maps))],
                             f"frame {frame}: each block's {metric} response to {subject}, over the picture"))
        data = {**asdict(report), "family": probe.family.variant, "grid": list(recording.grid),
                "weak_blocks": format_block_list(report.weak),
                "responsive_blocks": format_block_list(report.responsive)}
        # The canvas view draws this panel; the PNGs are outputs to save, never previews drawn on the node.
        panel = {**data, "frame": frame, "heatmaps": [_pooled(m).tolist() for m in maps], "palette": PALETTE}
        if grey is not None:
            panel["picture"] = {"png": backdrop_png(grey), "alpha": OVERLAY_ALPHA, "subject": subject}
        return io.NodeOutput(curve, grid, data["weak_blocks"], data["responsive_blocks"], json.dumps(data),
                             ui={"focal_probe": [panel]})


def _report_error(err: FocalError, empty_hint: str) -> str:
    if isinstance(err, errors.NothingRecorded):
        return _voice.say(NODE, str(err), empty_hint)
    if isinstance(err, errors.LatentNotRecorded):
        return _voice.say(NODE, str(err).replace("this latent", "this LATENT", 1),
                          "connect the LATENT of the sampler that uses the probed MODEL, with no node in between, "
                          "or give each sampler its own probe")
    return _voice.run_error(NODE, err)


def _picture(image, grid) -> torch.Tensor:
    """The one [H, W, C] picture of an IMAGE input, checked against the token grid (frames, h, w)."""
    if image.ndim != 4 or image.shape[-1] < 3:
        _voice.fail(NODE, f"image has shape {tuple(image.shape)}, not an IMAGE [batch, height, width, 3]",
                    "connect a LoadImage or VAE Decode output")
    if image.shape[0] != 1:
        _voice.fail(NODE, f"image holds {image.shape[0]} pictures (a decoded video?); the maps are drawn over one",
                    "connect the start image, or pick one frame with ImageFromBatch (length 1)")
    height, width = image.shape[1:3]
    rows, columns = grid[1:]
    if abs(width / height - columns / rows) > ASPECT_TOLERANCE * columns / rows:
        _voice.fail(NODE, f"image is {width}x{height} (aspect {width / height:.3f}) but the latent's token grid is "
                          f"{columns}x{rows} (aspect {columns / rows:.3f}), so the maps would not lie over it",
                    "connect the start image that feeds this video's latent, or a frame decoded from it")
    return image[0]


def _subject(keywords, metric) -> str:
    """What the maps measure, for titles: the anchor's keywords ('attention' only), else the prompt."""
    return ", ".join(f"'{_voice.cut(k)}'" for k in keywords) if keywords and metric == "attention" else "prompt"


def _title(block, report, subject):
    status = "weak" if block in report.weak else "responsive" if block in report.responsive else None
    return (f"{block} {status}: {subject}" if status else f"{block}: {subject}",
            PALETTE[status] if status else (0, 0, 0))


def _block_maps(maps, steps, num_blocks, frame):
    """Mean over the recorded steps of each block's [h, w] map at ``frame``."""
    return [torch.stack([maps[(s, b)][frame] for s in steps if (s, b) in maps]).mean(0) for b in range(num_blocks)]


def _pooled(m: torch.Tensor) -> torch.Tensor:
    h, w = m.shape
    factor = max(1, -(-max(h, w) // HEATMAP_MAX_SIDE))
    pooled = torch.nn.functional.avg_pool2d(m[None, None], factor, ceil_mode=True)[0, 0] if factor > 1 else m
    return pooled.mul(1e4).round().div(1e4)
