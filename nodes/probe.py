"""Node "Semantic Layer Probe": record every block's response to the prompt while sampling."""
from comfy_api.latest import io

from ..focal_core.probe import ProbeSettings, SemanticProbe
from . import _inputs
from ._types import Anchor, Probe, ProbeHandle, anchor_keywords
from ._voice import WINDOW_OF
from .dispatch import install

NODE = "Semantic Layer Probe"
BRANCHES = {"positive": 0, "negative": 1}
NOTHING_RECORDED = ("wire the probed MODEL into the sampler whose LATENT feeds this node, and check the window "
                    "holds a sampled step")


class SemanticLayerProbe(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FocalSemanticLayerProbe",
            display_name=NODE,
            category=_inputs.CATEGORY,
            description="Record every DiT block's response to the prompt while sampling, to find "
                        "Semantic-Weak Layers. Sampler output is unchanged (bit-identical).",
            inputs=[
                io.Model.Input("model", tooltip="A Wan2.1/2.2 or HunyuanVideo diffusion model."),
                io.Int.Input("steps", default=4, min=1, max=100,
                             tooltip="How many sampling steps to record, spread evenly over the window."),
                *_inputs.window_inputs(0.1, 0.7),
                _inputs.branch_input(tuple(BRANCHES),
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
    def execute(cls, model, steps, start_percent, end_percent, branch, window_of=next(iter(WINDOW_OF)),
                anchor=None) -> io.NodeOutput:
        branch = _inputs.choice(NODE, "branch", branch, BRANCHES)
        within_sampled_steps = _inputs.choice(NODE, "window_of", window_of, WINDOW_OF)
        _inputs.check_window(start_percent, end_percent, NODE)
        family = _inputs.model_family(model, NODE, anchor)
        probe = SemanticProbe(ProbeSettings(
            steps=steps, start=start_percent, end=end_percent, branch=branch, anchor=anchor,
            within_sampled_steps=within_sampled_steps), family.num_blocks)
        return io.NodeOutput(install(model, family, probe, node=NODE),
                             ProbeHandle(probe.recordings, family, NOTHING_RECORDED, anchor_keywords(anchor)))
