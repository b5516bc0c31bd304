"""Selection of what to label: the strategies (:mod:`curate.select.strategies`: the
``SELECTORS`` registry, ``Picks``, the wrappers) over the kernels (:mod:`.kcenter`,
:mod:`.typiclust`, :mod:`.probcover`, :mod:`.uncertainty`, :mod:`.clusters`), and
:mod:`curate.select.selection`, which runs a strategy over the index and stores the result.

``curate select``: cli/select.py -> selection.py -> strategies.py -> the kernel.
"""

from __future__ import annotations

from curate.select.strategies import (DEFAULT_STRATEGY, SCORES, SELECTORS, Picks,
                                      kcenter_greedy, kcenter_picks, pool_rows, random_picks,
                                      register)

__all__ = ["SELECTORS", "SCORES", "DEFAULT_STRATEGY", "Picks", "register", "pool_rows",
           "kcenter_greedy", "kcenter_picks", "random_picks"]
