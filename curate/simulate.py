"""``curate simulate``: replay the active-learning loop on the labelled images of the index.

The index edge of :mod:`curate.select.simulation`: it gathers the labelled, embedded
images, splits them into a selectable pool and a held-out test part, runs
:func:`~curate.select.simulation.simulate_curves`, stores one simulation row
(parameters, results, summary, versions, wall time) and optionally writes
``results.csv``, ``results.json``, ``summary.csv`` and ``accuracy_vs_budget.png``.

Test part: the labelled images of ``test_batch``, or a seeded (seed 0) stratified
``test_fraction`` of each class of the labelled pool (classes with one image stay in the
pool). It is never selectable. ``batch`` restricts the pool to one ingest batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from curate.embeddings import load_embeddings
from curate.errors import CurateError
from curate.provenance import add_ids_hashes, utcnow, versions
from curate.select.simulation import ROUNDS, check_budgets, paired_differences, simulate_curves
from curate.validation import check_budget

SPLIT_SEED = 0
BASELINE = "random"


@dataclass
class SimulationResult:
    simulation_id: int
    name: str
    embedding_set: str
    params: dict
    results: pd.DataFrame      # strategy, budget, seed, accuracy, macro_f1, seconds, n_labelled
    summary: pd.DataFrame      # curate.select.simulation.paired_differences
    wall_seconds: float
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"simulation_id": self.simulation_id, "name": self.name,
                "embedding_set": self.embedding_set, "params": self.params,
                "results": _records(self.results), "summary": _records(self.summary),
                "wall_seconds": self.wall_seconds, "files": self.files}


def _records(df: pd.DataFrame) -> list[dict]:
    """JSON-safe records (NaN -> None, numpy scalars -> Python)."""
    import json

    return json.loads(df.to_json(orient="records"))


def stratified_split(y: np.ndarray, fraction: float, seed: int = SPLIT_SEED) -> np.ndarray:
    """Boolean mask (len(y),) of a seeded stratified ``fraction``: round(fraction * n_c)
    rows of each class c, at most n_c - 1 (a class keeps one row outside). Cost: O(n)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        k = min(int(round(fraction * len(rows))), len(rows) - 1)
        mask[rng.permutation(rows)[:k]] = True
    return mask


def _check_args(strategies, budgets, seeds, probe, rounds, test_batch, test_fraction, batch):
    from curate.select.strategies import SELECTORS
    from curate.select.probe import PROBES

    strategies = [s.strip() for s in strategies if s.strip()]
    if not strategies:
        raise CurateError("give at least one strategy")
    if len(set(strategies)) != len(strategies):
        raise CurateError(f"a strategy is listed twice: {', '.join(strategies)}")
    for name in strategies:
        SELECTORS.get(name)
    PROBES.get(probe)
    if rounds not in ROUNDS:
        raise CurateError(f"unknown rounds {rounds!r}; choose one of: {', '.join(ROUNDS)}")
    if int(seeds) < 1:
        raise CurateError(f"seeds must be at least 1, got {seeds}")
    if test_batch is None and not 0 < test_fraction < 1:
        raise CurateError(f"test fraction must lie in (0, 1), got {test_fraction}")
    if test_batch is not None and test_batch == batch:
        raise CurateError(f"the test batch {test_batch!r} is the pool batch; the test part must "
                          "not overlap the pool")
    return strategies, check_budgets(budgets)


def simulate(index, strategies: Sequence[str], budgets: Sequence[int], seeds: int = 5,
             batch: str | None = None, test_batch: str | None = None,
             test_fraction: float = 0.2, probe: str = "logistic", rounds: str = "incremental",
             embeddings: str | None = None, out: Path | str | None = None,
             name: str | None = None, metric: str = "cosine", device: str = "auto",
             progress: Callable[[int, int], None] | None = None) -> SimulationResult:
    """Run the active-learning simulation on the index's labelled images and store it.

    Uses the embedded ok images that have a label (``index.labels()``) in
    ``embeddings`` (default: the latest set). Returns a :class:`SimulationResult`;
    ``results`` has one row per (strategy, budget, seed). Raises :class:`CurateError`
    (one line) for: no labelled images, fewer than 2 classes in the pool, a test part
    overlapping the pool or empty, budgets larger than the pool, bad budgets, an
    unknown strategy, probe or rounds. Cost: that of
    :func:`~curate.select.simulation.simulate_curves` plus loading the set, O(N d).
    """
    t0 = time.perf_counter()
    strategies, budgets = _check_args(strategies, budgets, seeds, probe, rounds, test_batch,
                                      test_fraction, batch)
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise CurateError(f"--out must be a folder; {out} is a file")
    es = index.embedding_set(embeddings)
    set_name, set_id = es.name, es.id
    labels = index.labels()
    ids, X = load_embeddings(index, set_name)
    labelled = np.isin(ids, np.fromiter(labels, np.int64, len(labels)))
    if not labelled.any():
        raise CurateError(f"no labelled images in embedding set {set_name}; ingest with "
                          "--labels or pull annotations first")
    ids, X = ids[labelled], X[labelled]
    y_str = np.array([labels[int(i)] for i in ids], dtype=object)
    pool = np.ones(len(ids), dtype=bool)
    if batch is not None:
        pool = _in_batch(index, ids, batch)
        if not pool.any():
            raise CurateError(f"no labelled, embedded images in batch {batch!r}")
    if test_batch is not None:
        test = _in_batch(index, ids, test_batch)
        if not test.any():
            raise CurateError(f"no labelled, embedded images in test batch {test_batch!r}")
        if batch is not None and (test & pool).any():
            raise CurateError(f"the test batch {test_batch!r} overlaps the pool "
                              f"({int((test & pool).sum())} images in both)")
        pool &= ~test
    else:
        rows = np.flatnonzero(pool)
        test = np.zeros(len(ids), dtype=bool)
        test[rows[stratified_split(y_str[rows].astype(str), test_fraction)]] = True
        pool &= ~test
        if not test.any():
            raise CurateError(f"a test fraction of {test_fraction} of {len(rows)} labelled images "
                              "leaves no test images; use more images or --test-batch")
    classes, y = np.unique(y_str.astype(str), return_inverse=True)
    pool_classes = np.unique(y[pool])
    if len(pool_classes) < 2:
        raise CurateError(f"the labelled pool has fewer than 2 classes "
                          f"({', '.join(classes[pool_classes]) or 'none'}); a classifier needs 2")
    n_pool = int(pool.sum())
    check_budget(budgets[-1], n_pool, "labelled images")
    results = simulate_curves(X[pool], y[pool], X[test], y[test], strategies, budgets, seeds,
                              probe=probe, rounds=rounds, metric=metric, device=device,
                              progress=progress)
    summary = paired_differences(results, BASELINE)
    params = {"strategies": strategies, "budgets": budgets, "seeds": int(seeds), "probe": probe,
              "rounds": rounds, "metric": metric, "baseline": BASELINE, "embedding_set": set_name,
              "dim": int(X.shape[1]), "batch": batch, "test_batch": test_batch,
              "test_fraction": None if test_batch is not None else test_fraction,
              "split_seed": None if test_batch is not None else SPLIT_SEED,
              "pool_size": n_pool, "test_size": int(test.sum()),
              "classes": classes.tolist(),
              "pool_class_counts": np.bincount(y[pool], minlength=len(classes)).tolist()}
    add_ids_hashes(params, pool_ids_sha256=ids[pool], test_ids_sha256=ids[test])
    seconds = results.groupby("strategy", sort=False)["seconds"].sum()
    stored_summary = {"paired": _records(summary), "baseline": BASELINE,
                      "selection_seconds": {k: float(v) for k, v in seconds.items()}}
    wall = time.perf_counter() - t0
    sim_id, sim_name = index.add_simulation(
        name, f"simulate-{utcnow():%Y%m%d-%H%M%S}", embedding_set_id=set_id, params=params,
        results=_records(results), summary=stored_summary, versions=versions(), wall_seconds=wall)
    res = SimulationResult(sim_id, sim_name, set_name, params, results, summary, wall)
    if out is not None:
        res.files = write_outputs(res, out)
    return res


def _in_batch(index, ids: np.ndarray, batch: str) -> np.ndarray:
    """Mask of ``ids`` that are ok images of ``batch`` (one-line error for an unknown batch)."""
    return np.isin(ids, index.batch_image_ids(batch, status="ok"))


def write_outputs(res: SimulationResult, out: Path | str) -> list[str]:
    """Write results.csv, results.json, summary.csv and accuracy_vs_budget.png into ``out``."""
    from curate.export import write_frame
    from curate.plot import plot_curves

    out = Path(out)
    p = res.params
    title = (f"{res.name}: {p['probe']} probe, {p['rounds']}, pool {p['pool_size']}, "
             f"test {p['test_size']}, {p['seeds']} seeds")
    files = [write_frame(res.results, out / "results.csv"),
             write_frame(res.results, out / "results.json"),
             write_frame(res.summary, out / "summary.csv"),
             plot_curves(res.summary, out / "accuracy_vs_budget.png", title=title)]
    return [str(f) for f in files]


__all__ = ["simulate", "SimulationResult", "stratified_split", "write_outputs"]
