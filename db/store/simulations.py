"""Stored simulations (strategy comparisons on labelled data)."""

from __future__ import annotations

from typing import Any

from curate.db.models import Simulation
from curate.db.store.lookup import unique_name
from curate.locks import db_lock


class SimulationQueries:
    """Mixin of :class:`curate.db.index.Index`: simulations."""

    def add_simulation(self, name: str | None, default_name: str, **fields: Any) -> tuple[int, str]:
        """Store a simulation (``fields``: embedding_set_id, params, results, summary,
        versions, wall_seconds) named ``name`` (taken: a one-line CurateError) or the first
        free of ``default_name``, ``default_name-2``, ...; the name is picked and the row
        written in one transaction (``simulate`` lock). Returns (id, name)."""
        with self.session() as s:
            db_lock(s, "simulate")
            name = unique_name(s, Simulation, name, default_name, "simulation")
            row = Simulation(name=name, **fields)
            s.add(row)
            s.flush()
            return row.id, name
