"""Find a named row (embedding set, scorer, ...) or the latest one, with one-line errors."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select

from curate.errors import CurateError

T = TypeVar("T")


def named_or_latest(session, model: type[T], name: str | None, what: str, hint: str) -> T:
    """The ``model`` row whose ``name`` equals ``name``, or the newest one when ``name`` is None.

    ``what`` names the kind in messages ("embedding set"); ``hint`` says how to make one.
    """
    if name is None:
        row = session.scalar(select(model).order_by(model.id.desc()).limit(1))
        if row is None:
            raise CurateError(f"no {what} yet; {hint}")
        return row
    row = session.scalar(select(model).where(model.name == name))
    if row is None:
        names = session.scalars(select(model.name)).all()
        raise CurateError(f"no {what} named {name!r}" + (f"; have: {', '.join(names)}" if names else f"; {hint}"))
    return row


def unique_name(session, model: type[T], wanted: str | None, default: str, what: str) -> str:
    """``wanted`` if no ``model`` row has that name (else a one-line error), or the first of
    ``default``, ``default-2``, ``default-3``, ... that is free."""
    taken = set(session.scalars(select(model.name)))
    if wanted is not None:
        if wanted in taken:
            raise CurateError(f"a {what} named {wanted!r} exists; pick another --name")
        return wanted
    name, i = default, 2
    while name in taken:
        name, i = f"{default}-{i}", i + 1
    return name
