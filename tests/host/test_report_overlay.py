"""Semantic Layer Report's optional picture: each block's map drawn over it in the heatmaps PNG and, as a
small grey backdrop, on the canvas; a picture of another aspect or a batch of pictures is refused."""
import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

import _host
from _host import probe, report
from focal_guidance.focal_core.anchors import RegionAnchor
from focal_guidance.nodes.plots import BACKDROP_RANGE, OVERLAY_ALPHA

HEIGHT, WIDTH = 64, 96   # _host.latent()'s video: token grid 4x6, aspect 1.5


def picture(height=HEIGHT, width=WIDTH, box=None):
    """A black IMAGE [1, H, W, 3] with a white box (top, bottom, left, right as fractions of the sides)."""
    image = torch.zeros(1, height, width, 3)
    if box is not None:
        top, bottom, left, right = box
        image[0, round(top * height):round(bottom * height), round(left * width):round(right * width)] = 1.0
    return image


@pytest.fixture(scope="module")
def sampled(tiny_models):
    """One recorded run of the tiny Wan T2V: its probe handle and the sampled latent."""
    patched, handle = probe(_host.load(tiny_models, "wan_t2v"))
    return handle, _host.sample(patched, "wan_t2v")


def heatmaps(sampled, image=None, metric="attention"):
    out = report(*sampled, metric=metric, exclude_ends=1, image=image)
    return (out.args[1][0] * 255).round().to(torch.uint8).numpy().astype(int), out.ui["focal_probe"][0]


def tiles(png, blocks=6, cell=176, columns=6, top=20):
    """The overlay grid's tiles (plots.overlay_grid's layout), each [cell_h, cell, 3]."""
    cell_h = round(cell * HEIGHT / WIDTH)
    return [png[top + (b // columns) * (cell_h + 18) + 16:][:cell_h, (b % columns) * (cell + 4):][:, :cell]
            for b in range(blocks)]


def test_without_a_picture_nothing_changes_and_with_one_the_heatmaps_are_drawn_over_it(sampled):
    plain, plain_panel = heatmaps(sampled)
    assert "picture" not in plain_panel
    assert plain[0, 0].tolist() == [255, 255, 255]  # the plain grid starts with its white label row
    over, panel = heatmaps(sampled, picture(box=(0.25, 0.75, 0.5, 1.0)))
    assert over.shape != plain.shape or not np.array_equal(over, plain)
    assert {k: v for k, v in panel.items() if k != "picture"} == plain_panel   # the canvas gets the same numbers
    assert panel["picture"]["alpha"] == OVERLAY_ALPHA and panel["picture"]["subject"] == "prompt"


def test_the_picture_shows_through_every_tile_where_it_is_bright(sampled):
    """Two pictures with the same white box in two places: the tiles differ only where either box lies, and
    are brighter where their own box is, by the backdrop's grey range under the map's opacity."""
    right, _ = heatmaps(sampled, picture(box=(0.25, 0.75, 0.5, 1.0)))
    left, _ = heatmaps(sampled, picture(box=(0.25, 0.75, 0.0, 0.5)))
    lift = (1 - OVERLAY_ALPHA) * (BACKDROP_RANGE[1] - BACKDROP_RANGE[0]) * 255
    assert lift > 40   # the picture shows under the map, not a faint trace of it
    for tile_right, tile_left in zip(tiles(right), tiles(left)):
        h, w = tile_right.shape[:2]
        inner = slice(h // 4 + 6, 3 * h // 4 - 6)   # inside the boxes' rows, clear of the bilinear edges
        outside = np.r_[0:h // 4 - 6, 3 * h // 4 + 6:h]
        gain = (tile_right - tile_left).mean(-1)
        assert gain[inner, w // 2 + 6:].min() == pytest.approx(lift, abs=3)
        assert gain[inner, :w // 2 - 6].max() == pytest.approx(-lift, abs=3)
        assert np.array_equal(tile_right[outside], tile_left[outside])


def test_the_canvas_gets_a_small_grey_backdrop_and_the_keywords(tiny_models, sampled):
    _, panel = heatmaps(sampled, picture(480, 720, box=(0.25, 0.75, 0.5, 1.0)))
    png = panel["picture"]["png"]
    assert png.startswith("data:image/png;base64,")
    backdrop = Image.open(io.BytesIO(base64.b64decode(png.split(",", 1)[1])))
    assert backdrop.mode == "L" and backdrop.size == (256, 171)
    grey = np.asarray(backdrop)
    assert abs(grey[85, 200] - BACKDROP_RANGE[1] * 255) <= 1 and abs(grey[85, 50] - BACKDROP_RANGE[0] * 255) <= 1
    assert len(json.dumps(panel["picture"])) < 8_000

    model = _host.load(tiny_models, "wan_t2v")
    patched, keyworded = probe(model, anchor=RegionAnchor(("red ball", "box"), torch.ones(2, 4, 6), ((1,), (4,))))
    out = _host.sample(patched, "wan_t2v")
    _, with_anchor = heatmaps((keyworded, out), picture())
    assert with_anchor["picture"]["subject"] == "'red ball', 'box'"
    _, hidden = heatmaps((keyworded, out), picture(), metric="hidden")
    assert hidden["picture"]["subject"] == "prompt"   # the hidden map measures the whole prompt


def test_a_picture_of_another_aspect_or_a_batch_is_refused(sampled):
    with pytest.raises(ValueError, match=r"Semantic Layer Report: image is 64x64 \(aspect 1\.000\) but the latent's "
                                         r"token grid is 6x4 \(aspect 1\.500\).*Fix: connect the start image"):
        report(*sampled, image=picture(64, 64))
    with pytest.raises(ValueError, match="Semantic Layer Report: image holds 2 pictures.*Fix: .*ImageFromBatch"):
        report(*sampled, image=picture().repeat(2, 1, 1, 1))
    report(*sampled, image=picture(61, 96))   # 4.9 % off: the rounding of a latent's sides
