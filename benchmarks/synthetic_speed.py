"""Speed of the synthetic world: videos/s for rendering alone and for writing whole splits.

Reference measured in the same run: writing the same number of JPEG frames of the same size with
nothing else (the I/O floor every generator pays), so the numbers read as "how close to just saving
the frames".

    python benchmarks/synthetic_speed.py [--videos 200] [--workers 2] [--frames 16] [--size 128]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from reviosa.data.synthetic import SyntheticConfig, generate_split, render_video, video_seed
from reviosa.data.video import write_jpeg


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    """Print videos/s for render-only, whole splits (1 and N processes) and the JPEG-only floor."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=200)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    cfg = SyntheticConfig(frames=args.frames, height=args.size, width=args.size)
    n = args.videos
    print(f"{n} videos, {cfg.frames} frames of {cfg.height}x{cfg.width}, {os.cpu_count()} CPUs")

    render_s = _timed(lambda: [render_video(cfg, video_seed(0, "", i)) for i in range(n)])
    with tempfile.TemporaryDirectory() as tmp:
        frame = render_video(cfg, video_seed(0, "", 0)).frames[0]
        jpeg_s = _timed(lambda: [write_jpeg(Path(tmp) / "ref" / f"{i}_{t}.jpg", frame, quality=cfg.jpeg_quality)
                                 for i in range(n) for t in range(cfg.frames)])
        one_s = _timed(lambda: generate_split(Path(tmp) / "w1", cfg, n, seed=0, progress=False))
        many_s = _timed(lambda: generate_split(Path(tmp) / "wn", cfg, n, seed=0, workers=args.workers,
                                               progress=False))
    rows = [("render only (frames + masks + expressions, 1 process)", render_s),
            ("reference: JPEG writes only (same frame count, 1 process)", jpeg_s),
            ("full split, 1 process", one_s),
            (f"full split, {args.workers} processes", many_s)]
    for label, s in rows:
        print(f"{label:60s} {n / s:8.1f} videos/s  ({s:6.2f} s)")
    print(f"frames/s, full split with {args.workers} processes: {n * cfg.frames / many_s:.0f}")


if __name__ == "__main__":
    main()
