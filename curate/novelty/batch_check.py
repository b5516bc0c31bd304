"""Batch check: is an incoming batch shifted from a stored scorer's reference?
(``curate check-batch`` -> :func:`check_batch` -> the pure :func:`curate.novelty.shift.check_batch`
-> a stored ``BatchCheck`` row -> :class:`BatchCheckReport`)

Two tests on the batch's ok, embedded images, combined by Bonferroni:

1. flagged fraction: the batch's novelty scores against the scorer's conformal
   threshold at ``alpha`` (default: the scorer's alpha, re-calibrated from the stored
   calibration scores otherwise); exact one-sided beta-binomial test of the flag count
   given the number of stored calibration scores and the threshold's rank among them
   (:func:`curate.novelty.shift.calibrated_flag_test`). Every stored scorer keeps its
   sorted calibration scores, so scorers fitted before this test existed work as is.
2. MMD^2 permutation test (RBF kernel, median bandwidth) of the batch's embeddings vs
   the reference embeddings (a random subsample of at most ``max_ref`` = 10k reference
   images, minus any image of the batch itself, so the two samples never overlap).

Batch images that are part of the reference are scored leave-one-out (neighbour
scorers) or in-sample, as by ``curate score``.

Many batches: the verdict is Benjamini-Hochberg at FDR ``q = alpha`` over the family
of batches checked with this scorer: the latest stored check of every other batch
plus this one (a re-check of a batch replaces its earlier check in the family rather
than counting twice). With one batch BH equals the per-batch test. The per-batch
verdict, the BH-adjusted p-value and the family are stored with the check; earlier
rows are not rewritten (each row records the family as it was when it ran).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from curate.embeddings import load_embeddings
from curate.errors import CurateError
from curate.novelty import shift
from curate.novelty.stored import load_for_scorer, load_scorer
from curate.provenance import add_ids_hashes, versions
from curate.validation import check_alpha, check_finite


@dataclass
class BatchCheckReport:
    check_id: int | None
    batch: str
    scorer: str
    verdict: str  # "shifted" | "no shift"
    result: dict
    params: dict

    @property
    def shifted(self) -> bool:
        return self.verdict == "shifted"

    def as_dict(self) -> dict:
        return {"check_id": self.check_id, "batch": self.batch, "scorer": self.scorer,
                "verdict": self.verdict, "result": self.result, "params": self.params}


def _plain(v: Any) -> Any:
    """JSON-safe copy (numpy scalars/arrays to Python)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, np.generic):
        return v.item()
    return v


def check_batch(index, batch: str, scorer: str | None = None, alpha: float | None = None,
                permutations: int = 1000, max_ref: int = 10_000, seed: int | None = 0,
                store: bool = True) -> BatchCheckReport:
    """Check ``batch`` against a stored scorer (default the latest); store a BatchCheck.

    Returns a BatchCheckReport: ``verdict`` plus ``result`` with the flagged fraction, the
    flag-count p-value (``flag_p``, with ``evidence``), MMD statistic/p-value/effect
    size, the combined per-batch p-value
    and the Benjamini-Hochberg family. Computed fully before the one write.
    """
    st = load_scorer(index, scorer)
    alpha = st.alpha if alpha is None else check_alpha(alpha)
    if int(permutations) < 1:
        raise CurateError(f"permutations must be >= 1, got {permutations}")
    if int(max_ref) < 2:
        raise CurateError(f"max_ref must be >= 2, got {max_ref}")
    ids, X = load_for_scorer(index, st, batch=batch)
    batch_id = index.batch_ids(batch)[0]
    cal = st.calibrator_at(alpha)
    scores = st.scores(ids, X)  # flagged once, by the pure test against ``cal``
    rng = np.random.default_rng(seed)
    ref_ids = np.setdiff1d(st.reference_ids, ids)
    if len(ref_ids) > max_ref:
        ref_ids = np.sort(rng.choice(ref_ids, int(max_ref), replace=False))
    ref_ids, ref_X = load_embeddings(index, st.embedding_set, image_ids=ref_ids)
    if len(ids) < 2:
        raise CurateError(f"batch {batch!r} has {len(ids)} embedded image; the MMD test needs >= 2")
    if len(ref_ids) < 2:
        raise CurateError(f"batch {batch!r} holds (almost) all of scorer {st.name}'s reference; "
                          "check a batch that was not used to fit it")
    check_finite(ref_ids, ref_X, f"embedding set {st.embedding_set} (reference)")
    res = shift.check_batch(ref_X, X, cal=cal, batch_scores=scores, alpha=alpha,
                            n_permutations=int(permutations), max_ref=None, random_state=seed)
    top = np.argsort(-scores, kind="stable")[:10]
    res["per_batch_verdict"] = res.pop("verdict")
    res["n_in_reference"] = int(np.isin(ids, st.reference_ids).sum())
    res["most_novel"] = [{"image_id": int(ids[i]), "score": float(scores[i]), "p_value": float(p)}
                         for i, p in zip(top, cal.p_values(scores[top]))]
    params = {"scorer": st.name, "scorer_kind": st.kind, "embedding_set": st.embedding_set,
              "alpha": alpha, "scorer_alpha": st.alpha, "permutations": int(permutations),
              "max_ref": int(max_ref), "seed": seed, "n_ref_used": int(len(ref_ids))}
    add_ids_hashes(params, reference_ids_sha256=ref_ids, batch_ids_sha256=ids)
    family = index.batch_check_family(st.id, batch_id)
    names = [n for n, _ in family] + [batch]
    pvals = np.array([p for _, p in family] + [res["combined_p"]])
    rejected, adj = shift.benjamini_hochberg(pvals, q=alpha)
    res["bh"] = {"q": alpha, "adjusted_p": float(adj[-1]), "n_batches": len(pvals),
                 "family": [{"batch": n, "p": float(p), "adjusted_p": float(a), "rejected": bool(r)}
                            for n, p, a, r in zip(names, pvals, adj, rejected)]}
    verdict = "shifted" if rejected[-1] else "no shift"
    res = _plain(res)
    check_id = None
    if store:
        check_id = index.add_batch_check(batch_id=batch_id, scorer_id=st.id, verdict=verdict,
                                         result=res, params=params, versions=versions())
    return BatchCheckReport(check_id, batch, st.name, verdict, res, params)


__all__ = ["check_batch", "BatchCheckReport"]
