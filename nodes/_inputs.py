"""Input factories shared by the pack's nodes, so tooltips and ranges never drift apart."""
from comfy_api.latest import io

from ..focal_core.adapters import UnsupportedModelError, adapter_for
from ..focal_core.blocks import parse_block_list

CATEGORY = "sampling/focal_guidance"
BRANCHES = {"positive": frozenset({0}), "both": frozenset({0, 1}), "negative": frozenset({1})}


def blocks_input(name, tooltip, default=""):
    return io.String.Input(name, default=default, tooltip=tooltip)


def window_inputs(start=0.0, end=0.5):
    return [
        io.Float.Input("start_percent", default=start, min=0.0, max=1.0, step=0.01,
                       tooltip="Where in the sampling schedule guidance starts (0 = first step)."),
        io.Float.Input("end_percent", default=end, min=0.0, max=1.0, step=0.01,
                       tooltip="Where it stops (1 = last step). Layout and motion are decided early."),
    ]


def branch_input(options=("positive", "both"), tooltip=None):
    return io.Combo.Input("branch", options=list(options), default=options[0], tooltip=tooltip or (
        "Which CFG pass is changed: 'positive' leaves the negative prompt's pass exactly as the "
        "host computes it; 'both' applies the same guidance to the negative pass too."))


def model_layout(model, node_name):
    """The adapter layout of a MODEL, or a ValueError naming the node and the fix."""
    try:
        return adapter_for(model.get_model_object("diffusion_model")).layout
    except UnsupportedModelError as err:
        raise ValueError(f"{node_name}: {err}. Connect a Wan or HunyuanVideo model.") from None


def parse_blocks(text, layout, node_name, field, required=True):
    try:
        blocks = parse_block_list(text, layout.num_blocks)
    except ValueError as err:
        raise ValueError(f"{node_name}: {field}: {err} ({layout.family}).") from None
    if required and not blocks:
        raise ValueError(f"{node_name}: {field} is empty; name blocks such as '12-20, 25' or wire the "
                         "weak_blocks output of Semantic Layer Report.")
    return blocks


def check_window(start_percent, end_percent, node_name):
    if start_percent > end_percent:
        raise ValueError(f"{node_name}: start_percent {start_percent} is after end_percent {end_percent}.")
