"""Pictures for ``curate report`` as ``data:`` URIs: thumbnails (JPEG) and figures (PNG).

- :func:`thumbnails` -- image files -> small base64 JPEGs (longest side ``THUMB_PX``),
  read in a thread pool; only the images a report shows are read. JPEG drafts decode
  large photos at reduced size, so a 12-megapixel file costs a few milliseconds.
- :func:`png_file_uri` -- a PNG written by :mod:`curate.plot` (embedding map,
  accuracy-vs-budget curves) as a URI.
- :func:`score_histogram`, :func:`flag_rate_plot`, :func:`training_curves` -- small
  matplotlib figures (Agg) rendered straight to PNG bytes.
"""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

THUMB_PX = 96        # longest side of an embedded thumbnail, in pixels
THUMB_QUALITY = 80   # JPEG quality: a 96-px photo thumbnail weighs a few KB
FIG_DPI = 100


def _uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnail_bytes(path: str, px: int = THUMB_PX, quality: int = THUMB_QUALITY) -> bytes | None:
    """JPEG bytes of ``path`` shrunk to fit ``px`` x ``px`` (never enlarged), grayscale kept
    as one channel; None when the file is gone or no longer decodes."""
    from PIL import Image, ImageOps

    from curate.imageio import FORMATS, open_regular, to_8bit

    try:
        with open_regular(path) as f, Image.open(f, formats=FORMATS) as im:
            im.seek(0)
            if im.format == "JPEG":
                im.draft(im.mode if im.mode in ("RGB", "L") else "RGB", (2 * px, 2 * px))
            im.load()
            im = to_8bit(ImageOps.exif_transpose(im))
        im.thumbnail((px, px), Image.Resampling.LANCZOS)
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality)
        return buf.getvalue()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def thumbnails(paths: dict[int, str], px: int = THUMB_PX, quality: int = THUMB_QUALITY,
               workers: int = 4) -> dict[int, str | None]:
    """image id -> ``data:image/jpeg;base64,...`` (None for a file that cannot be read).
    Cost: one decode per image, ``workers`` at a time."""
    ids = list(paths)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        data = list(pool.map(lambda i: thumbnail_bytes(paths[i], px, quality) if paths[i] else None,
                             ids))
    return {i: (_uri(d, "image/jpeg") if d else None) for i, d in zip(ids, data)}


def png_file_uri(path: Path | str) -> str:
    return _uri(Path(path).read_bytes(), "image/png")


def _fig_uri(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=FIG_DPI)
    plt.close(fig)
    return _uri(buf.getvalue(), "image/png")


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def score_histogram(scores: np.ndarray, threshold: float | None, cal_scores: np.ndarray | None = None,
                    title: str = "") -> str:
    """Histogram of novelty ``scores`` (float[n], higher = more novel), the calibration
    scores (density-scaled to the same counts) and the calibrated threshold as a line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    cal = None if cal_scores is None else np.asarray(cal_scores, np.float64)
    both = np.concatenate([s, cal]) if cal is not None and len(cal) else s
    bins = np.histogram_bin_edges(both, bins=min(60, max(10, int(np.sqrt(max(len(both), 1))))))
    if len(s):
        ax.hist(s, bins=bins, color="tab:blue", alpha=0.75, label=f"scored images ({len(s)})")
    if cal is not None and len(cal):
        w = np.full(len(cal), (len(s) / len(cal)) if len(s) else 1.0)
        ax.hist(cal, bins=bins, weights=w, histtype="step", color="black", linewidth=1.2,
                label=f"calibration ({len(cal)}, rescaled)")
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(threshold, color="tab:red", linestyle="--", linewidth=1.5,
                   label=f"threshold {threshold:.4g}")
    ax.set_xlabel("novelty score (higher = more novel)")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _fig_uri(fig)


def flag_rate_plot(series, title: str = "") -> str:
    """Flagged fraction per checked batch (DataFrame: scorer, batch, flagged, expected,
    verdict) as lines per scorer; shifted batches in red, the expected rate dashed."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 2.8))
    for name, g in series.groupby("scorer", sort=False, dropna=False):
        x = np.arange(len(g))
        ax.plot(x, g["flagged"], marker="o", ms=4, label=str(name))
        sh = (g["verdict"] == "shifted").to_numpy()
        if sh.any():
            ax.scatter(x[sh], g["flagged"].to_numpy()[sh], s=60, facecolors="none",
                       edgecolors="tab:red", linewidths=1.5, zorder=3)
        exp = g["expected"].dropna()
        if len(exp):
            ax.axhline(float(exp.iloc[-1]), color="grey", linestyle="--", linewidth=1)
        ticks = g["batch"].astype(str).tolist()
    step = max(1, len(ticks) // 12)
    ax.set_xticks(np.arange(len(ticks))[::step], ticks[::step], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("flagged fraction")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, title="scorer (red ring: shifted; dashed: expected)", title_fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    return _fig_uri(fig)


def training_curves(metrics: list[dict], title: str = "") -> str | None:
    """Loss curves (left axis) and kNN / train accuracy (right axis) per epoch of one run's
    stored metrics; None when no epoch holds a loss or accuracy."""
    if not metrics:
        return None
    loss_keys = sorted({k for m in metrics for k in m if "loss" in k})
    acc_keys = sorted({k for m in metrics for k in m if k.endswith("acc")})
    if not loss_keys and not acc_keys:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3))
    ep = [m.get("epoch", i) for i, m in enumerate(metrics)]
    for k in loss_keys:
        ax.plot(ep, [m.get(k, np.nan) for m in metrics], marker=".", label=k)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    handles, labels = ax.get_legend_handles_labels()
    if acc_keys:
        ax2 = ax.twinx()
        for k in acc_keys:
            ax2.plot(ep, [m.get(k, np.nan) for m in metrics], marker=".", linestyle="--",
                     color="tab:green", label=k)
        ax2.set_ylabel("accuracy")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    return _fig_uri(fig)
