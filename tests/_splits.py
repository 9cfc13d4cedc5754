"""Small hand-built InterRVOS splits shared by tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reviosa.data.format import Direction, Expression, ExpressionType, InterRVOSDataset, ObjectInfo, Video
from reviosa.data.rle import encode_track
from reviosa.data.video import write_jpeg

H, W, T = 24, 32, 4


def _tracks() -> dict[int, np.ndarray]:
    a = np.zeros((T, H, W), bool)
    b = np.zeros((T, H, W), bool)
    c = np.zeros((T, H, W), bool)
    for t in range(T):
        a[t, 2:8, 2 + t: 10 + t] = True
        b[t, 12:20, 20 - t: 28 - t] = True
    c[1:3, 0:4, 26:32] = True  # absent on frames 0 and 3
    return {10: a, 11: b, 12: c}


def make_split(root: Path) -> InterRVOSDataset:
    """A valid two-video split with every expression kind."""
    tracks = _tracks()
    frames = [f"{i:05d}" for i in range(T)]
    v = Video("vid_a", frames, objects={0: ObjectInfo(0, 10, "circle", {"color": "red"}),
                                        1: ObjectInfo(1, 11, "square"), 2: ObjectInfo(2, 12, "star")},
              height=H, width=W)
    v.expressions = {
        "0": Expression("0", "the red circle", [0], [10]),
        "1": Expression("1", "the shapes moving sideways", [0, 1], [10, 11], ExpressionType.MULTI),
        "2": Expression("2", "the circle chasing the square", [0], [10], ExpressionType.INTERACTION,
                        Direction.UNIDIRECTIONAL, [1], [11]),
        "3": Expression("3", "the square being chased by the circle", [1], [11], ExpressionType.INTERACTION,
                        Direction.UNIDIRECTIONAL, [0], [10]),
        "4": Expression("4", "the circle and the star moving together", [0, 2], [10, 12],
                        ExpressionType.INTERACTION, Direction.BIDIRECTIONAL),
    }
    v2 = Video("vid_b", frames[:2], objects={0: ObjectInfo(0, 20, "triangle")}, height=H, width=W)
    v2.expressions = {"0": Expression("0", "the triangle", [0], [20])}
    mask_dict = {a: encode_track(m) for a, m in tracks.items()}
    mask_dict[20] = encode_track(tracks[10][:2])
    ds = InterRVOSDataset(root, {"vid_a": v, "vid_b": v2}, mask_dict)
    rng = np.random.default_rng(0)
    for video in ds.videos.values():
        for f in video.frames:
            write_jpeg(ds.frame_path(video, f), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    ds.save()
    return ds
