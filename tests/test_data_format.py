"""The InterRVOS dataset format: round trip, MeViS compatibility, and one clear error per kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _splits import H, W, _tracks, make_split

from reviosa.data.format import (
    DatasetError,
    Direction,
    Expression,
    ExpressionType,
    InterRVOSDataset,
    ObjectInfo,
    Video,
)
from reviosa.data.rle import decode_rle, encode_mask, encode_track
from reviosa.data.video import write_jpeg


@pytest.fixture()
def split(tmp_path: Path) -> Path:
    make_split(tmp_path / "split")
    return tmp_path / "split"


def _edit(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_round_trip_keeps_everything(split: Path, tmp_path: Path) -> None:
    ds = InterRVOSDataset.load(split)
    ds.save(tmp_path / "copy")
    for name in ("meta_expressions.json", "mask_dict.json"):
        assert (tmp_path / "copy" / name).read_bytes() == (split / name).read_bytes()
    video = ds.videos["vid_a"]
    assert ds.stats() == {"videos": 2, "frames": 6, "objects": 4, "expressions": 6, "expressions_single": 2,
                          "expressions_multi": 1, "expressions_interaction": 3, "expressions_with_target": 2}
    exp = video.expressions["3"]
    assert exp.has_target and exp.anno_ids == [11] and exp.target_anno_ids == [10]
    assert not video.expressions["4"].has_target
    assert video.expressions["4"].direction is Direction.BIDIRECTIONAL


def test_union_masks_skips_absent_frames(split: Path) -> None:
    ds = InterRVOSDataset.load(split)
    video = ds.videos["vid_a"]
    tracks = _tracks()
    np.testing.assert_array_equal(ds.union_masks(video, [10, 12]), tracks[10] | tracks[12])
    assert ds.mask_dict[12][0] is None and ds.mask_dict[12][3] is None
    assert not ds.union_masks(video, []).any()


def test_rle_round_trip_on_odd_shapes() -> None:
    rng = np.random.default_rng(1)
    for shape in [(1, 1), (1, 17), (13, 1), (37, 53)]:
        m = rng.random(shape) > 0.5
        assert np.array_equal(decode_rle(encode_mask(m)), m)
        assert np.array_equal(decode_rle(json.loads(json.dumps(encode_mask(m)))), m)


def test_mevis_layout_loads_unchanged(tmp_path: Path) -> None:
    """A MeViS-style split (no InterRVOS fields, a no-target expression) loads and is typed from its objects."""
    root = tmp_path / "mevis"
    tracks = _tracks()
    meta = {"videos": {"abc": {"frames": ["00000", "00001", "00002", "00003"], "expressions": {
        "0": {"exp": "two shapes moving apart", "obj_id": [0, 1], "anno_id": [5, 6]},
        "1": {"exp": "the circle", "obj_id": [0], "anno_id": [5]},
        "2": {"exp": "the giraffe", "obj_id": [], "anno_id": []}}}}}
    root.mkdir()
    (root / "meta_expressions.json").write_text(json.dumps(meta))
    (root / "mask_dict.json").write_text(json.dumps({"5": encode_track(tracks[10], absent_as_null=False),
                                                     "6": encode_track(tracks[11])}))
    for f in meta["videos"]["abc"]["frames"]:
        write_jpeg(root / "JPEGImages" / "abc" / f"{f}.jpg", np.zeros((H, W, 3), np.uint8))
    ds = InterRVOSDataset.load(root)
    exps = ds.videos["abc"].expressions
    assert [exps[k].type for k in "012"] == [ExpressionType.MULTI, ExpressionType.SINGLE, ExpressionType.SINGLE]
    assert ds.frame_size(ds.videos["abc"]) == (H, W)
    assert not ds.union_masks(ds.videos["abc"], exps["2"].anno_ids).any()
    np.testing.assert_array_equal(ds.union_masks(ds.videos["abc"], [5, 6]), tracks[10] | tracks[11])


BAD_CASES = {
    "missing frame": (lambda s: (s / "JPEGImages" / "vid_a" / "00002.jpg").unlink(),
                      ["vid_a", "frames", "00002"]),
    "rle wrong size": (lambda s: _edit(s / "mask_dict.json", lambda d: d["11"].__setitem__(
        1, encode_mask(np.ones((H, W + 1), bool)))), ["mask_dict.json", "vid_a", "'11'", "[24, 33]"]),
    "track too short": (lambda s: _edit(s / "mask_dict.json", lambda d: d["10"].pop()),
                        ["mask_dict.json", "vid_a", "3 entries", "4 frames"]),
    "unknown object id": (lambda s: _edit(s / "meta_expressions.json", lambda d: d["videos"]["vid_a"]
                                          ["expressions"]["2"].__setitem__("target_obj_id", [7])),
                          ["vid_a", "expressions.2.target_obj_id", "unknown object id 7"]),
    "unknown anno id": (lambda s: _edit(s / "meta_expressions.json", lambda d: d["videos"]["vid_b"].update(
        {"objects": {"0": {"anno_id": 99, "category": "x"}}, "expressions": {
            "0": {"exp": "x", "obj_id": [0], "anno_id": [99]}}})),
                        ["vid_b", "expressions.0.anno_id", "unknown anno_id 99"]),
    "duplicate id in expression": (lambda s: _edit(s / "meta_expressions.json", lambda d: d["videos"]["vid_a"]
                                                   ["expressions"]["1"].update(obj_id=[0, 0], anno_id=[10, 10])),
                                   ["vid_a", "expressions.1.obj_id", "duplicate id 0"]),
    "duplicate anno id across objects": (lambda s: _edit(s / "meta_expressions.json", lambda d: d["videos"]
                                                         ["vid_b"]["objects"]["0"].__setitem__("anno_id", 10)),
                                         ["anno_id 10 is used by two objects"]),
    "duplicate json key": (lambda s: (s / "meta_expressions.json").write_text(
        (s / "meta_expressions.json").read_text().replace('"vid_b": {', '"vid_a": {', 1)),
                           ["meta_expressions.json", "duplicate key 'vid_a'"]),
    "not json": (lambda s: (s / "mask_dict.json").write_text("{\"10\": [nul"),
                 ["mask_dict.json", "not valid JSON", "line 1"]),
    "target on a single expression": (lambda s: _edit(s / "meta_expressions.json", lambda d: d["videos"]["vid_a"]
                                                      ["expressions"]["0"].update(type="single",
                                                                                  target_obj_id=[1],
                                                                                  target_anno_id=[11])),
                                      ["expressions.0.target_anno_id", "only interaction"]),
    "unidirectional without target": (lambda s: _edit(s / "meta_expressions.json", lambda d: d["videos"]
                                                      ["vid_a"]["expressions"]["2"].update(target_obj_id=[],
                                                                                           target_anno_id=[])),
                                      ["expressions.2.target_anno_id", "needs target_anno_id"]),
    "actor is target": (lambda s: _edit(s / "meta_expressions.json", lambda d: d["videos"]["vid_a"]
                                        ["expressions"]["2"].update(target_obj_id=[0], target_anno_id=[10])),
                        ["both actor and target"]),
    "unknown type": (lambda s: _edit(s / "meta_expressions.json", lambda d: d["videos"]["vid_a"]["expressions"]
                                     ["0"].__setitem__("type", "triple")), ["expressions.0.type", "'triple'"]),
    "frames unsorted": (lambda s: _edit(s / "meta_expressions.json", lambda d: d["videos"]["vid_a"]["frames"]
                                        .reverse()), ["vid_a", "'frames'", "sorted"]),
    "corrupt rle counts": (lambda s: _edit(s / "mask_dict.json", lambda d: d["10"][0].__setitem__(
        "counts", 12)), ["mask_dict.json", "'10'", "does not decode"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_gives_one_clear_error(split: Path, case: str) -> None:
    breaker, expected = BAD_CASES[case]
    breaker(split)
    with pytest.raises(DatasetError) as info:
        InterRVOSDataset.load(split)
    message = str(info.value)
    for needle in expected:
        assert needle in message, f"{needle!r} not in {message!r}"


def test_missing_meta_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="meta_expressions.json: file does not exist"):
        InterRVOSDataset.load(tmp_path)


def test_save_is_atomic(split: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash while writing leaves the previous files intact and no temp files behind."""
    ds = InterRVOSDataset.load(split)
    before = (split / "meta_expressions.json").read_bytes()
    ds.videos["vid_a"].expressions["0"].text = "changed"
    import reviosa.data.atomic as atomic

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError):
        ds.save()
    assert (split / "meta_expressions.json").read_bytes() == before
    assert not [p for p in split.iterdir() if p.name.endswith(".tmp")]


def test_video_file_source_is_decoded_with_pyav(tmp_path: Path) -> None:
    """A split whose video is a file (not a JPEG folder) validates and reads back its frames."""
    from reviosa.data.video import write_video

    root = tmp_path / "vf"
    frames = np.zeros((5, H, W, 3), np.uint8)
    for i in range(5):
        frames[i, ..., 1] = 40 * i
    write_video(root / "videos" / "clip.mp4", frames, fps=5)
    track = np.zeros((5, H, W), bool)
    track[:, 4:12, 4:12] = True
    v = Video("clip", [f"{i:05d}" for i in range(5)], objects={0: ObjectInfo(0, 1, "box")}, height=H, width=W,
              video_file="videos/clip.mp4")
    v.expressions = {"0": Expression("0", "the box", [0], [1])}
    InterRVOSDataset(root, {"clip": v}, {1: encode_track(track)}).save()
    ds = InterRVOSDataset.load(root)
    got = ds.read_frames(ds.videos["clip"], [0, 3, 4])
    assert got.shape == (3, H, W, 3)
    assert [abs(int(f[..., 1].mean()) - 40 * i) <= 6 for f, i in zip(got, (0, 3, 4))] == [True] * 3
    (root / "videos" / "clip.mp4").unlink()
    with pytest.raises(DatasetError, match="video_file"):
        InterRVOSDataset.load(root)
