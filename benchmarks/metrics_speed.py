"""Frames per second of our J/F against a plain per-frame ``cv2.dilate`` port of the same rules.

Both run in this process on the same realistic masks (a GT blob moving and rotating through the video, a
prediction that is a perturbed copy, some empty and full frames); the script checks the numbers are
identical and prints frames/s of each and the ratio.

    python benchmarks/metrics_speed.py [--frames 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from reviosa.evaluate.metrics import jf
from reviosa.evaluate.reference import reference_f, reference_j


def blob_video(frames: int, height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A (T, H, W) GT ellipse on a random walk and a prediction that wobbles around it."""
    rng = np.random.default_rng(seed)
    gt = np.zeros((frames, height, width), np.uint8)
    pred = np.zeros_like(gt)
    cx, cy = width * 0.4, height * 0.5
    axes = (int(width * 0.12), int(height * 0.18))
    for t in range(frames):
        cx += rng.normal(0, width / 300)
        cy += rng.normal(0, height / 300)
        cv2.ellipse(gt[t], (int(cx), int(cy)), axes, 2 * t, 0, 360, 1, -1)
        jitter = rng.normal(0, 2.0 * height / 480, size=2)
        grow = rng.integers(-4, 5, size=2)
        cv2.ellipse(pred[t], (int(cx + jitter[0]), int(cy + jitter[1])),
                    (max(1, axes[0] + int(grow[0])), max(1, axes[1] + int(grow[1]))), 2 * t + rng.normal(0, 4),
                    0, 360, 1, -1)
    gt[frames // 3] = 0  # object absent; the prediction still fires (J = F = 0)
    pred[frames // 2] = 0  # missed frame
    gt[-1] = pred[-1] = 0  # both empty (J = F = 1)
    return gt.astype(bool), pred.astype(bool)


def _time(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    """Run the comparison for each frame size and print one line per size."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"{'size':>10} {'r':>3} {'ours fps':>10} {'reference fps':>14} {'ratio':>7}  identical")
    for h, w in [(480, 854), (256, 256), (720, 1280)]:
        gt, pred = blob_video(args.frames, h, w)
        t_ours, (j, f) = _time(lambda: jf(gt, pred), args.repeats)
        t_ref, ref = _time(lambda: [(reference_j(g, p), reference_f(g, p)) for g, p in zip(gt, pred)],
                           args.repeats)
        j_ref, f_ref = (np.array(x) for x in zip(*ref))
        same = bool(np.array_equal(j, j_ref) and np.array_equal(f, f_ref))
        r = int(np.ceil(0.008 * np.hypot(h, w)))
        print(f"{h:>4}x{w:<5} {r:>3} {args.frames / t_ours:>10.0f} {args.frames / t_ref:>14.0f} "
              f"{t_ref / t_ours:>6.1f}x  {same}  (mean J {j.mean():.4f}, F {f.mean():.4f})")
        if not same:
            raise SystemExit("numbers differ from the reference implementation")


if __name__ == "__main__":
    main()
