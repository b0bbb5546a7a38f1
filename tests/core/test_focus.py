"""The keyword-focus figure (focal_core.focus) on hand-built maps, and the attention paths' unedited recording
(``TextEdit.record_unedited``) against a plain recording of the same call."""
from dataclasses import replace
import logging

import pytest
import torch

from focal_guidance.focal_core.attention import TextEdit, joint_attention_text_edit, text_cross_attention
from focal_guidance.focal_core.focus import KeywordFocus, region_shares
from focal_guidance.focal_core.fused import fused_joint_attention_text_edit, fused_text_cross_attention

H, D, N, L = 2, 8, 24, 9


def test_region_shares_on_hand_built_maps():
    masks = torch.tensor([[1.0, 1.0, 0.0, 0.0],      # keyword 0: the left half
                          [0.0, 0.0, 0.0, 1.0],      # keyword 1: the last token
                          [0.5, 0.5, 0.5, 0.5],      # keyword 2: a soft region weighs every token by half
                          [1.0, 0.0, 0.0, 0.0]])     # keyword 3: no attention at all
    mass = torch.tensor([[0.3, 0.1, 0.0, 0.0],       # all inside
                         [0.2, 0.2, 0.0, 0.1],       # a fifth inside
                         [0.4, 0.0, 0.0, 0.4],
                         [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(region_shares(mass, masks), torch.tensor([1.0, 0.2, 0.5, 0.0]))


def test_keyword_focus_sums_each_keywords_tokens_and_averages_the_calls():
    """Two keywords over three recorded columns (the second keyword has two tokens), two calls."""
    masks = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    focus = KeywordFocus(("cat", "red ball"), [[0], [1, 2]], masks)
    final = torch.tensor([[0.4, 0.1, 0.1], [0.0, 0.2, 0.4]])       # [tokens, columns]
    unedited = torch.tensor([[0.2, 0.3, 0.1], [0.2, 0.1, 0.1]])
    focus.add(3, final, unedited)
    focus.add(4, unedited, unedited)
    with_edit, without_edit = focus.means()
    # cat: 0.4/0.4 then 0.2/0.4; red ball: 0.6/0.8 then 0.2/0.6
    assert with_edit == pytest.approx([(1.0 + 0.5) / 2, (0.75 + 1 / 3) / 2])
    assert without_edit == pytest.approx([0.5, 1 / 3])
    assert focus.calls == 2 and focus.blocks == {3, 4}


def _cross_inputs(seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, H, n, D, generator=gen) for n in (N, L, L))
    bias = torch.randn(N, 2, generator=gen) * 2
    source = torch.softmax(torch.randn(N, L, generator=gen), -1)
    return q, k, v, bias, source


COLUMNS = torch.tensor([2, 5])


@pytest.mark.parametrize("attend", [text_cross_attention, fused_text_cross_attention], ids=["explicit", "fused"])
def test_cross_attention_records_the_calls_unedited_probabilities(attend, caplog):
    """The unedited recording is the plain recording of the same call without the edit, bit for bit (the same
    softmax of the same logits); the final one and the output are those of the edit without the flag (the fused
    path runs such a call on the explicit path)."""
    q, k, v, bias, source = _cross_inputs()
    weak = TextEdit(bias=bias, bias_columns=COLUMNS, source=source, alpha=0.3, record_columns=COLUMNS)
    with caplog.at_level(logging.DEBUG, logger="focal_guidance.focal_core"):
        out, [(final, unedited)] = attend(q, k, v, [replace(weak, record_unedited=True)])
    assert (attend is fused_text_cross_attention) == any("unedited" in r.getMessage() for r in caplog.records)
    ref_out, [ref_final] = text_cross_attention(q, k, v, [weak])
    _, [plain] = text_cross_attention(q, k, v, [TextEdit(record_columns=COLUMNS)])
    assert torch.equal(out, ref_out) and torch.equal(final, ref_final) and torch.equal(unedited, plain)
    assert not torch.equal(final, unedited)   # the edit moved the keyword columns' probabilities


def test_unedited_recording_is_the_same_in_every_chunk_size():
    q, k, v, bias, _ = _cross_inputs()
    edit = TextEdit(bias=bias, bias_columns=COLUMNS, record_columns=COLUMNS, record_unedited=True)
    (_, [(final, unedited)]), (_, [(final7, unedited7)]) = (text_cross_attention(q, k, v, [edit], chunk_size=size)
                                                            for size in (1024, 7))
    torch.testing.assert_close(final7, final, atol=1e-6, rtol=1e-5)   # other chunk shapes: fp32 rounding only
    torch.testing.assert_close(unedited7, unedited, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("attend", [joint_attention_text_edit, fused_joint_attention_text_edit],
                         ids=["explicit", "fused"])
def test_joint_attention_records_the_calls_unedited_probabilities(attend):
    n_video = N - L
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, H, N, D, generator=gen) for _ in range(3))
    weak = TextEdit(bias=torch.randn(n_video, 2, generator=gen), bias_columns=COLUMNS, record_columns=COLUMNS)
    out, [(final, unedited)] = attend(q, k, v, n_video, [replace(weak, record_unedited=True)])
    ref_out, [ref_final] = joint_attention_text_edit(q, k, v, n_video, [weak])
    _, [plain] = joint_attention_text_edit(q, k, v, n_video, [TextEdit(record_columns=COLUMNS)])
    assert torch.equal(out, ref_out) and torch.equal(final, ref_final) and torch.equal(unedited, plain)
    assert not torch.equal(final, unedited)


def test_a_flag_without_recorded_columns_keeps_the_fused_path(caplog):
    """In a foreign pass the dispatcher drops the recording (record_columns None); the flag alone costs nothing."""
    q, k, v, bias, _ = _cross_inputs()
    edit = TextEdit(bias=bias, bias_columns=COLUMNS, record_unedited=True)
    with caplog.at_level(logging.DEBUG, logger="focal_guidance.focal_core"):
        out, [recorded] = fused_text_cross_attention(q, k, v, [edit])
    assert recorded is None and not any("explicit" in r.getMessage() for r in caplog.records)
    torch.testing.assert_close(out, text_cross_attention(q, k, v, [replace(edit, record_unedited=False)])[0],
                               atol=1e-5, rtol=1e-5)   # fused against explicit: test_fused's fp32 tolerance
