"""Test helpers importable from every test module (tests/ is on pythonpath)."""

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, size=(16, 16), mode="RGB", seed=0, fmt=None) -> Path:
    """Write a real random image file."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode in ("RGB", "RGBA", "CMYK"):
        arr = rng.integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
        Image.fromarray(arr, mode).save(path, format=fmt)
    elif mode == "I;16":
        arr = rng.integers(0, 65536, (size[1], size[0]), dtype=np.uint16)
        Image.fromarray(arr).save(path, format=fmt)
    else:
        arr = rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)
        im = Image.fromarray(arr, "L")
        (im.convert(mode) if mode != "L" else im).save(path, format=fmt)
    return path


def write_class_images(root: Path, classes=3, per_class: int = 30, size: int = 8,
                       seed: int = 0, noise: float = 30.0) -> Path:
    """ImageFolder layout ``root/c{k}/{i}.png``: class k = a fixed random RGB template
    (the same for every call) plus Gaussian noise drawn from ``seed``, so pixel embeddings
    separate the classes. ``classes``: a count or the class numbers to write. Returns ``root``."""
    classes = range(classes) if isinstance(classes, int) else classes
    templates = np.random.default_rng(12345).uniform(40, 215, (max(classes) + 1, size, size, 3))
    rng = np.random.default_rng(seed)
    for c in classes:
        for i in range(per_class):
            arr = np.clip(templates[c] + rng.normal(0, noise, templates[c].shape), 0, 255)
            path = root / f"c{c}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr.astype(np.uint8), "RGB").save(path)
    return root


def gray_noise_workspace(root, n: int, batch: str | None = None):
    """A workspace under ``root`` with ``n`` ingested 16x16 random grayscale PNGs;
    returns ``(ws, index)`` (the caller closes the index)."""
    import numpy as np
    from PIL import Image

    from curate.ingest import ingest
    from curate.workspace import init_workspace

    rng = np.random.default_rng(0)
    for i in range(n):
        p = root / "imgs" / f"{i:03d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(p)
    ws = init_workspace(root / "ws")
    index = ws.open_index()
    ingest(index, [str(root / "imgs")], batch=batch)
    return ws, index


def bare_scorer(session, name: str = "sc", kind: str = "knn") -> int:
    """Insert a Scorer row (on a stand-in model and 2-d embedding set, no state file)
    in ``session``; returns its id. For tests of what is stored against a scorer."""
    from curate.db.models import EmbeddingSet, Model, Scorer

    m = Model(name=f"{name}-model", encoder="pixels-pca")
    session.add(m)
    session.flush()
    es = EmbeddingSet(name=f"{name}-set", model_id=m.id, dim=2, dtype="float32", path="x")
    session.add(es)
    session.flush()
    sc = Scorer(name=name, kind=kind, embedding_set_id=es.id)
    session.add(sc)
    session.flush()
    return sc.id
