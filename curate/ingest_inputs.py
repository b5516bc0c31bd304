"""What ``curate ingest`` reads: folders walked, manifests (.csv/.parquet) and label files.

Inputs resolve to ``(absolute path, label or None, label source)`` triples, one per path.
Reading stays inside the given roots: a symlink leaving the folder it was found in, or a
manifest path outside the manifest's folder, is skipped (and reported) unless
``allow_outside``. A file name that is not valid UTF-8 cannot be stored in the index
(names are text there) and is skipped with its bytes shown escaped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from curate.db.store.labels import LABEL_LIMIT
from curate.errors import CurateError
from curate.imageio import EXTENSIONS

MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _walk(root: Path, allow_outside: bool, skipped: list) -> Iterator[tuple[str, str]]:
    """``(absolute path, its folder)`` of the image files under ``root``: a folder's files
    (sorted by name) before its subfolders (sorted). Symlinks are followed only while they
    stay inside ``root`` (any with ``allow_outside``); loops are never entered twice.

    Cost: one ``scandir`` and one ``stat`` (the loop check) per folder; an entry's type and
    whether it is a symlink come from the directory listing, and only symlinks are
    resolved (``realpath``) to check where they lead.
    """
    top = os.path.abspath(root)
    real_root = os.path.realpath(top)

    def leaves(e: os.DirEntry) -> bool:
        if allow_outside or not e.is_symlink() or _inside(os.path.realpath(e.path), real_root):
            return False
        skipped.append((shown(e.path), f"symlink leaves {root} (--allow-outside to follow)"))
        return True

    seen: set[tuple[int, int]] = set()
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            st = os.stat(d)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for e in entries:
            try:
                is_dir = e.is_dir()   # follows a symlink, as os.walk(followlinks=True) does
            except OSError:
                is_dir = False
            if is_dir:
                if not leaves(e):
                    subdirs.append(e.path)
            elif e.name.lower().endswith(EXTENSIONS) and not leaves(e):
                yield e.path, d
        stack.extend(reversed(subdirs))


def _text(v) -> str | None:
    return None if v is None or isinstance(v, float) or str(v) == "" else str(v)


def _read_manifest(path: Path) -> list[tuple[Path, str | None]]:
    """``(path, label)`` rows; relative paths are relative to the manifest's folder."""
    import pandas as pd

    try:
        df = pd.read_parquet(path) if path.suffix != ".csv" else pd.read_csv(path, dtype=str)
    except Exception as e:  # noqa: BLE001 - any unreadable manifest is user input
        raise CurateError(f"cannot read manifest {path}: {str(e).splitlines()[0]}") from None
    if "path" not in df.columns:
        raise CurateError(f"manifest {path} has no 'path' column (columns: {', '.join(map(str, df.columns))})")
    labels = df["label"] if "label" in df.columns else [None] * len(df)
    out = []
    for row, (p, lab) in enumerate(zip(df["path"], labels), start=1):
        p, lab = _text(p), _text(lab)
        if p is None:
            continue
        if "\x00" in p or (lab and "\x00" in lab):
            raise CurateError(f"manifest {path} data row {row}: contains a NUL byte")
        if lab and len(lab) > LABEL_LIMIT:
            raise CurateError(f"manifest {path} data row {row}: label is {len(lab)} characters; "
                              f"the limit is {LABEL_LIMIT}")
        q = Path(p).expanduser()
        out.append((q if q.is_absolute() else path.parent / q, lab))
    if not out:
        raise CurateError(f"manifest {path} lists no paths (header only or empty 'path' column)")
    return out


def _storable(path: str) -> bool:
    """Whether ``path`` is text the index can store (undecodable bytes in a file name
    come back from the OS as lone surrogates, which UTF-8 cannot encode)."""
    if path.isascii():
        return True
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(path: str) -> str:
    """``path`` printable: undecodable bytes as ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _merge_labels(rows, conflicts: list) -> dict[str, str | None]:
    """path -> label over manifest rows; a path given two different labels gets none
    and is reported in ``conflicts`` (no row silently wins)."""
    seen: dict[str, set[str]] = {}
    for f, lab in rows:
        seen.setdefault(os.path.abspath(f), set())
        if lab is not None:
            seen[os.path.abspath(f)].add(lab)
    for f, labs in seen.items():
        if len(labs) > 1:
            conflicts.append((f, sorted(labs)))
    return {f: next(iter(labs)) if len(labs) == 1 else None for f, labs in seen.items()}


def collect(paths: list[str | Path], labels: str | None = None, allow_outside: bool = False,
            skipped: list | None = None, conflicts: list | None = None
            ) -> list[tuple[str, str | None, str]]:
    """Resolve inputs into ``(absolute path, label or None, label source)`` triples.

    A folder is walked (labels from parent folder names when ``labels='folders'``);
    a .csv/.parquet file is a manifest (path[, label]); ``labels=FILE`` maps paths to
    labels. Paths not read (escaping symlinks or manifest rows) go to ``skipped``;
    paths given conflicting labels go to ``conflicts`` and get no label.
    """
    if not paths:
        raise CurateError("give at least one folder, image or manifest to ingest")
    skipped = [] if skipped is None else skipped
    conflicts = [] if conflicts is None else conflicts
    out: list[tuple[str, str | None, str]] = []
    for given in paths:
        p = Path(given).expanduser()
        if not p.exists():
            raise CurateError(f"path not found: {given}")
        if p.is_dir():
            found, before, top = 0, len(skipped), os.path.abspath(p)
            for f, d in _walk(p, allow_outside, skipped):
                out.append((f, os.path.basename(d) if labels == "folders" and d != top else None,
                            "folder"))
                found += 1
            if not found and len(skipped) == before:
                raise CurateError(f"no image files ({', '.join(EXTENSIONS)}) found in {given}")
        elif p.suffix.lower() in MANIFEST_SUFFIXES:
            root = os.path.realpath(p.parent)
            rows = []
            for f, lab in _read_manifest(p):
                if allow_outside or _inside(os.path.realpath(f), root):
                    rows.append((f, lab))
                else:
                    skipped.append((os.path.abspath(f), f"outside the manifest's folder {p.parent} "
                                                        "(--allow-outside to read it)"))
            out += [(f, lab, "manifest") for f, lab in _merge_labels(rows, conflicts).items()]
        else:
            out.append((os.path.abspath(p), None, "folder"))
    if labels not in (None, "folders"):
        lp = Path(labels).expanduser()
        if not lp.is_file():
            raise CurateError(f"labels file not found: {labels}")
        mapping = _merge_labels(_read_manifest(lp), conflicts)
        out = [(f, mapping[f], "manifest") if f in mapping else (f, lab, src) for f, lab, src in out]
    for f, lab, _ in out:
        if lab is not None and len(lab) > LABEL_LIMIT:
            raise CurateError(f"label of {f} is {len(lab)} characters; the limit is {LABEL_LIMIT}")
    if not all(_storable(f) for f, _, _ in out):
        skipped += [(shown(f), "file name is not valid UTF-8, which the index cannot store: "
                               "rename the file") for f, _, _ in out if not _storable(f)]
        out = [t for t in out if _storable(t[0])]
    if not out:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise CurateError(f"nothing to ingest: {len(skipped)} paths skipped{first}")
    return list({f: (f, lab, src) for f, lab, src in out}.values())  # one entry per path
