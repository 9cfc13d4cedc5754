"""What an evaluation leaves behind: the paper's Table 2 layout, per-expression CSV, results JSON, J&F plot."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from reviosa.data.atomic import atomic_write_bytes, atomic_write_text
from reviosa.evaluate.protocol import BENCHMARKS, EvaluationResult, official_note, protocol_note

CSV_FILE = "per_expression.csv"
ROLES_CSV_FILE = "per_expression_roles.csv"
JSON_FILE = "results.json"
HIST_FILE = "jf_hist.png"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def format_table(result: EvaluationResult, name: str = "predictions") -> str:
    """Table 2 of the paper: InterRVOS-Actor, InterRVOS-Target and RVOS J, F, J&F (x100), with footnotes."""
    method = max(12, len(name) + 2)
    head1 = " " * method + "".join(f"| {BENCHMARKS[k]:<17} " for k in BENCHMARKS)
    head2 = f"{'Method':<{method}}" + "".join(f"| {'J':>5} {'F':>5} {'J&F':>5} " for _ in BENCHMARKS)
    row = f"{name:<{method}}" + "".join(
        f"| {_pct(b.J):>5} {_pct(b.F):>5} {_pct(b.JF):>5} " for b in result.benchmarks.values())
    rule = "-" * len(head2)
    lines = [head1, head2, rule, row, rule, "* " + protocol_note(result)]
    c = result.counts
    if result.missing:
        names = ", ".join(m.name for m in result.missing[:5]) + (" ..." if len(result.missing) > 5 else "")
        lines.append(f"* MISSING predictions: {c['missing_roles']} whole role(s) scored J = F = 0, "
                     f"{c['missing_frames']} frame(s) scored as empty masks: {names} (all listed in {JSON_FILE}).")
    note = official_note(result)
    if note:
        lines.append("* " + note)
    return "\n".join(lines)


def per_expression_csv(result: EvaluationResult, roles: bool = False) -> str:
    """CSV text of the per-expression rows (empty cells where an expression has no target); ``roles``: the rows of
    the Actor/Target benchmarks of an official val folder (new_meta_expressions.json)."""
    buf = io.StringIO()
    rows = [s.row() for s in (result.role_scores or [] if roles else result.scores)]
    fields = list(rows[0]) if rows else ["video", "exp_id"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def histogram_png(result: EvaluationResult, bins: int = 20) -> bytes:
    """PNG bytes of per-expression J&F histograms, one panel per benchmark."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    members = result.members()
    panels = {
        "InterRVOS-Actor": [(r.J + r.F) / 2 for r in members["actor"]],
        "InterRVOS-Target": [(r.J + r.F) / 2 for r in members["target"]],
        "RVOS (actor, all expressions)": [(r.J + r.F) / 2 for r in members["rvos"]],
    }
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharey=False)
    for ax, (title, values) in zip(axes, panels.items()):
        ax.hist([100 * v for v in values], bins=bins, range=(0, 100), color="#4477aa", edgecolor="white")
        mean = f"mean {100 * sum(values) / len(values):.1f}" if values else "no expressions"
        ax.set_title(f"{title}\n{len(values)} expr., {mean}", fontsize=9)
        ax.set_xlabel("J&F per expression (x100)")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("expressions")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_outputs(result: EvaluationResult, out_dir: str | Path) -> dict[str, Path]:
    """Write per_expression.csv (and per_expression_roles.csv), results.json and jf_hist.png atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / CSV_FILE, "json": out / JSON_FILE, "histogram": out / HIST_FILE}
    atomic_write_text(paths["csv"], per_expression_csv(result))
    if result.role_scores is not None:
        paths["roles_csv"] = out / ROLES_CSV_FILE
        atomic_write_text(paths["roles_csv"], per_expression_csv(result, roles=True))
    atomic_write_text(paths["json"], json.dumps(_finite(result.to_json()), indent=1))
    atomic_write_bytes(paths["histogram"], histogram_png(result, result.config.histogram_bins))
    return paths


def _finite(x):
    # JSON has no NaN; nothing here should be NaN, but never write a file other tools cannot parse.
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x
