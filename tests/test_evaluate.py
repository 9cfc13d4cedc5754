"""The InterRVOS protocol end to end: membership of the three benchmarks, numbers against a direct
frame-by-frame computation, missing and wrong-size predictions, parallel determinism, outputs and the CLI."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from _splits import make_split
from PIL import Image
from typer.testing import CliRunner

from reviosa.cli import app
from reviosa.config import ConfigError
from reviosa.data.format import InterRVOSDataset
from reviosa.evaluate.config import EvalConfig
from reviosa.evaluate.predictions import PredictionError, read_track, role_dir, write_track
from reviosa.evaluate.protocol import EvaluationResult, evaluate_split
from reviosa.evaluate.reference import reference_f, reference_j
from reviosa.evaluate.report import format_table, write_outputs

SERIAL = EvalConfig(workers=1, progress=False)


def _predict(ds: InterRVOSDataset, pred: Path, seed: int = 0) -> dict[tuple[str, str, str], np.ndarray]:
    """Write imperfect predictions of every role: shifted GT, noisy GT, an empty track; return them."""
    rng = np.random.default_rng(seed)
    written = {}
    for i, (video, exp) in enumerate(ds.iter_expressions()):
        roles = [("actor", exp.anno_ids)] + ([("target", exp.target_anno_ids)] if exp.has_target else [])
        for role, annos in roles:
            gt = ds.union_masks(video, annos)
            kind = (i + len(role)) % 3
            if kind == 0:
                masks = np.roll(gt, int(rng.integers(1, 4)), axis=2)
            elif kind == 1:
                masks = gt ^ (rng.random(gt.shape) < 0.05)
            else:
                masks = np.zeros_like(gt)
            write_track(pred, video.name, exp.exp_id, role, video.frames, masks)
            written[(video.name, exp.exp_id, role)] = masks
    return written


def _direct(ds: InterRVOSDataset, masks: dict[tuple[str, str, str], np.ndarray]) -> dict[str, float]:
    """The protocol computed by hand with the reference metric, frame by frame."""
    per: dict[str, list[tuple[float, float]]] = {"actor": [], "target": [], "rvos": []}
    for video, exp in ds.iter_expressions():
        def score(role, annos):
            gt, pr = ds.union_masks(video, annos), masks[(video.name, exp.exp_id, role)]
            return (np.mean([reference_j(g, p) for g, p in zip(gt, pr)]),
                    np.mean([reference_f(g, p) for g, p in zip(gt, pr)]))
        actor = score("actor", exp.anno_ids)
        per["rvos"].append(actor)
        if exp.has_target:
            per["actor"].append(actor)
            per["target"].append(score("target", exp.target_anno_ids))
    out = {}
    for key, pairs in per.items():
        j, f = np.mean([p[0] for p in pairs]), np.mean([p[1] for p in pairs])
        out.update({f"{key}_J": j, f"{key}_F": f, f"{key}_JF": (j + f) / 2})
    return out


def test_protocol_matches_direct_computation(tmp_path: Path):
    ds = make_split(tmp_path / "split")
    masks = _predict(ds, tmp_path / "pred")
    result = evaluate_split(ds, tmp_path / "pred", SERIAL)
    want = _direct(ds, masks)
    assert result.summary.keys() == want.keys()
    for k, v in want.items():
        assert result.summary[k] == pytest.approx(v, rel=1e-15, abs=1e-15), k
    assert not result.missing
    # the numbers are not trivially perfect or zero
    assert 0.05 < result.summary["rvos_JF"] < 0.95


def test_benchmark_membership(tmp_path: Path):
    ds = make_split(tmp_path / "split")
    run = evaluate_split(ds, _oracle(ds, tmp_path / "pred"), SERIAL)
    assert [(s.video, s.exp_id) for s in run.scores] == [(v.name, e.exp_id) for v, e in ds.iter_expressions()]
    b = run.benchmarks
    # vid_a has two unidirectional interactions (2, 3); the bidirectional one (4) and the rest are RVOS only
    assert (b["actor"].expressions, b["target"].expressions, b["rvos"].expressions) == (2, 2, 6)
    assert run.counts["bidirectional"] == 1
    bidir = next(s for s in run.scores if s.direction == "bidirectional")
    assert bidir.target_J is None and bidir.type == "interaction"
    assert all(v == 1.0 for v in run.summary.values())  # oracle
    types = run.by_type()
    assert {k: v["expressions"] for k, v in types.items()} == {"single": 2, "multi": 1, "interaction": 3}
    assert types["interaction"]["with_target"] == 2 and "target_J" not in types["single"]


def _oracle(ds: InterRVOSDataset, pred: Path) -> Path:
    for video, exp in ds.iter_expressions():
        write_track(pred, video.name, exp.exp_id, "actor", video.frames, ds.union_masks(video, exp.anno_ids))
        if exp.has_target:
            write_track(pred, video.name, exp.exp_id, "target", video.frames,
                        ds.union_masks(video, exp.target_anno_ids))
    return pred


def test_a_worse_target_moves_only_the_target_benchmark(tmp_path: Path):
    ds = make_split(tmp_path / "split")
    pred = _oracle(ds, tmp_path / "pred")
    video = ds.videos["vid_a"]
    write_track(pred, "vid_a", "2", "target", video.frames, np.zeros((4, 24, 32), bool))
    s = evaluate_split(ds, pred, SERIAL).summary
    assert s["actor_JF"] == 1.0 and s["rvos_JF"] == 1.0
    # expression 2's target (object 11) is present on every frame: an empty track scores 0 there
    assert s["target_J"] == 0.5 and s["target_F"] == 0.5


def test_missing_predictions_score_zero_and_are_named(tmp_path: Path):
    ds = make_split(tmp_path / "split")
    pred = _oracle(ds, tmp_path / "pred")
    for f in role_dir(pred, "vid_a", "3", "target").iterdir():
        f.unlink()
    role_dir(pred, "vid_a", "3", "target").rmdir()
    (role_dir(pred, "vid_a", "0", "actor") / "00001.png").unlink()
    for f in sorted((pred / "vid_b").rglob("*"), reverse=True):
        f.unlink() if f.is_file() else f.rmdir()
    (pred / "vid_b").rmdir()

    run = evaluate_split(ds, pred, SERIAL)
    names = {m.name: m for m in run.missing}
    assert set(names) == {"vid_a/3/target", "vid_a/0/actor", "vid_b/0/actor"}
    assert names["vid_a/3/target"].whole_role and not names["vid_a/0/actor"].whole_role
    assert names["vid_a/0/actor"].frames == ["00001"]
    by_id = {(s.video, s.exp_id): s for s in run.scores}
    assert len(by_id) == 6  # nothing dropped
    assert (by_id["vid_a", "3"].target_J, by_id["vid_a", "3"].target_F) == (0.0, 0.0)
    assert by_id["vid_a", "3"].actor_J == 1.0
    assert (by_id["vid_b", "0"].actor_J, by_id["vid_b", "0"].actor_F) == (0.0, 0.0)
    assert by_id["vid_a", "0"].actor_J == 0.75  # one of four frames read as an empty mask vs a present object
    assert run.summary["target_J"] == 0.5
    assert run.summary["rvos_J"] == pytest.approx((0.75 + 1 + 1 + 1 + 1 + 0) / 6)
    assert run.counts["missing_roles"] == 2 and run.counts["missing_frames"] == 1
    table = format_table(run, "oracle")
    assert "MISSING" in table and "vid_a/3/target" in table


def test_wrong_size_prediction_is_an_error_naming_the_file(tmp_path: Path):
    ds = make_split(tmp_path / "split")
    pred = _oracle(ds, tmp_path / "pred")
    bad = role_dir(pred, "vid_a", "1", "actor") / "00002.png"
    Image.fromarray(np.zeros((12, 16), np.uint8)).save(bad)
    with pytest.raises(PredictionError, match=re.escape(str(bad))):
        evaluate_split(ds, pred, SERIAL)
    bad.write_bytes(b"not a png")
    with pytest.raises(PredictionError, match="readable"):
        read_track(pred, "vid_a", "1", "actor", ds.videos["vid_a"].frames, (24, 32))


def test_read_track_reports_absent_folder_and_frames(tmp_path: Path):
    frames = ["a", "b", "c"]
    masks, missing = read_track(tmp_path, "v", "0", "actor", frames, (5, 6))
    assert masks is None and missing == frames
    write_track(tmp_path, "v", "0", "actor", ["a", "c"], np.ones((2, 5, 6), bool))
    masks, missing = read_track(tmp_path, "v", "0", "actor", frames, (5, 6))
    assert missing == ["b"] and masks[[0, 2]].all() and not masks[1].any()


def test_parallel_results_equal_serial_to_the_bit(tmp_path: Path):
    ds = make_split(tmp_path / "split")
    _predict(ds, tmp_path / "pred", seed=3)
    serial = evaluate_split(ds, tmp_path / "pred", SERIAL)
    forked = evaluate_split(ds, tmp_path / "pred", EvalConfig(workers=2, start_method="fork", progress=False))
    assert forked.summary == serial.summary
    assert [s.row() for s in forked.scores] == [s.row() for s in serial.scores]


@pytest.mark.slow
def test_spawn_workers_load_the_split_themselves(tmp_path: Path):
    ds = make_split(tmp_path / "split")
    _predict(ds, tmp_path / "pred", seed=4)
    serial = evaluate_split(ds, tmp_path / "pred", SERIAL)
    spawned = evaluate_split(tmp_path / "split", tmp_path / "pred",
                             EvalConfig(workers=2, start_method="spawn", progress=False))
    assert [s.row() for s in spawned.scores] == [s.row() for s in serial.scores]


def test_split_without_targets_reports_rvos_only(tmp_path: Path):
    ds = make_split(tmp_path / "split")
    for video in ds.videos.values():
        video.expressions = {k: e for k, e in video.expressions.items() if not e.has_target}
    pred = _oracle(ds, tmp_path / "pred")
    run = evaluate_split(ds, pred, SERIAL)
    assert set(run.summary) == {"rvos_J", "rvos_F", "rvos_JF"}
    row = format_table(run, "oracle").splitlines()[3]
    assert row.split("|")[1].split() == ["-", "-", "-"] and row.split("|")[3].split() == ["100.0"] * 3


def test_summary_keys_are_mlflow_metric_names(tmp_path: Path):
    ds = make_split(tmp_path / "split")
    run = evaluate_split(ds, _oracle(ds, tmp_path / "pred"), SERIAL)
    assert set(run.summary) == {f"{b}_{m}" for b in ("actor", "target", "rvos") for m in ("J", "F", "JF")}
    assert all(re.fullmatch(r"[A-Za-z0-9_\-. /]+", k) for k in run.summary)


def test_outputs_written(tmp_path: Path):
    ds = make_split(tmp_path / "split")
    masks = _predict(ds, tmp_path / "pred")
    run: EvaluationResult = evaluate_split(ds, tmp_path / "pred", SERIAL)
    paths = write_outputs(run, tmp_path / "eval")
    doc = json.loads(paths["json"].read_text())
    assert doc["summary"] == pytest.approx(_direct(ds, masks))
    assert len(doc["per_expression"]) == 6 and doc["missing"] == []
    assert set(doc["benchmarks"]) == {"InterRVOS-Actor", "InterRVOS-Target", "RVOS"}
    assert "bidirectional" in doc["protocol"]
    with open(paths["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["video"], r["exp_id"]) for r in rows] == [(s.video, s.exp_id) for s in run.scores]
    assert float(rows[2]["target_JF"]) == pytest.approx(run.scores[2].target_JF)
    assert rows[0]["target_J"] == ""
    png = paths["histogram"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(paths["histogram"]).size[0] > 600


def test_config_from_yaml(tmp_path: Path):
    path = tmp_path / "eval.yaml"
    path.write_text("bound_th: 2\nworkers: 3\n")
    cfg = EvalConfig.from_yaml(path, ["workers=1"])
    assert (cfg.bound_th, cfg.workers, cfg.progress) == (2, 1, True)
    path.write_text("bound_th: 2.5\n")
    with pytest.raises(ConfigError, match="bound_th"):
        EvalConfig.from_yaml(path)
    path.write_text("bogus: 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        EvalConfig.from_yaml(path)


# ---------------------------------------------------------------------- CLI
def test_cli_end_to_end(tmp_path: Path):
    ds = make_split(tmp_path / "split")
    pred = _oracle(ds, tmp_path / "pred")
    (role_dir(pred, "vid_a", "4", "actor") / "00000.png").unlink()
    res = CliRunner().invoke(app, ["evaluate", "--data", str(tmp_path / "split"), "--predictions", str(pred),
                                   "--workers", "1", "--name", "oracle"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "pred-eval"
    assert {p.name for p in out.iterdir()} == {"per_expression.csv", "results.json", "jf_hist.png"}
    lines = res.output.splitlines()
    assert "InterRVOS-Actor" in lines[0] and "InterRVOS-Target" in lines[0] and "RVOS" in lines[0]
    row = next(line for line in lines if line.startswith("oracle"))
    assert row.split("|")[1].split() == ["100.0"] * 3
    assert "missing: vid_a/4/actor (1 frame(s) scored empty)" in res.output
    doc = json.loads((out / "results.json").read_text())
    assert [m["name"] for m in doc["missing"]] == ["vid_a/4/actor"]
    assert doc["summary"]["rvos_J"] < 1.0


def test_cli_invalid_dataset_fails(tmp_path: Path):
    make_split(tmp_path / "split")
    (tmp_path / "split" / "meta_expressions.json").write_text("{not json")
    (tmp_path / "pred").mkdir()
    res = CliRunner().invoke(app, ["evaluate", "--data", str(tmp_path / "split"), "--predictions",
                                   str(tmp_path / "pred"), "--out", str(tmp_path / "eval")])
    assert res.exit_code == 2
    assert "invalid dataset" in res.output and "meta_expressions.json" in res.output
    assert not (tmp_path / "eval").exists()


def test_cli_wrong_size_exits_nonzero(tmp_path: Path):
    ds = make_split(tmp_path / "split")
    pred = _oracle(ds, tmp_path / "pred")
    bad = role_dir(pred, "vid_b", "0", "actor") / "00000.png"
    Image.fromarray(np.zeros((24, 31), np.uint8)).save(bad)
    res = CliRunner().invoke(app, ["evaluate", "--data", str(tmp_path / "split"), "--predictions", str(pred),
                                   "--workers", "2"])
    assert res.exit_code == 1
    assert str(bad) in res.output and "24x31" in res.output
