"""``curate compare``: embedding sets side by side on the same images, with ``pixels-pca``
as the baseline. The index edge of :mod:`curate.comparison`.

It loads the named embedding sets (default: every set in the index) and a ``pixels-pca``
set (``baseline``, else the first pixels-pca set among the named ones, else the latest
pixels-pca set, else one computed with :func:`curate.embed.embed`, default settings), keeps the ok images embedded in *every*
set, and runs :func:`curate.comparison.compare_arrays` on them: 10-NN and linear-probe
accuracy and a short active-learning simulation where labels exist (a ``test_batch``,
or cross-validation), OOD AUROC (``knn``, ``mahalanobis``) for each of ``ood_batches``
against the other images. For sets made by ``curate train`` it adds the sensitivity
score (thesis 003 §3.4: k-NN AUROC of the run's held-out images against images it
trained on; :mod:`curate.novelty.sensitivity`, DeLong interval) for information: it
ranks settings of one kind of run, not encoders against pixels, so it is not judged.
Dimensions and embed speed come from the sets' records (``embed_speed.json`` next to
the shards, written by ``curate embed``). Nothing is stored; ``out`` writes the
table. With neither labels nor an OOD batch there is nothing to measure: a one-line error.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from curate.comparison import compare_arrays
from curate.verdict import COLUMNS, finish_table, verdict_line, verdicts
from curate.errors import CurateError

BASELINE_ENCODER = "pixels-pca"


@dataclass
class CompareResult:
    """What :func:`compare` (and the end of ``curate train``) measured.

    ``table``: one row per (set, metric), columns :data:`curate.comparison.COLUMNS`;
    ``sets``: per set name, dim, images, model/encoder, embed speed (or None);
    ``verdicts``: per set ``{"better"|"not distinguishable"|"worse": [metrics]}``;
    ``lines``: the one-line verdicts; ``info``: sizes and what was skipped."""

    baseline: str
    sets: list[dict]
    table: pd.DataFrame
    verdicts: dict
    lines: list[str]
    params: dict
    info: dict
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def worse(self, name: str) -> pd.DataFrame:
        """Rows where set ``name`` is worse than the baseline."""
        t = self.table
        return t[(t["set"] == name) & (t["verdict"] == "worse")]

    def as_dict(self) -> dict:
        d = asdict(self)
        d["table"] = json.loads(self.table.to_json(orient="records"))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CompareResult":
        d = dict(d)
        d["table"] = pd.DataFrame(d.get("table") or [], columns=COLUMNS)
        return cls(**d)


def _names(embeddings) -> list[str] | None:
    if embeddings is None or isinstance(embeddings, str):
        embeddings = [] if embeddings is None else [embeddings]
    out = [n.strip() for e in embeddings for n in str(e).split(",") if n.strip()]
    return list(dict.fromkeys(out)) or None


def _check(ood_batches, test_batch, scorers, al_budgets, al_seeds, n_boot, level, max_images):
    from curate.novelty import SCORERS
    from curate.novelty import CLASS_CONDITIONAL
    from curate.select.simulation import check_budgets

    if test_batch is not None and test_batch in ood_batches:
        raise CurateError(f"batch {test_batch!r} is both the test batch and an OOD batch")
    for s in scorers:
        SCORERS.get(s)
        if s in CLASS_CONDITIONAL:
            raise CurateError(f"scorer {s} is class-conditional; compare uses scorers fitted "
                              "without labels (knn, mahalanobis, max-cosine, cosine-weighted)")
    if int(al_seeds) < 1 or int(n_boot) < 100 or not 0 < level < 1 or int(max_images) < 10:
        raise CurateError("seeds must be >= 1, bootstrap >= 100, level in (0, 1), "
                          "max images >= 10")
    return check_budgets(al_budgets)


def _baseline_set(index, baseline: str | None, names: list[str] | None) -> str | None:
    """The pixels-pca set to compare with: ``baseline``, else the first pixels-pca set among
    ``names`` (the sets the user named), else the latest one; None: none exists."""
    if baseline is not None:
        return index.embedding_set(baseline).name
    for n in names or []:
        if index.embedding_set(n).model.encoder == BASELINE_ENCODER:
            return n
    latest = index.embedding_set_names(encoder=BASELINE_ENCODER)
    return latest[-1] if latest else None


def _sets_info(index, names: list[str], loaded: dict) -> list[dict]:
    from curate.embed import SPEED_FILE
    from curate.embeddings import set_folder

    out = []
    for n in names:
        es = index.embedding_set(n)
        try:
            path = set_folder(getattr(index, "data_dir", None), es) / SPEED_FILE
            speed = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError, CurateError):
            speed = {}
        out.append({"name": n, "model": es.model.name, "encoder": es.model.encoder,
                    "dim": int(es.dim), "images": int(len(loaded[n][0])),
                    "images_per_second": speed.get("images_per_second"),
                    "embed_device": speed.get("device"),
                    "trained_run": es.model.run_id is not None})
    return out


def _sensitivity_rows(index, names, ids, X, level, notes) -> list[dict]:
    """Info rows: the sensitivity score of every set made by a training run (not judged)."""
    from scipy.stats import norm

    from curate.novelty.sensitivity import delong, sensitivity_scores
    from curate.novelty.tuning import run_split

    rows = []
    z = float(norm.ppf(0.5 + level / 2))
    for n in names:
        try:
            run, train, hold = run_split(index, n)
        except CurateError as e:
            if "was not trained on these images" not in str(e):   # a run whose split is gone
                notes.append(f"no sensitivity for {n}: {e}")
            continue
        tr, ho = np.flatnonzero(np.isin(ids, train)), np.flatnonzero(np.isin(ids, hold))
        if len(ho) < 2 or len(tr) < 10:
            notes.append(f"sensitivity of {n}: too few of run {run.name}'s trained ({len(tr)}) "
                         f"or held-out ({len(ho)}) images among the compared ones")
            continue
        n_sens = max(2, min(len(ho), len(tr) // 5))
        sens, test = sensitivity_scores("knn", X[n][tr], X[n][ho], n_sens=n_sens)
        auc, cov = delong(sens, test)
        se = float(np.sqrt(max(cov[0, 0], 0.0)))
        rows.append({"set": n, "metric": "sensitivity (knn, not judged)", "kind": "info",
                     "value": float(auc[0]), "low": float(auc[0] - z * se),
                     "high": float(auc[0] + z * se), "diff": np.nan, "diff_low": np.nan,
                     "diff_high": np.nan, "n": int(n_sens + len(ho)),
                     "interval": "DeLong", "in_verdict": False, "verdict": None})
    return rows


def compare(index, ws, embeddings: Sequence[str] | str | None = None,
            ood_batches: Sequence[str] = (), test_batch: str | None = None,
            baseline: str | None = None, knn_k: int = 10, folds: int = 5, al: bool = True,
            al_budgets: Sequence[int] = (20, 100), al_seeds: int = 5,
            scorers: Sequence[str] = ("knn", "mahalanobis"), sensitivity: bool = True,
            max_images: int = 10000, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
            device: str = "auto", out=None,
            progress: Callable[[str], None] | None = None) -> CompareResult:
    """Compare ``embeddings`` (set names; default: every set) with the pixels-pca baseline on
    the images embedded in all of them (module doc). ``max_images`` caps the labelled
    images (and the OOD rows at half of it). Returns a :class:`CompareResult`; ``out``
    (.csv/.parquet/.json) receives its table. Raises :class:`CurateError` (one line) for
    an unknown set or batch, a test batch that is an OOD batch, no common images, or
    nothing to measure (no labels and no OOD batch)."""
    from curate.embeddings import load_embeddings
    from curate.validation import check_finite

    t0 = time.perf_counter()
    say = progress or (lambda _m: None)
    ood_batches = list(dict.fromkeys(ood_batches or ()))
    budgets = _check(ood_batches, test_batch, scorers, al_budgets, al_seeds, n_boot, level,
                     max_images)
    names, notes = _names(embeddings), []
    if names:
        names = [index.embedding_set(n).name for n in names]   # unknown names: one-line error
        base = _baseline_set(index, baseline, names)          # a named pixels-pca set, if any
    else:
        names = index.embedding_set_names()
        base = _baseline_set(index, baseline, None)
    members = {b: index.batch_image_ids([b]) for b in [*ood_batches, *([test_batch] if test_batch else [])]}
    labels = index.labels()
    if not labels and not ood_batches:  # before computing a baseline for nothing
        raise CurateError("nothing to compare on: no image has a label and no --ood-batch was "
                          "given; ingest with --labels (or pull annotations) for 10-NN, "
                          "linear-probe and AL accuracy, or name an out-of-distribution batch "
                          "with --ood-batch")
    if base is None:
        from curate.embed import embed

        say("computing the pixels-pca baseline (`curate embed --encoder pixels-pca`)")
        rep = embed(index, ws, encoder=BASELINE_ENCODER, device=device)
        base = rep.embedding_set
        notes.append(f"computed the baseline {base}: {rep.embedded} images in {rep.seconds:.1f} s")
    names = [base] + [n for n in names if n != base]
    loaded = {}
    for n in names:
        say(f"loading {n}")
        ids, X = load_embeddings(index, n)
        check_finite(ids, X, f"embedding set {n}")
        loaded[n] = (ids, X)
    common = loaded[base][0]
    for ids, _ in loaded.values():
        common = np.intersect1d(common, ids)
    if len(common) < 4:
        raise CurateError(f"only {len(common)} image(s) are embedded in every set "
                          f"({', '.join(names)}); embed the same images with each encoder")
    short = [f"{n} ({len(v[0])})" for n, v in loaded.items() if len(v[0]) > len(common)]
    if short:
        notes.append(f"compared on the {len(common)} images embedded in every set; more in "
                     + ", ".join(short))
    X = {n: v[1][np.searchsorted(v[0], common)] for n, v in loaded.items()}
    lab = np.array([labels.get(int(i)) for i in common], dtype=object)
    has = np.array([v is not None for v in lab])
    y = np.full(len(common), -1, np.int64)
    if has.any():
        y[has] = np.unique(lab[has].astype(str), return_inverse=True)[1]
    ood = {b: np.isin(common, members[b]) for b in ood_batches}
    for b, m in ood.items():
        if not m.any():
            raise CurateError(f"OOD batch {b!r} has no image embedded in every compared set")
    in_ood = np.any(list(ood.values()), axis=0) if ood else np.zeros(len(common), bool)
    if not (has & ~in_ood).any() and not ood:
        raise CurateError(f"nothing to compare on: none of the {len(common)} images embedded in "
                          "every set has a label, and no --ood-batch was given; ingest with "
                          "--labels (or pull annotations) for 10-NN, linear-probe and AL "
                          "accuracy, or name an out-of-distribution batch with --ood-batch")
    test = None
    if test_batch is not None:
        test = np.isin(common, members[test_batch])
        if not (test & has).any():
            raise CurateError(f"test batch {test_batch!r} has no labelled image embedded in "
                              "every compared set")
    table, info = compare_arrays(X, base, y=y, test=test, ood=ood, knn_k=knn_k, folds=folds,
                                 scorers=scorers, al=al, al_budgets=budgets, al_seeds=al_seeds,
                                 max_labelled=max_images, max_eval=max(2, max_images // 2),
                                 n_boot=n_boot, level=level, random_state=seed, progress=say)
    if sensitivity:
        say("sensitivity of trained runs")
        extra = _sensitivity_rows(index, names[1:], common, X, level, notes)
        if extra:
            table = finish_table(table.to_dict("records") + extra)
    v = verdicts(table, base)
    params = {"embeddings": names, "baseline": base, "ood_batches": ood_batches,
              "test_batch": test_batch, "knn_k": knn_k, "folds": folds, "al": al,
              "al_budgets": budgets, "al_seeds": int(al_seeds), "scorers": list(scorers),
              "max_images": int(max_images), "n_boot": int(n_boot), "level": level, "seed": seed}
    res = CompareResult(base, _sets_info(index, names, loaded), table, v,
                        [verdict_line(n, v[n], base) for n in v], params, info,
                        notes + [f"skipped {s}" for s in info.get("skipped", [])],
                        time.perf_counter() - t0)
    if out is not None:
        from curate.export import write_frame

        write_frame(table, out)
    return res


__all__ = ["compare", "CompareResult", "BASELINE_ENCODER"]
