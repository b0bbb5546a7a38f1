"""Focal Attention Transfer's auto mode: the run's first step picks the weak and source blocks."""
import json
import logging

import pytest
import torch

import _host
from _host import probe, transfer
from _host import PLANTED, report, smooth_latent, synthetic_wan

QUIET_RUN = {"steps": 4, "denoise": 0.3}  # with zero noise the synthetic model stays coherent


@pytest.fixture(autouse=True)
def info_logs(caplog):
    caplog.set_level(logging.INFO, logger="FocalGuidance")  # auto mode tells its picks at INFO


def quiet_sample(model, seed=0, **kw):
    lat = smooth_latent()
    return _host.sample(model, "wan_t2v", latent_image=lat, noise=torch.zeros_like(lat), seed=seed,
                        **QUIET_RUN, **kw)


def first_and_last_predictions(model):
    m = model.clone()
    preds = []
    m.set_model_sampler_post_cfg_function(lambda a: preds.append(a["denoised"].clone()) or a["denoised"])
    quiet_sample(m)
    return preds[0], preds[-1]


@pytest.mark.parametrize("seed", [1, 2])  # seed 0's block 6 also dips, so one step's trend hides block 5
def test_auto_picks_the_planted_blocks_exactly_as_the_report(seed, caplog):
    model = synthetic_wan(seed, PLANTED)
    probed, handle = probe(model, steps=1, end=0.25, window_of="sampled steps")   # the run's first step
    offline = json.loads(report(handle, quiet_sample(probed)).args[4])
    patched, auto_report = transfer(model, weak="auto", sources="auto", auto_kappa=2.0, with_report=True)
    picked = json.loads(report(auto_report, quiet_sample(patched)).args[4])
    assert picked["weak"] == offline["weak"] == list(PLANTED)
    assert picked["responsive"] == offline["responsive"]
    assert (f"auto mode picked weak blocks 5, 9 and source blocks {picked['responsive_blocks']} after "
            "observing step(s) 0") in caplog.text


def test_observation_keeps_the_first_step_and_guidance_follows():
    model = synthetic_wan(1, PLANTED)
    base_first, base_last = first_and_last_predictions(model)
    auto_first, auto_last = first_and_last_predictions(transfer(model, weak="auto", sources="auto"))
    assert torch.equal(base_first, auto_first)
    assert not torch.equal(base_last, auto_last)


def test_auto_is_deterministic_and_freezing_its_picks_gives_the_same_video(caplog):
    model = synthetic_wan(1, PLANTED)
    auto = transfer(model, weak="auto", sources="auto", auto_kappa=2.0)
    first, second = quiet_sample(auto), quiet_sample(auto)
    assert torch.equal(first, second)
    sources = caplog.text.split("source blocks ")[1].split(" after")[0]
    frozen = quiet_sample(transfer(model, weak="5, 9", sources=sources, start=0.25, window_of="sampled steps"))
    assert torch.equal(first, frozen)   # the same blocks from step 1 on, with step 0 unguided


def test_no_weak_layers_found_leaves_the_run_unguided_and_says_so(caplog):
    model = synthetic_wan(0)
    idle = transfer(model, weak="auto", sources="auto", auto_kappa=10.0)
    assert torch.equal(quiet_sample(idle), quiet_sample(model))
    assert "auto mode found no Semantic-Weak Layers after observing step(s) 0 (kappa 10)" in caplog.text


def test_a_window_that_ends_with_the_observation_warns(caplog):
    """Step 0 only observes; a window holding only step 0 would guide nothing, and says so."""
    model = synthetic_wan(1, PLANTED)
    early = transfer(model, weak="auto", sources="auto", end=0.2, window_of="sampled steps")
    assert torch.equal(quiet_sample(early), quiet_sample(model))
    assert "the window holds no later sampled step, so nothing is guided" in caplog.text


def test_named_weak_blocks_with_auto_sources(caplog):
    model = synthetic_wan(1, PLANTED)
    quiet_sample(transfer(model, weak="7", sources="auto"))
    assert "auto mode picked weak blocks 7 and source blocks" in caplog.text


def test_each_expert_picks_its_own_blocks(caplog):
    """Two KSamplerAdvanced passes over 8 steps, as Wan2.2's experts: each transfer picks in its own part."""
    high, low = synthetic_wan(1, (5, 9)), synthetic_wan(2, (6, 10))
    lat = smooth_latent()
    run = {"steps": 8, "noise": torch.zeros_like(lat)}
    auto = {"weak": "auto", "sources": "auto", "window_of": "sampled steps", "auto_kappa": 2.0}
    high_out = _host.sample(transfer(high, **auto), "wan_t2v", latent_image=lat, start_step=4, last_step=6,
                            force_full_denoise=False, **run)
    _host.sample(transfer(low, **auto), "wan_t2v", latent_image=high_out, start_step=6, last_step=8, **run)
    picks = [line.split("weak blocks ")[1].split(" and")[0] for line in caplog.messages if "picked" in line]
    high_weak, low_weak = ({int(b) for b in p.split(", ")} for p in picks)
    assert high_weak and high_weak <= {5, 9}   # each expert finds its own planted blocks
    assert low_weak and low_weak <= {6, 10}


def test_auto_with_a_fallback_anchor_and_a_separate_probe(tiny_models):
    from focal_guidance.focal_core.anchors import RegionAnchor
    model = _host.load(tiny_models, "wan_i2v")
    placeholder = RegionAnchor(("cat",), torch.full((1, 4, 6), 0.5), ((1, 2),), prompt_tokens=_host.TEXT_TOKENS,
                               regions_from_attention=True)
    probed, handle = probe(model)
    rules = {"auto_exclude_ends": 1, "auto_kappa": 0.0}
    cache_only = _host.sample(transfer(probed, weak="auto", sources="auto", **rules), "wan_i2v", steps=4)
    anchored = transfer(probed, weak="auto", sources="auto", beta=2.0, gamma=1.0, anchor=placeholder, **rules)
    out = _host.sample(anchored, "wan_i2v", steps=4)
    assert torch.isfinite(out).all() and not torch.equal(out, cache_only)
    assert len(handle.recordings.runs) == 2   # the probe stacked under both transfers kept recording


def test_too_few_steps_for_auto_is_refused(tiny_models):
    model = _host.load(tiny_models, "wan_t2v")
    with pytest.raises(ValueError, match="Focal Attention Transfer: auto mode observes the first 2 step"):
        _host.sample(transfer(model, weak="auto", sources="auto", auto_observe_steps=2), "wan_t2v", steps=2)
