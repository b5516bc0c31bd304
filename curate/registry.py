"""One registry per plug-in kind (encoders, trainers, selectors, scorers).

CLI choices and parametrised tests are generated from ``Registry.names()``.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from curate.errors import CurateError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> factory mapping for one kind of plug-in."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise CurateError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
