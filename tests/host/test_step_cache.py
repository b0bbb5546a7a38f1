"""Core EasyCache and LazyCache skip the model call at some steps: the Probe's Report and auto mode
name only the steps really recorded, and name the step cache when it skipped all of them."""
import json
import logging

import pytest
import torch

import comfy.samplers
from comfy_extras.nodes_easycache import EasyCacheNode, LazyCacheNode

import _host
from _host import probe, report, transfer
from focal_guidance.focal_core.blocks import format_block_list

STEPS = 8
CACHES = {"EasyCache": EasyCacheNode, "LazyCache": LazyCacheNode}


@pytest.fixture(params=list(CACHES))
def step_cache(request):
    """The real node, set to reuse its cache whenever it may, from the first step on."""
    return lambda model: CACHES[request.param].execute(model, 3.0, 0.0, 1.0, False).args[0]


def counted(model):
    """A clone whose block 0 notes each call's sigma, and a function giving the steps it ran at."""
    m, sigmas = model.clone(), []

    def count(args, extra):
        sigmas.append(float(args["transformer_options"]["sigmas"].flatten()[0]))
        return extra["original_block"](args)
    m.set_model_patch_replace(count, "dit", "double_block", 0)
    schedule = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", STEPS)
    return m, lambda: sorted({int(torch.isclose(schedule, torch.tensor(s)).nonzero()[0]) for s in sigmas})


def computed_steps(model, step_cache):
    m, steps = counted(model)
    _host.sample(step_cache(m), "wan_t2v", steps=STEPS)
    return steps()


def test_report_lists_only_the_steps_recorded(tiny_models, step_cache):
    model = _host.load(tiny_models, "wan_t2v")
    counting, steps_run = counted(model)
    patched, handle = probe(counting, steps=4)
    out = _host.sample(step_cache(patched), "wan_t2v", steps=STEPS)
    computed = steps_run()
    recording = handle.recordings.runs[-1]
    skipped = sorted(set(recording.planned) - set(computed))
    assert skipped, "the cache skipped none of the probe's steps: the test does not test"
    data = json.loads(report(handle, out).args[4])
    assert data["steps"] == sorted(set(recording.planned) & set(computed)) == recording.steps
    assert data["skipped_steps"] == skipped
    assert {step for step, _ in recording.maps["attention"]} == set(data["steps"])


def test_report_names_the_step_cache_when_it_skipped_every_step_to_record(tiny_models, step_cache):
    model = _host.load(tiny_models, "wan_t2v")
    computed = computed_steps(model, step_cache)
    skipped = next(s for s in range(STEPS) if s not in computed)
    patched, handle = probe(model, steps=1, start=skipped / STEPS, end=(skipped + 0.5) / STEPS,
                            window_of="sampled steps")
    out = _host.sample(step_cache(patched), "wan_t2v", steps=STEPS)
    assert handle.recordings.runs[-1].planned == [skipped]
    with pytest.raises(ValueError, match=rf"^Semantic Layer Report: nothing was recorded: the model was not called "
                                         rf"at step\(s\) {skipped}, so a step cache \(EasyCache, LazyCache\).*Fix: "):
        report(handle, out)


def test_auto_mode_names_only_the_steps_it_observed(tiny_models, step_cache, caplog):
    caplog.set_level(logging.INFO, logger="FocalGuidance")
    model = _host.load(tiny_models, "wan_t2v")
    computed = computed_steps(model, step_cache)
    skipped = next(s for s in range(STEPS) if s not in computed)
    auto, handle = transfer(model, weak="auto", sources="auto", auto_observe_steps=skipped + 1, auto_kappa=0.0,
                            with_report=True)
    out = _host.sample(step_cache(auto), "wan_t2v", steps=STEPS)
    recording = handle.recordings.runs[-1]
    observed = [s for s in range(skipped + 1) if s in computed]
    assert recording.steps == observed and skipped in recording.skipped
    told = [r.getMessage() for r in caplog.records if "auto mode" in r.getMessage()]
    assert len(told) == 1 and f"observing step(s) {format_block_list(observed)} (step(s) {skipped} skipped by " \
        "a step cache" in told[0], told
    assert json.loads(report(handle, out, kappa=0.0).args[4])["steps"] == observed


def test_auto_mode_that_observed_nothing_says_so_and_guides_nothing(caplog):
    """A step cache that skipped every observed step (EasyCache and LazyCache always compute the
    first step, so it is driven here through the handler): no pick, and a notice naming the cache."""
    from focal_guidance.focal_core.auto import AutoPick, AutoSettings
    from focal_guidance.focal_core.handler import POSITIVE, RunContext, TextCall
    from focal_guidance.nodes import _voice
    told = []
    ctx = RunContext(grid=(1, 2, 2), sample_sigmas=torch.tensor([1.0, 0.5, 0.0]), batch=1, cfg=5.0, text={},
                     tell=told.append)
    auto = AutoPick(AutoSettings(num_blocks=6))
    state = auto.start_run(ctx)
    assert auto.edit_for(state, TextCall(block=0, branch=POSITIVE, sigma=0.5, step=1)) is None
    assert ctx.picks[auto].weak == frozenset() and ctx.picks[auto].sources == frozenset()
    assert [type(n).__name__ for n in told] == ["NothingObserved"] and told[0].planned == [0]
    _voice.tell("Focal Attention Transfer", told[0])
    assert ("Focal Attention Transfer: auto mode observed nothing: the model was not called at step(s) 0, so a "
            "step cache (EasyCache, LazyCache)") in caplog.text
