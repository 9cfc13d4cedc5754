"""The learning benchmark: its per-kind breakdown, its score cache and its tables when it runs ceilings only."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import learn_synthetic as ls  # noqa: E402

from reviosa.data.format import InterRVOSDataset  # noqa: E402
from reviosa.model import checkpoint  # noqa: E402
from reviosa.model.config import ModelConfig  # noqa: E402
from reviosa.model.modeling import ReviosaModel  # noqa: E402
from reviosa.train.validation import summarize  # noqa: E402


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    from reviosa.data.synthetic import SyntheticConfig, generate_splits

    root = tmp_path_factory.mktemp("learn") / "data"
    generate_splits(root, SyntheticConfig(frames=6, height=48, width=48), {"val": 3}, seed=1, workers=1)
    return root


def test_baseline_kinds_partition_the_expressions_and_match_the_protocol(synthetic):
    ds = InterRVOSDataset.load(synthetic / "val")
    summary, kinds = ls.baseline(synthetic / "val", max_videos=3)

    assert sum(k["n"] for k in kinds.values()) == sum(len(v.expressions) for v in ds.videos.values())
    interactions = [e for v in ds.videos.values() for e in v.expressions.values() if e.has_target]
    assert interactions, "the synthetic split should hold role-annotated interactions"
    for kind, s in kinds.items():
        # Actor / Target exist exactly for the role-annotated interaction kinds
        assert ("target_JF" in s) == (kind.startswith("interaction") and "no roles" not in kind), kind
    # the RVOS mean over all expressions is the count-weighted mean of the per-kind RVOS means
    weighted = sum(k["rvos_JF"] * k["n"] for k in kinds.values()) / sum(k["n"] for k in kinds.values())
    assert weighted == pytest.approx(summary["rvos_JF"])

    table = ls.kind_table({"baseline": [kinds], "again": [kinds, kinds]})
    assert len(table) == 2 + len(kinds)
    role_row = next(r for r in table if "active" in r)
    assert role_row.count(" / ") == 2  # Actor / Target in both columns


def test_by_kind_summaries_are_the_protocol_on_each_group(synthetic):
    ds = InterRVOSDataset.load(synthetic / "val")
    rows = []
    for i, video in enumerate(ds.videos.values()):
        for exp in video.expressions.values():
            rows.append({"video": video.name, "exp_id": exp.exp_id, "has_target": exp.has_target,
                         "actor_J": 0.1 * (i + 1), "actor_F": 0.2, "target_J": 0.3, "target_F": 0.5})
    kinds = ls.by_kind(ds, rows)
    for kind, s in kinds.items():
        group = [r for r in rows if ls.kind_of(ds.videos[r["video"]].expressions[r["exp_id"]]) == kind]
        assert s == {**summarize(group), "n": len(group)}


def test_scores_are_kept_beside_the_checkpoint_and_redone_when_the_weights_change(synthetic, tmp_path,
                                                                                 monkeypatch):
    torch.manual_seed(0)
    model = ReviosaModel.from_config(ModelConfig.from_yaml("tiny"))
    path = checkpoint.save_pretrained(model, tmp_path / "final")
    splits = {"val": synthetic / "val"}
    first = ls.score_variant(path, splits, max_videos=1, generated=False)
    assert (tmp_path / "scores-final.json").is_file()
    assert set(first) == {"forced", "forced_kinds"}

    loads = []
    real = ReviosaModel.from_pretrained
    monkeypatch.setattr(ReviosaModel, "from_pretrained", lambda p: loads.append(p) or real(p))
    assert ls.score_variant(path, splits, max_videos=1, generated=False) == first
    assert loads == []  # same weights, same question: read back, not scored again

    with torch.no_grad():
        next(p for p in model.parameters() if p.requires_grad).add_(1.0)
    checkpoint.save_pretrained(model, path)
    ls.score_variant(path, splits, max_videos=1, generated=False)
    assert len(loads) == 1  # new weights are scored anew


def test_a_ceilings_only_run_writes_its_tables(tmp_path, monkeypatch):
    out = tmp_path / "learn"
    monkeypatch.setattr(sys, "argv", ["learn_synthetic.py", "--out", str(out), "--train-videos", "2", "--val-videos",
                                      "1", "--frames", "6", "--threads", "1", "--variants", "", "--ceilings", "shape",
                                      "--ceiling-steps", "2"])
    ls.main()
    rows = (out / "results.md").read_text()
    assert "| baseline (largest moving blobs) |" in rows
    assert f"| (ceiling) perfect grounding, {ls.CEILING_LABELS['shape']} |" in rows
    assert "| warm start alone (no video training) |" in rows
