"""Clip extraction (paper Appendix D.3): the plan, real decoding with PyAV, resume, and bad videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reviosa.data.clips import Clip, ClipConfig, extract_clips, plan_clips
from reviosa.data.video import VideoDecodeError, count_frames, decode_video, read_image, write_video


@pytest.mark.parametrize(("n", "expected"), [
    (0, []),
    (300, [Clip(0, 0, 300)]),                     # shorter than one bin: the first bin is also the last
    (1000, [Clip(0, 0, 500)]),
    (1001, [Clip(0, 0, 500), Clip(1, 1000, 1001)]),
    (2600, [Clip(0, 0, 500), Clip(2, 2000, 2500)]),  # middle bins are skipped
    (5000, [Clip(0, 0, 500), Clip(4, 4000, 4500)]),
])
def test_plan_follows_the_paper(n: int, expected: list[Clip]) -> None:
    assert plan_clips(n) == expected


def test_plan_is_configurable() -> None:
    cfg = ClipConfig(bin_frames=10, clip_frames=4, bins="all", min_clip_frames=3)
    assert plan_clips(25, cfg) == [Clip(0, 0, 4), Clip(1, 10, 14), Clip(2, 20, 24)]  # 5-frame tail: 4 kept
    assert plan_clips(22, cfg) == [Clip(0, 0, 4), Clip(1, 10, 14)]  # tail of 2 frames dropped
    with pytest.raises(ValueError, match="clip_frames"):  # pydantic's ValidationError is a ValueError
        ClipConfig(bin_frames=10, clip_frames=11)
    with pytest.raises(ValueError, match="bins"):
        ClipConfig(bins="middle")


def _video(path: Path, n: int) -> np.ndarray:
    frames = np.zeros((n, 32, 48, 3), np.uint8)
    for i in range(n):
        frames[i, :, :, 0] = (i * 9) % 256  # frame index encoded in the red level
    write_video(path, frames, fps=10)
    return frames


def test_extract_clips_decodes_the_right_frames(tmp_path: Path) -> None:
    src = tmp_path / "long.mp4"
    _video(src, 27)
    assert count_frames(src) == 27
    cfg = ClipConfig(bin_frames=10, clip_frames=4)
    out = extract_clips(src, tmp_path / "clips", cfg)
    assert out == {"long_b000": ["00000", "00001", "00002", "00003"],
                   "long_b002": ["00000", "00001", "00002", "00003"]}
    for clip, first in (("long_b000", 0), ("long_b002", 20)):
        for k in range(4):
            img = read_image(tmp_path / "clips" / clip / f"{k:05d}.jpg")
            assert img.shape == (32, 48, 3)
            assert abs(int(img[..., 0].mean()) - ((first + k) * 9) % 256) <= 6  # lossy codec + JPEG


def test_extract_clips_resumes_without_rewriting(tmp_path: Path) -> None:
    src = tmp_path / "v.mp4"
    _video(src, 12)
    cfg = ClipConfig(bin_frames=6, clip_frames=3)
    extract_clips(src, tmp_path / "c", cfg)
    kept = tmp_path / "c" / "v_b000" / "00001.jpg"
    stamp = kept.stat().st_mtime_ns
    (tmp_path / "c" / "v_b001" / "00002.jpg").unlink()  # as if killed mid-clip
    extract_clips(src, tmp_path / "c", cfg)
    assert kept.stat().st_mtime_ns == stamp
    assert (tmp_path / "c" / "v_b001" / "00002.jpg").exists()


def test_malformed_video_gives_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 definitely not a video")
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        list(decode_video(bad))
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        extract_clips(bad, tmp_path / "out")
