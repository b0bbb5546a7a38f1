"""Dense CLIP similarity → keyword masks, on synthetic patch features with planted regions.

Every synthetic patch carries a shared "photo" component (as real CLIP patch features do, which
is what the reference prompt cancels) plus noise; planted patches add a keyword's direction.
"""
import pytest
import torch

from focal_guidance.focal_core import regions
from focal_guidance.focal_core.anchors import RegionAnchor

DIM = 128


def directions(count, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(DIM, count, generator=gen))
    return q.T                                                    # [count, DIM] orthonormal


def scene(grid, boxes, seed=1, noise=0.3):
    """Patch features [gh, gw, DIM]: shared reference direction everywhere, keyword k inside box k.
    boxes: per keyword (top, bottom, left, right) as fractions of the image."""
    gh, gw = grid
    dirs = directions(len(boxes) + 2)
    reference, absent = dirs[0], dirs[1]
    gen = torch.Generator().manual_seed(seed)
    feats = reference.expand(gh, gw, DIM) + noise * torch.randn(gh, gw, DIM, generator=gen) / DIM ** 0.5
    truth = []
    for k, (top, bottom, left, right) in enumerate(boxes):
        rows = slice(round(top * gh), round(bottom * gh))
        cols = slice(round(left * gw), round(right * gw))
        feats[rows, cols] = feats[rows, cols] * 0.6 + dirs[k + 2]
        truth.append((rows.start / gh, rows.stop / gh, cols.start / gw, cols.stop / gw))
    return feats, dirs[2:], reference[None], absent[None], truth


def box_mask(box, size):
    """Fractional box → [H, W] mask with area coverage at the borders."""
    top, bottom, left, right = box
    hi = torch.zeros(size[0] * 8, size[1] * 8)
    hi[round(top * hi.shape[0]):round(bottom * hi.shape[0]), round(left * hi.shape[1]):round(right * hi.shape[1])] = 1
    return torch.nn.functional.avg_pool2d(hi[None, None], 8)[0, 0]


def iou(a, b):
    a, b = a > 0.5, b > 0.5
    return (a & b).sum().item() / max((a | b).sum().item(), 1)


BOXES = [(0.25, 0.7, 0.3, 0.8), (0.05, 0.35, 0.05, 0.35)]   # 45×50% and 30×30% of the frame


@pytest.mark.parametrize("patch_grid", [(16, 16), (24, 24), (16, 28)])
@pytest.mark.parametrize("image", [(480, 832), (720, 1280), (544, 960), (832, 480), (512, 512)])
def test_planted_regions_on_any_token_grid(patch_grid, image):
    feats, keywords, reference, _, truth = scene(patch_grid, BOXES)
    masks = regions.keyword_masks(feats, keywords, reference, image)
    assert masks.shape == (2, *image)
    token_grid = (image[0] // 16, image[1] // 16)                 # Wan / HunyuanVideo: pixels / 8 / 2
    anchor = RegionAnchor(("a", "b"), masks, ((0,), (1,)))
    on_grid = anchor.grid_masks(*token_grid)
    for k, box in enumerate(truth):
        assert iou(masks[k], box_mask(box, image)) >= 0.9
        assert iou(on_grid[k], box_mask(box, token_grid)) >= 0.9


def test_absent_keyword_gives_a_near_empty_mask():
    feats, keywords, reference, absent, _ = scene((16, 16), BOXES)
    masks = regions.keyword_masks(feats, torch.cat([keywords, absent]), reference, (240, 416))
    assert masks[2].max() < 0.05 and masks[2].mean() < 0.01
    assert masks[0].max() > 0.95                                    # the present ones are not


def test_noise_alone_is_not_stretched_into_a_region():
    gen = torch.Generator().manual_seed(3)
    reference = directions(1)
    feats = reference.expand(16, 16, DIM) + 0.3 * torch.randn(16, 16, DIM, generator=gen) / DIM ** 0.5
    masks = regions.keyword_masks(feats, torch.randn(3, DIM, generator=gen), reference, (64, 64))
    assert masks.max() < 0.05


def test_an_isolated_patch_is_smoothed_away_but_a_small_region_is_kept():
    score = torch.full((1, 12, 12), -0.5)
    score[0, 2, 2] = 0.3
    score[0, 6:9, 6:9] = 0.3
    masks = regions.soft_masks(score, (12, 12), threshold=0.02, temperature=0.01)
    assert masks[0, 2, 2] < 0.5
    assert (masks[0, 6:9, 6:9] > 0.5).all()


def test_threshold_and_temperature_shape_the_edge():
    score = torch.linspace(-0.1, 0.1, 21).view(1, 1, 21)
    hard = regions.soft_masks(score, (1, 21), threshold=0.0, temperature=0.001, smooth=0)
    soft = regions.soft_masks(score, (1, 21), threshold=0.0, temperature=0.05, smooth=0)
    shifted = regions.soft_masks(score, (1, 21), threshold=0.05, temperature=0.001, smooth=0)
    assert hard[0, 0, 9] < 0.01 and hard[0, 0, 11] > 0.99
    assert 0.3 < soft[0, 0, 9] < 0.5 < soft[0, 0, 11] < 0.7
    assert shifted[0, 0, 14] < 0.01 and shifted[0, 0, 16] > 0.99


def test_width_mismatch_is_refused():
    with pytest.raises(ValueError, match="embedding widths differ"):
        regions.keyword_masks(torch.zeros(4, 4, 8), torch.zeros(1, 16), torch.zeros(1, 16), (8, 8))


class _Layer(torch.nn.Module):
    def __init__(self, width):
        super().__init__()
        self.layer_norm1 = torch.nn.LayerNorm(width)
        self.self_attn = torch.nn.Module()
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            setattr(self.self_attn, name, torch.nn.Linear(width, width))


def test_maskclip_uses_the_value_path_only_and_drops_cls():
    torch.manual_seed(0)
    layer, post, proj = _Layer(16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 8, bias=False)
    hidden = torch.randn(2, 1 + 9, 16)
    out = regions.maskclip_patch_tokens(hidden, layer, post, proj)
    expected = proj(post(layer.self_attn.out_proj(layer.self_attn.v_proj(layer.layer_norm1(hidden[:, 1:])))))
    torch.testing.assert_close(out, expected)
    with torch.no_grad():
        layer.self_attn.q_proj.weight.mul_(5)
        hidden[:, 0] += 10                                           # CLS must not leak into patches
    torch.testing.assert_close(regions.maskclip_patch_tokens(hidden, layer, post, proj), expected)
    assert regions.projection_dim(proj) == 8 and regions.projection_dim(lambda x: x) == 0


def test_fit_mask_and_placeholder():
    one = torch.zeros(1, 10, 20)
    one[:, 2:6, 4:12] = 1
    fitted = regions.fit_mask(one, 3, (20, 40))
    assert fitted.shape == (3, 20, 40) and torch.equal(fitted[0], fitted[2])
    assert regions.fit_mask(torch.rand(3, 10, 20), 3, (20, 40)).shape == (3, 20, 40)
    with pytest.raises(ValueError, match="one per keyword"):
        regions.fit_mask(torch.rand(2, 10, 20), 3, (20, 40))
    placeholder = regions.placeholder_masks(2, (5, 7))
    assert placeholder.shape == (2, 5, 7) and torch.all(placeholder == 0.5)
    assert not torch.all(fitted == 0.5)


def test_overlay_tints_each_region_in_its_own_colour():
    image = torch.full((10, 10, 3), 0.5)
    masks = torch.zeros(2, 10, 10)
    masks[0, :5] = 1
    masks[1, 5:] = 1
    out = regions.overlay(image, masks)
    first, second = out[2, 2], out[7, 7]
    assert out.shape == image.shape
    assert torch.argmax(first) == torch.argmax(regions.PALETTE[0])
    assert torch.argmax(second) == torch.argmax(regions.PALETTE[1])
    assert not torch.allclose(first, second)
