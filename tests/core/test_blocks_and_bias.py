"""Block-list parsing and the anchor → logit-bias mapping."""
import pytest
import torch

from focal_guidance.focal_core.anchors import RegionAnchor
from focal_guidance.focal_core.blocks import format_block_list, parse_block_list


def test_parse_ranges_lists_and_duplicates():
    assert parse_block_list("12-14, 3 3,20", 40) == [3, 12, 13, 14, 20]
    assert parse_block_list("", 40) == []
    assert format_block_list([3, 12, 13, 14, 20]) == "3, 12-14, 20"


@pytest.mark.parametrize("text, message", [
    ("40", "out of range: this model has blocks 0-39"),
    ("5-x", "'5-x' is not a block index"),
    ("9-2", "runs backwards"),
    ("-1", "'-1' is not a block index"),
])
def test_parse_errors_name_the_token(text, message):
    with pytest.raises(ValueError, match=message):
        parse_block_list(text, 40)


def anchor(mask_hw=(4, 6), decay=0.5):
    masks = torch.zeros(2, *mask_hw)
    masks[0, :, : mask_hw[1] // 2] = 1   # keyword 0: left half
    masks[1, : mask_hw[0] // 2] = 1      # keyword 1: top half
    return RegionAnchor(("cat", "red ball"), masks, ((2,), (5, 6)), frame_decay=decay)


def test_bias_inside_outside_and_frame_decay():
    columns, bias = anchor().bias((3, 4, 6), beta=2.0, gamma=0.5)
    assert columns.tolist() == [2, 5, 6]
    assert bias.shape == (3 * 4 * 6, 3)
    frame0 = bias[:24].view(4, 6, 3)
    assert torch.all(frame0[:, :3, 0] == 2.0) and torch.all(frame0[:, 3:, 0] == -0.5)
    assert torch.all(frame0[:2, :, 1] == 2.0) and torch.all(frame0[2:, :, 2] == -0.5)
    torch.testing.assert_close(bias[24:48], 0.5 * bias[:24])
    torch.testing.assert_close(bias[48:], 0.25 * bias[:24])


def test_bias_resizes_to_any_grid_with_same_aspect():
    columns, bias = anchor((40, 60)).bias((2, 30, 45), 1.0, 1.0)
    assert bias.shape == (2 * 30 * 45, 3)


def test_aspect_mismatch_is_refused():
    with pytest.raises(ValueError, match="does not match the latent's token grid"):
        anchor((4, 6)).bias((1, 6, 4), 1.0, 1.0)


def test_anchor_needs_spans_for_every_keyword():
    with pytest.raises(ValueError, match="non-empty token span"):
        RegionAnchor(("cat",), torch.ones(1, 2, 2), ((),))


def test_text_layout_places_the_prompt_and_the_anchor_among_the_text_keys():
    from focal_guidance.focal_core.families import TextLayout
    hv_i2v = TextLayout(keys=298, prompt_start=0, stream_start=0, real=298, anchor_at_end=True)
    assert hv_i2v.anchor_offset(10) == 288       # HunyuanVideo 1.0 I2V: 288 LLaVA image tokens lead the context
    anchor = RegionAnchor(("cat",), torch.ones(1, 2, 2), ((1, 2),), prompt_tokens=10)
    assert anchor.bias((1, 2, 2), 1.0, 0.0, text_offset=hv_i2v.anchor_offset(10))[0].tolist() == [289, 290]
    hv15 = TextLayout(keys=729 + 12 + 40, prompt_start=741, stream_start=0, real=40, anchor_at_end=True)
    assert hv15.anchor_offset(40) == 741          # HunyuanVideo 1.5: SigLIP and byT5 tokens lead the stream
    assert hv15.prompt_columns().tolist() == list(range(741, 781))
    wan_i2v = TextLayout(keys=512, prompt_start=0, stream_start=257, real=7)
    assert wan_i2v.anchor_offset(8) == 0          # Wan: the prompt starts the padded text keys
    assert wan_i2v.prompt_columns().tolist() == list(range(7))


def test_attention_masks_are_relative_to_the_mean():
    from focal_guidance.focal_core.anchors import attention_masks
    response = torch.ones(2, 3, 4)
    response[0, 1, 2] = 3.0                   # keyword 0 attended at one token
    masks = attention_masks(response)
    assert masks[0, 1, 2] == 1.0 and masks[0].sum() == 1.0
    assert torch.all(masks[1] == 0)           # a flat map: no preference, empty mask
