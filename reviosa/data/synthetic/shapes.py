"""Shapes and colours of the synthetic world, rasterised exactly (hard edges, pixel-centre sampling).

Masks are decided per pixel centre ``(x + 0.5, y + 0.5)`` with no anti-aliasing, so a painted frame
and its masks agree pixel for pixel.
"""

from __future__ import annotations

import functools

import numpy as np

#: name -> RGB; saturated, well apart from each other and from the dark background
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 38, 38),
    "green": (34, 170, 60),
    "blue": (40, 90, 230),
    "yellow": (240, 215, 40),
    "orange": (245, 135, 20),
    "purple": (150, 60, 200),
    "cyan": (40, 210, 215),
    "pink": (245, 120, 185),
    "white": (242, 242, 242),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "hexagon")

#: shapes that look the same under any rotation (a "rotating" one would look still)
ROTATION_INVARIANT: frozenset[str] = frozenset({"circle"})


@functools.lru_cache(maxsize=None)
def polygon(shape: str) -> np.ndarray:
    """Unit-circumradius vertices (N, 2) as (x, y) of a polygonal shape, pointing up at angle 0 (read-only)."""
    verts = _polygon(shape)
    verts.flags.writeable = False
    return verts


def _polygon(shape: str) -> np.ndarray:
    if shape == "square":
        a = np.pi / 4 + np.arange(4) * np.pi / 2
        return np.stack([np.cos(a), np.sin(a)], 1)
    if shape == "triangle":
        a = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.stack([np.cos(a), np.sin(a)], 1) * 1.1  # a triangle fills less of its circle
    if shape == "hexagon":
        a = np.arange(6) * np.pi / 3
        return np.stack([np.cos(a), np.sin(a)], 1)
    if shape == "diamond":  # a rhombus taller than wide, so it never reads as a rotated square
        return np.array([[0.0, -1.0], [0.62, 0.0], [0.0, 1.0], [-0.62, 0.0]])
    if shape == "star":
        a = -np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.15, 0.5)
        return np.stack([np.cos(a) * r, np.sin(a) * r], 1)
    raise ValueError(f"unknown shape {shape!r}; known: {list(SHAPES)}")


def rasterise(shape: str, cx: float, cy: float, radius: float, angle: float, height: int,
              width: int) -> tuple[slice, slice, np.ndarray] | None:
    """The shape's pixels inside the frame as (row slice, column slice, bool box); None if off-frame.

    ``angle`` is in radians (clockwise on screen, since y grows downwards).
    """
    verts = None if shape == "circle" else _rotated(polygon(shape), angle) * radius + (cx, cy)
    if verts is None:
        x_lo, x_hi, y_lo, y_hi = cx - radius, cx + radius, cy - radius, cy + radius
    else:
        (x_lo, y_lo), (x_hi, y_hi) = verts.min(0), verts.max(0)
    x0, x1 = max(int(np.floor(x_lo)), 0), min(int(np.ceil(x_hi)) + 1, width)
    y0, y1 = max(int(np.floor(y_lo)), 0), min(int(np.ceil(y_hi)) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    px = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5
    py = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5
    if verts is None:
        box = (px - cx) ** 2 + (py - cy) ** 2 <= radius * radius
    else:
        box = _inside_polygon(verts, px, py)
    return slice(y0, y1), slice(x0, x1), box


def _rotated(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return v @ np.array([[c, s], [-s, c]])


def _inside_polygon(verts: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    # Even-odd crossing test, broadcast over the (rows, cols) grid; handles the non-convex star.
    inside = np.zeros(np.broadcast_shapes(px.shape, py.shape), dtype=bool)
    xj, yj = verts[-1]
    for xi, yi in verts:
        if yi != yj:
            crosses = (yi > py) != (yj > py)
            x_at = (xj - xi) * (py - yi) / (yj - yi) + xi
            inside ^= crosses & (px < x_at)
        xj, yj = xi, yi
    return inside


def background(rng: np.random.Generator, height: int, width: int, textured: bool) -> np.ndarray:
    """A dark, low-saturation (H, W, 3) uint8 background, plain or with a faint smooth texture."""
    base = rng.uniform(35, 85) + rng.uniform(-10, 10, size=3)
    img = np.broadcast_to(base, (height, width, 3)).astype(np.float64)
    if textured:
        # Coarse noise upsampled bilinearly: a soft, low-contrast texture (no object-like edges).
        gh, gw = 5, 5
        grid = rng.uniform(-12, 12, size=(gh, gw))
        ys, xs = np.linspace(0, gh - 1, height), np.linspace(0, gw - 1, width)
        y0, x0 = np.minimum(ys.astype(int), gh - 2), np.minimum(xs.astype(int), gw - 2)
        fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
        g = (grid[y0][:, x0] * (1 - fy) * (1 - fx) + grid[y0 + 1][:, x0] * fy * (1 - fx)
             + grid[y0][:, x0 + 1] * (1 - fy) * fx + grid[y0 + 1][:, x0 + 1] * fy * fx)
        img = img + g[..., None] + rng.uniform(-3, 3, size=(height, width, 1))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
