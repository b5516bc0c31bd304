"""Choose a novelty scorer's settings from in-distribution data only with the
sensitivity score (``curate tune-scorer``; thesis 003 §3.4, ch. 6; methods.md §4).

The embedding set(s) must come from encoders trained by ``curate train``, which keeps
``--holdout-fraction`` (0.1) of its images out of training and stores their ids with the
run (``TrainingRun.data["holdout_split"]`` -> ``split.npz``, see :func:`run_split`).
``sens`` rows are drawn from the images the encoder was trained on; the test rows are
its held-out images, or the images of ``test_batches`` (which the encoder must not have
trained on). With several embedding sets (e.g. runs with different lambda / negative
sets) the same images are used for all: the trained images common to every run and
the test images none of them trained on. :func:`curate.novelty.sensitivity.tune` scores
every candidate on one sens/reference split and picks the **maximum** sensitivity,
with DeLong 95% intervals; the report says when the best is not significantly above
the others or above 0.5. Candidates must be settings of one scorer kind. Embeddings of
encoders that were not trained on these images (pixels-pca, pretrained backbones) have
no seen/unseen split: a one-line error. Nothing is stored.

Candidates are strings ``NAME[:param=value,...]``, e.g. ``cosine-weighted:tau=0.02``,
``knn:k=10``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curate.embeddings import load_embeddings
from curate.errors import CurateError
from curate.novelty import CLASS_CONDITIONAL, SCORERS
from curate.novelty.sensitivity import check_one_kind, tune
from curate.provenance import read_split
from curate.validation import check_finite

TAUS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.3, 0.5)
KS = (1, 2, 5, 10, 20, 50, 100, 200)
DEFAULT_CANDIDATES = tuple(f"cosine-weighted:tau={t}" for t in TAUS)  # thesis 003 Eq. 6
GRIDS = {"cosine-weighted": DEFAULT_CANDIDATES, "knn": tuple(f"knn:k={k}" for k in KS)}


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
    """``"knn:k=10,index=flat"`` -> ``{"kind": "knn", "k": 10, "index": "flat"}``."""
    name, _, rest = str(text).strip().partition(":")
    SCORERS.get(name)  # unknown names fail with the list of choices
    cand: dict[str, Any] = {"kind": name}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, val = part.partition("=")
        if not eq or not key.strip():
            raise CurateError(f"bad candidate {text!r}: write NAME:param=value,...")
        cand[key.strip()] = _value(val)
    return cand


def candidate_label(cand: dict[str, Any]) -> str:
    params = ",".join(f"{k}={v}" for k, v in cand.items() if k not in ("kind", "embedding"))
    return cand["kind"] + (f":{params}" if params else "")


def expand_candidates(candidates) -> list[dict[str, Any]]:
    """Strings/dicts -> candidate dicts; a bare kind with a grid (``knn``,
    ``cosine-weighted``) expands to :data:`GRIDS`; default :data:`DEFAULT_CANDIDATES`."""
    out: list[dict[str, Any]] = []
    for c in (candidates or DEFAULT_CANDIDATES):
        if isinstance(c, str) and c.strip() in GRIDS:
            out += [parse_candidate(g) for g in GRIDS[c.strip()]]
        else:
            out.append(dict(c) if isinstance(c, dict) else parse_candidate(c))
    return out


def run_split(index, set_name: str) -> tuple[Any, np.ndarray, np.ndarray]:
    """(run, trained image ids, held-out image ids) of the run that made embedding set
    ``set_name``; a one-line CurateError when there is none or its split file is gone
    or changed (hashes in ``run.data["holdout_split"]``)."""
    _, model, run = index.embedding_set_origin(set_name)
    if run is None:
        raise CurateError(
            f"embedding set {set_name!r} comes from encoder {model.encoder!r}, which was not trained "
            "on these images: the sensitivity score needs images the encoder was trained on and "
            "images it never saw (thesis 003 §3.4); train one with `curate train` (it holds out "
            "--holdout-fraction 0.1) and `curate embed --model RUN`")
    train, hold = read_split((run.data or {}).get("holdout_split"), f"training run {run.name!r}")
    return run, train, hold


@dataclass
class TuneReport:
    embedding_sets: list[str]
    runs: list[str]
    test_source: str
    chosen: dict
    table: list[dict]
    decision: dict
    n_train: int
    n_test: int
    n_sens: int
    labelled: bool
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def embedding_set(self) -> str:
        return self.chosen.get("embedding", self.embedding_sets[0])

    def as_dict(self) -> dict:
        return dict(self.__dict__, embedding_set=self.embedding_set)


def _notes(decision: dict, table: list[dict]) -> list[str]:
    """Plain-language verdicts on what the data supports."""
    by = {r["candidate"]: r for r in table}
    best = by[decision["best"]]
    pct = f"{decision['level']:.0%}"
    notes = []
    if not decision["above_chance"]:
        notes.append(f"the best sensitivity {best['sensitivity']:.3f} ({pct} CI "
                     f"{best['ci'][0]:.3f}-{best['ci'][1]:.3f}) is not significantly above 0.5: "
                     "no setting separates training images from unseen ones, so the score "
                     "cannot rank these settings (train longer, or use more images)")
    if decision["tied"]:
        other = by[decision["tied"][0]]
        notes.append(f"{len(decision['tied'])} other setting(s) are within noise of the best "
                     f"(e.g. {other['label']}: difference {other['diff_to_best']:.3f}, {pct} CI "
                     f"{other['diff_ci'][0]:.3f} to {other['diff_ci'][1]:.3f}); the data does not "
                     "support choosing between them")
    return notes


def tune_scorer(index, embeddings=None, candidates=None, test_batches=None,
                n_sens: int | None = None, seed: int | None = 0) -> TuneReport:
    """Evaluate ``candidates`` (strings or dicts of one scorer kind; default: the
    cosine-weighted tau grid) on ``embeddings`` (a set name, a list of them, or None =
    the latest) and pick the maximum sensitivity (module doc). ``n_sens`` defaults to
    min(number of test images, trained images / 5)."""
    t0 = time.perf_counter()
    cands = expand_candidates(candidates)
    kind = check_one_kind(cands)
    names = [embeddings] if embeddings is None or isinstance(embeddings, str) else list(embeddings)
    sets = list(dict.fromkeys(index.embedding_set(n).name for n in names))
    given = index.batch_image_ids(test_batches)
    labels = index.labels()
    splits = [run_split(index, name) for name in sets]
    train = splits[0][1]
    for _, tr, _ in splits[1:]:
        train = np.intersect1d(train, tr)
    trained_any = np.unique(np.concatenate([tr for _, tr, _ in splits]))
    if given is not None:
        overlap = np.intersect1d(given, trained_any)
        if len(overlap):
            raise CurateError(f"{len(overlap)} image(s) of --test-batch were used to train "
                              f"{splits[0][0].name if len(splits) == 1 else 'these runs'}; "
                              "name images the encoder never saw")
        test, source = given, "batch(es) " + ", ".join(test_batches)
    else:
        test = splits[0][2]
        for _, _, hold in splits[1:]:
            test = np.intersect1d(test, hold)
        test = np.setdiff1d(test, trained_any)
        source = "held-out images of run(s) " + ", ".join(r.name for r, _, _ in splits)
    loaded = {}
    for name in sets:  # keep the rows embedded (and ok) in every set, ordered by image id
        ids, X = load_embeddings(index, name, image_ids=np.union1d(train, test))
        check_finite(ids, X, f"embedding set {name}")
        loaded[name] = (ids, X)
        train, test = np.intersect1d(train, ids), np.intersect1d(test, ids)
    if len(test) < 2 or len(train) < 3:
        raise CurateError(f"too few embedded images for the sensitivity score: {len(train)} "
                          f"trained and {len(test)} never-seen ({source}); need >= 3 and >= 2")
    Xtr = {n: X[np.searchsorted(ids, train)] for n, (ids, X) in loaded.items()}
    Xte = {n: X[np.searchsorted(ids, test)] for n, (ids, X) in loaded.items()}
    labelled = all(int(i) in labels for i in np.r_[train, test])
    y_tr = np.array([labels[int(i)] for i in train]) if labelled else None
    y_te = np.array([labels[int(i)] for i in test]) if labelled else None
    if kind in CLASS_CONDITIONAL and not labelled:
        raise CurateError(f"{kind} is class-conditional and needs labels on every image")
    n_sens = int(n_sens) if n_sens is not None else max(2, min(len(test), len(train) // 5))
    if not 1 <= n_sens < len(train):
        raise CurateError(f"n_sens must be in [1, {len(train) - 1}], got {n_sens}")
    runs_cands = [dict(c, embedding=e) for e in sets for c in cands] if len(sets) > 1 else cands
    chosen, table, decision = tune(Xtr if len(sets) > 1 else Xtr[sets[0]],
                                   Xte if len(sets) > 1 else Xte[sets[0]], runs_cands,
                                   y_train=y_tr, y_test=y_te, n_sens=n_sens, random_state=seed)
    for row in table:
        row["label"] = candidate_label({"kind": row["kind"], **row["params"]})
        row["embedding"] = row["embedding"] if len(sets) > 1 else sets[0]
    return TuneReport(sets, [r.name for r, _, _ in splits], source, chosen, table, decision,
                      len(train), len(test), n_sens, labelled, time.perf_counter() - t0,
                      _notes(decision, table))


def fit_command(chosen: dict, embedding_set: str) -> str:
    """The ``curate fit-scorer`` line for a chosen candidate."""
    opts = {"k": "--k", "tau": "--tau", "metric": "--metric", "p": "--p",
            "shrinkage": "--shrinkage", "index": "--index", "C": "--C"}
    parts = ["curate fit-scorer", f"--kind {chosen['kind']}",
             f"--embeddings '{chosen.get('embedding', embedding_set)}'"]
    parts += [f"{opts[k]} {v}" for k, v in chosen.items() if k in opts]
    return " ".join(parts)


__all__ = ["tune_scorer", "parse_candidate", "expand_candidates", "run_split", "TuneReport",
           "DEFAULT_CANDIDATES", "GRIDS", "fit_command"]
