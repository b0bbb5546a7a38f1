"""Input factories and checks shared by the pack's nodes, so tooltips, ranges and errors never drift apart."""
import math

from comfy_api.latest import io

from ..focal_core.blocks import parse_block_list
from ..focal_core.families import Family, ModelInfo, UnsupportedModelError, family_for
from ._voice import WINDOW_OF, fail, quoted

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


def window_of_input():
    labels = list(WINDOW_OF)
    return io.Combo.Input("window_of", options=labels, default=labels[0], optional=True, tooltip=(
        "What the window's percents count: 'whole schedule' is the model's full noise schedule; "
        "'sampled steps' is the steps this sampler runs, so each Wan2.2 expert or KSamplerAdvanced "
        "step range gets the window within its own steps."))


def branch_input(options=("positive", "both"), tooltip=None):
    return io.Combo.Input("branch", options=list(options), default=options[0], tooltip=tooltip or (
        "Which CFG pass is changed: 'positive' leaves the negative prompt's pass exactly as the "
        "host computes it; 'both' applies the same guidance to the negative pass too."))


def choice(node_name, name, value, options):
    """A combo input's value checked against its options (ComfyUI 0.3.75 does not check them before
    ``execute``); ``options`` is a list of labels, or a dict of labels to the values they stand for."""
    if not isinstance(value, str) or value not in options:
        fail(node_name, f"{name} is {quoted(value)}, which is not one of its options",
             "choose one of " + ", ".join(f"'{label}'" for label in options))
    return options[value] if isinstance(options, dict) else value


def model_family(model, node_name, anchor=None) -> Family:
    """The family of a MODEL (focal_core.families), or a ValueError naming the node, the model and
    what is supported; an anchor built for another family is refused here too."""
    config = model.model.model_config
    info = ModelInfo(config_class=type(config).__name__,
                     network_class=type(model.get_model_object("diffusion_model")).__name__,
                     config=dict(config.unet_config))
    try:
        family = family_for(info)
    except UnsupportedModelError as err:
        raise ValueError(f"{node_name}: {err}.") from None
    if anchor is not None and anchor.tokenizer is not None and anchor.tokenizer != family.tokenizer:
        fail(node_name, f"the anchor was built for {anchor.family} (tokenizer {anchor.tokenizer}) but the model is "
                        f"{family.variant}, which reads {family.name} tokens (tokenizer {family.tokenizer})",
             "give Region Anchor this model's text encoder")
    return family


def parse_blocks(text, family: Family, node_name, field):
    try:
        return parse_block_list(text, family.num_blocks)
    except ValueError as err:
        fail(node_name, f"{field}: {err} ({family.variant})", "name blocks like '12-20, 25'")


def check_finite(node_name, **values):
    """ComfyUI's min/max validation passes NaN (every comparison is false): refuse it here."""
    for name, value in values.items():
        if not math.isfinite(value):
            fail(node_name, f"{name} is {value}", "give a finite number")


def check_window(start_percent, end_percent, node_name):
    check_finite(node_name, start_percent=start_percent, end_percent=end_percent)
    if start_percent > end_percent:
        fail(node_name, f"start_percent {start_percent} is after end_percent {end_percent}",
             "make start_percent the smaller")
