"""The short comparison at the end of ``curate train``: the new encoder against pixels-pca
on the run's held-out images (the ``--holdout-fraction`` it never trained on).

Both encoders embed the same images: a seeded sample of at most ``max_reference`` of the
images the run trained on (the reference) and at most ``max_holdout`` held-out images.
``pixels-pca`` (:class:`curate.encoders.pixels_pca.PixelsPCA`, the defaults of
``curate embed --encoder pixels-pca``) is fitted on the reference only, in memory, so
neither encoder saw the held-out images. Metrics (:mod:`curate.comparison`):

- label-free, always: **shift AUROC** (``rot90``, ``quadrant-swap``): a k-NN novelty
  scorer (k = 10, cosine) fitted on the reference scores the held-out images
  (negatives) and the same images rotated by 90 degrees / with their quadrants swapped
  diagonally (positives). It asks whether the space notices images whose structure is
  broken, a proxy for near-OOD detection that needs no labels and no second dataset. A
  rotation-invariant domain (aerial, microscopy) makes ``rot90`` in-distribution: read
  it there as a check of invariance instead. ``dino-neg --neg-shift rot`` trains on
  rotations, so it has an edge there.
- when the reference and held-out images carry labels of >= 2 classes: 10-NN and
  linear-probe accuracy (trained on the labelled reference, tested on the labelled
  held-out images; the reference is small, so both are lower than with every image).
- for information, not judged: the sensitivity score (k-NN AUROC of held-out vs
  reference images, thesis 003 §3.4) of both encoders.

Cost on a CPU for the defaults (1,000 + 1,000 images, small-cnn at 28 px): decoding
~2,000 images, ~4,000 forward passes per encoder, two probe fits: seconds.
The result is stored with the run (``run.data["comparison"]``); a failure to compare is
recorded there as ``error`` and never fails the finished run.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from curate.comparison import accuracy_rows, auroc_rows, labelled_outcomes, ood_scores
from curate.verdict import finish_table, verdict_line, verdicts
from curate.compare import CompareResult
from curate.errors import CurateError
from curate.provenance import read_split

BASELINE = "pixels-pca"
MIN_HOLDOUT = 20


def rot90(img: Image.Image) -> Image.Image:
    return img.transpose(Image.Transpose.ROTATE_90)


def quadrant_swap(img: Image.Image) -> Image.Image:
    """Roll by half the height and half the width: the quadrants swap diagonally."""
    a = np.asarray(img)
    return Image.fromarray(np.roll(a, (a.shape[0] // 2, a.shape[1] // 2), axis=(0, 1)))


SHIFTS = {"rot90": rot90, "quadrant-swap": quadrant_swap}


def _encode(enc, images: list[Image.Image], batch: int = 256) -> np.ndarray:
    out = []
    for i in range(0, len(images), batch):
        x = torch.stack([enc.transform(im) for im in images[i:i + batch]])
        out.append(enc.encode(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, enc.dim), np.float32)


def _load(recs, channels: int) -> tuple[list, list[Image.Image]]:
    from curate.imageio import load_image

    kept, imgs = [], []
    for r in recs:
        try:
            imgs.append(load_image(r.path, channels))
            kept.append(r)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            continue  # vanished or broke since ingest: left out
    return kept, imgs


def _sensitivity_row(name, X_ref, X_hold, level) -> dict:
    from scipy.stats import norm

    from curate.novelty.sensitivity import delong, sensitivity_scores

    n_sens = max(2, min(len(X_hold), len(X_ref) // 5))
    sens, test = sensitivity_scores("knn", X_ref, X_hold, n_sens=n_sens)
    auc, cov = delong(sens, test)
    half = float(norm.ppf(0.5 + level / 2) * np.sqrt(max(cov[0, 0], 0.0)))
    return {"set": name, "metric": "sensitivity (knn, not judged)", "kind": "info",
            "value": float(auc[0]), "low": float(auc[0] - half), "high": float(auc[0] + half),
            "diff": np.nan, "diff_low": np.nan, "diff_high": np.nan, "n": n_sens + len(X_hold),
            "interval": "DeLong", "in_verdict": False, "verdict": None}


def compare_after_training(index, ws, run, *, max_reference: int = 1000,
                           max_holdout: int = 1000, knn_k: int = 10, n_boot: int = 1000,
                           level: float = 0.95, seed: int = 0) -> CompareResult:
    """Compare finished run ``run`` (a TrainingRun or its name) with pixels-pca on its
    held-out images (module doc). Raises :class:`CurateError` when the run has no model,
    no split, or fewer than :data:`MIN_HOLDOUT` readable held-out images."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # small GEMMs, k-NN: threads only contend (see comparison)
        return _compare(index, ws, run, max_reference, max_holdout, knn_k, n_boot, level, seed)


def _compare(index, ws, run, max_reference, max_holdout, knn_k, n_boot, level, seed):
    from curate.data import list_images
    from curate.encoders import ENCODERS
    from curate.encoders.pixels_pca import PixelsPCA
    from curate.trainers import encoder as _registers_trained  # noqa: F401

    t0 = time.perf_counter()
    run, model = index.run_model(run if isinstance(run, str) else run.name)
    train, hold = read_split((run.data or {}).get("holdout_split"), f"training run {run.name!r}")
    if len(hold) < MIN_HOLDOUT:
        raise CurateError(f"{len(hold)} held-out images are too few to compare with "
                          f"{BASELINE} (need {MIN_HOLDOUT}; raise --holdout-fraction)")
    rng = np.random.default_rng(seed)
    pick = lambda ids, k: np.sort(rng.permutation(ids)[:k])  # noqa: E731
    train, hold = pick(train, max_reference), pick(hold, max_holdout)
    recs = {r.id: r for r in list_images(index, with_labels=True)}
    enc = ENCODERS.get("trained")(weights=Path(model.weights_path), **{
        k: v for k, v in (model.params or {}).items() if k in ("normalize",)})
    ref_recs, ref_imgs = _load([recs[i] for i in train if i in recs], enc.channels)
    hold_recs, hold_imgs = _load([recs[i] for i in hold if i in recs], enc.channels)
    if len(hold_imgs) < MIN_HOLDOUT or len(ref_imgs) < knn_k + 2:
        raise CurateError(f"only {len(hold_imgs)} held-out and {len(ref_imgs)} trained images "
                          f"are readable; need {MIN_HOLDOUT} and {knn_k + 2}")
    pca = PixelsPCA()
    rgb = lambda ims: [im.convert("RGB") for im in ims]  # noqa: E731  (as `curate embed` loads)
    pca.fit([torch.stack([pca.transform(im) for im in rgb(ref_imgs)])])
    encoders = {run.name: (enc, lambda ims: ims), BASELINE: (pca, rgb)}
    views = {"ref": ref_imgs, "hold": hold_imgs,
             **{k: [f(im) for im in hold_imgs] for k, f in SHIFTS.items()}}
    Z = {name: {v: _encode(e, conv(ims)) for v, ims in views.items()}
         for name, (e, conv) in encoders.items()}
    boot = dict(n_boot=n_boot, level=level, random_state=seed)
    rows: list[dict] = []
    y_ref = np.array([r.label for r in ref_recs], dtype=object)
    y_hold = np.array([r.label for r in hold_recs], dtype=object)
    lr, lh = y_ref != None, y_hold != None  # noqa: E711
    labelled = lh.sum() >= 2 and len(set(y_ref[lr])) >= 2
    if labelled:
        out = labelled_outcomes({n: Z[n]["ref"][lr] for n in Z}, y_ref[lr].astype(str),
                                {n: Z[n]["hold"][lh] for n in Z}, y_hold[lh].astype(str),
                                knn_k, seed)
        for metric, correct in out.items():
            rows += accuracy_rows(metric, correct, BASELINE, **boot)
    for shift in SHIFTS:
        sc = ood_scores({n: Z[n]["ref"] for n in Z}, {n: Z[n]["hold"] for n in Z},
                        {n: Z[n][shift] for n in Z}, "knn", k=knn_k)
        rows += auroc_rows(f"shift AUROC {shift} (knn)", sc, BASELINE, **boot)
    rows += [_sensitivity_row(n, Z[n]["ref"], Z[n]["hold"], level) for n in Z]
    table = finish_table(rows)
    v = verdicts(table, BASELINE)
    sets = [{"name": n, "model": run.name if n == run.name else None,
             "encoder": "trained" if n == run.name else BASELINE, "dim": int(Z[n]["ref"].shape[1]),
             "images": len(ref_imgs) + len(hold_imgs), "images_per_second": None,
             "embed_device": "cpu", "trained_run": n == run.name} for n in Z]
    info = {"n_reference": len(ref_imgs), "n_holdout": len(hold_imgs),
            "n_labelled_reference": int(lr.sum()), "n_labelled_holdout": int(lh.sum()),
            "labelled": bool(labelled), "shifts": list(SHIFTS)}
    params = {"run": run.name, "baseline": BASELINE, "max_reference": max_reference,
              "max_holdout": max_holdout, "knn_k": knn_k, "n_boot": n_boot, "level": level,
              "seed": seed, "pixels_pca": pca.params()}
    notes = [] if labelled else ["no labels on the held-out images: label-free metrics only"]
    return CompareResult(BASELINE, sets, table, v, [verdict_line(n, v[n], BASELINE) for n in v],
                         params, info, notes, time.perf_counter() - t0)


def compare_and_record(index, ws, run, **kwargs):
    """:func:`compare_after_training` stored in ``run.data["comparison"]`` (its
    ``as_dict()``, or ``{"error": message}``); returns the refreshed run. Never raises for
    the comparison: the run is finished and recorded already, and an hours-long training
    must not end in a traceback of its closing check (an unexpected error is recorded with
    its type, for a bug report)."""
    try:
        rec = compare_after_training(index, ws, run, **kwargs).as_dict()
    except CurateError as e:
        rec = {"error": str(e)}
    except Exception as e:  # noqa: BLE001 - see the docstring
        rec = {"error": f"the comparison failed ({type(e).__name__}: {e}); the run is saved"}
    return index.update_run_data(run.id, {"comparison": rec})


__all__ = ["compare_after_training", "compare_and_record", "SHIFTS", "MIN_HOLDOUT"]
