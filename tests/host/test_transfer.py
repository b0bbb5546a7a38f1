"""Focal Attention Transfer inside the real host, on tiny real-architecture checkpoints.

Random weights: these tests check mechanics (which blocks, which branch, which steps, exactness),
never output quality.
"""
import pytest
import torch

import comfy.model_management
import comfy.samplers
from comfy.ldm.modules.attention import attention_pytorch
from comfy_extras.nodes_slg import SkipLayerGuidanceDiT

import _host
from _host import transfer
from focal_guidance.focal_core.anchors import RegionAnchor
from focal_guidance.focal_core.attention import TextEdit, text_cross_attention
from focal_guidance.focal_core.transfer import AttentionTransfer, TransferSettings
from focal_guidance.nodes.dispatch import install

FAMILIES = ["wan_i2v", "wan_t2v", "wan22_i2v", "hunyuan_i2v"]
EXPECTED = {
    "wan_i2v": ("WAN21_I2V", 6), "wan_t2v": ("WAN21_T2V", 6),
    "wan22_i2v": ("WAN21_T2V", 6), "hunyuan_i2v": ("HunyuanVideoI2V", 6),
}


@pytest.fixture(scope="module", params=FAMILIES)
def family_model(request, tiny_models):
    return request.param, _host.load(tiny_models, request.param)


def block_outputs(model, family, **sample_kw):
    """Sample once and record every block's output tensor at every call, via a chained replace."""
    recorder = model.clone()
    seen = {}
    layout_keys = {"hunyuan_i2v": [("double_block", i) for i in range(2)] + [("single_block", i) for i in range(4)]}
    keys = layout_keys.get(family, [("double_block", i) for i in range(6)])

    def make(flat):
        def record(args, extra):
            out = extra["original_block"](args)
            seen.setdefault(flat, []).append(out["img"].clone())
            return out
        return record

    for flat, key in enumerate(keys):
        recorder.set_model_patch_replace(make(flat), "dit", *key)
    return recorder, seen


def test_tiny_checkpoints_are_detected_and_sample(family_model):
    family, model = family_model
    config_name, blocks = EXPECTED[family]
    assert type(model.model.model_config).__name__ == config_name
    out = _host.sample(model, family, steps=2)
    assert out.shape == _host.latent().shape and torch.isfinite(out).all()


def test_recording_only_is_bit_identical(family_model):
    """Sources that record for a transfer whose weak blocks are outside the window change nothing."""
    family, model = family_model
    patched = transfer(model, start=0.99, end=1.0)
    assert "optimized_attention_override" in patched.model_options["transformer_options"]
    assert torch.equal(_host.sample(model, family), _host.sample(patched, family))


def test_input_model_is_not_mutated_and_removing_fg_restores_output(family_model):
    family, model = family_model
    before = _host.sample(model, family)
    options_before = repr(sorted(model.model_options.get("transformer_options", {}).keys()))
    patched = transfer(model)
    assert not torch.equal(_host.sample(patched, family), before)
    assert repr(sorted(model.model_options.get("transformer_options", {}).keys())) == options_before
    assert torch.equal(_host.sample(model, family), before)


def test_only_selected_blocks_change(family_model):
    family, model = family_model
    base, base_seen = block_outputs(model, family)
    fg, fg_seen = block_outputs(model, family)
    fg = transfer(fg, weak="3", sources="1")
    _host.sample(base, family, steps=1)
    _host.sample(fg, family, steps=1)
    for block in range(3):
        assert all(torch.equal(a, b) for a, b in zip(base_seen[block], fg_seen[block], strict=True)), block
    assert not torch.equal(base_seen[3][0], fg_seen[3][0])


def cfg_preds(model, family, separate=False, cfg=5.0):
    """(cond, uncond) model predictions at the first step."""
    m = model.clone()
    preds = []

    def post_cfg(args):
        preds.append((args["cond_denoised"].clone(), args["uncond_denoised"].clone()))
        return args["denoised"]

    m.set_model_sampler_post_cfg_function(post_cfg)
    if separate:  # evaluate cond and uncond in separate model calls: cond_or_uncond [0] then [1]
        def separately(args):
            preds = []
            for i, cond in enumerate(args["conds"]):  # a list position is the cond_or_uncond label
                only = [cond if j == i else None for j in range(len(args["conds"]))]
                preds.append(comfy.samplers.calc_cond_batch(args["model"], only, args["input"], args["sigma"],
                                                            args["model_options"])[i])
            return preds
        m.set_model_sampler_calc_cond_batch_function(separately)
    _host.sample(m, family, steps=1, cfg=cfg)
    return preds[0]


@pytest.mark.parametrize("separate", [False, True], ids=["batched", "separate"])
def test_negative_branch_untouched_in_positive_mode(family_model, separate):
    family, model = family_model
    base_cond, base_uncond = cfg_preds(model, family, separate)
    fg_cond, fg_uncond = cfg_preds(transfer(model, weak="2", sources="1"), family, separate)
    if family.startswith("hunyuan") and not separate:
        # Joint attention: the host attends the uncond rows alone (batch 1 where the unpatched run had 2),
        # and CPU GEMM kernels may round by batch size (AVX-512/AMX do): equal to fp32 rounding, not bit for bit.
        torch.testing.assert_close(base_uncond, fg_uncond, rtol=1e-5, atol=1e-5)
    else:   # Wan: the host computes the whole batch as unpatched, edited rows replaced; separate: never edited
        assert torch.equal(base_uncond, fg_uncond)
    assert not torch.equal(base_cond, fg_cond)
    both_cond, both_uncond = cfg_preds(transfer(model, weak="2", sources="1", branch="both"), family, separate)
    assert not torch.equal(base_uncond, both_uncond)
    torch.testing.assert_close(both_cond, fg_cond)


def test_cfg_one_runs_positive_only(family_model):
    """At cfg 1 the sampler skips the negative pass: with both branches asked for, the weak block is
    edited once per step, on the positive chunk only, and the video changes."""
    family, model = family_model
    base = _host.sample(model, family, cfg=1.0)
    patched, spy = spy_install(model, settings_for(model, branches=frozenset({0, 1})))
    out = _host.sample(patched, family, cfg=1.0)
    assert spy.edited_branches == [0, 0, 0]
    assert torch.isfinite(out).all() and not torch.equal(base, out)


def test_negative_branch_at_cfg_one_is_refused(tiny_models):
    model = _host.load(tiny_models, "wan_t2v")
    with pytest.raises(ValueError, match="Focal Attention Transfer: branch 'negative' needs a negative pass"):
        _host.sample(transfer(model, weak="2", sources="1", branch="negative"), "wan_t2v", cfg=1.0)


class SpyTransfer(AttentionTransfer):
    """Records the sigma of every call it edits, and the weak block's final map."""

    def __init__(self, settings):
        super().__init__(settings)
        self.edited_sigmas, self.edited_branches, self.weak_maps, self.source_maps = [], [], [], []
        self.blended_sources = []   # per weak call: the source map it blended, or None
        self.edited_frames, self.biases = [], []   # per weak call: its context window's frames, its bias

    def edit_for(self, state, call):
        edit = super().edit_for(state, call)
        if edit is not None:
            edit.record_columns = slice(None)  # also at alpha 0, to compare maps
            if call.block in self.settings.weak:
                self.edited_sigmas.append(call.sigma)
                self.edited_branches.append(call.branch)
                self.blended_sources.append(edit.source)
                self.edited_frames.append(call.frames)
                self.biases.append(edit.bias)
        return edit

    def on_probabilities(self, state, call, recorded):
        if call.block in self.settings.weak:
            self.weak_maps.append(recorded[0])
        else:
            self.source_maps.append(recorded[0])
        super().on_probabilities(state, call, recorded)


def settings_for(model, weak=(2,), sources=(1,), alpha=0.5, start=0.0, end=1.0, branches=frozenset({0}),
                 beta=0.0, gamma=0.0, **kw):
    return TransferSettings(frozenset(weak), frozenset(sources), alpha, kw.pop("anchor", None), beta, gamma,
                            start, end, branches, **kw)


def spy_install(model, settings):
    from focal_guidance.nodes._inputs import model_family
    handler = SpyTransfer(settings)
    return install(model, model_family(model, "spy"), handler), handler


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpm_2"])
def test_step_window_is_honoured(tiny_models, sampler):
    model = _host.load(tiny_models, "wan_i2v")
    settings = settings_for(model, start=0.3, end=0.7)
    patched, spy = spy_install(model, settings)
    sigmas_seen = []

    def watch(args):
        sigmas_seen.append(float(args["sigma"][0]))
        return args["denoised"]
    patched.set_model_sampler_post_cfg_function(watch)
    _host.sample(patched, "wan_i2v", steps=8, sampler=sampler)
    sampling = model.get_model_object("model_sampling")
    sigma_start, sigma_end = sampling.percent_to_sigma(0.3), sampling.percent_to_sigma(0.7)
    inside = [s for s in sigmas_seen if sigma_end <= s <= sigma_start]
    assert spy.edited_sigmas and sorted(set(spy.edited_sigmas)) == sorted(set(inside))
    assert len(set(inside)) < len(set(sigmas_seen))
    if sampler == "dpm_2":  # heun re-evaluates schedule points; dpm_2 evaluates at log-midpoints
        schedule = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", 8)
        between = [s for s in inside if not torch.isclose(schedule, torch.tensor(s), rtol=1e-5).any()]
        assert between, "dpm_2 evaluates between schedule points inside the window"


def test_late_window_leaves_early_predictions_bitwise_equal(tiny_models):
    model = _host.load(tiny_models, "wan_i2v")
    patched = transfer(model, weak="2", sources="1", start=0.5, end=1.0)
    preds = {}
    for name, m in (("base", model), ("fg", patched)):
        m = m.clone()
        preds[name] = []
        m.set_model_sampler_post_cfg_function(lambda a, p=preds[name]: p.append(a["denoised"].clone()) or a["denoised"])
        _host.sample(m, "wan_i2v", steps=6)
    assert torch.equal(preds["base"][0], preds["fg"][0])
    assert not torch.equal(preds["base"][-1], preds["fg"][-1])


@pytest.mark.parametrize("family", ["wan_i2v", "hunyuan_i2v"])
def test_weak_map_moves_toward_source_with_alpha(tiny_models, family):
    model = _host.load(tiny_models, family)
    correlations = []
    for alpha in (0.0, 0.3, 0.6, 0.9):
        patched, spy = spy_install(model, settings_for(model, alpha=alpha))
        _host.sample(patched, family, steps=1)
        weak, source = spy.weak_maps[0], spy.source_maps[0]
        correlations.append(torch.corrcoef(torch.stack([weak.flatten(), source.flatten()]))[0, 1].item())
    assert all(b > a for a, b in zip(correlations, correlations[1:])), correlations


def test_deeper_source_uses_previous_step_cache(tiny_models):
    model = _host.load(tiny_models, "wan_t2v")
    patched, spy = spy_install(model, settings_for(model, weak=(1,), sources=(4,)))
    _host.sample(patched, "wan_t2v", steps=3)
    # block 1 runs before block 4: step 1 has no cache yet and stays unblended; steps 2 and 3 blend
    # exactly the map block 4 recorded one step earlier
    assert len(spy.weak_maps) == 3 and len(spy.source_maps) == 3
    assert spy.blended_sources[0] is None
    for step in (1, 2):
        assert torch.equal(spy.blended_sources[step], spy.source_maps[step - 1])
    rows = spy.weak_maps[1].sum(-1)
    torch.testing.assert_close(rows, torch.ones_like(rows))


def test_chains_with_slg_and_a_previous_override(tiny_models):
    model = _host.load(tiny_models, "wan_i2v")
    calls = []
    base = model.clone()

    def counting_override(func, *args, **kwargs):
        calls.append(args[0].shape[0])  # batch rows this call carries
        return func(*args, **kwargs)
    base.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = counting_override
    plain = _host.sample(base, "wan_i2v", steps=2)
    rows_plain, calls_plain = sum(calls), len(calls)
    calls.clear()
    fg = transfer(base, weak="2", sources="1")
    with_fg = _host.sample(fg, "wan_i2v", steps=2)
    # every call still reaches the earlier override with its whole batch (Wan: the host computes the
    # text attention as unpatched, and Focal Guidance replaces block 2's positive row once per step)
    assert calls == [2] * calls_plain and sum(calls) == rows_plain
    assert not torch.equal(plain, with_fg)
    slg = SkipLayerGuidanceDiT.execute(fg, 3.0, 0.0, 1.0, "4", "", 0.0).args[0]
    slg_fg = _host.sample(slg, "wan_i2v", steps=2)
    slg_only = _host.sample(SkipLayerGuidanceDiT.execute(base, 3.0, 0.0, 1.0, "4", "", 0.0).args[0], "wan_i2v", steps=2)
    assert torch.isfinite(slg_fg).all()
    assert not torch.equal(slg_fg, with_fg) and not torch.equal(slg_fg, slg_only)


@pytest.mark.parametrize("slg_first", [False, True], ids=["fg_then_slg", "slg_then_fg"])
def test_skip_layer_guidance_pass_is_guided_but_records_nothing(tiny_models, slg_first):
    """SLG's extra layer-skipped pass looks like a positive pass. It must not overwrite the cache: per
    step the transfer receives exactly the maps it receives without SLG, and the first step's maps
    (before SLG's guidance changes the trajectory) are the same ones."""
    model = _host.load(tiny_models, "wan_i2v")
    settings = settings_for(model, weak=(2,), sources=(1, 4))   # 4 is deeper: its map crosses steps
    plain, plain_spy = spy_install(model, settings)
    _host.sample(plain, "wan_i2v", steps=2)

    def slg(m):
        return SkipLayerGuidanceDiT.execute(m, 3.0, 0.0, 1.0, "3", "", 0.0).args[0]
    if slg_first:
        with_slg, slg_spy = spy_install(slg(model), settings)
    else:
        guided, slg_spy = spy_install(model, settings)
        with_slg = slg(guided)
    _host.sample(with_slg, "wan_i2v", steps=2)
    assert len(slg_spy.source_maps) == len(plain_spy.source_maps) == 2 * 2
    assert len(slg_spy.weak_maps) == len(plain_spy.weak_maps) == 2
    assert len(slg_spy.blended_sources) > len(plain_spy.blended_sources), "SLG's pass is guided too"
    for plain_map, slg_map in zip(plain_spy.source_maps[:2], slg_spy.source_maps[:2], strict=True):
        assert torch.equal(plain_map, slg_map)
    assert torch.equal(plain_spy.weak_maps[0], slg_spy.weak_maps[0])


def test_skip_layer_guidance_pass_publishes_no_probe_maps(tiny_models):
    model = _host.load(tiny_models, "wan_i2v")
    plain, plain_handle = _host.probe(model, steps=2)
    _host.sample(plain, "wan_i2v", steps=2)
    patched, slg_handle = _host.probe(model, steps=2)
    _host.sample(SkipLayerGuidanceDiT.execute(patched, 3.0, 0.0, 1.0, "3", "", 0.0).args[0], "wan_i2v", steps=2)
    plain_maps, slg_maps = plain_handle.recordings.runs[-1].maps, slg_handle.recordings.runs[-1].maps
    for metric in ("attention", "hidden"):
        assert plain_maps[metric].keys() == slg_maps[metric].keys()
        for step, block in plain_maps[metric]:
            if step == 0:   # the trajectories part after SLG's first guided step
                assert torch.equal(plain_maps[metric][(0, block)], slg_maps[metric][(0, block)]), (metric, block)


def test_state_survives_clone_and_resets_per_run(tiny_models):
    model = _host.load(tiny_models, "wan_i2v")
    patched = transfer(model, weak="1", sources="4")
    first = _host.sample(patched, "wan_i2v")
    assert torch.equal(_host.sample(patched.clone(), "wan_i2v"), first)
    assert torch.equal(_host.sample(patched, "wan_i2v"), first)


def test_errors_name_the_node_and_the_fix(tiny_models):
    model = _host.load(tiny_models, "wan_i2v")
    with pytest.raises(ValueError, match="Focal Attention Transfer: weak_blocks: block '6' is out of range"):
        transfer(model, weak="2, 6")
    with pytest.raises(ValueError, match="Focal Attention Transfer: weak_blocks: '1,,2' has an empty item"):
        transfer(model, weak="1,,2")
    with pytest.raises(ValueError, match="Focal Attention Transfer: source_blocks: '１' is not a block index"):
        transfer(model, sources="１")
    for name, bad in (("alpha", {"alpha": float("nan")}), ("beta", {"beta": float("nan")}),
                      ("gamma", {"gamma": float("inf")}), ("start_percent", {"start": float("nan")}),
                      ("end_percent", {"end": float("nan")})):
        with pytest.raises(ValueError, match=f"Focal Attention Transfer: {name} is (nan|inf). Fix: give a finite "
                                             "number"):
            transfer(model, **bad)
    with pytest.raises(ValueError, match="both weak and source"):
        transfer(model, weak="2", sources="2")
    with pytest.raises(ValueError, match="needs an anchor"):
        transfer(model, columns="keyword tokens")
    square = RegionAnchor(("cat",), torch.ones(1, 8, 8), ((1,),))
    with pytest.raises(ValueError, match="Focal Attention Transfer: anchor aspect"):
        _host.sample(transfer(model, anchor=square, beta=1.0), "wan_i2v")
    with pytest.raises(ValueError, match="Focal Attention Transfer: batch size 2"):
        _host.sample(transfer(model), "wan_i2v", latent_image=_host.latent(batch=2))


def test_anchor_bias_changes_only_with_beta_gamma(tiny_models):
    model = _host.load(tiny_models, "wan_i2v")
    masks = torch.zeros(1, 8, 12)
    masks[:, 2:6, 3:8] = 1
    anchor = RegionAnchor(("cat",), masks, ((1, 2),))
    base = _host.sample(model, "wan_i2v")
    zero = _host.sample(transfer(model, alpha=0.0, anchor=anchor), "wan_i2v")
    biased = _host.sample(transfer(model, alpha=0.0, beta=2.0, gamma=1.0, anchor=anchor), "wan_i2v")
    keyword_cache = _host.sample(transfer(model, beta=2.0, anchor=anchor, columns="keyword tokens"), "wan_i2v")
    assert torch.equal(base, zero)
    assert not torch.equal(base, biased) and torch.isfinite(biased).all()
    assert not torch.equal(biased, keyword_cache) and torch.isfinite(keyword_cache).all()
    comfy.model_management.soft_empty_cache()


def test_hunyuan_anchor_columns_skip_tokens_before_the_prompt(tiny_models):
    model = _host.load(tiny_models, "hunyuan_i2v")
    context_len = _host.TEXT_TOKENS + 8  # the stand-in HunyuanVideo context has 8 leading extra tokens
    anchor = RegionAnchor(("cat",), torch.ones(1, 4, 6), ((0, 2),), prompt_tokens=_host.TEXT_TOKENS)
    settings = settings_for(model, anchor=anchor)
    settings = TransferSettings(**{**settings.__dict__, "beta": 1.0})
    patched, spy = spy_install(model, settings)
    seen = []
    original = spy.edit_for

    def capture(state, call):
        edit = original(state, call)
        if edit is not None and edit.bias is not None:
            seen.append(edit.bias_columns.tolist())
        return edit
    spy.edit_for = capture
    _host.sample(patched, "hunyuan_i2v", steps=1)
    assert seen and seen[0] == [context_len - _host.TEXT_TOKENS + 0, context_len - _host.TEXT_TOKENS + 2]


def test_window_follows_a_model_sampling_node_placed_after_fg(tiny_models):
    """The window is converted with the sampled model's schedule, not the one FG was applied to."""
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3
    model = _host.load(tiny_models, "wan_i2v")
    patched, spy = spy_install(model, settings_for(model, start=0.0, end=0.5))
    (reshifted,) = ModelSamplingSD3().patch(patched, shift=1.0)
    _host.sample(reshifted, "wan_i2v", steps=6)
    expected = reshifted.get_model_object("model_sampling").percent_to_sigma(0.5)
    assert spy.edited_sigmas and min(spy.edited_sigmas) >= expected
    assert expected != model.get_model_object("model_sampling").percent_to_sigma(0.5)


@pytest.mark.parametrize("family", ["wan_i2v", "hunyuan_i2v"])
@pytest.mark.parametrize("sources, first_biased_step", [((1,), 0), ((4,), 1), ((1, 4), 1), ((), 1)],
                         ids=["shallower", "deeper", "both", "no source: the weak block itself"])
def test_attention_fallback_anchor_is_refined_from_source_blocks(tiny_models, family, sources, first_biased_step):
    """A 'model attention (fallback)' anchor is refined as soon as every source has recorded once:
    in the same step when all sources are shallower than the weak block, else in the next step.
    Without sources the weak block reads it from its own unbiased attention of the first step."""
    model = _host.load(tiny_models, family)
    placeholder = RegionAnchor(("cat", "ball"), torch.full((2, 4, 6), 0.5), ((0,), (2, 3)), regions_from_attention=True,
                               prompt_tokens=_host.TEXT_TOKENS)
    settings = TransferSettings(**{**settings_for(model, weak=(3,), sources=sources, alpha=0.0,
                                                  anchor=placeholder).__dict__, "beta": 2.0, "gamma": 1.0})
    patched, spy = spy_install(model, settings)
    biases, states = {}, []
    original = spy.edit_for

    def capture(state, call):
        edit = original(state, call)
        states.append(state)
        if edit is not None and call.block == 3:
            biases.setdefault(call.step, edit.bias)
        return edit
    spy.edit_for = capture
    out = _host.sample(patched, family, steps=3)
    assert torch.isfinite(out).all() and not torch.equal(out, _host.sample(model, family, steps=3))
    assert [step for step, bias in sorted(biases.items()) if bias is not None][0] == first_biased_step
    assert all(biases[step] is not None for step in range(first_biased_step, 3))
    masks = states[-1].refined_masks
    assert masks.shape == (2, 4, 6) and masks.max() == 1.0 and masks.min() == 0.0
    frame0 = biases[first_biased_step][:24]
    assert frame0.unique().numel() > 2  # a soft spatial bias, not the placeholder's constant


def test_unedited_text_attention_equals_the_hosts_kernel():
    """The explicit path with no edit is the host's own attention (tests/core checks it against SDPA)."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, n, 16, generator=gen) for n in (37, 11, 11))
    out, (rec,) = text_cross_attention(q, k, v, [TextEdit()])
    host = attention_pytorch(q, k, v, 2, skip_reshape=True, skip_output_reshape=True)
    torch.testing.assert_close(out, host, atol=1e-5, rtol=1e-5)
    assert rec is None
