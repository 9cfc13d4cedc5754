"""J and F: every rule and edge case of the official DAVIS/MeViS code, bit-exact agreement with the per-frame
``cv2.dilate`` reference on random and realistic masks of many shapes, and the reference itself against a
brute-force reading of the rules."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from reviosa.evaluate import metrics
from reviosa.evaluate.metrics import boundary_map, boundary_radius, contour_accuracy, jf, region_similarity
from reviosa.evaluate.reference import disk_kernel, reference_boundary, reference_f, reference_j, reference_radius


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


def test_blocked_stacks_equal_frame_by_frame(monkeypatch):
    # a tiny block size splits the stack; each block has its own crop
    rng = np.random.default_rng(7)
    gt, pred = _random_masks(rng, 11, 48, 70)
    whole = jf(gt, pred)
    monkeypatch.setattr(metrics, "_BLOCK_PIXELS", 48 * 70 * 3)
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


# ---------------------------------------------------------------------- the yardstick against the rules themselves
def _naive_boundary(m: np.ndarray) -> np.ndarray:
    m = m.astype(bool)
    h, w = m.shape
    b = np.zeros_like(m)
    for y in range(h):
        for x in range(w):
            b[y, x] = any(y + dy < h and x + dx < w and m[y, x] != m[y + dy, x + dx]
                          for dy, dx in ((0, 1), (1, 0), (1, 1)))
    return b


def _naive_f(gt: np.ndarray, pred: np.ndarray, r: int) -> float:
    """F read straight off the rules: match within Euclidean distance <= r, by explicit pairwise distances."""
    bg, bp = np.argwhere(_naive_boundary(gt)), np.argwhere(_naive_boundary(pred))
    if len(bg) == 0 and len(bp) == 0:
        return 1.0
    if len(bg) == 0 or len(bp) == 0:
        return 0.0
    near = ((bp[:, None, :] - bg[None, :, :]) ** 2).sum(axis=-1) <= r * r
    precision = near.any(axis=1).sum() / float(len(bp))
    recall = near.any(axis=0).sum() / float(len(bg))
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def test_reference_follows_the_rules():
    # pins the yardstick: cv2.dilate with the disk, image borders contributing nothing, the boundary convention
    rng = np.random.default_rng(2024)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 14, size=2))
        bound_th = float(rng.integers(0, 6))  # a radius in pixels, or 0 for exact matches only
        gt, pred = (rng.random((h, w)) < rng.random() for _ in range(2))
        assert np.array_equal(reference_boundary(gt), _naive_boundary(gt))
        assert np.array_equal(boundary_map(gt), _naive_boundary(gt))
        assert reference_f(gt, pred, bound_th) == _naive_f(gt, pred, reference_radius(bound_th, h, w))
        inter, union = (gt & pred).sum(), (gt | pred).sum()
        assert reference_j(gt, pred) == (1.0 if union == 0 else inter / union)


# ---------------------------------------------------------------------- property tests over random shapes
def _shape_stack(rng: np.random.Generator, t: int, h: int, w: int) -> np.ndarray:
    """Frames of blobs, rectangles, thin lines, single pixels, noise, or nothing/everything, anywhere."""
    out = np.zeros((t, h, w), np.uint8)
    for i in range(t):
        for _ in range(int(rng.integers(0, 4))):
            kind = rng.integers(0, 7)
            cy, cx = int(rng.integers(-2, h + 2)), int(rng.integers(-2, w + 2))
            if kind == 0:
                axes = (int(rng.integers(0, w + 1)), int(rng.integers(0, h + 1)))
                cv2.ellipse(out[i], (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
            elif kind == 1:
                out[i, max(0, cy): cy + int(rng.integers(1, h + 1)), max(0, cx): cx + int(rng.integers(1, w + 1))] = 1
            elif kind == 2:
                end = (int(rng.integers(0, w)), int(rng.integers(0, h)))
                cv2.line(out[i], (cx, cy), end, 1, int(rng.integers(1, 3)))
            elif kind == 3 and 0 <= cy < h and 0 <= cx < w:
                out[i, cy, cx] = 1
            elif kind == 4:
                out[i] |= rng.random((h, w)) < rng.random() * 0.2
            elif kind == 5:
                out[i] = rng.random() < 0.5  # all empty or all full
            else:
                out[i, :, min(w - 1, max(0, cx))] = 1 if rng.random() < 0.5 else 0
                out[i, min(h - 1, max(0, cy)), :] = 1 if rng.random() < 0.5 else 0
    return out.astype(bool)


def _related(rng: np.random.Generator, gt: np.ndarray) -> np.ndarray:
    """A prediction near the GT (shifted, grown, thinned, noisy) or unrelated to it."""
    kind = rng.integers(0, 4)
    if kind == 0:
        return np.roll(gt, (int(rng.integers(-9, 10)), int(rng.integers(-9, 10))), axis=(1, 2))
    if kind == 1:
        k = np.ones((3, 3), np.uint8)
        op = cv2.dilate if rng.random() < 0.5 else cv2.erode
        return np.stack([op(f.view(np.uint8), k) for f in gt]).astype(bool)
    if kind == 2:
        return gt ^ (rng.random(gt.shape) < 0.01)
    return _shape_stack(rng, *gt.shape)


def _bound_th(rng: np.random.Generator) -> float:
    kind = rng.integers(0, 3)
    if kind == 0:
        return 0.008
    if kind == 1:
        return float(rng.integers(1, 14))  # a radius in pixels
    return float(rng.uniform(0.001, 0.08))


@pytest.mark.parametrize("seed", range(12))
def test_random_shapes_match_reference(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    if seed % 3 == 0:
        # small blocks: several blocks per stack, each with its own crop
        monkeypatch.setattr(metrics, "_BLOCK_PIXELS", int(rng.integers(1, 20_000)))
    for _ in range(8):
        h, w = int(rng.integers(1, 130)), int(rng.integers(1, 130))
        t = int(rng.integers(1, 7))
        gt = _shape_stack(rng, t, h, w)
        pred = _related(rng, gt)
        bound_th = _bound_th(rng)
        j, f = jf(gt, pred, bound_th)
        assert j.tolist() == [reference_j(g, p) for g, p in zip(gt, pred)], (h, w, bound_th)
        assert f.tolist() == [reference_f(g, p, bound_th) for g, p in zip(gt, pred)], (h, w, bound_th)


@pytest.mark.parametrize("r", [1, 8, 12])
def test_objects_at_every_border_and_inside(r, monkeypatch):
    # Masks away from the border are packed straight from the input; at a border through a padded copy, and
    # the image's last row/column have no lower/right neighbour. Both ways must agree with the reference.
    packed_in_place = []
    pack = metrics._pack_crop

    def spy(x, c, ws):
        packed_in_place.append(c.in_place)
        return pack(x, c, ws)

    monkeypatch.setattr(metrics, "_pack_crop", spy)
    h, w = 90, 260
    shape = np.zeros((30, 44), bool)
    cv2.ellipse(shape.view(np.uint8), (22, 15), (20, 12), 30, 0, 360, 1, -1)
    shape[3:27, 40:43] = True  # a straight edge
    gts, preds = [], []
    for y in (0, 1, 2, r, r + 1, 30, h - 31, h - 30):
        for x in (0, 1, 2, r, 100, w - 64, w - 45, w - 44):
            g = np.zeros((h, w), bool)
            g[y: y + 30, x: x + 44] = shape[: h - y, : w - x]
            gts.append(g)
            preds.append(np.roll(g, (1, -2), axis=(0, 1)))
    gt, pred = np.stack(gts), np.stack(preds)
    for i in range(0, len(gt), 3):  # blocks of a few frames, so crops differ
        sl = slice(i, i + 3)
        j, f = jf(gt[sl], pred[sl], r)
        assert j.tolist() == [reference_j(a, b) for a, b in zip(gt[sl], pred[sl])]
        assert f.tolist() == [reference_f(a, b, r) for a, b in zip(gt[sl], pred[sl])]
    assert True in packed_in_place and False in packed_in_place


def test_thin_frames_and_lines():
    rng = np.random.default_rng(5)
    for h, w in [(1, 1), (1, 2), (2, 1), (1, 300), (300, 1), (2, 300), (300, 2), (3, 65), (65, 3)]:
        gt = _shape_stack(rng, 6, h, w)
        pred = _related(rng, gt)
        for bound_th in (0.008, 1.0, 3.0):
            j, f = jf(gt, pred, bound_th)
            assert j.tolist() == [reference_j(g, p) for g, p in zip(gt, pred)]
            assert f.tolist() == [reference_f(g, p, bound_th) for g, p in zip(gt, pred)]
    lines = np.zeros((4, 50, 70), bool)
    lines[0, 20, 5:60] = True  # horizontal
    lines[1, 3:45, 33] = True  # vertical
    cv2.line(lines[2].view(np.uint8), (0, 0), (69, 49), 1, 1)  # diagonal
    lines[3, :, 69] = True  # the last column
    for shifted in (np.roll(lines, 3, axis=2), np.roll(lines, -9, axis=1), lines[:, ::-1]):
        assert jf(lines, shifted)[1].tolist() == [reference_f(g, p) for g, p in zip(lines, shifted)]


@pytest.mark.parametrize("shape", [(480, 854), (720, 1280)])
def test_real_scale_blobs_match_reference(shape):
    h, w = shape
    rng = np.random.default_rng(h)
    gt = np.zeros((5, h, w), np.uint8)
    pred = np.zeros_like(gt)
    for i in range(5):
        c = (int(w * 0.4 + 9 * i), int(h * 0.5 - 5 * i))
        cv2.ellipse(gt[i], c, (w // 8, h // 5), 7 * i, 0, 360, 1, -1)
        cv2.ellipse(pred[i], (c[0] + int(rng.integers(-4, 5)), c[1] + int(rng.integers(-4, 5))),
                    (w // 8 + 3, h // 5 - 2), 7 * i + 3, 0, 360, 255, -1)
    gt[3] = 0
    j, f = jf(gt, pred)
    assert j.tolist() == [reference_j(g, p) for g, p in zip(gt, pred)]
    assert f.tolist() == [reference_f(g, p) for g, p in zip(gt, pred)]
