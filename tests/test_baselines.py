"""Baseline predictors: oracle copies GT, empty writes nothing, largest-moving finds the moving blob."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _splits import make_split

from reviosa.baselines.predictors import moving_blobs, run_baseline
from reviosa.evaluate.predictions import read_mask_png, role_dir


def _read_role(pred: Path, vid: str, exp: str, role: str, frames: list[str]) -> np.ndarray:
    return np.stack([read_mask_png(role_dir(pred, vid, exp, role) / f"{f}.png") for f in frames])


@pytest.mark.parametrize("workers", [1, 2])
def test_oracle_writes_ground_truth(tmp_path: Path, workers: int) -> None:
    ds = make_split(tmp_path / "split")
    n = run_baseline("oracle", tmp_path / "split", tmp_path / "pred", workers=workers)
    assert n == 6
    for video, exp in ds.iter_expressions():
        actor = _read_role(tmp_path / "pred", video.name, exp.exp_id, "actor", video.frames)
        np.testing.assert_array_equal(actor, ds.union_masks(video, exp.anno_ids))
        target_dir = role_dir(tmp_path / "pred", video.name, exp.exp_id, "target")
        assert target_dir.exists() == exp.has_target
        if exp.has_target:
            np.testing.assert_array_equal(_read_role(tmp_path / "pred", video.name, exp.exp_id, "target",
                                                     video.frames), ds.union_masks(video, exp.target_anno_ids))


def test_empty_writes_all_background(tmp_path: Path) -> None:
    make_split(tmp_path / "split")
    run_baseline("empty", tmp_path / "split", tmp_path / "pred", workers=1)
    pngs = list((tmp_path / "pred").rglob("*.png"))
    assert len(pngs) == 5 * 4 + 2 * 4 + 2  # 5 actor tracks + 2 targets in vid_a, 1 actor track in vid_b
    assert not any(read_mask_png(p).any() for p in pngs)


def test_unknown_baseline_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown baseline 'magic'"):
        run_baseline("magic", tmp_path, tmp_path / "pred")


def test_largest_moving_blob_tracks_the_mover() -> None:
    t, h, w = 6, 40, 60
    frames = np.full((t, h, w, 3), 20, np.uint8)
    big_static = np.zeros((t, h, w), bool)
    big_static[:, 2:20, 2:20] = True  # largest object, but it never moves
    mover = np.zeros((t, h, w), bool)
    small = np.zeros((t, h, w), bool)
    for i in range(t):
        mover[i, 25:35, 5 + 6 * i: 17 + 6 * i] = True
        small[i, 5:10, 30 + 3 * i: 35 + 3 * i] = True  # a slower, smaller mover
    frames[big_static] = (200, 50, 50)
    frames[mover] = (50, 200, 50)
    frames[small] = (50, 50, 200)
    first, second = moving_blobs(frames)
    # Interior pixels of the mover are found every frame; the static square never is.
    assert not (first & big_static).any() and not (second & big_static).any()
    for i in range(t):
        assert (first[i] & mover[i]).sum() > 0.5 * mover[i].sum()
        assert (second[i] & small[i]).sum() > 0.3 * small[i].sum()
