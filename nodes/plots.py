"""Report images drawn with Pillow (the host already ships it): the per-block curve and heatmap grid,
and the grid drawn over a picture.

Returns float tensors [1, H, W, 3] in [0, 1], ComfyUI's IMAGE layout.
"""
import base64
import io

import numpy as np
import torch
from PIL import Image, ImageColor, ImageDraw

# The report's one palette: Pillow draws the PNGs with it, and the Report node sends it to the canvas view
# (web/js/probe_report.js) in its UI payload, so both show a block or a curve in the same colour. Each colour
# reads on the PNG's white and on the canvas's dark background. "ramp" is viridis at five stops.
PALETTE = {
    "similarity": "#00acc1", "morans": "#fb8c00", "score": "#ab47bc", "trend": "#9e9e9e",
    "weak": "#e53935", "responsive": "#1e88e5",
    "ramp": [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]],
}
_RAMP = np.array(PALETTE["ramp"], np.float32) / 255
# Over a picture, each map is the ramp at this opacity over the picture's grey backdrop (in the PNG and on the
# canvas alike). The backdrop is grey so that the ramp's hue alone tells a map's value.
OVERLAY_ALPHA = 0.55
BACKDROP_RANGE = (0.1, 0.7)   # the backdrop's grey levels: dimmed, so the ramp reads over its brightest parts


def colormap(values: np.ndarray) -> np.ndarray:
    """Map [..] values in [0, 1] to [.., 3] RGB floats."""
    pos = np.clip(values, 0, 1) * (len(_RAMP) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_RAMP) - 2)
    frac = (pos - lo)[..., None]
    return _RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac


def _to_image(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0)[None]


def _normalise(values):
    arr = np.asarray(values, dtype=np.float64)
    span = arr.max() - arr.min()
    return (arr - arr.min()) / span if span > 0 else np.full_like(arr, 0.5)


def curve_image(report, width=720, height=320) -> torch.Tensor:
    """Similarity and Moran's I (each min-max scaled), the score and its depth trend, per block.

    The left axis gives the score's values; the x axis the block numbers.
    """
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    left, right, top, bottom = 56, width - 12, 28, height - 34
    n = len(report.score)
    xs = [left + (right - left) * i / max(n - 1, 1) for i in range(n)]

    def y(v):
        return bottom - (bottom - top) * v

    for blocks, colour in ((report.weak, PALETTE["weak"]), (report.responsive, PALETTE["responsive"])):
        tint = tuple(c // 4 + 190 for c in ImageColor.getrgb(colour))
        for b in blocks:
            draw.rectangle([xs[b] - 5, top, xs[b] + 5, bottom], fill=tint)
    score_lo, score_hi = min(report.score + report.trend), max(report.score + report.trend)
    span = (score_hi - score_lo) or 1.0
    for series, scaled in (("trend", False), ("score", False), ("similarity", True), ("morans", True)):
        values, colour = getattr(report, series), PALETTE[series]
        norm = _normalise(values) if scaled else (np.asarray(values) - score_lo) / span
        draw.line([(x, y(v)) for x, v in zip(xs, norm)], fill=colour, width=2)
        for x, v in zip(xs, norm):
            draw.ellipse([x - 2, y(v) - 2, x + 2, y(v) + 2], fill=colour)
    draw.line([(left, bottom), (right, bottom)], fill=(0, 0, 0))
    draw.line([(left, top), (left, bottom)], fill=(0, 0, 0))
    for i, x in enumerate(xs):
        if n <= 24 or i % 5 == 0:
            draw.text((x - 4, bottom + 6), str(i), fill=(0, 0, 0))
    draw.text(((left + right) / 2 - 12, bottom + 20), "block", fill=(0, 0, 0))
    for frac in (0.0, 0.5, 1.0):   # the left axis is the score's; similarity and Moran's I are min-max scaled
        draw.line([(left - 4, y(frac)), (left, y(frac))], fill=(0, 0, 0))
        draw.text((4, y(frac) - 6), f"{score_lo + frac * span:.3g}", fill=PALETTE["score"])
    legend = [("similarity*", PALETTE["similarity"]), ("Moran's I*", PALETTE["morans"]), ("score", PALETTE["score"]),
              ("trend", PALETTE["trend"]), ("weak", PALETTE["weak"]), ("responsive", PALETTE["responsive"]),
              ("*scaled 0-1", (120, 120, 120))]
    x = left
    for label, colour in legend:
        draw.rectangle([x, 8, x + 10, 18], fill=colour)
        draw.text((x + 14, 7), label, fill=(0, 0, 0))
        x += 14 + 7 * len(label) + 16
    return _to_image(img)


def heatmap_grid(maps, labels, cell=96, columns=8) -> torch.Tensor:
    """Tile one [h, w] map per block, each min-max scaled, labelled with its block number."""
    rows = -(-len(maps) // columns)
    h, w = maps[0].shape
    cell_h = max(8, round(cell * h / w))
    img = Image.new("RGB", (columns * (cell + 4), rows * (cell_h + 18)), "white")
    draw = ImageDraw.Draw(img)
    for i, (m, label) in enumerate(zip(maps, labels)):
        rgb = (colormap(_normalise(m.numpy())) * 255).astype(np.uint8)
        tile = Image.fromarray(rgb).resize((cell, cell_h), Image.NEAREST)
        x, y = (i % columns) * (cell + 4), (i // columns) * (cell_h + 18)
        img.paste(tile, (x, y + 16))
        draw.text((x + 2, y + 2), label, fill=(0, 0, 0))
    return _to_image(img)


def backdrop(image: torch.Tensor) -> np.ndarray:
    """A picture [H, W, C] as the grey backdrop [H, W] of the maps: its luminance, contrast-stretched between
    its 1st and 99th percentiles, then dimmed into ``BACKDROP_RANGE``."""
    rgb = image[..., :3].float().clamp(0, 1).cpu().numpy()
    lum = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    lo, hi = np.percentile(lum, [1, 99])
    stretched = np.clip((lum - lo) / (hi - lo), 0, 1) if hi > lo else np.full_like(lum, 0.5)
    dark, bright = BACKDROP_RANGE
    return (dark + (bright - dark) * stretched).astype(np.float32)


def _grey(values: np.ndarray) -> Image.Image:
    return Image.fromarray((values * 255).round().astype(np.uint8))


def backdrop_png(grey: np.ndarray, max_side=256) -> str:
    """The backdrop as a data URL of a PNG at most ``max_side`` pixels on its long side, for the canvas view."""
    h, w = grey.shape
    scale = min(1.0, max_side / max(h, w))
    img = _grey(grey).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _fit(draw, text, width) -> str:
    """``text`` cut with '...' to ``width`` pixels."""
    if draw.textlength(text) <= width:
        return text
    while text and draw.textlength(text + "...") > width:
        text = text[:-1]
    return text.rstrip(" ,") + "..."


def overlay_grid(maps, grey, titles, header, cell=176, columns=6) -> torch.Tensor:
    """One tile per block: its map (min-max scaled, resized bilinearly) as the ramp at ``OVERLAY_ALPHA`` over
    the grey backdrop ``grey`` [H, W]; ``titles`` are (text, colour) per tile, ``header`` names the frame and
    what the maps measure."""
    rows = -(-len(maps) // columns)
    cell_h = max(8, round(cell * grey.shape[0] / grey.shape[1]))
    under = np.asarray(_grey(grey).resize((cell, cell_h), Image.BILINEAR), np.float32)[..., None] / 255
    top = 20
    img = Image.new("RGB", (columns * (cell + 4), top + rows * (cell_h + 18)), "white")
    draw = ImageDraw.Draw(img)
    draw.text((2, 4), _fit(draw, header, img.width - 4), fill=(0, 0, 0))
    for i, (m, (title, colour)) in enumerate(zip(maps, titles)):
        values = Image.fromarray(_normalise(m.numpy()).astype(np.float32)).resize((cell, cell_h),
                                                                                            Image.BILINEAR)
        blend = (1 - OVERLAY_ALPHA) * under + OVERLAY_ALPHA * colormap(np.asarray(values))
        x, y = (i % columns) * (cell + 4), top + (i // columns) * (cell_h + 18)
        img.paste(Image.fromarray((blend * 255).round().astype(np.uint8)), (x, y + 16))
        draw.text((x + 2, y + 2), _fit(draw, title, cell - 4), fill=colour)
    return _to_image(img)
