"""The index database: SQLAlchemy 2 models and Alembic migrations.

Installed as ``curate.db``. Open one with :func:`curate.db.index.open_index`.
"""

from curate.db.index import Index, open_index  # noqa: F401
