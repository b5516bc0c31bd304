"""2-D maps of embeddings as PNG files (matplotlib, Agg backend); arrays in, file out.

- :func:`project_2d` -- (N, D) -> (N, 2): the embedding itself when D == 2, else PCA
  (sklearn, O(N D min(N, D))) or t-SNE (sklearn, O(N log N) per iteration; slow beyond
  ~20k points: we subsample first, see ``max_points`` of the CLI).
- :func:`plot_embedding` -- pure rendering: coordinates, a colour per point
  (categorical labels or continuous scores), optional ``selected`` (ringed) and
  ``flagged`` (red crosses) masks -> PNG path.

Used by ``curate plot embedding`` and ``benchmarks/metric_quality.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from curate.errors import CurateError
from curate.validation import check_matrix


def project_2d(X: np.ndarray, method: str = "pca", random_state: int = 0) -> tuple[np.ndarray, str]:
    """Project float (N, D) to (N, 2); returns ``(coords float32[N, 2], how)``.

    ``how`` is ``"identity"`` when D == 2 (the embedding is already a map), else
    ``"pca"`` or ``"tsne"``. D == 1 gets a zero second axis.
    """
    X = np.asarray(check_matrix(X, "embeddings"), dtype=np.float32)
    if X.shape[1] == 2:
        return X.copy(), "identity"
    if X.shape[1] == 1:
        return np.hstack([X, np.zeros_like(X)]), "identity"
    if method == "pca" or len(X) < 5:
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=random_state).fit_transform(X).astype(np.float32), "pca"
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (len(X) - 1) / 3)))
        ts = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=random_state)
        return ts.fit_transform(X).astype(np.float32), "tsne"
    raise CurateError(f"unknown projection {method!r}; use pca or tsne")


def plot_embedding(coords: np.ndarray, out: Path | str, colors: Sequence | np.ndarray | None = None,
                   continuous: bool | None = None, selected: np.ndarray | None = None,
                   flagged: np.ndarray | None = None, title: str | None = None,
                   color_label: str | None = None, axis_labels: tuple[str, str] = ("dim 1", "dim 2"),
                   max_legend: int = 20, dpi: int = 120) -> Path:
    """Scatter ``coords`` (N, 2) to a PNG at ``out``; returns the path.

    ``colors``: one value per point -- strings/ints are categories (a legend, up to
    ``max_legend`` entries; ``None``/empty values are drawn grey as "unlabelled"),
    floats are a continuous colour bar (NaN grey); ``continuous`` overrides the guess.
    ``selected`` (bool[N]) points get a black ring, ``flagged`` (bool[N]) a red cross.
    Cost: O(N) drawing.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    coords = np.asarray(coords, dtype=np.float32)
    n = len(coords)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise CurateError(f"coords must be (N, 2), got {coords.shape}")
    for name, m in (("colors", colors), ("selected", selected), ("flagged", flagged)):
        if m is not None and len(m) != n:
            raise CurateError(f"{name} has {len(m)} entries for {n} points")
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise CurateError(f"plots are PNG files; got {out.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    size = float(np.clip(3000 / max(n, 1), 2, 30))
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    if colors is None:
        ax.scatter(coords[:, 0], coords[:, 1], s=size, c="tab:blue", alpha=0.7, linewidths=0)
    else:
        vals = np.asarray(colors, dtype=object)
        if continuous is None:
            continuous = all(isinstance(v, (float, np.floating)) or v is None for v in vals)
        if continuous:
            f = np.array([np.nan if v is None else float(v) for v in vals], dtype=np.float64)
            nan = ~np.isfinite(f)
            if nan.any():
                ax.scatter(coords[nan, 0], coords[nan, 1], s=size, c="lightgrey", linewidths=0,
                           label="no value")
            sc = ax.scatter(coords[~nan, 0], coords[~nan, 1], s=size, c=f[~nan], cmap="viridis",
                            alpha=0.8, linewidths=0)
            fig.colorbar(sc, ax=ax, label=color_label or "")
        else:
            keys = np.array(["" if v is None else str(v) for v in vals])
            cats = sorted(set(keys) - {""}, key=_natural)
            cmap = plt.get_cmap("tab10" if len(cats) <= 10 else "tab20")
            if (keys == "").any():
                m = keys == ""
                ax.scatter(coords[m, 0], coords[m, 1], s=size, c="lightgrey", linewidths=0,
                           label="unlabelled")
            for i, cat in enumerate(cats):
                m = keys == cat
                ax.scatter(coords[m, 0], coords[m, 1], s=size, color=cmap(i % cmap.N), alpha=0.8,
                           linewidths=0, label=cat if i < max_legend else None)
    if selected is not None and np.any(selected):
        m = np.asarray(selected, dtype=bool)
        ax.scatter(coords[m, 0], coords[m, 1], s=max(size * 4, 25), facecolors="none",
                   edgecolors="black", linewidths=1.0, label=f"selected ({m.sum()})")
    if flagged is not None and np.any(flagged):
        m = np.asarray(flagged, dtype=bool)
        ax.scatter(coords[m, 0], coords[m, 1], s=max(size * 3, 20), marker="x", c="red",
                   linewidths=1.0, label=f"flagged ({m.sum()})")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title=None if continuous else color_label, loc="best", fontsize=8,
                  markerscale=max(1.0, 6 / size ** 0.5), framealpha=0.8)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    return _save(fig, ax, title, out, dpi)


def _save(fig, ax, title, out, dpi) -> Path:
    """Title, tight layout, write ``out`` as PNG, close the figure."""
    import matplotlib.pyplot as plt

    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def _natural(s: str):
    return (0, int(s), "") if s.lstrip("-").isdigit() else (1, 0, s)


def plot_curves(summary, out: Path | str, title: str | None = None, dpi: int = 120) -> Path:
    """Accuracy vs budget (log x) per strategy: the mean and its 95% band, as a PNG.

    ``summary``: a DataFrame with columns strategy, budget, accuracy, accuracy_low,
    accuracy_high (``curate.select.simulation.paired_differences``); NaN band limits
    (one seed) draw the mean only. Cost: O(rows).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise CurateError(f"plots are PNG files; got {out.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups = list(summary.groupby("strategy", sort=False))
    cmap = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    for i, (name, g) in enumerate(groups):
        g = g.sort_values("budget")
        color = cmap(i % cmap.N)
        ax.plot(g["budget"], g["accuracy"], marker="o", ms=3, color=color, label=name)
        ax.fill_between(g["budget"], g["accuracy_low"], g["accuracy_high"], color=color, alpha=0.2,
                        linewidth=0)
    ax.set_xscale("log")
    budgets = sorted(summary["budget"].unique())
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel("labelled images (budget)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, ax, title, out, dpi)


# --------------------------------------------------------------------------- index edge
COLOR_BY = ("label", "batch", "selection", "score")


def embedding_map(index, ws, model: str | None = None, set_name: str | None = None,
                  batch: str | None = None, color: str = "label", selection_id: int | None = None,
                  scorer: str | None = None, method: str = "pca", out: Path | str | None = None,
                  max_points: int = 20000, random_state: int = 0) -> dict:
    """Render the embedding set of ``model`` (or ``set_name``) as a PNG; returns a summary.

    The model's latest embedding set is used; with none, the model embeds the images
    first (``curate.embed.embed``; stored, so later plots reuse it). Selected images
    are those of ``selection_id`` (default: the latest selection), flagged ones are
    flagged by ``scorer`` (default: any scorer); ``color="score"`` uses that
    scorer's scores (default: the latest scorer). More than ``max_points`` points are
    subsampled (seeded) before projecting.
    """
    from curate.embeddings import load_embeddings

    if color not in COLOR_BY:
        raise CurateError(f"unknown --color {color!r}; choose one of: {', '.join(COLOR_BY)}")
    if model is None and set_name is None:
        raise CurateError("give --model RUN or --set NAME")
    if set_name is None:
        es = index.model_embedding_set(model)   # unknown model: one-line error
        set_name = es.name if es is not None else None
    embedded_now = 0
    if set_name is None:
        from curate.embed import embed

        rep = embed(index, ws, model=model)
        set_name, embedded_now = rep.embedding_set, rep.embedded
    ids, X = load_embeddings(index, set_name, batch=batch)
    if len(ids) == 0:
        raise CurateError(f"embedding set {set_name} holds no images"
                          + (f" of batch {batch!r}" if batch else ""))
    if len(ids) > max_points:
        keep = np.sort(np.random.default_rng(random_state).choice(len(ids), max_points, replace=False))
        ids, X = ids[keep], X[keep]
    coords, how = project_2d(X, method, random_state)
    id_list = ids.tolist()
    if selection_id is None:
        try:
            selection_id = index.selection("latest").id
        except CurateError:   # no selection yet: nothing is ringed
            selection_id = None
    else:
        selection_id = index.selection(selection_id).id   # unknown id: one-line error
    picked = set(index.selection_image_ids(selection_id)) if selection_id is not None else set()
    scorer_row = None
    if scorer is not None:
        scorer_row = index.scorer(scorer)
    elif color == "score":
        try:
            scorer_row = index.scorer(None)
        except CurateError:
            raise CurateError("--color score needs a fitted scorer; none in the index") from None
    flagged_ids, score_of = set(), {}
    for iid, sc, fl in index.image_scores(None if scorer_row is None else scorer_row.id):
        if fl:
            flagged_ids.add(iid)
        score_of[iid] = sc
    if color == "label":
        labels = index.labels()
        colors = [labels.get(i) for i in id_list]
    elif color == "batch":
        names = index.image_batches(id_list)
        colors = [names.get(i) for i in id_list]
    elif color == "selection":
        colors = ["selected" if i in picked else "not selected" for i in id_list]
    else:
        colors = [None if i not in score_of else float(score_of[i]) for i in id_list]
    selected = np.isin(ids, np.fromiter(picked, np.int64, len(picked)))
    flagged = np.isin(ids, np.fromiter(flagged_ids, np.int64, len(flagged_ids)))
    if out is None:
        from curate.embeddings import safe_name

        out = ws.data_dir / "plots" / f"{safe_name(set_name)}-{color}.png"
    axis = ("embedding dim 1", "embedding dim 2") if how == "identity" else (f"{how} 1", f"{how} 2")
    title = f"{set_name}" + (f" / batch {batch}" if batch else "") + f" ({len(ids)} images, {how})"
    path = plot_embedding(coords, out, colors, continuous=color == "score", selected=selected,
                          flagged=flagged, title=title, color_label=color if color != "score" else
                          f"score ({scorer_row.name})", axis_labels=axis)
    return {"path": str(path), "embedding_set": set_name, "points": int(len(ids)), "projection": how,
            "selection_id": selection_id, "selected": int(selected.sum()),
            "flagged": int(flagged.sum()), "embedded_now": embedded_now, "color": color}
