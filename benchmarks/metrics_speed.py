"""Frames per second of our J/F against a per-frame cv2 implementation of the same rules, and whether they agree.

The reference (:mod:`reviosa.evaluate.reference`) is what one would write with numpy and cv2, frame by frame:
masks as 0/1 ``uint8`` views; the boundary map from XORs of shifted slices (``cv2.bitwise_xor`` /
``cv2.bitwise_or`` into slices); J from ``cv2.countNonZero`` of the masks and of ``cv2.bitwise_and``;
precision/recall by ``cv2.dilate`` of each whole-frame boundary map with the uint8 disk kernel (cached per
radius, as ``skimage.morphology.disk(r)``), ``cv2.bitwise_and`` with the other map and ``cv2.countNonZero``;
no dilation when a boundary is empty. Ours is :func:`reviosa.evaluate.metrics.jf` on the whole stack.

Both run in this process, one after the other in each repeat, on the same realistic masks (a GT ellipse on a
random walk through the video, a prediction that wobbles around it, an absent-object frame, a missed frame and
an all-empty frame); the best of the repeats is kept for each. Frames per second come from wall-clock time;
the ratio is also given in CPU time, which is steadier on a loaded machine. Both sides call cv2, whose own
thread pool (``--threads``, default 1) would otherwise run some of our reductions on several cores while the
reference's calls stay mostly serial: with one thread the two ratios agree. Every frame's J and F must be
bit-identical.

    python benchmarks/metrics_speed.py [--frames 60] [--repeats 9] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import time

import cv2
import numpy as np

from reviosa.evaluate.metrics import boundary_radius, jf
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


def reference_jf(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (J, F) of a stack with the cv2 reference, one frame at a time."""
    j = [reference_j(g, p) for g, p in zip(gt, pred)]
    f = [reference_f(g, p) for g, p in zip(gt, pred)]
    return np.array(j, dtype=np.float64), np.array(f, dtype=np.float64)


def main() -> None:
    """Run the comparison for each frame size and print one line per size."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1, help="cv2 threads for both sides (0: cv2's default)")
    args = ap.parse_args()
    if args.threads:
        cv2.setNumThreads(args.threads)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; cv2 threads {cv2.getNumThreads()}")
    print(f"{'size':>10} {'r':>3} {'ours fps':>9} {'cv2 ref fps':>12} {'ratio':>7} {'(CPU)':>7}  identical")
    for h, w in [(480, 854), (720, 1280), (256, 256)]:
        gt, pred = blob_video(args.frames, h, w)
        jf(gt, pred), reference_jf(gt[:2], pred[:2])  # warm-up: imports, caches, first-call costs
        best = {"ours": [float("inf")] * 2, "ref": [float("inf")] * 2}
        for _ in range(args.repeats):  # interleaved, so both see the same machine load
            for name, fn in (("ours", jf), ("ref", reference_jf)):
                wall, cpu = time.perf_counter(), time.process_time()
                result = fn(gt, pred)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
                if name == "ours":
                    ours = result
                else:
                    ref = result
        (t_ours, c_ours), (t_ref, c_ref) = best["ours"], best["ref"]
        same = np.array_equal(ours[0], ref[0]) and np.array_equal(ours[1], ref[1])
        print(f"{h:>4}x{w:<5} {boundary_radius(0.008, h, w):>3} {args.frames / t_ours:>9.0f} "
              f"{args.frames / t_ref:>12.0f} {t_ref / t_ours:>6.1f}x {c_ref / c_ours:>6.1f}x  {'yes' if same else 'NO'}"
              f"  (mean J {ours[0].mean():.4f}, F {ours[1].mean():.4f})")
        if not same:
            raise SystemExit("numbers differ from the reference implementation")


if __name__ == "__main__":
    main()
