"""The released InterRVOS layout: loading without loss, conversion both ways, official results.json in and out.

The fixture is hand-built here in the official layout (train-like and val-like with the new_* pair); the expected
scores are computed independently, per frame with the reference J/F functions and averaged the way
``tools/eval/eval_interrvos.py`` / ``eval_interrvos_target.py`` / ``eval_mevis.py`` do.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from _splits import make_split
from pycocotools import mask as cocomask
from typer.testing import CliRunner

from reviosa.cli import app
from reviosa.data.convert import convert_split
from reviosa.data.format import DatasetError, Direction, ExpressionType, InterRVOSDataset
from reviosa.data.rle import decode_rle, encode_mask, encode_track
from reviosa.data.video import write_jpeg
from reviosa.evaluate.config import EvalConfig
from reviosa.evaluate.official import OfficialPredictions
from reviosa.evaluate.protocol import evaluate_split
from reviosa.evaluate.reference import reference_f, reference_j

H, W = 20, 24
V1, V2 = "v1_clip000", "v2_clip000"
FRAMES = {V1: [f"{i:05d}" for i in range(4)], V2: [f"{i:05d}" for i in range(3)]}
FILES = ("meta_expressions.json", "mask_dict.json", "new_meta_expressions.json", "new_mask_dict.json")


def _track(n: int, boxes: list[tuple[int, int, int, int] | None]) -> np.ndarray:
    m = np.zeros((n, H, W), bool)
    for t, b in enumerate(boxes):
        if b is not None:
            m[t, b[0]:b[1], b[2]:b[3]] = True
    return m


TRACKS = {
    100: _track(4, [(2, 10, 1, 7), (2, 10, 2, 8), (3, 11, 3, 9), (3, 11, 4, 10)]),       # person
    101: _track(4, [(12, 18, 3, 9), (12, 18, 5, 11), (11, 17, 7, 13), None]),             # dog, gone at the end
    102: _track(4, [(1, 4, 18, 21), None, (5, 8, 17, 20), (8, 11, 16, 19)]),              # ball
    200: _track(3, [(4, 12, 2, 10), (4, 12, 5, 13), (5, 13, 8, 16)]),                     # cat
    201: _track(3, [(6, 10, 12, 16), (6, 10, 15, 19), (7, 11, 18, 22)]),                  # mouse
}
# new_mask_dict.json re-annotates the dog: the Actor/Target scores must read this one, RVOS the other.
NEW_TRACKS = {**TRACKS, 101: _track(4, [(12, 19, 3, 10), (12, 19, 5, 12), (11, 18, 7, 14), (16, 19, 20, 24)])}


def _roles(s_obj, s_anno, o_obj, o_anno) -> dict:
    return {"obj_id": {"subject": s_obj, "object": o_obj}, "anno_id": {"subject": s_anno, "object": o_anno}}


def _expressions(val: bool) -> dict[str, dict[str, dict]]:
    """Official expressions; ``val`` adds the top-level ids the train files may leave out."""
    v1 = {
        "0": {"exp": "person walking the dog", "subject/object": _roles([0], [100], [1], [101]),
              "caption_type": "unidirectional"},
        "1": {"exp": "dog being walked by the person", "obj_id": [1], "anno_id": [101],
              "subject/object": _roles([1], [101], [0], [100]), "caption_type": "unidirectional"},
        "2": {"exp": "person and ball bouncing together", "subject/object": _roles([0], [100], [2], [102]),
              "caption_type": "bidirectional"},
        "3": {"exp": "the red ball", "subject/object": _roles([2], [102], None, None), "caption_type": "undefined"},
        "4": {"exp": "the person and the dog", "obj_id": [0, 1], "anno_id": [100, 101],
              "subject/object": _roles([0, 1], [100, 101], [], [])},
    }
    v2 = {
        "0": {"exp": "cat chasing mouse", "obj_id": [0], "anno_id": [200],
              "subject/object": _roles([0], [200], [1], [201]), "caption_type": "unidirectional",
              "annotator": "kept verbatim"},
        "1": {"exp": "the mouse", "subject/object": _roles([1], [201], [], []), "caption_type": "single"},
    }
    if val:
        tops = {(V1, "0"): ([0], [100]), (V1, "2"): ([0, 2], [100, 102]), (V1, "3"): ([2], [102]),
                (V2, "1"): ([1], [201])}
        for (vid, k), (o, a) in tops.items():
            (v1 if vid == V1 else v2)[k].update(obj_id=o, anno_id=a)
    return {V1: v1, V2: v2}


def _write(root: Path, name: str, data) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(json.dumps(data))


def make_official(root: Path, val: bool) -> Path:
    """A split as released: JPEGImages, meta_expressions.json, mask_dict.json (+ the new_* pair in val)."""
    exps = _expressions(val)
    meta = {"videos": {vid: {"expressions": exps[vid], "frames": FRAMES[vid]} for vid in (V1, V2)}}
    _write(root, "meta_expressions.json", meta)
    _write(root, "mask_dict.json", {str(a): encode_track(m) for a, m in TRACKS.items()})
    if val:
        new = {"videos": {vid: {"expressions": {k: e for k, e in exps[vid].items()
                                                if e.get("caption_type") == "unidirectional"},
                                "frames": FRAMES[vid]} for vid in (V1, V2)}}
        _write(root, "new_meta_expressions.json", new)
        _write(root, "new_mask_dict.json", {str(a): encode_track(m) for a, m in NEW_TRACKS.items()})
    rng = np.random.default_rng(0)
    for vid, frames in FRAMES.items():
        for f in frames:
            write_jpeg(root / "JPEGImages" / vid / f"{f}.jpg", rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    return root


def _union(tracks: dict, ids: list[int], n: int) -> np.ndarray:
    out = np.zeros((n, H, W), bool)
    for a in ids or []:
        out |= tracks[a]
    return out


def make_results(root: Path, out: Path, *, split_ranks: bool = False, drop: tuple[str, ...] = ()) -> Path:
    """An official results.json for the val split: shifted GT as predictions, zeros where there is no object."""
    meta = json.loads((root / "meta_expressions.json").read_text())["videos"]
    results: dict[str, dict] = {}
    index = 0
    for vid, v in meta.items():
        n = len(v["frames"])
        for k in sorted(v["expressions"]):
            e = v["expressions"][k]
            shift = 1 + index % 3
            act = np.roll(_union(TRACKS, e["anno_id"], n), shift, axis=2)
            tar = np.roll(_union(TRACKS, e["subject/object"]["anno_id"]["object"], n), -shift, axis=1)
            results.setdefault(vid, {})[k] = {
                "index": index, "video_id": vid, "exp_id": k, "text_prediction": "Sure, [SEG].",
                "frames": v["frames"], "exp": f"<image>\nPlease segment {e['exp']}.",
                "prediction_masks_act": [encode_mask(m) for m in act],
                "prediction_masks_tar": [encode_mask(m) for m in tar]}
            index += 1
    for vid in drop:
        results.pop(vid)
    out.mkdir(parents=True, exist_ok=True)
    if split_ranks:  # as two inference processes leave them: expressions dealt round-robin
        ranks: list[dict] = [{}, {}]
        for i, (vid, k) in enumerate((vid, k) for vid in results for k in results[vid]):
            ranks[i % 2].setdefault(vid, {})[k] = results[vid][k]
        for r, part in enumerate(ranks):
            (out / f"results_pid_{r}.json").write_text(json.dumps(part))
        return out
    (out / "results.json").write_text(json.dumps(results))
    return out / "results.json"


def official_scores(root: Path, results: dict, meta_file: str, mask_file: str, role: str) -> tuple[float, float, int]:
    """(J, F, expressions) by the official scripts' rules: missing videos skipped, per-frame J/F, two means."""
    meta = json.loads((root / meta_file).read_text())["videos"]
    masks = json.loads((root / mask_file).read_text())
    key = "prediction_masks_act" if role == "actor" else "prediction_masks_tar"
    js, fs = [], []
    for vid, v in meta.items():
        if vid not in results:
            continue
        for k, e in v["expressions"].items():
            pred = results[vid][k]
            ids = e["anno_id"] if role == "actor" else e["subject/object"]["anno_id"]["object"]
            h, w = pred[key][0]["size"]
            jt, ft = [], []
            for t in range(len(v["frames"])):
                gt = np.zeros((h, w), np.uint8)
                for a in ids:
                    if masks[str(a)][t]:
                        gt += cocomask.decode(masks[str(a)][t])
                p = cocomask.decode(pred[key][t])
                jt.append(reference_j(gt, p))
                ft.append(reference_f(gt, p))
            js.append(np.mean(jt))
            fs.append(np.mean(ft))
    return float(np.mean(js)), float(np.mean(fs)), len(js)


@pytest.fixture()
def train(tmp_path: Path) -> Path:
    return make_official(tmp_path / "train", val=False)


@pytest.fixture()
def val(tmp_path: Path) -> Path:
    return make_official(tmp_path / "val", val=True)


def _edit(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


# ---------------------------------------------------------------------- loading
def test_train_layout_gives_interactions_with_targets(train: Path) -> None:
    ds = InterRVOSDataset.load(train)
    assert ds.layout == "official" and ds.role_split is None
    v1, v2 = ds.videos[V1].expressions, ds.videos[V2].expressions
    assert (v1["0"].type, v1["0"].direction, v1["0"].anno_ids, v1["0"].target_anno_ids) == (
        ExpressionType.INTERACTION, Direction.UNIDIRECTIONAL, [100], [101])
    assert (v1["0"].obj_ids, v1["0"].target_obj_ids) == ([0], [1])
    assert (v1["1"].anno_ids, v1["1"].target_anno_ids) == ([101], [100])
    # bidirectional: no roles; without top-level ids its GT is subject + object
    assert (v1["2"].direction, v1["2"].anno_ids, v1["2"].has_target) == (Direction.BIDIRECTIONAL, [100, 102], False)
    assert (v1["3"].type, v1["3"].anno_ids, v1["3"].has_target) == (ExpressionType.SINGLE, [102], False)  # null
    assert (v1["4"].type, v1["4"].anno_ids) == (ExpressionType.MULTI, [100, 101])
    assert v2["0"].has_target and v2["0"].extra == {"annotator": "kept verbatim"}
    assert v2["1"].type is ExpressionType.SINGLE and not v2["1"].has_target
    assert ds.frame_size(ds.videos[V1]) == (H, W)  # from the RLEs: the meta has no size
    stats = ds.stats()
    assert (stats["expressions"], stats["expressions_interaction"], stats["expressions_with_target"]) == (7, 4, 3)
    np.testing.assert_array_equal(ds.union_masks(ds.videos[V1], v1["0"].target_anno_ids), TRACKS[101])


def test_training_samples_carry_the_target(train: Path) -> None:
    from reviosa.model.config import ModelConfig
    from reviosa.model.tokenizer import build_tiny_tokenizer
    from reviosa.train.data import ExpressionClips

    ds = InterRVOSDataset.load(train)
    clips = ExpressionClips(ds, ModelConfig.from_yaml("tiny"), build_tiny_tokenizer(), expressions_per_sample=1)
    anchors = [(s.video, s.exp_ids[0], s.has_target[0], s.target_masks[0].sum().item() > 0)
               for s in (clips[i] for i in range(len(clips)))]
    with_target = {(v, e) for v, e, has, nonempty in anchors if has and nonempty}
    assert with_target == {(V1, "0"), (V1, "1"), (V2, "0")}


def test_val_layout_loads_the_new_pair(val: Path) -> None:
    ds = InterRVOSDataset.load(val)
    assert ds.role_split is not None and ds.role_split.meta_file == "new_meta_expressions.json"
    role = ds.role_split.videos[V1].expressions
    assert sorted(role) == ["0", "1"] and role["1"].object_anno_ids == [100]
    assert ds.videos[V1].expressions["2"].anno_ids == [100, 102]  # top level, with a split subject/object
    assert ds.videos[V1].expressions["2"].object_anno_ids == [102]
    np.testing.assert_array_equal(ds.role_split.union_masks(ds.role_split.videos[V1], [101]), NEW_TRACKS[101])
    stats = ds.stats()
    assert (stats["role_expressions"], stats["role_expressions_with_target"]) == (3, 3)
    res = CliRunner().invoke(app, ["data", "validate", str(val)])
    assert res.exit_code == 0, res.output
    assert "official layout" in res.output and "3 with a target" in res.output
    assert "new_meta_expressions.json: 3 expressions" in res.output


BAD = {
    "object without an interaction caption": (
        "meta_expressions.json", lambda d: d["videos"][V1]["expressions"]["3"]["subject/object"].update(
            _roles([2], [102], [1], [101])),
        ["meta_expressions.json", V1, "expressions.3.subject/object.anno_id.object", "'undefined'",
         "cannot tell whether they are a target"]),
    "unidirectional without object": (
        "meta_expressions.json", lambda d: d["videos"][V1]["expressions"]["0"]["subject/object"].update(
            _roles([0], [100], None, None)),
        [V1, "expressions.0.subject/object.anno_id.object", "needs object ids"]),
    "ambiguous actor": (
        "meta_expressions.json", lambda d: d["videos"][V1]["expressions"]["1"].update(anno_id=[100]),
        [V1, "expressions.1.anno_id", "ambiguous"]),
    "roles block not an object": (
        "meta_expressions.json", lambda d: d["videos"][V2]["expressions"]["1"].update({"subject/object": [1]}),
        [V2, "expressions.1.subject/object", "must be an object"]),
    "caption type not a string": (
        "meta_expressions.json", lambda d: d["videos"][V2]["expressions"]["1"].update(caption_type=3),
        [V2, "expressions.1.caption_type"]),
    "one expression without roles": (
        "meta_expressions.json", lambda d: d["videos"][V1]["expressions"]["4"].pop("subject/object"),
        [V1, "expressions.4", "either in the official layout or in the reviosa one"]),
    "layouts mixed in one expression": (
        "meta_expressions.json", lambda d: d["videos"][V2]["expressions"]["0"].update(type="single"),
        [V2, "expressions.0.type", "one layout per expression"]),
    "new expression not predicted": (
        "new_meta_expressions.json", lambda d: d["videos"][V2]["expressions"].update(
            {"7": d["videos"][V2]["expressions"]["0"]}),
        ["new_meta_expressions.json", V2, "expressions.7", "not in meta_expressions.json"]),
    "new pair broken": (
        "new_meta_expressions.json", lambda d: d["videos"][V1]["expressions"]["0"]["subject/object"].update(
            _roles([0], [100], [9], [999])),
        ["new_meta_expressions.json", V1, "unknown anno_id 999", "new_mask_dict.json"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_unclassifiable_expression_is_an_error_naming_it(val: Path, case: str) -> None:
    file, breaker, expected = BAD[case]
    _edit(val / file, breaker)
    with pytest.raises(DatasetError) as info:
        InterRVOSDataset.load(val)
    for needle in expected:
        assert needle in str(info.value), f"{needle!r} not in {info.value}"
    res = CliRunner().invoke(app, ["data", "validate", str(val)])
    assert res.exit_code == 1 and expected[0] in res.output


def test_caption_type_without_roles_in_a_reviosa_split_is_named(tmp_path: Path) -> None:
    make_split(tmp_path / "split")
    _edit(tmp_path / "split" / "meta_expressions.json",
          lambda d: d["videos"]["vid_a"]["expressions"]["0"].update(caption_type="unidirectional"))
    with pytest.raises(DatasetError, match=r"vid_a.*expressions\.0\.caption_type.*cannot be classified"):
        InterRVOSDataset.load(tmp_path / "split")


def test_missing_new_mask_dict_is_named(val: Path) -> None:
    (val / "new_mask_dict.json").unlink()
    with pytest.raises(DatasetError, match="new_mask_dict.json: file does not exist"):
        InterRVOSDataset.load(val)


# ---------------------------------------------------------------------- conversion
def _masks_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        for ra, rb in zip(a[key], b[key], strict=True):
            assert (ra is None) == (rb is None)
            if ra is not None:
                np.testing.assert_array_equal(decode_rle(ra), decode_rle(rb))


@pytest.mark.parametrize("kind", ["train", "val"])
def test_official_to_reviosa_to_official_is_exact(tmp_path: Path, kind: str) -> None:
    src = make_official(tmp_path / kind, val=kind == "val")
    runner = CliRunner()
    res = runner.invoke(app, ["data", "convert", str(src), str(tmp_path / "rv"), "--to", "reviosa"])
    assert res.exit_code == 0, res.output
    mid = InterRVOSDataset.load(tmp_path / "rv")
    assert mid.layout == "reviosa"
    meta = json.loads((tmp_path / "rv" / "meta_expressions.json").read_text())["videos"]
    assert all("subject/object" not in e for v in meta.values() for e in v["expressions"].values())
    assert meta[V1]["expressions"]["0"]["target_anno_id"] == [101]
    assert meta[V1]["expressions"]["3"]["official"]["subject/object"]["anno_id"]["object"] is None
    assert [(v.name, e.exp_id) for v, e in mid.iter_expressions() if e.has_target] == [(V1, "0"), (V1, "1"),
                                                                                       (V2, "0")]
    res = runner.invoke(app, ["data", "convert", str(tmp_path / "rv"), str(tmp_path / "back"), "--to", "official",
                              "--frames", "copy"])
    assert res.exit_code == 0, res.output
    for name in FILES[:4 if kind == "val" else 2]:
        original = json.loads((src / name).read_text())
        assert json.loads((tmp_path / "back" / name).read_text()) == original, name
        if "mask" in name:
            _masks_equal(original, json.loads((tmp_path / "rv" / name).read_text()))
    assert not (tmp_path / "rv" / "new_meta_expressions.json").exists() or kind == "val"
    for vid, frames in FRAMES.items():
        for f in frames:
            assert ((tmp_path / "back" / "JPEGImages" / vid / f"{f}.jpg").read_bytes()
                    == (src / "JPEGImages" / vid / f"{f}.jpg").read_bytes())


def test_reviosa_to_official_to_reviosa_is_exact(tmp_path: Path) -> None:
    make_split(tmp_path / "split")
    # refinements the official layout has no field for: a one-object "multi", a direction on a single
    _edit(tmp_path / "split" / "meta_expressions.json", lambda d: (
        d["videos"]["vid_a"]["expressions"]["0"].update(type="multi"),
        d["videos"]["vid_b"]["expressions"]["0"].update(direction="bidirectional")))
    src = InterRVOSDataset.load(tmp_path / "split")
    src.save()  # canonical bytes
    official = convert_split(tmp_path / "split", tmp_path / "off", "official", frames="copy")
    assert official.layout == "official"
    raw = json.loads((tmp_path / "off" / "meta_expressions.json").read_text())["videos"]
    assert raw["vid_a"]["expressions"]["2"]["caption_type"] == "unidirectional"
    assert raw["vid_a"]["expressions"]["2"]["subject/object"]["anno_id"] == {"subject": [10], "object": [11]}
    assert raw["vid_a"]["expressions"]["0"]["reviosa"] == {"type": "multi"}
    assert [e.exp_id for _, e in official.iter_expressions() if e.has_target] == ["2", "3"]
    convert_split(tmp_path / "off", tmp_path / "back", "reviosa", frames="copy")
    for name in FILES[:2]:
        assert (tmp_path / "back" / name).read_bytes() == (tmp_path / "split" / name).read_bytes(), name
    assert (tmp_path / "back" / "scene_graph.json").exists() == (tmp_path / "split" / "scene_graph.json").exists()


def test_convert_refuses_unsafe_names_and_keeps_the_destination(tmp_path: Path, train: Path) -> None:
    _edit(train / "meta_expressions.json", lambda d: d["videos"][V1]["expressions"].update(
        {"../x": d["videos"][V1]["expressions"]["0"]}))
    with pytest.raises(DatasetError, match=r"v1_clip000.*expression id '\.\./x'"):
        convert_split(train, tmp_path / "out", "reviosa")
    _edit(train / "meta_expressions.json", lambda d: (d["videos"][V1]["expressions"].pop("../x"),
                                                      d["videos"].update({"..": d["videos"].pop(V2)})))
    with pytest.raises(DatasetError, match="video name '..'"):
        convert_split(train, tmp_path / "out", "reviosa", frames="skip")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    from reviosa.evaluate.predictions import role_dir

    for vid, exp_id in (("..", "0"), ("v", "a/b"), ("v", "")):
        with pytest.raises(ValueError, match="must be a non-empty string|not a plain file name"):
            role_dir(tmp_path / "pred", vid, exp_id, "actor")


def test_convert_will_not_overwrite(tmp_path: Path, train: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("x")
    res = CliRunner().invoke(app, ["data", "convert", str(train), str(tmp_path / "out"), "--to", "reviosa"])
    assert res.exit_code == 2 and "not empty" in res.output
    assert (tmp_path / "out" / "keep").exists()


# ---------------------------------------------------------------------- official predictions
@pytest.mark.parametrize("ranks", [False, True])
def test_evaluate_results_json_follows_the_official_rules(tmp_path: Path, val: Path, ranks: bool) -> None:
    pred = make_results(val, tmp_path / "preds", split_ranks=ranks)
    res = CliRunner().invoke(app, ["evaluate", "--data", str(val), "--predictions", str(pred), "--workers", "2",
                                   "--out", str(tmp_path / "eval")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "eval" / "results.json").read_text())
    results = OfficialPredictions(pred).results
    expected = {
        "actor": official_scores(val, results, "new_meta_expressions.json", "new_mask_dict.json", "actor"),
        "target": official_scores(val, results, "new_meta_expressions.json", "new_mask_dict.json", "target"),
        "rvos": official_scores(val, results, "meta_expressions.json", "mask_dict.json", "actor"),
    }
    names = {"actor": "InterRVOS-Actor", "target": "InterRVOS-Target", "rvos": "RVOS"}
    for key, (j, f, n) in expected.items():
        assert doc["summary"][f"{key}_J"] == pytest.approx(j, abs=1e-12)
        assert doc["summary"][f"{key}_F"] == pytest.approx(f, abs=1e-12)
        assert doc["summary"][f"{key}_JF"] == pytest.approx((j + f) / 2, abs=1e-12)
        official = doc["official_rules"][names[key]]
        assert (official["J"], official["F"], official["J&F"], official["expressions"]) == (
            round(100 * j, 2), round(100 * f, 2), round(100 * ((j + f) / 2), 2), n)
    assert expected["actor"][2] == 3 and expected["rvos"][2] == 7
    assert 0 < expected["target"][0] < 1 and doc["missing"] == [] and doc["official_rules"]["note"] == ""
    assert len(doc["per_expression_roles"]) == 3 and (tmp_path / "eval" / "per_expression_roles.csv").exists()
    # the new_* masks are what Actor/Target read: the dog was re-annotated there
    row = next(r for r in doc["per_expression_roles"] if (r["video"], r["exp_id"]) == (V1, "1"))
    main = next(r for r in doc["per_expression"] if (r["video"], r["exp_id"]) == (V1, "1"))
    assert row["actor_J"] != main["actor_J"]


def test_missing_video_scores_zero_and_the_difference_is_said(tmp_path: Path, val: Path) -> None:
    pred = make_results(val, tmp_path / "preds", drop=(V2,))
    res = CliRunner().invoke(app, ["evaluate", "--data", str(val), "--predictions", str(pred), "--workers", "1",
                                   "--out", str(tmp_path / "eval")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert {m["name"] for m in doc["missing"]} == {f"{V2}/0/actor", f"{V2}/0/target", f"{V2}/1/actor"}
    assert "missing: v2_clip000/0/actor (whole role (folder or results.json entry), scored J = F = 0)" \
        in res.output
    assert "the official scripts skip them" in res.output
    results = json.loads(pred.read_text())
    for key, meta, masks, role, n_all in (
            ("InterRVOS-Actor", "new_meta_expressions.json", "new_mask_dict.json", "actor", 3),
            ("InterRVOS-Target", "new_meta_expressions.json", "new_mask_dict.json", "target", 3),
            ("RVOS", "meta_expressions.json", "mask_dict.json", "actor", 7)):
        j, f, n = official_scores(val, results, meta, masks, role)  # the official scripts skip v2
        assert (doc["official_rules"][key]["J"], doc["official_rules"][key]["F"], n) == (
            round(100 * j, 2), round(100 * f, 2), doc["official_rules"][key]["expressions"])
        assert doc["official_rules"]["skipped"][key] == n_all - n
    # reviosa averages the missing ones in as zeros
    assert doc["summary"]["actor_J"] == pytest.approx(official_scores(
        val, results, "new_meta_expressions.json", "new_mask_dict.json", "actor")[0] * 2 / 3, abs=1e-12)


def test_broken_results_json_is_an_error_naming_it(tmp_path: Path, val: Path) -> None:
    pred = make_results(val, tmp_path / "preds")
    _edit(pred, lambda d: d[V1]["0"]["prediction_masks_act"].pop())
    res = CliRunner().invoke(app, ["evaluate", "--data", str(val), "--predictions", str(pred), "--workers", "1"])
    assert res.exit_code == 1
    assert str(pred) in res.output and "v1_clip000/0/prediction_masks_act" in res.output
    pred = make_results(val, tmp_path / "ranks", split_ranks=True)
    _edit(pred / "results_pid_1.json", lambda d: d.setdefault(V1, {}).update({"0": {"frames": []}}))
    with pytest.raises(ValueError, match="expression '0' is also in"):
        OfficialPredictions(pred)


@pytest.mark.parametrize("layout", ["official", "reviosa"])
def test_baseline_writes_results_json_that_scores_like_its_png(tmp_path: Path, val: Path, layout: str) -> None:
    data = val
    if layout == "reviosa":  # the converted split scores the same way: the new_* pair travels with it
        data = convert_split(val, tmp_path / "rv", "reviosa").root
    runner = CliRunner()
    for fmt in ("png", "official"):
        res = runner.invoke(app, ["baseline", "oracle", "--data", str(data), "--out", str(tmp_path / fmt),
                                  "--workers", "1", "--format", fmt])
        assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "official" / "results.json").read_text())
    entry = doc[V1]["3"]
    assert set(entry) == {"index", "video_id", "exp_id", "text_prediction", "frames", "exp",
                          "prediction_masks_act", "prediction_masks_tar"}
    assert len(entry["prediction_masks_tar"]) == 4 and not any(decode_rle(r).any()
                                                               for r in entry["prediction_masks_tar"])
    cfg = EvalConfig(workers=1, progress=False)
    png, off = evaluate_split(data, tmp_path / "png", cfg), evaluate_split(data, tmp_path / "official", cfg)
    assert png.summary == off.summary and off.summary["rvos_J"] == 1.0
    assert off.summary["actor_J"] < 1.0  # the oracle copies mask_dict; Actor reads the re-annotated new pair


def test_existing_prediction_folder_still_scores(tmp_path: Path) -> None:
    ds = make_split(tmp_path / "split")
    from reviosa.baselines.predictors import run_baseline

    run_baseline("oracle", ds.root, tmp_path / "pred", workers=1)
    result = evaluate_split(ds.root, tmp_path / "pred", EvalConfig(workers=1, progress=False))
    assert result.role_scores is None and result.summary["actor_J"] == 1.0
    assert copy.deepcopy(result.official_rules())["RVOS"]["J&F"] == 100.0


def test_official_block_that_disagrees_with_the_fields_is_named(tmp_path: Path, train: Path) -> None:
    convert_split(train, tmp_path / "rv", "reviosa", frames="skip")
    _edit(tmp_path / "rv" / "meta_expressions.json", lambda d: d["videos"][V1]["expressions"]["2"]["official"]
          ["subject/object"]["anno_id"].update(object=[101]))
    with pytest.raises(DatasetError, match=r"v1_clip000.*expressions\.2\.official.*names actor \[100, 101\]"):
        InterRVOSDataset.load(tmp_path / "rv", check_frames=False)


def test_results_json_grows_one_expression_at_a_time(tmp_path: Path, val: Path) -> None:
    from reviosa.evaluate.official import results_entry, write_results

    ds = InterRVOSDataset.load(val)
    for video, exp in ds.iter_expressions():
        gt = ds.union_masks(video, exp.anno_ids)
        target = ds.union_masks(video, exp.target_anno_ids) if exp.has_target else None
        write_results(tmp_path / "preds", [results_entry(0, video.name, exp.exp_id, exp.text, video.frames, gt,
                                                         target)], merge=True)
    assert sum(len(v) for v in json.loads((tmp_path / "preds" / "results.json").read_text()).values()) == 7
    result = evaluate_split(ds, tmp_path / "preds", EvalConfig(workers=1, progress=False))
    assert result.missing == [] and result.summary["rvos_JF"] == 1.0
