"""``curate backup FILE``: a consistent copy of the index while curate may be running.

SQLite: the online backup API (``sqlite3.Connection.backup``) copies the index page by
page under SQLite's own locking, so the copy is consistent even while other commands
write; it is written to a temporary name next to ``FILE`` and renamed. Restore by
copying the backup over ``data/index.sqlite`` (with no curate command running).
PostgreSQL: use the server's tools (``pg_dump -Fc URL > FILE``, restore with
``pg_restore``); curate refuses with that hint. Embedding shards and models are files in
``data/``: copy that folder too (or re-run ``curate embed``, which re-embeds anything
whose shard is missing or damaged).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from curate.errors import CurateError


def backup_index(ws, dest: Path | str) -> Path:
    """Copy the workspace's SQLite index to ``dest`` (which must not exist); returns it."""
    src = ws.sqlite_path
    if src is None:
        raise CurateError("the index is in PostgreSQL: back it up with `pg_dump -Fc <URL> > FILE` "
                          "(restore with `pg_restore -d <URL> FILE`)")
    dest = Path(dest).expanduser()
    if dest.exists():
        raise CurateError(f"{dest} exists; give a new file name (backups never overwrite)")
    if not src.is_file():
        raise CurateError(f"no index database at {src}; nothing to back up")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        s = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
        d = sqlite3.connect(tmp)
        try:
            s.backup(d)
            if d.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                raise CurateError(f"the index {src} fails SQLite's integrity check; the backup "
                                  "was not written (restore an older backup)")
        finally:
            d.close()
            s.close()
        os.replace(tmp, dest)
    except sqlite3.DatabaseError as e:
        raise CurateError(f"cannot back up {src}: {e}") from None
    except OSError as e:
        raise CurateError(f"cannot write {dest}: {e.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest
