"""Annotation pipeline: offline end to end (roles match the scene graph), validation, HTTP faults, cache, review."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures.llm_stub import stub_server
from pydantic import ValidationError
from typer.testing import CliRunner

from reviosa.annotate.config import AnnotateConfig
from reviosa.annotate.pipeline import REPORT_FILE, record_path, run_annotation
from reviosa.annotate.review import export_review, import_review
from reviosa.annotate.schemas import Interactions, MotionGroups, ObjectDescription, response_schema
from reviosa.data.format import (
    META_FILE,
    DatasetError,
    Direction,
    Expression,
    ExpressionType,
    InterRVOSDataset,
    ObjectInfo,
    Video,
)
from reviosa.data.rle import encode_track
from reviosa.data.scene_graph import Interaction, SceneGraph, SceneObject, load_scene_graphs, save_scene_graphs
from reviosa.data.video import write_jpeg

T, H, W = 6, 48, 64


def make_world(root: Path, n_videos: int = 3, n_objects: int = 4) -> InterRVOSDataset:
    """A split with frames, mask tracks, template expressions and a scene graph: chases both ways, a moving pair."""
    rng = np.random.default_rng(0)
    shapes = [("circle", "red", "small"), ("square", "blue", "large"), ("star", "green", "medium"),
              ("triangle", "yellow", "small")]
    videos, masks, graphs, anno = {}, {}, {}, 100
    for v in range(n_videos):
        name = f"vid{v:03d}"
        objs = [SceneObject(obj_id=i, category=c, color=col, size=s, motion="left" if i >= 2 else None)
                for i, (c, col, s) in enumerate(shapes[:n_objects])]
        actor = v % 2  # alternate roles so a swapped actor/target would be caught
        inter = [Interaction(kind="chases" if v % 2 == 0 else "pushes", actor=actor, target=1 - actor)]
        if v % 3 == 2 and n_objects >= 4:
            objs[2].motion = objs[3].motion = None
            inter.append(Interaction(kind="moves_with", pair=[2, 3]))
        graphs[name] = SceneGraph(objects=objs, interactions=inter)
        frames = [f"{i:05d}" for i in range(T)]
        video = Video(name, frames, height=H, width=W)
        img = rng.integers(0, 60, (T, H, W, 3), dtype=np.uint8)
        for o in objs:
            m = np.zeros((T, H, W), bool)
            for t in range(T):
                m[t, 2 + 11 * o.obj_id: 10 + 11 * o.obj_id, 4 + 5 * t: 12 + 5 * t] = True
                img[t][m[t]] = 200
            masks[anno] = encode_track(m)
            video.objects[o.obj_id] = ObjectInfo(o.obj_id, anno, o.category, {"color": o.color})
            anno += 1
        video.expressions = {"0": Expression("0", "an old template expression", [0], [video.objects[0].anno_id])}
        videos[name] = video
        for t, f in enumerate(frames):
            write_jpeg(root / "JPEGImages" / name / f"{f}.jpg", img[t])
    ds = InterRVOSDataset(root, videos, masks)
    ds.save()
    save_scene_graphs(root / "scene_graph.json", graphs)
    return ds


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("world")
    make_world(root)
    return root


def http_cfg(url: str, **kw) -> AnnotateConfig:
    return AnnotateConfig(backend="openai", base_url=url, backoff_base_s=0.01, backoff_max_s=0.05, **kw)


def check_roles(out: Path) -> int:
    """Every interaction expression's actor/target matches a scene-graph interaction; all are covered. Returns count."""
    ds = InterRVOSDataset.load(out)
    graphs = load_scene_graphs(out / "scene_graph.json")
    n = 0
    for name, video in ds.videos.items():
        g = graphs[name]
        want_directed = {(i.actor, i.target) for i in g.interactions if i.directed}
        want_pairs = {tuple(sorted(i.pair)) for i in g.interactions if not i.directed}
        active, passive, pairs = set(), set(), set()
        for e in video.expressions.values():
            if e.type is not ExpressionType.INTERACTION:
                assert not e.has_target
                continue
            n += 1
            if e.direction is Direction.UNIDIRECTIONAL:
                (a,), (t,) = e.obj_ids, e.target_obj_ids
                assert video.objects[a].anno_id == e.anno_ids[0] and video.objects[t].anno_id == e.target_anno_ids[0]
                (active if e.extra["voice"] == "active" else passive).add((a, t))
            else:
                assert not e.target_anno_ids and len(e.anno_ids) == 2
                pairs.add(tuple(e.obj_ids))
        assert active == want_directed, name
        assert passive == {(t, a) for a, t in want_directed}, name  # role-swapped: the target is the subject
        assert pairs == want_pairs, name
    return n


# ---------------------------------------------------------------------- offline end to end
def test_offline_run_gives_a_loadable_split_with_scene_graph_roles(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = run_annotation(world, out, AnnotateConfig(), progress=False)
    ds = InterRVOSDataset.load(out)  # validates references, masks and frames
    src = InterRVOSDataset.load(world)
    assert ds.mask_dict == src.mask_dict and list(ds.videos) == list(src.videos)
    assert all(e.text != "an old template expression" for _, e in ds.iter_expressions())
    assert check_roles(out) == report["expressions_per_type"]["interaction"] > 0
    stats = ds.stats()
    assert report["expressions"] == stats["expressions"]
    assert report["expressions_per_type"]["single"] == stats["expressions_single"]
    assert report["failures"] == 0 and report["calls"]["fresh_calls"] == 0  # no model was asked
    assert report["calls"]["offline_answers"] == 3 * (4 + 1 + 4 + 1) + 4  # per video: stage 1, 3, 2 (+groups); 4
    for name, video in ds.videos.items():
        singles = {e.obj_ids[0] for e in video.expressions.values() if e.type is ExpressionType.SINGLE}
        assert singles == set(video.objects)
        subtypes = {e.extra["subtype"] for e in video.expressions.values() if e.type is ExpressionType.SINGLE}
        assert subtypes == {"appearance", "motion", "combined"}
        rec = json.loads(record_path(out, name).read_text())
        assert set(rec["objects"]) == {str(o) for o in video.objects}
    # objects 2 and 3 both move left in vid000: one multi-object expression referring to both
    multi = [e for e in ds.videos["vid000"].expressions.values() if e.type is ExpressionType.MULTI]
    assert [e.obj_ids for e in multi] == [[2, 3]]

    from reviosa.baselines.predictors import run_baseline
    from reviosa.evaluate.predictions import role_dir

    assert run_baseline("oracle", out, tmp_path / "pred", workers=1) > 0
    directed = next(e for e in ds.videos["vid001"].expressions.values() if e.has_target)
    assert any(role_dir(tmp_path / "pred", "vid001", directed.exp_id, "target").iterdir())


def test_cli_run_resumes_and_reports(world: Path, tmp_path: Path) -> None:
    from reviosa.cli import app

    out = tmp_path / "out"
    first = CliRunner().invoke(app, ["annotate", "run", str(world), "--out", str(out), "--no-progress"])
    assert first.exit_code == 0, first.output
    meta = (out / META_FILE).read_bytes()
    again = CliRunner().invoke(app, ["annotate", "run", str(world), "--out", str(out), "--no-progress"])
    assert again.exit_code == 0, again.output
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["videos_resumed"] == 3 and report["calls"]["offline_answers"] == 0
    assert (out / META_FILE).read_bytes() == meta
    bad = CliRunner().invoke(app, ["annotate", "run", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o2")])
    assert bad.exit_code == 1 and "does not exist" in bad.output


def test_offline_backend_needs_a_scene_graph(world: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(world, src)
    (src / "scene_graph.json").unlink()
    with pytest.raises(DatasetError, match="scene graph"):
        run_annotation(src, tmp_path / "out", AnnotateConfig(), progress=False)


def test_objects_without_tracks_are_rejected(world: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(world, src)
    ds = InterRVOSDataset.load(src)
    video = ds.videos["vid001"]
    ds.mask_dict[video.objects[2].anno_id] = [None] * T
    ds.save()
    with pytest.raises(DatasetError, match="empty in every frame") as err:
        run_annotation(src, tmp_path / "out", AnnotateConfig(), progress=False)
    assert err.value.video == "vid001"


# ---------------------------------------------------------------------- schemas
def test_answers_naming_unknown_objects_are_rejected() -> None:
    ok = {"interactions_exist": True, "interactions": [
        {"direction": "unidirectional", "actor": 0, "target": 2, "caption": "Object [0] is chasing object [2]",
         "swapped_caption": "Object [2] is being chased by object [0]"}]}
    assert Interactions.model_validate(ok, context={"objects": {0, 1, 2}}).interactions[0].objects == (0, 2)
    with pytest.raises(ValidationError, match=r"object \[2\] does not exist"):
        Interactions.model_validate(ok, context={"objects": {0, 1}})
    bad_groups = {"groups": [{"objects": [1, 5], "motion": "left", "expression": "the two shapes"}]}
    with pytest.raises(ValidationError, match=r"object \[5\] does not exist"):
        MotionGroups.model_validate(bad_groups, context={"objects": {0, 1}})
    no_swap = json.loads(json.dumps(ok))
    no_swap["interactions"][0]["swapped_caption"] = " "
    with pytest.raises(ValidationError, match="role-swapped"):
        Interactions.model_validate(no_swap, context={"objects": {0, 1, 2}})
    with pytest.raises(ValidationError, match="interactions_exist"):
        Interactions.model_validate({"interactions_exist": True, "interactions": []})
    self_loop = json.loads(json.dumps(ok))
    self_loop["interactions"][0]["target"] = 0
    with pytest.raises(ValidationError, match="both object"):
        Interactions.model_validate(self_loop, context={"objects": {0, 1, 2}})
    schema = response_schema(ObjectDescription)
    assert schema["additionalProperties"] is False and schema["required"] == ["category", "appearance", "motion"]


# ---------------------------------------------------------------------- HTTP backend against the stub server
def test_http_backoff_and_invalid_answers_are_retried(world: Path, tmp_path: Path) -> None:
    with stub_server(tmp_path / "stub.log", first_429=3, every_500=6, invalid_rate=0.4) as stub:
        report = run_annotation(world, tmp_path / "out", http_cfg(stub.url, concurrency=4), progress=False)
        stats = stub.stats()
    assert report["failures"] == 0
    assert report["calls"]["http_retries"] >= 3
    # every invalid answer was followed by exactly one request that fed the error back
    assert report["calls"]["invalid_answers"] == stats["retries_seen"] > 0
    assert report["calls"]["fresh_calls"] == stats["answered"]
    assert report["calls"]["tokens"] > 0
    ds = InterRVOSDataset.load(tmp_path / "out")
    assert report["expressions_per_type"].get("interaction", 0) > 0
    for video in ds.videos.values():
        for e in video.expressions.values():
            assert set(e.obj_ids + e.target_obj_ids) <= set(video.objects)


def test_answers_that_never_validate_are_recorded_not_dropped(world: Path, tmp_path: Path) -> None:
    with stub_server(tmp_path / "stub.log", always_invalid=("Interactions",)) as stub:
        report = run_annotation(world, tmp_path / "out", http_cfg(stub.url, validation_attempts=2), progress=False)
    assert report["failures"] == 3 and report["failures_per_stage"] == {"stage3/invalid": 3}
    for name in ("vid000", "vid001", "vid002"):
        (failure,) = json.loads(record_path(tmp_path / "out", name).read_text())["failures"]
        assert failure["raw"] == '{"oops": ' and failure["attempts"] == 2 and "JSON" in failure["error"]
    ds = InterRVOSDataset.load(tmp_path / "out")
    kinds = {e.type for _, e in ds.iter_expressions()}
    assert ExpressionType.INTERACTION not in kinds and ExpressionType.SINGLE in kinds


def test_concurrency_is_bounded_and_a_rerun_costs_nothing(world: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with stub_server(tmp_path / "stub.log", delay_s=0.15) as stub:
        first = run_annotation(world, tmp_path / "a", http_cfg(stub.url, concurrency=3), cache_dir=cache,
                               progress=False)
        assert stub.stats()["max_in_flight"] == 3
        answered = stub.stats()["answered"]
        second = run_annotation(world, tmp_path / "b", http_cfg(stub.url, concurrency=3), cache_dir=cache,
                                progress=False)
        assert stub.stats()["answered"] == answered  # the server saw nothing new
    assert second["calls"]["fresh_calls"] == 0 and second["calls"]["cached_calls"] == first["calls"]["fresh_calls"]
    assert (tmp_path / "a" / META_FILE).read_bytes() == (tmp_path / "b" / META_FILE).read_bytes()


def test_unreachable_server_is_a_recorded_failure_and_the_video_is_redone(world: Path, tmp_path: Path) -> None:
    from reviosa.services.process import free_ports

    dead = f"http://127.0.0.1:{free_ports(1)[0]}/v1"
    report = run_annotation(world, tmp_path / "out", http_cfg(dead, http_retries=1), progress=False)
    assert report["failures"] > 0 and set(report["failures_per_stage"]) <= {
        "stage1/transport", "stage3/transport"}
    with stub_server(tmp_path / "stub.log") as stub:
        again = run_annotation(world, tmp_path / "out", http_cfg(stub.url), progress=False)
    assert again["videos_resumed"] == 0 and again["failures"] == 0 and again["expressions"] > report["expressions"]


# ---------------------------------------------------------------------- human review round trip
def test_review_round_trip_keeps_everything_and_applies_corrections(world: Path, tmp_path: Path) -> None:
    out, review = tmp_path / "out", tmp_path / "review"
    run_annotation(world, out, AnnotateConfig(), progress=False)
    before = (out / META_FILE).read_bytes()
    n = export_review(out, review)
    assert n == InterRVOSDataset.load(out).stats()["expressions"]
    assert len(list((review / "vid000").glob("overlay_*.jpg"))) == 3
    assert import_review(out, review) == 0
    assert (out / META_FILE).read_bytes() == before  # untouched round trip: byte for byte

    path = review / "vid001" / "expressions.csv"
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    directed = next(r for r in rows if r["direction"] == "unidirectional")
    directed["actor"], directed["target"] = directed["target"], directed["actor"]
    directed["text"] = "the shape, fixed by a reviewer"
    rows[0]["status"] = "rejected"
    with open(path, "w", encoding="utf-8", newline="") as fh:  # reviewers may sort rows any way
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["text"]))
    assert import_review(out, review) == 2
    ds, old = InterRVOSDataset.load(out), json.loads(before)["videos"]["vid001"]["expressions"]
    video = ds.videos["vid001"]
    assert list(video.expressions) == list(old)  # same ids, same order
    fixed = video.expressions[directed["exp_id"]]
    assert fixed.text == "the shape, fixed by a reviewer"
    assert fixed.obj_ids == old[directed["exp_id"]]["target_obj_id"]
    assert fixed.target_anno_ids == old[directed["exp_id"]]["anno_id"]
    assert video.expressions[rows[0]["exp_id"]].extra["review"] == "rejected"
    changed = {k for k, e in video.expressions.items() if e.to_json() != old[k]}
    assert changed == {directed["exp_id"], rows[0]["exp_id"]}

    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[1:])
    with pytest.raises(DatasetError, match="missing from the review"):
        import_review(out, review)
    rows[1]["actor"] = "9"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(DatasetError, match=r"unknown object ids \[9\]"):
        import_review(out, review)


# ---------------------------------------------------------------------- the synthetic world, end to end
@pytest.mark.slow
def test_synthetic_split_annotated_by_the_cli_loads_with_scene_graph_roles(tmp_path: Path) -> None:
    from reviosa.cli import app

    split, out = tmp_path / "synth", tmp_path / "annotated"
    made = CliRunner().invoke(app, ["data", "synth", "--out", str(split), "--videos", "6", "--seed", "3",
                                    "--frames", "8", "--size", "64", "--quiet"])
    assert made.exit_code == 0, made.output
    ran = CliRunner().invoke(app, ["annotate", "run", str(split), "--out", str(out), "--no-progress"])
    assert ran.exit_code == 0, ran.output
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["failures"] == 0 and report["videos"] == 6
    assert check_roles(out) == report["expressions_per_type"].get("interaction", 0) > 0
    # the synthetic world's own role-annotated expressions name the same (actor, target) pairs
    theirs, ours = InterRVOSDataset.load(split), InterRVOSDataset.load(out)
    for name in theirs.videos:
        pairs = [{(e.obj_ids[0], e.target_obj_ids[0]) for e in ds.videos[name].expressions.values() if e.has_target}
                 for ds in (theirs, ours)]
        assert pairs[0] <= pairs[1], name


def test_every_shipped_config_loads_and_bad_configs_name_the_field(tmp_path: Path) -> None:
    from reviosa.config import ConfigError

    assert "default" in AnnotateConfig.shipped()
    for name in AnnotateConfig.shipped():
        cfg = AnnotateConfig.from_yaml(name)
        (tmp_path / f"{name}.yaml").write_text(cfg.to_yaml())
        assert AnnotateConfig.from_yaml(tmp_path / f"{name}.yaml") == cfg
    assert AnnotateConfig.from_yaml("default") == AnnotateConfig()
    over = AnnotateConfig.from_yaml("default", ["concurrency=32", "mask_tracks.device=cuda:1"])
    assert (over.concurrency, over.mask_tracks.device) == (32, "cuda:1")
    bad = tmp_path / "bad.yaml"
    bad.write_text("backend: gpt\nconcurrency: 0\n")
    with pytest.raises(ConfigError, match=f"{bad}.*backend") as err:
        AnnotateConfig.from_yaml(bad)
    assert "concurrency" in str(err.value)
    bad.write_text("tracking:\n  device: cuda\n")  # the stage-0 section is called mask_tracks
    with pytest.raises(ConfigError, match="tracking"):
        AnnotateConfig.from_yaml(bad)


def test_cli_flags_are_shorthand_for_set(tmp_path: Path) -> None:
    from reviosa.cli import app
    from reviosa.cli.annotate import _annotate_config, _mask_track_flags

    flags = {"backend": "openai", "stage_backend": {1: "offline", 3: "offline"}, "concurrency": None,
             **_mask_track_flags(tmp_path / "p.json", None, "large", "cuda")}
    cfg = _annotate_config("default", ["concurrency=3"], flags)
    assert cfg == AnnotateConfig.from_yaml("default", [
        "backend=openai", "stage_backend={1: offline, 3: offline}", f"mask_tracks.prompts={tmp_path / 'p.json'}",
        "mask_tracks.sam2_config=large", "mask_tracks.device=cuda", "concurrency=3"])
    # tiny SAM2 without a checkpoint: random weights, allowed explicitly (with a warning on stderr)
    tiny = _annotate_config("default", ["mask_tracks.sam2_config=tiny"], {})
    assert tiny.mask_tracks.allow_random_weights
    res = CliRunner().invoke(app, ["annotate", "run", str(tmp_path), "--out", str(tmp_path / "o"),
                                   "--set", "concurrency=0"])
    assert res.exit_code == 2 and "concurrency" in res.output
