"""Trajectories of the synthetic world: individual motions, two-object interactions, and what a viewer sees.

Every trajectory is a per-frame centre ``(x, y)`` in pixels and a rotation angle. Interactions are built
in a local frame and then shifted so that both objects stay in view where the motion allows.
Distances scale with ``L = min(height, width)`` so the world looks the same at every resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Track:
    """Per-frame centre and rotation (radians) of one object."""

    x: np.ndarray
    y: np.ndarray
    angle: np.ndarray

    @classmethod
    def still(cls, x: float, y: float, frames: int, angle: float = 0.0) -> "Track":
        """An object resting at (x, y)."""
        return cls(np.full(frames, float(x)), np.full(frames, float(y)), np.full(frames, float(angle)))

    def shifted(self, dx: float, dy: float) -> "Track":
        """The same motion translated by (dx, dy)."""
        return Track(self.x + dx, self.y + dy, self.angle)


@dataclass(frozen=True)
class Canvas:
    """Frame geometry the trajectories are planned for."""

    height: int
    width: int
    frames: int

    @property
    def scale(self) -> float:
        """L = min(H, W): the unit all distances are drawn in."""
        return float(min(self.height, self.width))

    @property
    def t(self) -> np.ndarray:
        """Frame indices 0..T-1 as floats."""
        return np.arange(self.frames, dtype=np.float64)


def _unit(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)])


def fit(tracks: list[Track], radii: list[float], canvas: Canvas, rng: np.random.Generator) -> list[Track]:
    """Shift a group of tracks together to a random place where all of it stays inside the frame.

    If the group's extent is larger than the frame on an axis it is centred on that axis (parts leave
    the frame, which the masks record as absent frames).
    """
    shift = []
    for axis, size in (("x", canvas.width), ("y", canvas.height)):
        lo = min(float(np.min(getattr(tr, axis))) - r for tr, r in zip(tracks, radii))
        hi = max(float(np.max(getattr(tr, axis))) + r for tr, r in zip(tracks, radii))
        shift.append(rng.uniform(-lo, size - hi) if hi - lo <= size else (size - (hi - lo)) / 2 - lo)
    return [tr.shifted(*shift) for tr in tracks]


# ---------------------------------------------------------------------- individual motions
def individual(motion: str, radius: float, canvas: Canvas, rng: np.random.Generator, *, exit_prob: float,
               can_rotate: bool = True) -> Track:
    """One object moving on its own: still, left, right, up, down, bouncing or rotating."""
    T, t = canvas.frames, canvas.t
    s = t / (T - 1)
    if motion == "still":
        return fit([Track.still(0, 0, T, rng.uniform(0, np.pi))], [radius], canvas, rng)[0]
    if motion in ("left", "right", "up", "down"):
        horizontal = motion in ("left", "right")
        extent = canvas.width if horizontal else canvas.height
        if rng.random() < exit_prob:
            # Start in the far half and end fully outside the frame: the last frames have no mask.
            start = rng.uniform(0.45 * extent, extent - radius)
            end = -radius - rng.uniform(0.0, 0.15 * extent)
        else:
            d = rng.uniform(0.3, 0.55) * extent
            start = rng.uniform(radius + d, max(extent - radius, radius + d))
            end = start - d
        along = start + (end - start) * s
        if motion in ("right", "down"):
            along = extent - along
        across = rng.uniform(radius, (canvas.height if horizontal else canvas.width) - radius)
        x, y = (along, np.full(T, across)) if horizontal else (np.full(T, across), along)
        return Track(x, y, np.full(T, rng.uniform(0, np.pi)))
    if motion == "bouncing":
        h = rng.uniform(0.25, 0.4) * canvas.height
        bounces = rng.uniform(1.5, 2.5)
        phase = rng.uniform(0, 0.5 * np.pi)
        y = -h * np.abs(np.sin(np.pi * bounces * s + phase))
        tr = Track(np.zeros(T), y, np.full(T, rng.uniform(0, np.pi)))
        return fit([tr], [radius], canvas, rng)[0]
    if motion == "rotating":
        if not can_rotate:
            raise ValueError("this shape looks the same at every angle; it cannot visibly rotate")
        omega = rng.choice([-1, 1]) * rng.uniform(0.15, 0.3)  # rad/frame, below every shape's symmetry half-turn
        tr = Track(np.zeros(T), np.zeros(T), rng.uniform(0, np.pi) + omega * t)
        return fit([tr], [radius], canvas, rng)[0]
    raise ValueError(f"unknown motion {motion!r}")


# ---------------------------------------------------------------------- interactions
def interaction(kind: str, r_actor: float, r_target: float, canvas: Canvas,
                rng: np.random.Generator) -> tuple[Track, Track]:
    """(actor track, target track) of a two-object interaction; for ``moves_with`` the order is the pair's."""
    T, L, t = canvas.frames, canvas.scale, canvas.t
    u = _unit(rng.uniform(0, 2 * np.pi))
    contact = 0.85 * (r_actor + r_target)  # circumradii overlap a little so polygons visibly touch
    still_angle = (rng.uniform(0, np.pi), rng.uniform(0, np.pi))
    if kind == "chases":
        # The target flees along u; the actor starts behind it and keeps accelerating towards it.
        v_target = rng.uniform(0.22, 0.35) * L / (T - 1)
        b = np.outer(t, u) * v_target
        start_gap = rng.uniform(0.42, 0.55) * L
        a0 = -start_gap * _unit(np.arctan2(u[1], u[0]) + rng.uniform(-0.6, 0.6))
        closing = start_gap - contact
        k = 2.4 * closing / (T - 1)  # extra speed ramps up linearly: catches up around 85% of the video
        a = np.zeros((T, 2))
        a[0] = a0
        for i in range(1, T):
            d = b[i] - a[i - 1]
            dist = float(np.hypot(*d))
            step = min(v_target + k * i / (T - 1), max(dist - contact, 0.0))
            a[i] = a[i - 1] + d / max(dist, 1e-9) * step
    elif kind in ("pushes", "hits"):
        gap = rng.uniform(0.18, 0.28) * L if kind == "pushes" else rng.uniform(0.25, 0.35) * L
        t_contact = max(1, int(round(rng.uniform(0.3, 0.45) * (T - 1))))
        # A hit drives slightly into the target; a push arrives exactly at contact.
        v = (gap + (0.02 * L if kind == "hits" else 0.0)) / t_contact
        k = np.maximum(t - t_contact, 0)
        approach = -(contact + gap) + v * np.minimum(t, t_contact)
        if kind == "pushes":
            # Contact, then both travel on together with the actor pressed against the target.
            along_b = 0.8 * v * k
            along_a = np.where(k > 0, along_b - contact, approach)
        else:
            # Impact: the target is knocked away fast and slows down; the actor stops with a small recoil.
            f_b, f_a = 0.8, 0.6
            along_b = 1.6 * v * (1 - f_b ** k) / (1 - f_b)
            along_a = approach - 0.25 * v * (1 - f_a ** k) / (1 - f_a)
        a, b = np.outer(along_a, u), np.outer(along_b, u)
    elif kind == "follows":
        # Both ride the same gentle arc; the actor is a fixed time behind, so the gap stays constant.
        rc = rng.uniform(0.8, 2.0) * L
        w = rng.choice([-1, 1]) * rng.uniform(0.3, 0.45) * L / (T - 1) / rc
        gap = contact / 0.85 + rng.uniform(0.08, 0.14) * L
        lag = 2 * np.arcsin(min(gap / (2 * rc), 1.0))
        theta0 = rng.uniform(0, 2 * np.pi)
        th_b = theta0 + w * t
        th_a = th_b - np.sign(w) * lag
        b = np.stack([np.cos(th_b), np.sin(th_b)], 1) * rc
        a = np.stack([np.cos(th_a), np.sin(th_a)], 1) * rc
    elif kind == "circles":
        radius = contact / 0.85 * 1.05 + rng.uniform(0.04, 0.1) * L
        w = rng.choice([-1, 1]) * 2 * np.pi * rng.uniform(0.8, 1.3) / (T - 1)
        phi = rng.uniform(0, 2 * np.pi) + w * t
        b = np.zeros((T, 2))
        a = np.stack([np.cos(phi), np.sin(phi)], 1) * radius
    elif kind == "moves_with":
        # Side by side, rigidly together, along one straight path.
        speed = rng.uniform(0.3, 0.5) * L / (T - 1)
        side = _unit(np.arctan2(u[1], u[0]) + rng.choice([-1, 1]) * rng.uniform(0.4, 0.5) * np.pi)
        offset = side * (contact / 0.85 * 1.02 + rng.uniform(0.02, 0.06) * L)
        a = np.outer(t, u) * speed
        b = a + offset
    else:
        raise ValueError(f"unknown interaction {kind!r}")
    tracks = [Track(a[:, 0].copy(), a[:, 1].copy(), np.full(T, still_angle[0])),
              Track(b[:, 0].copy(), b[:, 1].copy(), np.full(T, still_angle[1]))]
    fitted = fit(tracks, [r_actor, r_target], canvas, rng)
    return fitted[0], fitted[1]


# ---------------------------------------------------------------------- what a viewer sees
def apparent_motions(track: Track, canvas: Canvas, *, rotation_visible: bool) -> frozenset[str]:
    """Every individual-motion word a viewer could fairly use for this trajectory.

    Used to keep motion expressions unambiguous: "the object moving left" is only emitted when no other
    object could also be described as moving left.
    """
    L = canvas.scale
    dx, dy = track.x - track.x[0], track.y - track.y[0]
    out: set[str] = set()
    if float(np.max(np.hypot(dx, dy))) < 0.04 * L:
        out.add("still")  # one spinning in place does not move either: "the shape not moving" would fit it too
        if rotation_visible and float(np.ptp(track.angle)) > 0.3:
            out.add("rotating")
    for delta, neg, pos in ((dx, "left", "right"), (dy, "up", "down")):
        net, path = float(delta[-1]), float(np.sum(np.abs(np.diff(delta))))
        if abs(net) > 0.12 * L and abs(net) >= 0.6 * path:  # a steady drift, not a back-and-forth
            out.add(neg if net < 0 else pos)
    steps = np.diff(track.y)
    signs = np.sign(steps[np.abs(steps) > 1e-3 * L])
    reversals = int(np.sum(signs[1:] != signs[:-1])) if signs.size > 1 else 0
    if reversals >= 1 and float(np.ptp(track.y)) > 0.12 * L and float(np.ptp(track.x)) < 0.5 * float(np.ptp(track.y)):
        out.add("bouncing")
    return frozenset(out)
