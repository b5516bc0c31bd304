"""Choose a novelty scorer and its settings from in-distribution data only
(``curate tune-scorer``; methods.md §4, thesis 003 ch. 6).

The ok, embedded images (of ``batches``, default all) are split at random into
"train" and a held-out "test-in" fraction (``test_fraction``, default 0.2): both are
in-distribution, no OOD data is used. :func:`curate.novelty.sensitivity.tune` then
takes ``n_sens`` training images out as ``sens``, fits every candidate on the rest and
computes its sensitivity = AUROC(sens vs test-in), test-in positive, and picks the
candidate closest to a little above 0.5 (10-NN accuracy on test-in breaks ties when
every image has a label). Class-conditional candidates run only when every image has
a label; otherwise their row says why they were skipped. Nothing is stored.

Candidates are strings ``NAME[:param=value,...]``, e.g. ``knn:k=10``,
``cosine-weighted:tau=0.02``, ``centroid:metric=l2``, ``mahalanobis:shrinkage=oas``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from curate.data import image_labels
from curate.embeddings import get_set, load_embeddings
from curate.errors import CurateError
from curate.novelty import SCORERS
from curate.novelty.sensitivity import tune
from curate.scorer_store import CLASS_CONDITIONAL, batch_image_ids, check_finite

DEFAULT_CANDIDATES = (
    "mahalanobis", "knn:k=1", "knn:k=5", "knn:k=10", "knn:k=50", "max-cosine",
    "cosine-weighted:tau=0.02", "cosine-weighted:tau=0.04", "cosine-weighted:tau=0.08",
    "mahalanobis-class", "centroid:metric=cosine", "centroid:metric=l2", "vmf",
)


def _value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text.strip()


def parse_candidate(text: str) -> dict[str, Any]:
    """``"knn:k=10,index=flat"`` -> ``{"scorer": "knn", "k": 10, "index": "flat"}``."""
    name, _, rest = str(text).strip().partition(":")
    SCORERS.get(name)  # unknown names fail with the list of choices
    cand: dict[str, Any] = {"scorer": name}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, val = part.partition("=")
        if not eq or not key.strip():
            raise CurateError(f"bad candidate {text!r}: write NAME:param=value,...")
        cand[key.strip()] = _value(val)
    return cand


def candidate_label(cand: dict[str, Any]) -> str:
    params = ",".join(f"{k}={v}" for k, v in cand.items() if k != "scorer")
    return cand["scorer"] + (f":{params}" if params else "")


@dataclass
class TuneReport:
    embedding_set: str
    chosen: dict
    table: list[dict]
    n_train: int
    n_test: int
    n_sens: int
    labelled: bool
    seconds: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def tune_scorer(index, embeddings: str | None = None, candidates=None, batches=None,
                test_fraction: float = 0.2, n_sens: int | None = None,
                seed: int | None = 0) -> TuneReport:
    """Evaluate ``candidates`` (strings or dicts; default :data:`DEFAULT_CANDIDATES`)
    and pick one (see the module doc). ``n_sens`` defaults to min(1000, train / 5)."""
    t0 = time.perf_counter()
    given = candidates is not None and len(candidates) > 0
    cands = [c if isinstance(c, dict) else parse_candidate(c)
             for c in (candidates if given else DEFAULT_CANDIDATES)]
    if not 0.0 < float(test_fraction) < 1.0:
        raise CurateError(f"test fraction must be in (0, 1), got {test_fraction}")
    with index.session() as s:
        set_name = get_set(s, embeddings).name
        restrict = batch_image_ids(s, batches)
        labels = image_labels(s)
    ids, X = load_embeddings(index, set_name, image_ids=restrict)
    if len(ids) < 10:
        raise CurateError(f"tuning needs at least 10 embedded images, set {set_name} "
                          f"has {len(ids)}" + (" in the given batches" if batches else ""))
    check_finite(ids, X, f"embedding set {set_name}")
    perm = np.random.default_rng(seed).permutation(len(ids))
    n_test = min(max(int(round(test_fraction * len(ids))), 2), len(ids) - 3)
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    labelled = all(int(i) in labels for i in ids)
    y = np.array([labels[int(i)] for i in ids]) if labelled else None
    n_sens = int(n_sens) if n_sens is not None else min(1000, max(2, len(train) // 5))
    if not 1 <= n_sens < len(train):
        raise CurateError(f"n_sens must be in [1, {len(train) - 1}], got {n_sens}")
    runnable = [c for c in cands if labelled or c["scorer"] not in CLASS_CONDITIONAL]
    skipped = [c for c in cands if c not in runnable]
    if not runnable:
        raise CurateError("every candidate is class-conditional and needs labels on every image")
    _, table = tune(X[train], X[test], runnable, y_train=None if y is None else y[train],
                    y_test=None if y is None else y[test], n_sens=n_sens, random_state=seed)
    for c in skipped:
        table.append({"candidate": len(table), "scorer": c["scorer"],
                      "params": {k: v for k, v in c.items() if k != "scorer"},
                      "embedding": "default", "sensitivity": None, "knn_accuracy": None,
                      "seconds": 0.0, "error": "skipped: needs labels",
                      "selected": False})
    for row in table:
        row["label"] = candidate_label({"scorer": row["scorer"], **row["params"]})
        row.pop("embedding", None)
    chosen_row = next(r for r in table if r["selected"])
    chosen = {"scorer": chosen_row["scorer"], **chosen_row["params"]}
    return TuneReport(set_name, chosen, table, len(train), len(test), n_sens, labelled,
                      time.perf_counter() - t0)


def fit_command(chosen: dict, embedding_set: str) -> str:
    """The ``curate fit-scorer`` line for a chosen candidate."""
    opts = {"k": "--k", "tau": "--tau", "metric": "--metric", "p": "--p",
            "shrinkage": "--shrinkage", "index": "--index"}
    parts = ["curate fit-scorer", f"--scorer {chosen['scorer']}", f"--embeddings '{embedding_set}'"]
    parts += [f"{opts[k]} {v}" for k, v in chosen.items() if k in opts]
    return " ".join(parts)


__all__ = ["tune_scorer", "parse_candidate", "TuneReport", "DEFAULT_CANDIDATES", "fit_command"]
