"""The keyword-focus figure (issue 22 item 4) in the real host: each keyword's share of attention inside its
anchor region in the weak blocks, with the weak edit and without it, told once per run.

Random weights: the anchor bias raises the in-region share by construction (it adds ``β·M − γ·(1−M)`` to the
keyword's logits), so these tests check that the figure measures that and nothing else, not output quality.
"""
import logging

import pytest
import torch

import _host
from _host import transfer
from focal_guidance.focal_core.anchors import RegionAnchor
from focal_guidance.focal_core.errors import KeywordFocusMeasured
from focal_guidance.focal_core.transfer import AttentionTransfer, TransferSettings
from focal_guidance.nodes import _voice
from focal_guidance.nodes._inputs import model_family
from focal_guidance.nodes.dispatch import install


def cat_anchor(prompt_tokens=_host.TEXT_TOKENS):
    masks = torch.zeros(2, 8, 12)
    masks[0, 2:6, 3:8] = 1       # 'cat' in the middle
    masks[1, :, :4] = 1          # 'ball' on the left
    return RegionAnchor(("cat", "ball"), masks, ((1, 2), (4,)), prompt_tokens=prompt_tokens)


@pytest.fixture
def told(monkeypatch):
    """The focus notices the run sends (worded by the one voice as usual)."""
    notices = []
    tell = _voice.tell

    def keep(node, notice, node_id=None):
        if isinstance(notice, KeywordFocusMeasured):
            notices.append(notice)
        tell(node, notice, node_id=node_id)
    monkeypatch.setattr(_voice, "tell", keep)
    return notices


@pytest.mark.parametrize("family", ["wan_i2v", "hunyuan_i2v"])
def test_the_anchor_bias_raises_the_keywords_share_inside_their_regions(tiny_models, family, told, caplog):
    model = _host.load(tiny_models, family)
    patched = transfer(model, weak="2, 3", sources="", alpha=0.0, beta=2.0, gamma=1.0, anchor=cat_anchor())
    with caplog.at_level(logging.INFO, logger="FocalGuidance"):
        _host.sample(patched, family, steps=3)
    [notice] = told
    assert notice.keywords == ("cat", "ball") and notice.blocks == [2, 3]
    assert notice.calls == 2 and notice.step == 0   # two weak blocks, one step, the positive branch only
    for with_edit, without_edit in zip(notice.with_edit, notice.without_edit):
        assert 0 < without_edit < with_edit <= 1
    line = next(r.getMessage() for r in caplog.records if "keyword focus" in r.getMessage())
    assert "weak block(s) 2-3" in line and f"'cat' {notice.with_edit[0]:.0%} (without the edit: " \
        f"{notice.without_edit[0]:.0%})" in line


@pytest.mark.parametrize("family", ["wan_i2v", "hunyuan_i2v"])
def test_an_edit_that_changes_nothing_reports_equal_shares(tiny_models, family, told):
    """The negative control: beta = gamma = alpha = 0 (installed directly, since the node refuses settings that
    cannot act) records the same call's probabilities twice, so the two shares are the same numbers."""
    model = _host.load(tiny_models, family)
    settings = TransferSettings(frozenset({2}), frozenset(), 0.0, cat_anchor(), 0.0, 0.0, 0.0, 1.0, frozenset({0}))
    _host.sample(install(model, model_family(model, "test"), AttentionTransfer(settings)), family, steps=2)
    [notice] = told
    assert notice.calls == 1 and notice.with_edit == notice.without_edit
    assert all(0 < share < 1 for share in notice.with_edit)


def test_regions_read_from_attention_are_measured_once_known(tiny_models, told):
    """A fallback anchor (regions from the source blocks' attention): with a source shallower than the weak
    block, the regions are known from the first step's weak call, and the figure uses them."""
    model = _host.load(tiny_models, "wan_i2v")
    placeholder = RegionAnchor(("cat", "ball"), torch.full((2, 4, 6), 0.5), ((1, 2), (4,)), regions_from_attention=True,
                               prompt_tokens=_host.TEXT_TOKENS)
    _host.sample(transfer(model, weak="2", sources="1", alpha=0.0, beta=2.0, gamma=1.0, anchor=placeholder),
                 "wan_i2v", steps=2)
    [notice] = told
    assert notice.calls == 1
    assert all(w > wo for w, wo in zip(notice.with_edit, notice.without_edit))


def test_a_context_window_without_the_reference_frame_is_not_counted(tiny_models, told):
    """The figure reads the reference frame, where the masks describe the picture: windows that do not hold
    frame 0 are left out."""
    model = _host.load(tiny_models, "wan_t2v")   # 5 latent frames in windows (0, 1, 2) and (2, 3, 4) or (1-4)
    patched = transfer(_host.context_windows(model), weak="2", sources="", alpha=0.0, beta=2.0, gamma=1.0,
                       anchor=cat_anchor())
    _host.sample(patched, "wan_t2v", steps=2, latent_image=_host.latent(frames=17))
    [notice] = told
    assert notice.calls == 1              # one weak block, one step, the first window only
    assert all(w > wo for w, wo in zip(notice.with_edit, notice.without_edit))


def test_without_an_anchor_there_is_nothing_to_report(tiny_models, told):
    model = _host.load(tiny_models, "wan_i2v")
    _host.sample(transfer(model, weak="2", sources="1", alpha=0.5), "wan_i2v", steps=2)
    assert told == []
