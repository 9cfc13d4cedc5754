"""Frames per second of stage 0 (SAM2 tracking from mask prompts) against two references measured in the same run.

On one synthetic video with ``--objects`` prompted objects (mask prompts on the middle frame, so both directions
run), printed: ours (the image encoder once per frame, shared by every object), the image-encoder floor (one
encoding per frame and nothing else: no tracker can be faster), and per-object tracking (each object tracked
alone, i.e. the video encoded once per object, as a predictor that handles one object at a time would).
Random weights: the speed is that of the real architecture, the masks are meaningless.

    python benchmarks/annotate_tracking.py [--config tiny|large] [--frames 16] [--objects 4] [--size 128] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from reviosa.annotate.config import MaskTrackConfig
from reviosa.annotate.mask_tracks import SAM2Tracker
from reviosa.annotate.prompts_file import prompts_from_masks
from reviosa.data.synthetic.config import SyntheticConfig
from reviosa.data.synthetic.writer import generate_split
from reviosa.model.sam import preprocess_frames


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="tiny", help="tiny or large (sam2_hiera_l sizes), random weights")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--objects", type=int, default=4)
    p.add_argument("--size", type=int, default=128, help="frame side in pixels")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default); on a busy "
                   "machine 1 avoids spinning threads that fight other processes")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    tracker = SAM2Tracker(MaskTrackConfig(sam2_config=a.config, allow_random_weights=True, device=a.device))
    with tempfile.TemporaryDirectory() as tmp:
        world = SyntheticConfig(frames=a.frames, height=a.size, width=a.size, min_objects=4, max_objects=6)
        ds = generate_split(tmp, world, 4, progress=False)
        video = max(ds.videos.values(), key=lambda v: len(v.objects))
        masks = {o: ds.object_masks(video, o) for o in video.objects}
        prompts = dict(list(prompts_from_masks(video, masks, "mask", frame=a.frames // 2).items())[:a.objects])
        k, n = len(prompts), video.num_frames
        tracker.track_video(ds, video, dict(list(prompts.items())[:1]))  # warm-up (lazy init, allocator)

        def timed(fn) -> float:
            if a.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if a.device.startswith("cuda"):
                torch.cuda.synchronize()
            return time.perf_counter() - t0

        def floor() -> None:
            with torch.inference_mode():
                for t in range(n):
                    img = preprocess_frames(np.array(ds.read_frame(video, t)[None]), tracker.image_size)
                    tracker.sam.forward_image(img.to(a.device))

        ours = timed(lambda: tracker.track_video(ds, video, prompts))
        enc = timed(floor)
        alone = timed(lambda: [tracker.track_video(ds, video, {o: pr}) for o, pr in prompts.items()])
    print(f"SAM2 {a.config} on {a.device} ({torch.get_num_threads()} CPU threads), {n} frames of "
          f"{a.size}x{a.size}, {k} objects (prompt on frame {n // 2})")
    print(f"{'method':28s} {'seconds':>8s} {'frames/s':>9s} {'object-frames/s':>16s}")
    for name, sec in (("ours (shared features)", ours), ("encoder floor", enc), ("per-object tracking", alone)):
        print(f"{name:28s} {sec:8.2f} {n / sec:9.1f} {k * n / sec:16.1f}")
    print(f"ours vs per-object: {alone / ours:.2f}x faster; ours vs floor: {ours / enc:.2f}x the floor's time")


if __name__ == "__main__":
    main()
