"""Metric deltas between two runs (``reviosa runs compare``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricDelta:
    """One metric in run A and run B (None where a run lacks it) and B - A."""

    key: str
    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        """``b - a`` when both exist."""
        return None if self.a is None or self.b is None else self.b - self.a


def compare_runs(run_a: str, run_b: str, client) -> list[MetricDelta]:
    """Latest metric values of two runs, keyed by metric, sorted by name."""
    from mlflow.exceptions import MlflowException

    metrics = []
    for run_id in (run_a, run_b):
        try:
            metrics.append(client.get_run(run_id).data.metrics)
        except MlflowException as err:
            raise ValueError(f"run {run_id!r} not found on {client.tracking_uri}: {err.message}") from None
    a, b = metrics
    return [MetricDelta(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b))]


def format_deltas(deltas: list[MetricDelta], name_a: str = "A", name_b: str = "B") -> str:
    """A plain-text table: metric, A, B, B-A (``-`` where missing)."""

    def fmt(v: float | None, signed: bool = False) -> str:
        return "-" if v is None else (f"{v:+.4f}" if signed else f"{v:.4f}")

    width = max([len("metric")] + [len(d.key) for d in deltas])
    lines = [f"{'metric':<{width}}  {name_a[:10]:>10}  {name_b[:10]:>10}  {'delta':>10}"]
    lines += [f"{d.key:<{width}}  {fmt(d.a):>10}  {fmt(d.b):>10}  {fmt(d.delta, True):>10}" for d in deltas]
    return "\n".join(lines)
