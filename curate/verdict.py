"""Verdicts of a comparison table: each set against the baseline, metric by metric.

On a metric a set is **better** than the baseline when the interval of the paired
difference lies above 0, **worse** when below 0, else **not distinguishable**
(:func:`decide`). Pure: a table (rows of :data:`COLUMNS`, from :mod:`curate.comparison`)
in, verdicts and one-line sentences out. Cost O(rows).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

COLUMNS = ["set", "metric", "kind", "value", "low", "high", "diff", "diff_low", "diff_high",
           "n", "interval", "in_verdict", "verdict"]
BETTER, SAME, WORSE = "better", "not distinguishable", "worse"


def decide(diff_low: float, diff_high: float) -> str:
    """better / worse / not distinguishable from the interval of a paired difference."""
    if diff_low > 0:
        return BETTER
    if diff_high < 0:
        return WORSE
    return SAME


def finish_table(rows: list[dict]) -> pd.DataFrame:
    """The table (:data:`COLUMNS`) with each judged row's ``verdict`` filled in."""
    df = pd.DataFrame(rows, columns=COLUMNS)
    judged = df["in_verdict"].astype(bool) & df["diff_low"].notna()
    df["in_verdict"] = judged
    df.loc[judged, "verdict"] = [decide(lo, hi) for lo, hi in
                                 zip(df.loc[judged, "diff_low"], df.loc[judged, "diff_high"])]
    return df


def verdicts(table: pd.DataFrame, baseline: str) -> dict[str, dict[str, list[str]]]:
    """``{set: {"better": [metrics], "not distinguishable": [...], "worse": [...]}}`` for
    every set but the baseline, in table order."""
    out: dict[str, dict[str, list[str]]] = {}
    for s in dict.fromkeys(table["set"]):
        if s == baseline:
            continue
        t = table[(table["set"] == s) & table["in_verdict"]]
        out[s] = {v: t.loc[t["verdict"] == v, "metric"].tolist() for v in (BETTER, SAME, WORSE)}
    return out


def join_metrics(metrics: Sequence[str]) -> str:
    """Metric names joined by commas; AL rows of one strategy merged: ``AL auto @20/@100``."""
    groups: dict[str, list[str]] = {}
    for m in metrics:
        head, at, budget = m.rpartition(" @")
        key = head if m.startswith("AL ") and at else m
        groups.setdefault(key, []).append(f"@{budget}" if key != m else "")
    return ", ".join(k + (" " + "/".join(v) if v[0] else "") for k, v in groups.items())


def verdict_line(name: str, verdict: Mapping[str, list[str]], baseline: str) -> str:
    """``"A: better than B on x; not distinguishable from B on y; worse than B on z"``."""
    parts = []
    if verdict.get(BETTER):
        parts.append(f"better than {baseline} on {join_metrics(verdict[BETTER])}")
    if verdict.get(SAME):
        parts.append(f"not distinguishable from {baseline} on {join_metrics(verdict[SAME])}")
    if verdict.get(WORSE):
        parts.append(f"worse than {baseline} on {join_metrics(verdict[WORSE])}")
    return f"{name}: " + ("; ".join(parts) if parts else f"nothing measured against {baseline}")


__all__ = ["COLUMNS", "BETTER", "SAME", "WORSE", "decide", "finish_table", "verdicts",
           "join_metrics", "verdict_line"]
