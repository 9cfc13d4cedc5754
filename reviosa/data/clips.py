"""Clip extraction from long source videos (InterRVOS paper, Appendix D.3).

Each source video is cut into non-overlapping bins of ``bin_frames`` frames; of these only the first and
the last bin are used, and of each used bin its first ``clip_frames`` frames form a clip.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from tqdm import tqdm

from reviosa.config import Config
from reviosa.data.names import inside
from reviosa.data.video import decode_video, write_jpeg


class ClipConfig(Config):
    """Clip extraction settings; defaults follow the paper (``configs/paper.yaml``)."""

    shipped_dir = Path(__file__).with_name("configs")

    bin_frames: int = Field(1000, ge=1, description="bin length in frames")
    clip_frames: int = Field(500, ge=1, description="frames kept from the start of each used bin")
    bins: Literal["first_last", "all"] = Field("first_last", description="first_last as in the paper, or all")
    min_clip_frames: int = Field(1, ge=1, description="drop clips shorter than this (e.g. a short trailing bin)")

    @model_validator(mode="after")
    def _clip_fits_bin(self) -> "ClipConfig":
        if self.clip_frames > self.bin_frames:
            raise ValueError(f"clip_frames ({self.clip_frames}) cannot exceed bin_frames ({self.bin_frames})")
        return self


@dataclass(frozen=True)
class Clip:
    """Frames ``[start, stop)`` of a source video."""

    bin_index: int
    start: int
    stop: int

    @property
    def num_frames(self) -> int:
        return self.stop - self.start


def plan_clips(num_frames: int, cfg: ClipConfig = ClipConfig()) -> list[Clip]:
    """The clips to cut from a video of ``num_frames`` frames."""
    if num_frames <= 0:
        return []
    n_bins = -(-num_frames // cfg.bin_frames)
    chosen = range(n_bins) if cfg.bins == "all" else sorted({0, n_bins - 1})
    clips = []
    for b in chosen:
        start = b * cfg.bin_frames
        stop = min(start + cfg.clip_frames, num_frames)
        if stop - start >= cfg.min_clip_frames:
            clips.append(Clip(b, start, stop))
    return clips


def extract_clips(video_path: str | os.PathLike, out_dir: str | os.PathLike, cfg: ClipConfig = ClipConfig(),
                  *, num_frames: int | None = None, name: str | None = None) -> dict[str, list[str]]:
    """Decode a video once and write each planned clip as ``<out_dir>/<name>_bNNN/<frame>.jpg``.

    Returns ``{clip_name: [frame names]}``. A clip whose folder is complete is skipped, so a killed run
    resumes where it stopped.
    """
    from reviosa.data.video import count_frames

    video_path, out_dir = Path(video_path), Path(out_dir)
    name = name or video_path.stem
    total = num_frames if num_frames is not None else count_frames(video_path)
    clips = plan_clips(total, cfg)
    result: dict[str, list[str]] = {}
    todo: dict[int, tuple[Path, Clip]] = {}
    for clip in clips:
        clip_name = f"{name}_b{clip.bin_index:03d}"
        # The name comes from a file name or the caller: its clip folder must be one entry of out_dir.
        folder = inside(out_dir, clip_name, what="clip name")
        frames = [f"{i:05d}" for i in range(clip.num_frames)]
        result[clip_name] = frames
        if not all((folder / f"{f}.jpg").exists() for f in frames):
            todo[clip.bin_index] = (folder, clip)
    if not todo:
        return result
    stop = max(c.stop for _, c in todo.values())
    bar = tqdm(total=sum(c.num_frames for _, c in todo.values()), desc=f"clips {name}", unit="frame",
               disable=None)
    for index, frame in enumerate(decode_video(video_path, stop=stop)):
        b = index // cfg.bin_frames
        if b in todo:
            folder, clip = todo[b]
            if clip.start <= index < clip.stop:
                write_jpeg(folder / f"{index - clip.start:05d}.jpg", frame)
                bar.update()
    bar.close()
    return result
