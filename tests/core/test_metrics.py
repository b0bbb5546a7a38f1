"""Tests for focal_core.metrics: Moran's I against PySAL, known values, and the weak-layer rule."""
import doctest
import warnings

import numpy as np
import pytest
import torch

from focal_guidance.focal_core import metrics
from focal_guidance.focal_core.metrics import (
    combined_score, depth_trend, low_contrast_layers, morans_i, response_contrast, response_similarity,
    responsive_layers, semantic_weak_layers, weak_layers)

GRIDS = [(5, 7), (7, 5), (8, 8), (30, 52), (1, 6), (2, 1)]


@pytest.fixture(scope="module")
def pysal():
    try:
        import esda
        import libpysal
    except ImportError as err:
        pytest.fail(f"{err}: install the test deps with `pip install -r requirements-test.txt`")
    return esda, libpysal


def _pysal_moran(pysal, grid: np.ndarray, rook: bool) -> float:
    esda, libpysal = pysal
    w = libpysal.weights.lat2W(*grid.shape, rook=rook)  # ids are row-major, like ravel()
    w.transform = "r"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # esda's variance terms divide by (n-2)(n-3) on tiny grids
        return float(esda.Moran(grid.ravel(), w, permutations=0).I)


def _checkerboard(h, w):
    return ((torch.arange(h)[:, None] + torch.arange(w)) % 2).float()


def test_docstring_examples():
    assert doctest.testmod(metrics).failed == 0


class TestMoransI:
    def test_smoke(self):
        assert morans_i(torch.rand(4, 6)).shape == ()

    def test_cardinality(self):
        out = morans_i(torch.rand(2, 3, 5, 7), adjacency="queen")
        assert out.shape == (2, 3) and out.dtype == torch.float32

    @pytest.mark.parametrize("adjacency", ["rook", "queen"])
    @pytest.mark.parametrize("shape", GRIDS)
    def test_matches_pysal(self, pysal, adjacency, shape):
        rng = np.random.default_rng(sum(shape))
        for grid in (rng.normal(size=shape), rng.random(shape) ** 3, rng.integers(0, 3, shape)):
            if np.ptp(grid) == 0:
                continue
            expected = _pysal_moran(pysal, grid.astype(np.float64), rook=adjacency == "rook")
            got = morans_i(torch.from_numpy(grid), adjacency).item()
            assert got == pytest.approx(expected, abs=1e-6)

    @pytest.mark.parametrize("adjacency", ["rook", "queen"])
    def test_matches_pysal_on_smooth_map(self, pysal, adjacency):
        yy, xx = np.mgrid[0:30, 0:52]
        blob = np.exp(-((yy - 12) ** 2 + (xx - 30) ** 2) / 50.0)
        expected = _pysal_moran(pysal, blob, rook=adjacency == "rook")
        assert morans_i(torch.from_numpy(blob), adjacency).item() == pytest.approx(expected, abs=1e-6)

    @pytest.mark.parametrize("shape", [(8, 8), (6, 7), (2, 2), (1, 10)])
    def test_checkerboard_is_minus_one_under_rook(self, shape):
        assert morans_i(_checkerboard(*shape), "rook").item() == pytest.approx(-1.0, abs=1e-6)

    def test_checkerboard_under_queen(self):
        # Interior cell: 4 unlike edge neighbours, 4 like diagonal ones → I = 0 in the limit; the
        # border has relatively more edge neighbours (corner: 2 of 3), so I is slightly negative.
        value = morans_i(_checkerboard(40, 40), "queen").item()
        assert -0.1 < value < 0.0

    def test_smooth_maps_are_near_plus_one(self):
        yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(40.0), indexing="ij")
        ramp = yy + xx
        blob = torch.exp(-((yy - 16) ** 2 + (xx - 20) ** 2) / (2 * 6.0 ** 2))
        for grid in (ramp, blob):
            for adjacency in ("rook", "queen"):
                assert morans_i(grid, adjacency).item() > 0.95

    def test_noise_is_near_expectation(self):
        torch.manual_seed(0)
        values = morans_i(torch.randn(200, 30, 52))
        assert values.mean().item() == pytest.approx(-1 / (30 * 52 - 1), abs=3e-3)

    def test_batched_equals_per_frame(self):
        frames = torch.rand(5, 9, 11)
        frames[2] = 0.7  # a constant frame inside the batch must not poison the others
        batched = morans_i(frames, "queen")
        single = torch.stack([morans_i(f, "queen") for f in frames])
        torch.testing.assert_close(batched, single, rtol=0, atol=0)

    def test_constant_map_is_zero_not_nan(self):
        for value in (0.0, 0.1, 1e6):
            out = morans_i(torch.full((3, 6, 9), value))
            torch.testing.assert_close(out, torch.zeros(3))

    def test_dtypes_and_noncontiguous(self):
        x = torch.rand(12, 10)
        assert not x.t().is_contiguous()
        assert morans_i(x.t()).item() == morans_i(x.t().contiguous()).item()
        assert morans_i(x.to(torch.bfloat16)).dtype == torch.float32
        assert morans_i(x > 0.5).dtype == torch.float32

    def test_exception(self):
        with pytest.raises(ValueError, match="adjacency must be 'rook' or 'queen', got 'bishop'"):
            morans_i(torch.rand(4, 4), adjacency="bishop")
        with pytest.raises(ValueError, match="at least 2 grid cells, got a 1x1 map"):
            morans_i(torch.rand(3, 1, 1))
        with pytest.raises(ValueError, match=r"expected a response map \[..., h, w\]"):
            morans_i(torch.rand(5))


class TestResponseSimilarity:
    def test_cardinality_and_value(self):
        x = torch.arange(24.0).reshape(2, 3, 4)
        torch.testing.assert_close(response_similarity(x), torch.tensor([5.5, 17.5]))

    def test_boolean_region(self):
        x = torch.arange(12.0).reshape(3, 4)
        region = torch.zeros(3, 4, dtype=torch.bool)
        region[0, 0] = region[2, 3] = True
        assert response_similarity(x, region).item() == pytest.approx((0 + 11) / 2)

    def test_soft_region_is_weighted_mean(self):
        x = torch.rand(4, 5, 6)
        soft = torch.rand(5, 6)
        expected = (x * soft).sum((-2, -1)) / soft.sum()
        torch.testing.assert_close(response_similarity(x, soft), expected)

    def test_exception(self):
        with pytest.raises(ValueError, match=r"region must be \[h w\] = \(3, 4\), got \(4, 3\)"):
            response_similarity(torch.rand(3, 4), torch.ones(4, 3))
        with pytest.raises(ValueError, match="region is empty"):
            response_similarity(torch.rand(3, 4), torch.zeros(3, 4))
        with pytest.raises(ValueError, match="non-negative"):
            response_similarity(torch.rand(3, 4), -torch.ones(3, 4))


def _depth_curve(seed: int, dips: dict[int, float] = None) -> torch.Tensor:
    """16 blocks: a smooth rise-and-fall depth trend, N(0, 0.01) noise, optional planted dips."""
    depth = torch.arange(16.0)
    curve = 0.3 + 0.04 * depth - 0.0015 * depth ** 2
    curve = curve + 0.01 * torch.randn(16, generator=torch.Generator().manual_seed(seed))
    for block, depth_of_dip in (dips or {}).items():
        curve[block] -= depth_of_dip
    return curve


DIPS = {5: 0.2, 9: 0.4}


class TestDepthTrend:
    def test_known_values(self):
        # The spike at block 2 is ignored by its own trend; edges are replicated.
        torch.testing.assert_close(depth_trend([1.0, 2.0, 100.0, 4.0, 5.0, 6.0, 7.0], 5),
                                   torch.tensor([1.5, 2.5, 3.0, 5.5, 6.5, 6.0, 6.5], dtype=torch.float64))

    def test_trend_ignores_planted_dips(self):
        clean, dipped = _depth_curve(0), _depth_curve(0, DIPS)
        trend = depth_trend(dipped)
        assert trend.shape == (16,)
        assert (trend[[5, 9]] - clean[[5, 9]]).abs().max() < 0.05  # the dips (0.2, 0.4) are not in it

    def test_exception(self):
        for window in (4, 1, 0):
            with pytest.raises(ValueError, match=f"odd integer >= 3, got {window}"):
                depth_trend(torch.rand(8), window)
        with pytest.raises(ValueError, match=r"non-empty 1-D sequence \[l\], got shape \(2, 3\)"):
            depth_trend(torch.rand(2, 3))


class TestSemanticWeakLayers:
    def test_planted_dips_are_found_exactly(self):
        assert semantic_weak_layers(_depth_curve(0, DIPS)) == [5, 9]  # default kappa
        for seed in range(20):
            assert semantic_weak_layers(_depth_curve(seed, DIPS), kappa=3.0) == [5, 9], seed

    def test_no_dips_no_weak_layers(self):
        assert semantic_weak_layers(_depth_curve(0), kappa=3.0) == []
        # kappa is a robust z-score: at 3 an undipped noisy curve rarely reports anything.
        reported = sum(bool(semantic_weak_layers(_depth_curve(seed), kappa=3.0)) for seed in range(200))
        assert reported <= 20

    def test_flat_curve_has_no_weak_layers(self):
        for curve in (torch.full((16,), 0.4), torch.zeros(16), torch.full((16,), -2.0)):
            assert semantic_weak_layers(curve, kappa=0.0) == []

    def test_curvature_is_not_a_dip(self):
        # On a U-shaped profile the neighbour median sits above every block; centring the
        # residuals removes that shared offset (without it this reports in ~1 of 4 curves).
        depth = torch.arange(16.0)
        reported = 0
        for seed in range(200):
            noise = 0.01 * torch.randn(16, generator=torch.Generator().manual_seed(seed))
            reported += bool(semantic_weak_layers(0.5 + 0.012 * (depth - 7.5) ** 2 + noise, kappa=3.0))
        assert reported <= 25

    def test_monotone_noise_free_curve_has_no_weak_layers(self):
        assert semantic_weak_layers(torch.linspace(0.1, 0.9, 16), kappa=0.5) == []

    def test_dips_at_the_ends_are_not_reported(self):
        for end in (0, 1, 14, 15):
            curve = _depth_curve(0, {**DIPS, end: 0.4})
            assert semantic_weak_layers(curve, kappa=3.0) == [5, 9], end
        # ...but they are real dips: with no end exclusion the outermost one is found.
        assert 0 in semantic_weak_layers(_depth_curve(0, {0: 0.4}), kappa=3.0, exclude_ends=0)

    def test_larger_kappa_reports_fewer_blocks(self):
        curve = _depth_curve(0, DIPS)
        kappas = [0.5, 1, 2, 3, 5, 8, 12, 16, 20, 30, 50, 1000]
        found = [semantic_weak_layers(curve, kappa=k) for k in kappas]
        for wider, narrower in zip(found, found[1:]):
            assert set(narrower) <= set(wider)
        assert [9] in found  # the deeper dip outlives the shallower one
        assert found[0] != found[-1] and found[-1] == []

    def test_accepts_sequences_and_tensors(self):
        curve = _depth_curve(3, DIPS)
        assert semantic_weak_layers(curve.tolist(), kappa=3.0) == semantic_weak_layers(curve, kappa=3.0)

    def test_exception(self):
        with pytest.raises(ValueError, match="kappa must be >= 0"):
            semantic_weak_layers(torch.rand(10), kappa=-1)
        with pytest.raises(ValueError, match="exclude_ends must be >= 0"):
            semantic_weak_layers(torch.rand(10), exclude_ends=-1)
        with pytest.raises(ValueError, match="non-empty 1-D"):
            semantic_weak_layers([])


class TestResponsiveLayers:
    def test_top_r_excluding_weak_blocks_and_ends(self):
        scores = [9.0, 1.0, 5.0, 3.0, 8.0, 2.0, 7.0, 6.0, 0.5, 9.5]
        assert responsive_layers(scores, top_r=2, exclude_ends=2) == [4, 6]
        assert responsive_layers(scores, top_r=2, exclude_ends=2, exclude=[4]) == [6, 7]
        assert responsive_layers(scores, top_r=3, exclude_ends=1, exclude=(4, 6)) == [2, 3, 7]

    def test_with_detected_weak_layers(self):
        curve = _depth_curve(0, DIPS)
        weak = semantic_weak_layers(curve, kappa=3.0)
        chosen = responsive_layers(curve, top_r=3, exclude=weak)
        candidates = [i for i in range(2, 14) if i not in weak]
        assert chosen == sorted(sorted(candidates, key=lambda i: -curve[i].item())[:3])
        assert not set(chosen) & set(weak)

    def test_fewer_candidates_than_r(self):
        assert responsive_layers([1.0, 2.0, 3.0, 4.0, 5.0], top_r=4, exclude_ends=1, exclude=[2]) == [1, 3]
        assert responsive_layers([1.0, 2.0, 3.0], top_r=0) == []

    def test_ties_go_to_the_shallower_block(self):
        assert responsive_layers([0.0, 1.0, 1.0, 1.0, 0.0], top_r=2, exclude_ends=1) == [1, 2]

    def test_exception(self):
        with pytest.raises(ValueError, match="top_r must be >= 0"):
            responsive_layers([1.0, 2.0], top_r=-1)


class TestCombinedScore:
    def test_known_values(self):
        sim = torch.tensor([1.0, 2.0, 3.0, 4.0])
        mor = torch.tensor([0.8, 0.2, 0.4, 0.6])
        def z(v):
            return (v - v.mean()) / v.std(unbiased=False)
        torch.testing.assert_close(combined_score(sim, mor), ((z(sim) + z(mor)) / 2).double())

    def test_scale_free_and_sign_safe(self):
        sim = torch.tensor([1e-3, 2e-3, 1.5e-3, 3e-3])
        mor = torch.tensor([-0.2, 0.1, -0.5, 0.3])
        torch.testing.assert_close(combined_score(sim * 1000, mor * 3 + 0.1), combined_score(sim, mor))

    def test_dip_in_either_metric_is_a_dip_in_the_score(self):
        depth = torch.arange(16.0)
        sim, mor = 1e-3 * (1 + 0.05 * depth), 0.3 + 0.02 * depth
        sim_dip, mor_dip = sim.clone(), mor.clone()
        sim_dip[5] *= 0.5
        mor_dip[9] -= 0.2
        assert semantic_weak_layers(combined_score(sim_dip, mor_dip), kappa=3.0) == [5, 9]

    def test_constant_metric_contributes_nothing(self):
        sim = torch.tensor([1.0, 3.0, 2.0])
        only_sim = combined_score(sim, torch.full((3,), 0.5))
        torch.testing.assert_close(only_sim, combined_score(sim, sim) / 2)
        torch.testing.assert_close(combined_score(torch.ones(3), torch.ones(3)), torch.zeros(3, dtype=torch.float64))

    def test_exception(self):
        with pytest.raises(ValueError, match=r"similarity \(3,\) and morans \(4,\) differ in length"):
            combined_score(torch.rand(3), torch.rand(4))


def _blob_map(peak: float, size: int = 8) -> torch.Tensor:
    """A map with one 2×2 blob ``peak`` times the background: the same shape at any peak."""
    m = torch.ones(size, size)
    m[3:5, 3:5] = peak
    return m


class TestResponseContrast:
    def test_known_value_and_scale_free(self):
        x = torch.tensor([[1.0, 1.0], [1.0, 5.0]])
        assert response_contrast(x).item() == pytest.approx(3 ** 0.5 / 2)
        assert response_contrast(x * 1e-3).item() == pytest.approx(3 ** 0.5 / 2, rel=1e-6)

    def test_a_flat_or_empty_map_has_no_contrast(self):
        assert response_contrast(torch.full((4, 4), 0.2)).item() == 0
        assert response_contrast(torch.zeros(4, 4)).item() == 0

    def test_flattening_keeps_the_shape_and_loses_the_contrast(self):
        """What the positive control plants: a text softmax at a fraction of its logits keeps the blob
        where it was (Moran's I barely moves) but its peak sinks towards the background."""
        sharp, flat = _blob_map(20.0), _blob_map(1.5)
        assert morans_i(flat).item() == pytest.approx(morans_i(sharp).item(), abs=1e-6)
        assert response_contrast(flat).item() < 0.1 * response_contrast(sharp).item()

    def test_cardinality(self):
        assert response_contrast(torch.rand(2, 3, 5, 7)).shape == (2, 3)


class TestLowContrastLayers:
    HEALTHY = (1.8, 1.9, 3.2, 1.2, 1.2, 2.7, 2.2, 2.8, 1.7, 2.6)   # healthy blocks differ by a factor ~3

    def test_a_run_of_flattened_blocks_that_the_depth_trend_misses(self):
        planted = [*self.HEALTHY[:3], 0.4, 0.3, 0.5, 0.45, *self.HEALTHY[7:]]
        assert low_contrast_layers(planted, kappa=2.0) == [3, 4, 5, 6]
        similarity = [0.01] * 10
        morans = [0.1] * 10     # the shape is kept: only the contrast tells
        assert semantic_weak_layers(combined_score(similarity, morans), kappa=2.0) == []

    def test_healthy_spread_is_not_a_loss(self):
        assert low_contrast_layers(self.HEALTHY, kappa=2.0) == []

    def test_larger_kappa_reports_fewer_blocks_and_ends_never_qualify(self):
        curve = [0.1, 2.0, 2.0, 0.7, 2.0, 0.25, 2.0, 2.0, 2.0, 0.1]
        assert low_contrast_layers(curve, kappa=1.0) == [3, 5]
        assert low_contrast_layers(curve, kappa=2.0) == [5]
        assert low_contrast_layers(curve, kappa=1.0, exclude_ends=0) == [0, 3, 5, 9]

    def test_a_flat_block_is_the_weakest(self):
        assert low_contrast_layers([2.0] * 4 + [0.0] + [2.0] * 5, kappa=3.0) == [4]

    def test_exception(self):
        with pytest.raises(ValueError, match="kappa"):
            low_contrast_layers([1.0, 2.0, 3.0], kappa=-1)


def test_weak_layers_is_either_rule_at_the_same_kappa():
    score = [1.0, 1.1, 1.2, 1.3, 1.4, 0.5, 1.6, 1.7, 1.8, 1.9]
    contrast = [2.0, 2.0, 2.0, 0.2, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    assert weak_layers(score, contrast, kappa=2.0) == [3, 5]
    assert weak_layers(score, [2.0] * 10, kappa=2.0) == semantic_weak_layers(score, kappa=2.0) == [5]
