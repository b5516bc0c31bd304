"""Workspaces: a folder with ``curate.toml`` and a data folder (index, embeddings, models).

Commands find the workspace from ``--workspace``, then ``CURATE_WORKSPACE``, then the
current directory upwards. The index is SQLite (WAL) in the data folder unless
``--db``/``CURATE_DB``/the config's ``db`` points at PostgreSQL.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.errors import CurateError

CONFIG_NAME = "curate.toml"
DEFAULT_CONFIG = """\
# curate workspace
[workspace]
data = "data"            # index, embeddings, models (relative to this file)
# db = "postgresql+psycopg://user@127.0.0.1:5432/curate"   # default: SQLite in data/

[ingest]
max_pixels = 178956970   # larger images are rejected as decompression bombs

# [labelstudio]
# url = "http://127.0.0.1:8080"   # the token comes from LABEL_STUDIO_API_KEY
"""


@dataclass
class Workspace:
    root: Path
    config: dict[str, Any] = field(default_factory=dict)
    db_override: str | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / self.config.get("workspace", {}).get("data", "data")

    @property
    def embeddings_dir(self) -> Path:
        return self.data_dir / "embeddings"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def db_url(self) -> str:
        from curate.db.index import sqlite_url

        return (self.db_override or os.environ.get("CURATE_DB")
                or self.config.get("workspace", {}).get("db")
                or sqlite_url(self.data_dir / "index.sqlite"))

    def setting(self, section: str, key: str, default: Any = None) -> Any:
        return self.config.get(section, {}).get(key, default)

    @property
    def sqlite_path(self) -> Path | None:
        """The index file when the index is SQLite, else None."""
        url = self.db_url
        return Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None

    def open_index(self):
        """Open (and migrate) the index; ``index.data_dir`` is this workspace's data folder,
        against which embedding-set folders are resolved."""
        from sqlalchemy.exc import DatabaseError

        from curate.db.index import open_index

        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            index = open_index(self.db_url)
        except DatabaseError as e:
            raise damaged_index_error(e, self.sqlite_path) or e
        except CurateError as e:
            raise damaged_index_error(e, self.sqlite_path) or e
        index.data_dir = self.data_dir.resolve()
        return index


_DAMAGED = ("database disk image is malformed", "file is not a database")


def damaged_index_error(exc: BaseException, path: Path | None) -> CurateError | None:
    """A one-line CurateError for a damaged SQLite index file (``exc`` says so), else None.

    The file is never touched; the message says how to restore it."""
    msg = str(getattr(exc, "orig", None) or exc)
    if not any(d in msg for d in _DAMAGED):
        return None
    where = path or "the index database"
    return CurateError(f"index database {where} is damaged ({next(d for d in _DAMAGED if d in msg)}); "
                       f"curate left it untouched: restore it from a backup (`curate backup FILE` "
                       f"makes one) by copying the backup over {where}, or move it aside and "
                       "re-run ingest and embed to rebuild the index")


def _load(root: Path, db: str | None) -> Workspace:
    path = root / CONFIG_NAME
    try:
        config = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise CurateError(f"{path}: invalid TOML: {e}") from None
    return Workspace(root=root.resolve(), config=config, db_override=db)


def init_workspace(directory: Path | str = ".", db: str | None = None) -> Workspace:
    """Create (or reopen) a workspace in ``directory`` and its index database."""
    root = Path(directory).expanduser()
    if root.exists() and not root.is_dir():
        raise CurateError(f"{root} exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    cfg = root / CONFIG_NAME
    if not cfg.exists():
        cfg.write_text(DEFAULT_CONFIG)
    ws = _load(root, db)
    for d in (ws.data_dir, ws.embeddings_dir, ws.models_dir):
        d.mkdir(parents=True, exist_ok=True)
    ws.open_index().close()
    return ws


def find_workspace(explicit: Path | str | None = None, db: str | None = None,
                   start: Path | str | None = None) -> Workspace:
    """Locate the workspace: ``explicit``, ``$CURATE_WORKSPACE``, or upwards from ``start``."""
    given = explicit or os.environ.get("CURATE_WORKSPACE")
    if given:
        root = Path(given).expanduser()
        if not (root / CONFIG_NAME).is_file():
            raise CurateError(f"no workspace at {root} (missing {CONFIG_NAME}); run `curate init {root}`")
        return _load(root, db)
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / CONFIG_NAME).is_file():
            return _load(d, db)
    raise CurateError(f"no curate workspace in {here} or its parents; run `curate init` first")
