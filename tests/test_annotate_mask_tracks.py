"""Stage 0: SAM2 mask tracks from prompts (tiny random SAM2 on CPU), the prompts file, pipeline wiring, resume.

A random SAM2 segments nothing meaningful, so masks are compared with ground truth only where SAM2 copies a mask
prompt (its conditioning frame); elsewhere the tests check shapes, sizes, which frames were encoded, and files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from reviosa.annotate.config import AnnotateConfig, MaskTrackConfig
from reviosa.annotate.mask_tracks import TRACKS_DIR, MaskTrackError, SAM2Tracker, state_path, track_split
from reviosa.annotate.pipeline import REPORT_FILE, run_annotation
from reviosa.annotate.prompts_file import (
    PROMPTS_FILE,
    ObjectPrompt,
    check_prompts,
    load_prompts,
    prompts_from_masks,
    prompts_from_vidor,
    save_prompts,
)
from reviosa.data.format import DatasetError, InterRVOSDataset
from reviosa.data.rle import decode_rle, encode_mask
from reviosa.data.synthetic.config import SyntheticConfig
from reviosa.data.synthetic.writer import generate_split

T, H, W = 6, 64, 80
TINY = MaskTrackConfig(sam2_config="tiny", allow_random_weights=True)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate_split(root, SyntheticConfig(frames=T, height=H, width=W), 2, seed=3, progress=False)
    return root


@pytest.fixture(scope="module")
def tracker() -> SAM2Tracker:
    return SAM2Tracker(TINY)


def gt_masks(ds: InterRVOSDataset, name: str) -> dict[int, np.ndarray]:
    video = ds.videos[name]
    return {o: ds.object_masks(video, o) for o in video.objects}


def decode_track(track: list, size=(H, W)) -> np.ndarray:
    return np.stack([np.zeros(size, bool) if r is None else decode_rle(r) for r in track])


def prompt_only_split(src: Path, dst: Path, keep_given: int = 0) -> tuple[InterRVOSDataset, dict]:
    """A copy of ``src`` without expressions (annotation makes them) whose objects, but the first ``keep_given``
    of each video, lost their tracks, with mask prompts from the ground truth (each object's first visible
    frame) in ``prompts.json``."""
    shutil.copytree(src, dst)
    ds = InterRVOSDataset.load(dst)
    prompts = {}
    for name, video in ds.videos.items():
        prompts[name] = prompts_from_masks(video, gt_masks(ds, name), "mask", frame=None)
        video.expressions = {}
        for o in sorted(video.objects)[keep_given:]:
            del ds.mask_dict[video.objects[o].anno_id]
    ds.save()
    save_prompts(dst / PROMPTS_FILE, prompts)
    return InterRVOSDataset.load(dst), prompts


def test_mask_prompt_is_the_output_of_its_frame(synth: Path, tracker: SAM2Tracker) -> None:
    assert tracker.sam.use_mask_input_as_output_without_sam  # SAM2 copies mask inputs on conditioning frames
    ds = InterRVOSDataset.load(synth)
    name = next(iter(ds.videos))
    video = ds.videos[name]
    gt = gt_masks(ds, name)
    prompts = prompts_from_masks(video, gt, "mask", frame=0)
    assert prompts, "the synthetic video should show objects on frame 0"
    before = tracker.frames_encoded
    tracks = tracker.track_video(ds, video, prompts)
    assert tracker.frames_encoded - before == T  # one image encoding per frame, shared by all objects
    assert set(tracks) == set(prompts)
    for o, track in tracks.items():
        assert len(track) == T
        assert all(r is None or list(r["size"]) == [H, W] for r in track)
        assert np.array_equal(decode_rle(track[0]), gt[o][0])
        assert decode_track(track).shape == (T, H, W)


def test_tracks_round_trip_into_a_valid_split(synth: Path, tmp_path: Path) -> None:
    ds, prompts = prompt_only_split(synth, tmp_path / "split")
    assert all(o.anno_id not in ds.mask_dict for v in ds.videos.values() for o in v.objects.values())
    tracks, counts = track_split(ds, prompts, TINY, tmp_path / "state", progress=False)
    assert counts["objects_tracked"] == sum(len(p) for p in prompts.values()) == len(tracks)
    assert counts["objects_given"] == 0 and counts["videos_tracked"] == 2
    ds.mask_dict.update(tracks)
    ds.save()
    back = InterRVOSDataset.load(tmp_path / "split")  # validates track lengths and RLE sizes
    truth = InterRVOSDataset.load(synth)
    for name, video in back.videos.items():
        for o, p in prompts[name].items():
            t = video.frames.index(p.frame)
            got = back.object_masks(video, o)
            assert got.shape == (T, H, W)
            assert np.array_equal(got[t], truth.object_masks(truth.videos[name], o)[t])


def test_box_and_point_prompts_run(synth: Path, tracker: SAM2Tracker) -> None:
    ds = InterRVOSDataset.load(synth)
    name = next(iter(ds.videos))
    video = ds.videos[name]
    gt = gt_masks(ds, name)
    boxes = prompts_from_masks(video, gt, "box", frame=0)
    points = prompts_from_masks(video, gt, "points", frame=0)
    o = next(iter(boxes))
    x0, y0, x1, y1 = boxes[o].box
    pts, mask = tracker._inputs(boxes[o], (H, W))
    assert mask is None
    assert pts["point_labels"].tolist() == [[2, 3]]  # a box is two corner points, labels 2 and 3 as in SAM2
    s = tracker.image_size
    np.testing.assert_allclose(pts["point_coords"][0].numpy(), [[x0 / W * s, y0 / H * s], [x1 / W * s, y1 / H * s]],
                               rtol=1e-6)
    both = ObjectPrompt(box=boxes[o].box, points=points[o].points, labels=[1])
    assert tracker._inputs(both, (H, W))[0]["point_labels"].tolist() == [[2, 3, 1]]
    for prompts in (boxes, points, {o: both}):
        tracks = tracker.track_video(ds, video, prompts)
        assert set(tracks) == set(prompts)
        assert all(len(t) == T and all(r is None or list(r["size"]) == [H, W] for r in t) for t in tracks.values())


def test_middle_frame_prompt_propagates_both_ways(synth: Path, tracker: SAM2Tracker) -> None:
    ds = InterRVOSDataset.load(synth)
    name = next(iter(ds.videos))
    video = ds.videos[name]
    gt = gt_masks(ds, name)
    mid = prompts_from_masks(video, gt, "mask", frame=3)
    first = prompts_from_masks(video, gt, "mask", frame=0)
    a, b = sorted(set(mid) & set(first))[:2]
    before = tracker.frames_encoded
    tracks = tracker.track_video(ds, video, {a: mid[a]})
    assert tracker.frames_encoded - before == T  # frames 3..5 forward, then 2, 1, 0 backward
    assert np.array_equal(decode_rle(tracks[a][3]), gt[a][3])
    assert len(tracks[a]) == T
    before = tracker.frames_encoded
    tracks = tracker.track_video(ds, video, {a: mid[a], b: first[b]})
    assert tracker.frames_encoded - before == T + 3  # forward pass shared; backward only for the frame-3 prompt
    assert np.array_equal(decode_rle(tracks[a][3]), gt[a][3])
    assert np.array_equal(decode_rle(tracks[b][0]), gt[b][0])


def test_memory_stays_bounded_on_a_long_video(tmp_path: Path) -> None:
    frames = 40
    ds = generate_split(tmp_path / "long", SyntheticConfig(frames=frames, height=48, width=48), 1, seed=1,
                        progress=False)
    video = next(iter(ds.videos.values()))
    masks = {o: ds.object_masks(video, o) for o in video.objects}
    o = next(iter(prompts_from_masks(video, masks, "mask", frame=frames // 2)))
    prompt = prompts_from_masks(video, masks, "mask", frame=frames // 2)[o]
    tracker = SAM2Tracker(TINY)
    tracks = tracker.track_video(ds, video, {o: prompt})
    keep = max(tracker.sam.num_maskmem, tracker.sam.max_obj_ptrs_in_encoder) + 1
    assert len(tracks[o]) == frames and tracker.frames_encoded == frames
    assert 0 < tracker.max_memories <= keep < frames // 2  # older memories than SAM2 attends to were dropped


def test_bad_prompts_give_clear_errors(synth: Path, tmp_path: Path) -> None:
    ds = InterRVOSDataset.load(synth)
    name = next(iter(ds.videos))
    video = ds.videos[name]
    o = next(iter(video.objects))
    cases = [
        ({name: {o: ObjectPrompt(box=(10, 10, W + 5, 20))}}, "outside the 80x64 frame"),
        ({name: {o: ObjectPrompt(points=[(5, H + 1)], labels=[1])}}, "outside"),
        ({name: {99: ObjectPrompt(box=(1, 1, 5, 5))}}, "unknown object 99"),
        ({name: {o: ObjectPrompt(frame="99999", box=(1, 1, 5, 5))}}, "unknown frame '99999'"),
        ({name: {o: ObjectPrompt(mask=encode_mask(np.ones((H + 1, W), bool)))}}, r"mask size \[65, 80\]"),
        ({name: {o: ObjectPrompt(mask=encode_mask(np.zeros((H, W), bool)))}}, "mask prompt is empty"),
        ({"nope": {o: ObjectPrompt(box=(1, 1, 5, 5))}}, "unknown video"),
    ]
    for prompts, message in cases:
        with pytest.raises(DatasetError, match=message) as err:
            check_prompts(ds, prompts)
        assert "prompts.json" in str(err.value)
    schema_cases = [
        ({"box": [5, 5, 1, 9]}, "x0 < x1"),
        ({"points": [[1, 2]], "labels": [1, 0]}, "one label per point"),
        ({"points": [[1, 2]], "labels": [2]}, "1 .object. or 0"),
        ({"box": [1, 1, 5, 5], "mask": {"size": [H, W], "counts": ""}}, "cannot be combined"),
        ({"frame": "00000"}, "needs a 'box'"),
        ({"box": [1, 1, 5, 5], "colour": "red"}, "Extra inputs"),
    ]
    for body, message in schema_cases:
        path = tmp_path / "p.json"
        path.write_text(json.dumps({name: {str(o): body}}))
        with pytest.raises(DatasetError, match=message) as err:
            load_prompts(path)
        assert name in str(err.value) and "p.json" in str(err.value)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_prompts(tmp_path / "bad.json")


def test_weights_are_required_unless_random_is_asked_for(tmp_path: Path, tracker: SAM2Tracker) -> None:
    from safetensors.torch import save_file

    with pytest.raises(MaskTrackError, match="no SAM2 checkpoint"):
        SAM2Tracker(MaskTrackConfig(sam2_config="tiny"))
    ckpt = tmp_path / "tiny_sam2.safetensors"
    save_file({k: v.contiguous() for k, v in tracker.sam.state_dict().items()}, str(ckpt))
    loaded = SAM2Tracker(MaskTrackConfig(sam2_config="tiny", sam2_checkpoint=str(ckpt), seed=123))
    for k, v in tracker.sam.state_dict().items():
        assert np.array_equal(v.numpy(), loaded.sam.state_dict()[k].numpy()), k
    assert loaded.fingerprint != tracker.fingerprint  # the cache key follows the weights' source


def test_resume_skips_finished_videos(synth: Path, tmp_path: Path) -> None:
    ds, prompts = prompt_only_split(synth, tmp_path / "split")
    state = tmp_path / "state"
    tracker = SAM2Tracker(TINY)
    first, _ = track_split(ds, prompts, TINY, state, progress=False, tracker=tracker)
    names = list(ds.videos)
    kept, redo = state_path(state, names[0]), state_path(state, names[1])
    mtime = kept.stat().st_mtime_ns
    redo.write_text(redo.read_text()[:50])  # a torn write, as if killed mid-file without atomic renames
    tracker.frames_encoded = 0
    again, counts = track_split(ds, prompts, TINY, state, progress=False, tracker=tracker)
    assert counts["videos_tracked_resumed"] == 1
    assert tracker.frames_encoded == T  # only the damaged video was encoded again
    assert kept.stat().st_mtime_ns == mtime
    assert again == first  # deterministic: the recomputed video matches
    changed = {n: dict(p) for n, p in prompts.items()}
    o = next(iter(changed[names[0]]))
    changed[names[0]][o] = prompts_from_masks(ds.videos[names[0]], gt_masks(InterRVOSDataset.load(synth), names[0]),
                                              "box", frame=None)[o]
    tracker.frames_encoded = 0
    _, counts = track_split(ds, changed, TINY, state, progress=False, tracker=tracker)
    assert counts["videos_tracked_resumed"] == 1 and tracker.frames_encoded > 0  # a changed prompt is redone


@pytest.mark.slow
def test_pipeline_tracks_prompted_objects_then_annotates(synth: Path, tmp_path: Path) -> None:
    ds, prompts = prompt_only_split(synth, tmp_path / "split", keep_given=1)
    n_videos = len(ds.videos)
    cfg = AnnotateConfig(mask_tracks=TINY)
    with pytest.raises(DatasetError, match="no SAM2 prompt"):
        bare = tmp_path / "bare"
        shutil.copytree(tmp_path / "split", bare)
        (bare / PROMPTS_FILE).unlink()
        run_annotation(bare, tmp_path / "bare_out", cfg, progress=False)
    out = tmp_path / "out"
    report = run_annotation(tmp_path / "split", out, cfg, progress=False)
    given = n_videos  # keep_given=1 per video
    tracked = sum(len(v.objects) for v in ds.videos.values()) - given
    assert report["tracks"] == {"objects_given": given, "objects_tracked": tracked, "videos_tracked": n_videos,
                                "videos_tracked_resumed": 0}
    result = InterRVOSDataset.load(out)
    truth = InterRVOSDataset.load(synth)
    assert report["expressions"] > 0 and result.stats()["expressions"] == report["expressions"]
    for name, video in result.videos.items():
        assert {o.anno_id for o in video.objects.values()} <= set(result.mask_dict)
        kept = min(video.objects)  # given track: accepted as given although it has a prompt too
        assert result.mask_dict[video.objects[kept].anno_id] == truth.mask_dict[video.objects[kept].anno_id]
        for o, p in prompts[name].items():
            t = video.frames.index(p.frame)
            assert np.array_equal(result.object_masks(video, o)[t], truth.object_masks(truth.videos[name], o)[t])
    assert any(e.has_target for _, e in result.iter_expressions())
    files = sorted((out / TRACKS_DIR).glob("*.json"))
    assert len(files) == n_videos
    stamps = [f.stat().st_mtime_ns for f in files]
    again = run_annotation(tmp_path / "split", out, cfg, progress=False)
    assert again["tracks"]["videos_tracked_resumed"] == n_videos
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert json.loads((out / REPORT_FILE).read_text())["tracks"] == again["tracks"]
    assert (out / "mask_dict.json").read_text() == json.dumps(
        {str(a): t for a, t in sorted(InterRVOSDataset.load(out).mask_dict.items())}, separators=(",", ":"))


def test_cli_track_and_vidor_prompts(synth: Path, tmp_path: Path) -> None:
    from reviosa.cli import app

    split = tmp_path / "split"
    ds, prompts = prompt_only_split(synth, split)
    runner = CliRunner()
    res = runner.invoke(app, ["annotate", "track", str(split), "--sam2-config", "tiny", "--no-progress"])
    assert res.exit_code == 0, res.output
    counts = json.loads(res.stdout[res.stdout.index("{"):])
    assert counts["objects_tracked"] == sum(len(p) for p in prompts.values())
    back = InterRVOSDataset.load(split)
    assert all(o.anno_id in back.mask_dict for v in back.videos.values() for o in v.objects.values())
    res = runner.invoke(app, ["annotate", "track", str(split), "--no-progress"])
    assert res.exit_code == 0, res.output  # nothing left to track: no weights needed
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({next(iter(ds.videos)): {"42": {"box": [0, 0, 5, 5]}}}))
    res = runner.invoke(app, ["annotate", "track", str(split), "--prompts", str(bad), "--sam2-config", "tiny"])
    assert res.exit_code == 1 and "unknown object 42" in res.output

    vidor = {"video_id": "1001_4159", "width": W, "height": H, "frame_count": 3,
             "trajectories": [[], [{"tid": 0, "bbox": {"xmin": 2, "ymin": 3, "xmax": 20, "ymax": 30}}],
                              [{"tid": 0, "bbox": {"xmin": 4, "ymin": 3, "xmax": 22, "ymax": 30}},
                               {"tid": 1, "bbox": {"xmin": 40, "ymin": 10, "xmax": 60, "ymax": 50}}]]}
    assert prompts_from_vidor(vidor)[0] == ObjectPrompt(frame="00001", box=(2, 3, 21, 31))
    anno = tmp_path / "1001_4159.json"
    anno.write_text(json.dumps(vidor))
    res = runner.invoke(app, ["annotate", "vidor-prompts", str(anno), "--out", str(tmp_path / "v.json")])
    assert res.exit_code == 0, res.output
    loaded = json.loads((tmp_path / "v.json").read_text())
    assert loaded == {"1001_4159": {"0": {"frame": "00001", "box": [2.0, 3.0, 21.0, 31.0]},
                                    "1": {"frame": "00002", "box": [40.0, 10.0, 61.0, 51.0]}}}
