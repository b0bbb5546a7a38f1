"""Layer diagnosis metrics: Moran's I, text-visual similarity and the Semantic-Weak Layer rule.

A block's text response map is summarised by two numbers per frame: its spatial coherence
(global Moran's I; coherent object-shaped blobs → near +1, noise → near 0) and its size
(mean response, the "text-visual similarity"). Across depth, blocks whose combined score dips
below a robust depth trend are the Semantic-Weak Layers; the strongest other intermediate
blocks are the responsive layers that feed the Attention Cache. The paper names Moran's I and a
text-visual similarity per frame and layer; which map they are computed on is our reconstruction.

Shapes use einops letters: ``f`` frames (or any leading dims ``...``), ``h w`` the latent token
grid, ``l`` blocks.
"""
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F

# Grid offsets (dy, dx) of each adjacency; a Python loop over ≤ 8 of them is the only loop.
_OFFSETS = {
    "rook": ((-1, 0), (1, 0), (0, -1), (0, 1)),
    "queen": tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)),
}

# Consistency constant that turns a median absolute deviation into a Gaussian σ.
_MAD_TO_SIGMA = 1.4826
# Floor on that σ, relative to mean |score|: a flat or exactly linear curve has MAD = 0, and
# without a floor float round-off alone would be flagged as a dip.
_REL_SCALE_FLOOR = 1e-3
# The contrast rule's step per kappa, in natural-log contrast (a factor 1.82): chosen on the probe
# curves of the trained test model and its planted controls, where kappa 2 (a factor 0.30) flags every
# planted × 0.3 block and no healthy one (docs/method.md §10).
CONTRAST_STEP = 0.6
_CONTRAST_FLOOR = 1e-6


def _work_dtype(device: torch.device) -> torch.dtype:
    # float64 keeps the 1e-6 agreement with PySAL on 30x52 grids; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


def _as_map(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim < 2:
        raise ValueError(f"expected a response map [..., h, w], got shape {tuple(x.shape)}")
    return x.to(_work_dtype(x.device))


def _neighbour_sum(z: torch.Tensor, offsets) -> torch.Tensor:
    """Σ_j∈N(i) z_j for every cell; cells outside the grid count as 0 (no wraparound)."""
    h, w = z.shape[-2:]
    padded = F.pad(z, (1, 1, 1, 1))
    return sum(padded[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in offsets)


def morans_i(x, adjacency: str = "rook") -> torch.Tensor:
    r"""Global Moran's I of each map with row-standardised grid weights.

    .. math::
        I = \frac{N}{S_0} \frac{\sum_i \sum_j w_{ij} z_i z_j}{\sum_i z_i^2},\quad
        z = x - \bar{x},\quad w_{ij} = \frac{1}{\deg i}\ (j \in N(i)),\quad S_0 = N

    Row standardisation (PySAL ``transform="r"``) compares each cell with the mean of its
    neighbours, so border cells, which have fewer neighbours, are not under-weighted.

    Args:
        x: response maps ``[... h w]`` (e.g. ``[f h w]``); any real dtype.
        adjacency: ``"rook"`` (4 neighbours) or ``"queen"`` (8 neighbours).

    Returns:
        float32 ``[...]``: one I per map. A constant map (zero variance) gives 0, not NaN.

    Raises:
        ValueError: unknown ``adjacency``, input with fewer than 2 dims, or ``h*w < 2``.

    Example:
        >>> checker = (torch.arange(8)[:, None] + torch.arange(8)) % 2
        >>> morans_i(checker).item()
        -1.0
    """
    if adjacency not in _OFFSETS:
        raise ValueError(f"adjacency must be 'rook' or 'queen', got {adjacency!r}")
    x = _as_map(x)
    h, w = x.shape[-2:]
    if h * w < 2:
        raise ValueError(f"Moran's I needs at least 2 grid cells, got a {h}x{w} map")
    offsets = _OFFSETS[adjacency]
    z = x - x.mean(dim=(-2, -1), keepdim=True)
    degree = _neighbour_sum(torch.ones((h, w), dtype=x.dtype, device=x.device), offsets)
    lag = _neighbour_sum(z, offsets) / degree  # row-standardised spatial lag; every deg ≥ 1
    num = (z * lag).sum(dim=(-2, -1))
    den = (z * z).sum(dim=(-2, -1))
    # Exact test on the input: the mean of N equal floats is not always that float, so a
    # constant map can leave round-off in z and an arbitrary ratio.
    flat = (x.amax(dim=(-2, -1)) == x.amin(dim=(-2, -1))) | (den == 0)
    return torch.where(flat, torch.zeros_like(num), num / torch.where(flat, 1.0, den)).float()


def response_similarity(x, region=None) -> torch.Tensor:
    """Mean text response of each map: the "text-visual similarity" magnitude.

    Moran's I ignores scale (a faint blob and a strong one score the same); this is the scale.

    Args:
        x: response maps ``[... h w]``.
        region: optional weights ``[h w]``, boolean or soft in ``[0, 1]`` (e.g. a CLIP key
            region); the mean is then weighted by it.

    Returns:
        float32 ``[...]``.

    Raises:
        ValueError: region of the wrong shape, with negative weights, or empty.

    Example:
        >>> response_similarity(torch.ones(3, 4, 5)).shape
        torch.Size([3])
    """
    x = _as_map(x)
    if region is None:
        return x.mean(dim=(-2, -1)).float()
    m = torch.as_tensor(region, device=x.device).to(x.dtype)
    if m.shape != x.shape[-2:]:
        raise ValueError(f"region must be [h w] = {tuple(x.shape[-2:])}, got {tuple(m.shape)}")
    if (m < 0).any():
        raise ValueError("region weights must be non-negative")
    total = m.sum()
    if total <= 0:
        raise ValueError("region is empty: it selects no grid cell")
    return ((x * m).sum(dim=(-2, -1)) / total).float()


def response_contrast(x) -> torch.Tensor:
    """Spatial contrast of each map: its coefficient of variation, std / mean over the grid.

    A block that still tells tokens apart by the text gives a map with peaks (contrast well
    above 0); a block whose text logits were flattened (a Semantic-Weak block that lost its
    focus) spreads its text mass nearly evenly, and the contrast falls towards 0. Scale-free like
    Moran's I, but blind to shape: a flattened map can keep its blob (Moran's I unchanged) and
    still lose its contrast. A map with no mass gives 0.

    Args:
        x: non-negative response maps ``[... h w]`` (attention mass).

    Returns:
        float32 ``[...]``.

    Example:
        >>> response_contrast(torch.tensor([[1.0, 1.0], [1.0, 5.0]])).item()
        0.8660253882408142
    """
    x = _as_map(x)
    mean = x.mean(dim=(-2, -1))
    std = x.std(dim=(-2, -1), unbiased=False)
    return torch.where(mean > 0, std / torch.where(mean > 0, mean, 1.0), torch.zeros_like(mean)).float()


def _as_curve(scores) -> torch.Tensor:
    s = torch.as_tensor(scores).detach().to("cpu", torch.float64)
    if s.ndim != 1 or s.numel() == 0:
        raise ValueError(f"scores must be a non-empty 1-D sequence [l], got shape {tuple(s.shape)}")
    return s


def depth_trend(scores, trend_window: int = 5) -> torch.Tensor:
    """Depth trend of a per-block curve: median of the ``trend_window − 1`` neighbouring blocks.

    A median, so one dip does not drag the trend down. The block itself is left out: with a
    plain moving median every monotone stretch has residual exactly 0, so the MAD scale of
    :func:`semantic_weak_layers` collapses to 0 on clean curves. Edges are replicated; the even
    count of neighbours takes the mean of the middle two.

    Args:
        scores: per-block scores ``[l]`` (tensor or sequence).
        trend_window: odd window length ≥ 3, centred on its block.

    Returns:
        float64 ``[l]`` on CPU: block curves are tiny, and float64 keeps the rule exact.

    Example:
        >>> depth_trend([1.0, 2.0, 100.0, 4.0, 5.0], 5).tolist()
        [1.5, 2.5, 3.0, 5.0, 5.0]
    """
    if trend_window < 3 or trend_window % 2 == 0:
        raise ValueError(f"trend_window must be an odd integer >= 3, got {trend_window}")
    s = _as_curve(scores)
    half = trend_window // 2
    padded = torch.cat([s[:1].expand(half), s, s[-1:].expand(half)])
    windows = padded.unfold(0, trend_window, 1)  # [l window]
    neighbours = torch.cat([windows[:, :half], windows[:, half + 1:]], dim=1)
    return neighbours.quantile(0.5, dim=1)


def _intermediate(n: int, exclude_ends: int) -> range:
    if exclude_ends < 0:
        raise ValueError(f"exclude_ends must be >= 0, got {exclude_ends}")
    return range(exclude_ends, n - exclude_ends)


def semantic_weak_layers(scores, kappa: float = 1.0, trend_window: int = 5,
                         exclude_ends: int = 2) -> list[int]:
    """Blocks whose score dips below the depth trend by more than ``kappa`` robust σ.

    residual = score − :func:`depth_trend`, centred on its median (a curved profile shifts all
    residuals alike, which is not a dip); σ = 1.4826·MAD, floored at 1e-3·mean|score| so a flat
    curve reports nothing. Weak: centred residual < −kappa·σ and ``exclude_ends <= i <
    l − exclude_ends`` (the paper's weak layers are intermediate; the first and last blocks are
    atypical by construction). kappa is a robust z: on a noisy undipped curve kappa = 1 flags
    about one block in eight, so use about 3 where block-to-block noise is real.

    Args:
        scores: per-block scores ``[l]``, higher = more text-responsive (:func:`combined_score`).
        kappa: dip depth in robust σ.
        trend_window: odd window of the moving median.
        exclude_ends: blocks at each end that never qualify.

    Returns:
        sorted block indices.

    Example:
        >>> curve = [1.0, 1.1, 1.2, 1.3, 1.4, 0.5, 1.6, 1.7, 1.8, 1.9]
        >>> semantic_weak_layers(curve)
        [5]
    """
    if kappa < 0:
        raise ValueError(f"kappa must be >= 0, got {kappa}")
    s = _as_curve(scores)
    residual = s - depth_trend(s, trend_window)
    centred = residual - residual.quantile(0.5)
    mad = centred.abs().quantile(0.5).item()
    floor = max(_REL_SCALE_FLOOR * s.abs().mean().item(), 1e-12)
    sigma = max(_MAD_TO_SIGMA * mad, floor)
    weak = (centred < -kappa * sigma).tolist()
    return [i for i in _intermediate(len(s), exclude_ends) if weak[i]]


def low_contrast_layers(contrast, kappa: float = 1.0, exclude_ends: int = 2) -> list[int]:
    """Blocks whose text response lost its contrast: below the median block's contrast by more than
    a factor ``exp(kappa · CONTRAST_STEP)`` (kappa 2: under 0.30 of the median).

    The depth-trend rule (:func:`semantic_weak_layers`) finds a block that dips below its
    neighbours; a run of weak neighbours is its own trend and passes. This rule compares every
    block with the model's median block instead, so it holds while up to half the blocks are weak.
    The step is fixed rather than a robust σ of the curve: a healthy model's middle blocks differ
    in contrast by a factor 2–5 within one clip, so a σ from ten blocks is noise (the trained test
    model's probe curves, recorded by ``benchmarks/prompt_following/control.py --probe``).

    Args:
        contrast: :func:`response_contrast` per block ``[l]``, averaged over frames and steps.
        kappa: depth of the loss in steps of ``CONTRAST_STEP`` (natural log).
        exclude_ends: blocks at each end that never qualify.

    Returns:
        sorted block indices.

    Example:
        >>> low_contrast_layers([1.8, 1.9, 3.2, 0.4, 0.3, 0.5, 0.5, 2.3, 1.9, 2.6], kappa=2.0)
        [3, 4, 5, 6]
    """
    if kappa < 0:
        raise ValueError(f"kappa must be >= 0, got {kappa}")
    logs = _as_curve(contrast).clamp_min(_CONTRAST_FLOOR).log()   # a flat map (contrast 0) is the weakest
    low = (logs < logs.quantile(0.5) - kappa * CONTRAST_STEP).tolist()
    return [i for i in _intermediate(len(logs), exclude_ends) if low[i]]


def weak_layers(scores, contrast, kappa: float = 1.0, trend_window: int = 5, exclude_ends: int = 2) -> list[int]:
    """The Semantic-Weak blocks: a dip in the combined score (:func:`semantic_weak_layers`) or a loss
    of contrast (:func:`low_contrast_layers`), at the same ``kappa``.

    Example:
        >>> weak_layers([1.0, 1.1, 1.2, 1.3, 1.4, 0.5, 1.6, 1.7, 1.8, 1.9], [2.0] * 3 + [0.2] + [2.0] * 6)
        [3, 5]
    """
    dips = semantic_weak_layers(scores, kappa=kappa, trend_window=trend_window, exclude_ends=exclude_ends)
    return sorted(set(dips) | set(low_contrast_layers(contrast, kappa=kappa, exclude_ends=exclude_ends)))


def responsive_layers(scores, top_r: int = 2, exclude_ends: int = 2,
                      exclude: Iterable[int] = ()) -> list[int]:
    """The ``top_r`` highest-scoring intermediate blocks not in ``exclude``: Attention Cache sources.

    Args:
        scores: per-block scores ``[l]``.
        top_r: how many blocks; fewer come back if fewer qualify. Ties go to the shallower block.
        exclude_ends: blocks at each end that never qualify.
        exclude: block indices to skip, typically :func:`semantic_weak_layers`.

    Returns:
        sorted block indices.

    Example:
        >>> responsive_layers([9.0, 1.0, 5.0, 3.0, 4.0, 2.0, 9.0], top_r=2, exclude_ends=1, exclude=[2])
        [3, 4]
    """
    if top_r < 0:
        raise ValueError(f"top_r must be >= 0, got {top_r}")
    s = _as_curve(scores)
    skip = set(exclude)
    candidates = [i for i in _intermediate(len(s), exclude_ends) if i not in skip]
    ranked = sorted(candidates, key=lambda i: (-s[i].item(), i))
    return sorted(ranked[:top_r])


def combined_score(similarity: Sequence[float] | torch.Tensor,
                   morans: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Per-block score for the weak/responsive rules: mean of the two z-scores across blocks.

    Why a z-score mean: the two metrics live on unrelated scales (attention mass ~1e-3,
    Moran's I in [-1, 1]), so each is standardised over blocks and weighted equally. It is
    linear, so a dip in either metric shows as a dip in the score, and it stays meaningful when
    Moran's I is negative, where a product would flip sign. A metric that is constant over
    blocks carries no information and contributes 0.

    Args:
        similarity: :func:`response_similarity` per block ``[l]`` (averaged over frames etc.).
        morans: :func:`morans_i` per block ``[l]``.

    Returns:
        float64 ``[l]`` on CPU, mean 0.

    Example:
        >>> combined_score([1.0, 2.0, 3.0], [0.5, 0.5, 0.5]).tolist()
        [-0.6123724356957945, 0.0, 0.6123724356957945]
    """
    sim, mor = _as_curve(similarity), _as_curve(morans)
    if sim.shape != mor.shape:
        raise ValueError(f"similarity {tuple(sim.shape)} and morans {tuple(mor.shape)} differ in length")

    def zscore(v: torch.Tensor) -> torch.Tensor:
        std = v.std(unbiased=False)
        return (v - v.mean()) / std if std > 0 else torch.zeros_like(v)

    return (zscore(sim) + zscore(mor)) / 2
