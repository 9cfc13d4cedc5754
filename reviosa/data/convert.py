"""Rewrite a split in the other layout (official <-> reviosa), keeping every field and every mask bit.

The RLEs are copied, never re-encoded, so masks stay bit-exact. The result is written to a temporary folder beside
the destination, loaded back and compared with the source in both layouts before it replaces the destination, so a
failed or lossy conversion leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from reviosa.data.atomic import replace_dir
from reviosa.data.format import FRAMES_DIR, LAYOUTS, SCENE_GRAPH_FILE, DatasetError, InterRVOSDataset, official_json
from reviosa.data.names import UnsafeName, check_component, inside, relative_inside
from reviosa.data.official import ClassifyError

FRAME_MODES = ("link", "copy", "skip")


def check_names(ds: InterRVOSDataset) -> None:
    """Every video, frame and expression name (and video file path) must be a safe path component."""
    for part in [ds] + ([ds.role_split] if ds.role_split is not None else []):
        path = part.root / part.meta_file
        for vid, video in part.videos.items():
            try:
                check_component(vid, "video name")
                for f in video.frames:
                    check_component(f, "frame name")
                for exp_id in video.expressions:
                    check_component(exp_id, "expression id")
                if video.video_file is not None:
                    relative_inside(part.root, video.video_file, "video file")
            except UnsafeName as err:
                raise DatasetError(path, str(err), video=vid) from None


def _check_writable(ds: InterRVOSDataset, layout: str) -> None:
    # Only the official form can fail: e.g. a unidirectional interaction without actor ids has no subject.
    if layout != "official":
        return
    for part in [ds] + ([ds.role_split] if ds.role_split is not None else []):
        for video, exp in part.iter_expressions():
            try:
                official_json(exp)
            except ClassifyError as err:
                raise DatasetError(part.root / part.meta_file, f"cannot be written in the official layout: "
                                   f"{err.message}", video=video.name,
                                   field=f"expressions.{exp.exp_id}.{err.field}") from None


def _transfer(src: Path, dst: Path, mode: str) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if mode == "link":
        try:
            os.link(src, dst)
            return
        except OSError:  # another filesystem, or links not allowed: a copy is as good
            pass
    shutil.copy2(src, dst)


def _copy_frames(ds: InterRVOSDataset, out: Path, mode: str) -> None:
    for video in ds.videos.values():
        if video.video_file is not None:
            _transfer(ds.video_path(video), relative_inside(out, video.video_file, "video file"), mode)
            continue
        for frame in video.frames:
            # The file the readers open (present: the source was loaded with its frames checked).
            src = ds.frame_path(video, frame)
            _transfer(src, inside(out, FRAMES_DIR, video.name, src.name, what="frame file"), mode)


def _check_same(a: InterRVOSDataset, b: InterRVOSDataset) -> None:
    for layout in LAYOUTS:
        for vid in a.videos.keys() | b.videos.keys():
            va, vb = a.videos.get(vid), b.videos.get(vid)
            if va is None or vb is None or va.to_json(layout) != vb.to_json(layout):
                raise RuntimeError(f"conversion lost information: video {vid!r} of {a.meta_file} differs after "
                                   f"writing (compared in the {layout} layout)")
    if a.mask_dict != b.mask_dict:
        raise RuntimeError(f"conversion lost information: {a.mask_file} differs after writing")
    if (a.role_split is None) != (b.role_split is None):
        raise RuntimeError("conversion lost information: the new_* pair was not written")
    if a.role_split is not None:
        _check_same(a.role_split, b.role_split)


def convert_split(src: str | os.PathLike, dst: str | os.PathLike, to: str, *, frames: str = "link",
                  overwrite: bool = False) -> InterRVOSDataset:
    """Write split ``src`` to ``dst`` in layout ``to`` (``official`` | ``reviosa``); returns the written split.

    ``frames``: ``link`` (hard links, copies across filesystems), ``copy`` or ``skip`` (metadata only).
    """
    if to not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {to!r}")
    if frames not in FRAME_MODES:
        raise ValueError(f"frames must be one of {FRAME_MODES}, got {frames!r}")
    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise ValueError(f"destination {dst} must lie outside the source {src}")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())) and not overwrite:
        raise FileExistsError(f"destination {dst} exists and is not empty (pass overwrite to replace it)")
    ds = InterRVOSDataset.load(src, check_frames=frames != "skip")
    check_names(ds)
    _check_writable(ds, to)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.convert-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        ds.save(tmp, layout=to)
        if frames != "skip":
            _copy_frames(ds, tmp, frames)
        if (src / SCENE_GRAPH_FILE).is_file():
            _transfer(src / SCENE_GRAPH_FILE, tmp / SCENE_GRAPH_FILE, "copy")
        back = InterRVOSDataset.load(tmp, check_frames=frames != "skip")
        if back.layout != to and any(True for _ in back.iter_expressions()):
            raise RuntimeError(f"conversion wrote the {back.layout} layout, not {to}")
        _check_same(ds, back)
        replace_dir(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return InterRVOSDataset.load(dst, check_frames=False)
