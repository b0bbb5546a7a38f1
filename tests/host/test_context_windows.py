"""Core context windows ("WAN Context Windows (Manual)") with Focal Guidance, on a tiny Wan T2V.

17 frames give 5 latent frames; windows of 3 latent frames with an overlap of 1 give the windows
(0, 1, 2) and (2, 3, 4); ComfyUI 0.33 leads the second with the frame before it (its causal window
fix): (1, 2, 3, 4). The host names each window's frames in ``transformer_options``: the anchor
bias, the cache and the probe's maps follow them. Random weights: mechanics only.
"""
import pytest
import torch

import _host
from focal_guidance.focal_core.anchors import RegionAnchor
from test_transfer import settings_for, spy_install

FAMILY = "wan_t2v"
WINDOWS = ([(0, 1, 2), (2, 3, 4)], [(0, 1, 2), (1, 2, 3, 4)])   # without, with the causal window fix
TOKENS_PER_FRAME = 4 * 6


@pytest.fixture(scope="module")
def model(tiny_models):
    return _host.load(tiny_models, FAMILY)


def sample(model, steps=2):
    return _host.sample(model, FAMILY, steps=steps, latent_image=_host.latent(frames=17))


def anchor():
    masks = torch.zeros(1, 4, 6)
    masks[:, 1:3, 2:5] = 1.0
    return RegionAnchor(("cat",), masks, ((1, 2),), prompt_tokens=_host.TEXT_TOKENS)


@pytest.mark.parametrize("windows_first", [False, True], ids=["fg_then_windows", "windows_then_fg"])
def test_transfer_guides_each_window_with_its_frames(model, windows_first):
    settings = settings_for(model, weak=(2,), sources=(1, 4), anchor=anchor(), beta=1.0, gamma=0.5)
    full_bias = settings.anchor.bias((5, 4, 6), 1.0, 0.5)[1]
    if windows_first:
        patched, spy = spy_install(_host.context_windows(model), settings)
    else:
        guided, spy = spy_install(model, settings)
        patched = _host.context_windows(guided)
    out = sample(patched)
    assert torch.isfinite(out).all() and not torch.equal(out, sample(_host.context_windows(model)))

    assert sorted(set(spy.edited_frames)) in WINDOWS
    for frames, bias, source in zip(spy.edited_frames, spy.biases, spy.blended_sources, strict=True):
        rows = torch.cat([full_bias[f * TOKENS_PER_FRAME:(f + 1) * TOKENS_PER_FRAME] for f in frames])
        assert torch.equal(bias, rows), frames        # the anchor's bias of the frames the window holds
        assert source is None or source.shape[0] == len(frames) * TOKENS_PER_FRAME
    # the cache is kept per window: each blend uses the source maps of its own window
    assert all(s is not None for s in spy.blended_sources)


def test_probe_maps_cover_every_frame_of_the_video(model):
    patched, handle = _host.probe(_host.context_windows(model), steps=2)
    sample(patched)
    recording = handle.recordings.runs[-1]
    assert recording.grid == (5, 4, 6) and len(recording.steps) == 2
    for metric in ("attention", "hidden"):
        assert len(recording.maps[metric]) == 2 * 6
        for response in recording.maps[metric].values():
            assert response.shape == (5, 4, 6) and bool((response.abs().sum((1, 2)) > 0).all()), metric


def test_auto_mode_picks_and_guides_under_context_windows(model):
    rules = {"auto_exclude_ends": 1, "auto_kappa": 0.0, "auto_top_r": 1}
    patched, auto_report = _host.transfer(_host.context_windows(model), weak="auto", sources="auto",
                                          with_report=True, **rules)
    out = sample(patched, steps=3)
    assert torch.isfinite(out).all()
    observed = auto_report.recordings.runs[-1]
    assert observed.grid == (5, 4, 6) and all(m.shape == (5, 4, 6) for m in observed.maps["attention"].values())


def test_windows_over_another_dimension_are_refused(model):
    from comfy_extras.nodes_context_windows import ContextWindowsManualNode
    import inspect
    wanted = dict(model=_host.transfer(model, weak="2", sources="1"), context_length=3, context_overlap=1,
                  context_schedule="standard_static", context_stride=1, closed_loop=False, fuse_method="pyramid",
                  dim=3, freenoise=False)
    known = inspect.signature(ContextWindowsManualNode.execute).parameters
    over_height = ContextWindowsManualNode.execute(**{k: v for k, v in wanted.items() if k in known}).args[0]
    with pytest.raises(ValueError, match="context windows over latent dimension 3 .* set dim to 2"):
        sample(over_height)
