"""J and F: every rule and edge case of the official DAVIS/MeViS code, and bit-exact agreement with a plain
``cv2.dilate`` port of the same rules on random masks of many shapes."""

from __future__ import annotations

import numpy as np
import pytest

from reviosa.evaluate import metrics
from reviosa.evaluate.metrics import boundary_map, boundary_radius, contour_accuracy, jf, region_similarity
from reviosa.evaluate.reference import disk_kernel, reference_boundary, reference_f, reference_j


def _frame(h: int, w: int) -> np.ndarray:
    return np.zeros((h, w), dtype=np.uint8)


def _full(h: int, w: int) -> np.ndarray:
    return np.ones((h, w), dtype=np.uint8)


def _pixel(h: int, w: int, y: int, x: int) -> np.ndarray:
    m = _frame(h, w)
    m[y, x] = 1
    return m


def _square(h: int, w: int, y: int, x: int, side: int) -> np.ndarray:
    m = _frame(h, w)
    m[y: y + side, x: x + side] = 1
    return m


# ---------------------------------------------------------------------- the edge-case table of the rules
EDGE_CASES = [
    # id, GT, pred, J, F
    ("empty/empty", _frame(30, 40), _frame(30, 40), 1.0, 1.0),
    ("empty/non-empty", _frame(30, 40), _square(30, 40, 5, 5, 4), 0.0, 0.0),
    ("non-empty/empty", _square(30, 40, 5, 5, 4), _frame(30, 40), 0.0, 0.0),
    ("full/empty", _full(30, 40), _frame(30, 40), 0.0, 1.0),  # a full frame has no boundary
    ("full/full", _full(30, 40), _full(30, 40), 1.0, 1.0),
    ("full/1 interior px", _full(30, 40), _pixel(30, 40, 10, 10), 1 / (30 * 40), 0.0),
    ("1px/same px", _pixel(30, 40, 10, 10), _pixel(30, 40, 10, 10), 1.0, 1.0),
    ("square shifted 3px", _square(100, 100, 30, 30, 40), _square(100, 100, 30, 33, 40), 1480 / 1720, 0.525),
    ("square shifted 2px", _square(100, 100, 30, 30, 40), _square(100, 100, 30, 32, 40), 1520 / 1680, 1.0),
    ("soft mask 0.2", _square(30, 40, 5, 5, 9) * 0.2, _square(30, 40, 5, 5, 9), 1.0, 1.0),
]


@pytest.mark.parametrize("gt,pred,j,f", [c[1:] for c in EDGE_CASES], ids=[c[0] for c in EDGE_CASES])
def test_edge_case_table(gt, pred, j, f):
    assert region_similarity(gt, pred) == pytest.approx(j, abs=1e-12)
    assert contour_accuracy(gt, pred) == pytest.approx(f, abs=1e-12)
    # and the reference port agrees exactly, so the table also pins the yardstick
    assert region_similarity(gt, pred) == reference_j(gt, pred)
    assert contour_accuracy(gt, pred) == reference_f(gt, pred)


def test_table_values_to_five_digits():
    # the rules state these rounded values for the 40x40 square on 100x100 (r = 2)
    a = _square(100, 100, 30, 30, 40)
    assert round(region_similarity(a, _square(100, 100, 30, 33, 40)), 5) == 0.86047
    assert round(region_similarity(a, _square(100, 100, 30, 32, 40)), 5) == 0.90476


@pytest.mark.parametrize("dx,f", [(0, 1.0), (1, 1.0), (5, 1.0), (8, 1.0), (9, 0.5), (10, 0.0), (40, 0.0)])
def test_one_pixel_shifted_at_480x854(dx, f):
    # r = 8; a single pixel's boundary is a 2x2 block, so at dx = 9 half of each block is in reach
    gt = _pixel(480, 854, 200, 300)
    pred = _pixel(480, 854, 200, 300 + dx)
    assert contour_accuracy(gt, pred) == f
    assert region_similarity(gt, pred) == (1.0 if dx == 0 else 0.0)


@pytest.mark.parametrize("shape,r", [((100, 100), 2), ((480, 854), 8), ((720, 1280), 12), ((1080, 1920), 18),
                                     ((360, 640), 6), ((75, 100), 1), ((300, 400), 4), ((600, 800), 8),
                                     ((1, 1), 1), ((1, 200), 2)])
def test_radius_table(shape, r):
    assert boundary_radius(0.008, *shape) == r


def test_radius_whole_pixels_and_rejections():
    assert boundary_radius(3, 10, 10) == 3
    assert boundary_radius(3.0, 10, 10) == 3
    assert boundary_radius(0, 10, 10) == 0
    with pytest.raises(ValueError, match="whole"):
        boundary_radius(2.5, 10, 10)
    with pytest.raises(ValueError, match="whole"):
        contour_accuracy(_frame(10, 10), _frame(10, 10), bound_th=1.5)
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match=">= 0"):
            boundary_radius(bad, 10, 10)


def test_boundary_map_conventions():
    assert boundary_map(_square(100, 100, 30, 30, 40)).sum() == 160
    single = boundary_map(_pixel(10, 12, 4, 5))
    assert single.sum() == 4 and single[3:5, 4:6].all()  # itself, left, up, up-left
    corner = boundary_map(_pixel(10, 12, 0, 0))
    assert corner.sum() == 1 and corner[0, 0]
    last = boundary_map(_pixel(10, 12, 9, 11))
    assert last.sum() == 3 and not last[9, 11]
    assert not boundary_map(_full(10, 12)).any()
    assert not boundary_map(_frame(10, 12)).any()
    for shape in [(1, 1), (1, 9), (9, 1)]:
        m = np.random.default_rng(sum(shape)).random(shape) < 0.5
        assert np.array_equal(boundary_map(m), reference_boundary(m))


def test_non_zero_is_foreground_soft_negative_nan():
    ref = _square(40, 50, 10, 10, 12)
    for fill in (255, 0.2, -1.0, np.nan, 1e-30):
        soft = ref.astype(np.float64) * 0
        soft[ref > 0] = fill
        assert region_similarity(ref, soft) == 1.0
        assert contour_accuracy(ref, soft) == 1.0
    # a 0.5 threshold would turn this into an empty prediction; the rules do not threshold
    assert region_similarity(ref, ref * 0.3) == 1.0


def test_shape_mismatch_is_assertion_error():
    with pytest.raises(AssertionError):
        region_similarity(_frame(10, 12), _frame(12, 10))
    with pytest.raises(AssertionError):
        contour_accuracy(_frame(10, 12), _frame(10, 13))
    with pytest.raises(AssertionError):
        jf(np.zeros((3, 10, 12)), np.zeros((2, 10, 12)))


def test_dimension_and_size_errors():
    with pytest.raises(ValueError, match="at least one pixel"):
        region_similarity(np.zeros((0, 5)), np.zeros((0, 5)))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        contour_accuracy(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        contour_accuracy(np.zeros((2, 2, 5, 5)), np.zeros((2, 2, 5, 5)))
    # J sums the last two axes of any stack, like the official code
    four = np.zeros((2, 3, 5, 5))
    assert region_similarity(four, four).shape == (2, 3)


def test_return_types():
    a, b = _square(20, 30, 2, 2, 5), _square(20, 30, 3, 3, 5)
    assert type(region_similarity(a, b)) is float
    assert type(contour_accuracy(a, b)) is float
    stack_j = region_similarity(np.stack([a, a]), np.stack([b, a]))
    stack_f = contour_accuracy(np.stack([a, a]), np.stack([b, a]))
    assert stack_j.dtype == np.float64 and stack_j.shape == (2,)
    assert stack_f.dtype == np.float64 and stack_f.shape == (2,)
    empty = np.zeros((0, 20, 30))
    assert region_similarity(empty, empty).shape == (0,)
    assert contour_accuracy(empty, empty).shape == (0,)


def test_disk_kernel():
    assert disk_kernel(0).tolist() == [[1]]
    assert disk_kernel(1).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    k = disk_kernel(8)
    assert k.shape == (17, 17) and k[8, 0] == 1 and k[0, 0] == 0 and np.array_equal(k, k.T)


# ---------------------------------------------------------------------- randomized agreement with the reference
def _random_masks(rng: np.random.Generator, t: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """GT blobs, noise or empty/full frames, and predictions that are near or far from the GT."""
    kind = rng.integers(0, 4)
    if kind == 0:  # salt-and-pepper of random density
        gt = rng.random((t, h, w)) < rng.random()
    else:  # rectangles
        gt = np.zeros((t, h, w), bool)
        for i in range(t):
            for _ in range(rng.integers(0, 4)):
                y, x = rng.integers(0, h), rng.integers(0, w)
                gt[i, y: y + rng.integers(1, h + 1), x: x + rng.integers(1, w + 1)] = True
    choice = rng.integers(0, 3)
    if choice == 0:
        pred = np.roll(gt, (int(rng.integers(-12, 13)), int(rng.integers(-12, 13))), axis=(1, 2))
    elif choice == 1:
        pred = gt ^ (rng.random((t, h, w)) < 0.02)
    else:
        pred = rng.random((t, h, w)) < rng.random() * 0.3
    if t > 2:
        gt[0] = False
        pred[1] = True  # full-frame prediction
        pred[2] = gt[2]
    return gt, pred


SHAPES = [(1, 1), (1, 200), (200, 1), (1, 7), (7, 1), (2, 2), (5, 3), (75, 100), (300, 400), (600, 800),
          (31, 65), (64, 64), (63, 129), (100, 100), (128, 300), (240, 427)]


@pytest.mark.parametrize("shape", SHAPES, ids=[f"{h}x{w}" for h, w in SHAPES])
def test_random_masks_match_reference_bit_for_bit(shape):
    h, w = shape
    rng = np.random.default_rng(h * 1000 + w)
    t = 4 if h * w > 100_000 else 9
    for _ in range(2):
        gt, pred = _random_masks(rng, t, h, w)
        j, f = jf(gt, pred)
        want_j = [reference_j(g, p) for g, p in zip(gt, pred)]
        want_f = [reference_f(g, p) for g, p in zip(gt, pred)]
        assert j.tolist() == want_j
        assert f.tolist() == want_f
        assert region_similarity(gt, pred).tolist() == want_j
        assert contour_accuracy(gt, pred).tolist() == want_f
        assert contour_accuracy(gt[0], pred[0]) == want_f[0]


@pytest.mark.parametrize("bound_th", [0, 1, 2, 5, 0.02, 0.1, 33, 70])
def test_other_tolerances_match_reference(bound_th):
    # large radii exercise more than one pad word per row and shifts capped at 63 bits
    rng = np.random.default_rng(int(bound_th * 100))
    for h, w in [(40, 150), (90, 70), (1, 130)]:
        gt, pred = _random_masks(rng, 3, h, w)
        want = [reference_f(g, p, bound_th) for g, p in zip(gt, pred)]
        assert contour_accuracy(gt, pred, bound_th).tolist() == want


def test_chunked_stacks_equal_frame_by_frame(monkeypatch):
    # a tiny chunk size splits the stack; each chunk has its own crop
    rng = np.random.default_rng(7)
    gt, pred = _random_masks(rng, 11, 48, 70)
    whole = jf(gt, pred)
    monkeypatch.setattr(metrics, "_CHUNK_PIXELS", 48 * 70 * 3)
    chunked = jf(gt, pred)
    assert np.array_equal(whole[0], chunked[0]) and np.array_equal(whole[1], chunked[1])
    per_frame = [jf(g, p) for g, p in zip(gt, pred)]
    assert np.array_equal(whole[0], [x[0][0] for x in per_frame])
    assert np.array_equal(whole[1], [x[1][0] for x in per_frame])


def test_metrics_are_symmetric():
    rng = np.random.default_rng(3)
    gt, pred = _random_masks(rng, 5, 50, 60)
    assert np.array_equal(region_similarity(gt, pred), region_similarity(pred, gt))
    assert np.array_equal(contour_accuracy(gt, pred), contour_accuracy(pred, gt))


def test_views_and_dtypes_give_the_same_numbers():
    rng = np.random.default_rng(11)
    gt, pred = _random_masks(rng, 4, 60, 90)
    j, f = jf(gt, pred)
    strided_gt = np.asfortranarray(gt)[:, ::1, :]
    wide = np.zeros((4, 60, 180), np.uint8)
    wide[:, :, ::2] = pred * 255  # a strided uint8 view of the same prediction
    j2, f2 = jf(strided_gt, wide[:, :, ::2])
    assert np.array_equal(j, j2) and np.array_equal(f, f2)
