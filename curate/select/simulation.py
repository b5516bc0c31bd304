"""The active-learning loop replayed on labelled data: pure core (arrays in, DataFrames out).

A strategy is measured by the test accuracy of a probe trained on the labels it paid
for. :func:`simulate_curves` plays the loop for each (strategy, seed): the strategy picks
rows of ``X_pool``, the :class:`Oracle` reveals the labels of those rows (and only
those), the probe (``curate.select.probe``) is trained on the revealed labels and
scored on the held-out test rows.

No-leak rule (by construction): a strategy is called as
``fn(X_pool, n, seeds, labels, metric=..., random_state=..., device=...)`` where
``X_pool`` is a fresh copy of the pool embeddings, ``seeds`` the rows picked so far and
``labels`` the labels the oracle revealed for exactly those rows. The pool labels live
only inside the oracle; ``y_test``/``X_test`` live only inside the evaluator, which runs
after the strategy returns. The oracle is closed while a strategy runs: a strategy that
reaches for it anyway (e.g. by walking the call stack) is caught and the run fails with
:class:`CurateError`. (Python cannot stop deliberately malicious in-process code from
reading arbitrary memory; the contract hands a strategy nothing else.)

Random states: round ``r`` of seed ``s`` gets ``random_state = _state(s, r)`` for the
strategy and the probe, the same for every strategy (common random numbers), so the
paired difference of a strategy to ``random`` compares like with like and reruns
reproduce.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from curate.errors import CurateError
from curate.validation import check_budget

ROUNDS = ("incremental", "one-shot")
RESULT_COLUMNS = ["strategy", "budget", "seed", "accuracy", "macro_f1", "seconds", "n_labelled"]


class Oracle:
    """Holds the pool labels privately and reveals only the labels of rows asked for.

    ``reveal(rows)`` returns int64 labels of ``rows`` and records them in ``revealed``.
    While :meth:`closed` is active (a strategy is running) every ``reveal`` raises and
    is counted in ``violations``, so a strategy that catches the error is still caught.
    """

    __slots__ = ("_labels", "_open", "revealed", "violations")

    def __init__(self, labels: np.ndarray):
        self._labels = np.array(labels, dtype=np.int64)   # a private copy
        self._open = True
        self.revealed: set[int] = set()
        self.violations = 0

    def __len__(self) -> int:
        return len(self._labels)

    def __repr__(self) -> str:
        return f"Oracle({len(self._labels)} rows, {len(self.revealed)} revealed)"

    def reveal(self, rows) -> np.ndarray:
        """Labels (int64, a copy) of pool ``rows`` (int array); only outside a strategy."""
        if not self._open:
            self.violations += 1
            raise CurateError("the oracle is closed while a strategy runs; strategies see only "
                              "the labels of their seed rows")
        rows = np.asarray(rows, dtype=np.int64)
        self.revealed.update(rows.tolist())
        return self._labels[rows].copy()

    class _Closed:
        def __init__(self, oracle):
            self.oracle = oracle

        def __enter__(self):
            self.oracle._open = False

        def __exit__(self, *exc):
            self.oracle._open = True

    def closed(self):
        """Context manager: no label is revealed inside it (wraps each strategy call)."""
        return Oracle._Closed(self)


def _state(seed: int, round_: int) -> int:
    """The random state of round ``round_`` of seed ``seed`` (same for every strategy)."""
    return int(np.random.SeedSequence([int(seed), int(round_)]).generate_state(1)[0])


def check_budgets(budgets: Sequence[int]) -> list[int]:
    """Budgets as ints; positive and strictly increasing, else :class:`CurateError`."""
    out = [check_budget(b) for b in budgets]
    if not out:
        raise CurateError("give at least one budget")
    if any(b <= a for a, b in zip(out, out[1:])):
        raise CurateError(f"budgets must be strictly increasing, got {out}")
    return out


def _evaluator(X_test: np.ndarray, y_test: np.ndarray, probe: str) -> Callable:
    """``evaluate(X_lab, y_lab, random_state) -> (accuracy, macro_f1)`` on the test rows.

    With labels of fewer than 2 classes no probe can be fitted: the prediction is the one
    class seen for every test row (accuracy = that class's share of the test set).
    """
    from sklearn.metrics import f1_score

    from curate.select.probe import fit_probe

    X_test, y_test = np.array(X_test, dtype=np.float32), np.array(y_test, dtype=np.int64)

    def evaluate(X_lab, y_lab, random_state):
        if len(np.unique(y_lab)) < 2:
            pred = np.full(len(y_test), y_lab[0] if len(y_lab) else -1, dtype=np.int64)
        else:
            pred = fit_probe(probe, X_lab, y_lab, random_state=random_state).predict(X_test)
        return (float(np.mean(pred == y_test)),
                float(f1_score(y_test, pred, average="macro", zero_division=0)))

    return evaluate


def _check_picks(name: str, picks, n: int, taken: np.ndarray, n_rows: int) -> np.ndarray:
    idx = np.asarray(picks.indices, dtype=np.int64)
    if idx.shape != (n,) or (n and (idx.min() < 0 or idx.max() >= n_rows)) \
            or len(np.unique(idx)) != n or np.isin(idx, taken).any():
        raise CurateError(f"strategy {name} returned invalid picks (need {n} distinct new pool rows)")
    return idx


def simulate_curves(X_pool, y_pool, X_test, y_test, strategies: Sequence[str],
                    budgets: Sequence[int], seeds: int | Sequence[int] = 5,
                    probe: str = "logistic", rounds: str = "incremental",
                    metric: str = "cosine", device: str = "auto",
                    progress: Callable[[int, int], None] | None = None,
                    keep_picks: bool = False) -> pd.DataFrame:
    """Learning curves of ``strategies``: test accuracy of ``probe`` vs labelling budget.

    Args:
        X_pool: float (N, d) selectable rows; y_pool: int (N,) their labels (hidden in
            the :class:`Oracle`). X_test (M, d), y_test (M,): the held-out evaluation rows.
        strategies: names in ``curate.select.SELECTORS``.
        budgets: strictly increasing positive ints, the largest <= N.
        seeds: a count (seeds 0..k-1) or explicit seed values.
        rounds: ``"incremental"``: each budget continues from the previous one (select
            the increment seeded by every row picked so far, with its revealed label;
            retrain; evaluate); ``"one-shot"``: each budget selected from scratch.
        progress: ``callback(done, total)`` after each (strategy, seed).
        keep_picks: add a ``picks`` column (int64 rows of X_pool labelled at that budget).

    Returns a DataFrame with one row per (strategy, budget, seed): ``accuracy`` and
    ``macro_f1`` on the test rows, ``seconds`` spent in the strategy for that round and
    ``n_labelled`` (= budget). Cost: (#strategies x #seeds) x (sum of the strategies'
    costs over the rounds + one probe fit on <= budget rows and a prediction of M rows
    per round).
    """
    from curate.select import SELECTORS
    from curate.select.probe import PROBES

    fns = {name: SELECTORS.get(name) for name in strategies}
    PROBES.get(probe)
    if rounds not in ROUNDS:
        raise CurateError(f"unknown rounds {rounds!r}; choose one of: {', '.join(ROUNDS)}")
    budgets = check_budgets(budgets)
    X_pool = np.ascontiguousarray(X_pool, dtype=np.float32)
    if len(y_pool) != len(X_pool) or len(y_test) != len(X_test):
        raise CurateError("X and y must have the same number of rows")
    check_budget(budgets[-1], len(X_pool))
    oracle = Oracle(y_pool)
    evaluate = _evaluator(X_test, y_test, probe)
    del y_pool, y_test, X_test      # from here on: only the oracle and the evaluator hold them
    seed_list = list(range(seeds)) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    if not seed_list:
        raise CurateError("give at least one seed")
    rows, done, total = [], 0, len(fns) * len(seed_list)
    for name, fn in fns.items():
        for seed in seed_list:
            picked = np.empty(0, dtype=np.int64)
            revealed = np.empty(0, dtype=np.int64)
            for r, budget in enumerate(budgets):
                if rounds == "one-shot":
                    picked, revealed = picked[:0], revealed[:0]
                n_new, rs = budget - len(picked), _state(seed, r)
                X_view = X_pool.copy()        # a strategy cannot alter the pool of the next
                t0 = time.perf_counter()
                with oracle.closed():
                    picks = fn(X_view, n_new, picked.copy(), revealed.copy(), metric=metric,
                               random_state=rs, device=device)
                seconds = time.perf_counter() - t0
                if oracle.violations:
                    raise CurateError(f"strategy {name} asked the oracle for labels; strategies "
                                      "see only the labels of their seed rows")
                new = _check_picks(name, picks, n_new, picked, len(X_pool))
                picked = np.concatenate([picked, new])
                revealed = np.concatenate([revealed, oracle.reveal(new)])
                acc, f1 = evaluate(X_pool[picked], revealed, rs)
                row = {"strategy": name, "budget": budget, "seed": seed, "accuracy": acc,
                       "macro_f1": f1, "seconds": seconds, "n_labelled": len(picked)}
                if keep_picks:
                    row["picks"] = picked.copy()
                rows.append(row)
            done += 1
            if progress is not None:
                progress(done, total)
    return pd.DataFrame(rows, columns=RESULT_COLUMNS + (["picks"] if keep_picks else []))


def _t_half(values: np.ndarray) -> float:
    """Half-width of the 95% t-interval of the mean of ``values`` (NaN for n < 2)."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / np.sqrt(n))


def paired_differences(df: pd.DataFrame, baseline: str = "random") -> pd.DataFrame:
    """Mean accuracy per (strategy, budget) and the paired difference to ``baseline``.

    Runs are paired by seed (same seed = same random states for both strategies):
    ``diff = mean_s(acc[strategy, s] - acc[baseline, s])`` with the 95% t-interval
    ``diff +- t(0.975, n-1) * sd(d) / sqrt(n)`` over the n shared seeds. With one seed
    the intervals are NaN; without ``baseline`` in ``df`` the diff columns are NaN. ``accuracy_low/high``
    is the 95% t-interval of the mean accuracy (the band of the plot).

    Columns: strategy, budget, n_seeds, accuracy, accuracy_low, accuracy_high,
    macro_f1, seconds (mean per seed), diff, diff_low, diff_high. Cost: O(rows).
    """
    base = df[df["strategy"] == baseline].set_index(["budget", "seed"])["accuracy"]
    out = []
    for (name, budget), g in df.groupby(["strategy", "budget"], sort=False):
        acc = g["accuracy"].to_numpy(float)
        half = _t_half(acc)
        rec = {"strategy": name, "budget": int(budget), "n_seeds": len(g),
               "accuracy": float(acc.mean()), "accuracy_low": float(acc.mean() - half),
               "accuracy_high": float(acc.mean() + half),
               "macro_f1": float(g["macro_f1"].mean()), "seconds": float(g["seconds"].mean()),
               "diff": float("nan"), "diff_low": float("nan"), "diff_high": float("nan")}
        keys = [(budget, s) for s in g["seed"] if (budget, s) in base.index]
        if keys:
            mine = g.set_index(["budget", "seed"])["accuracy"]
            d = np.array([mine[k] - base[k] for k in keys], dtype=float)
            half = _t_half(d)
            rec.update(diff=float(d.mean()), diff_low=float(d.mean() - half),
                       diff_high=float(d.mean() + half))
        out.append(rec)
    return pd.DataFrame(out, columns=["strategy", "budget", "n_seeds", "accuracy", "accuracy_low",
                                      "accuracy_high", "macro_f1", "seconds", "diff", "diff_low",
                                      "diff_high"])


__all__ = ["Oracle", "simulate_curves", "paired_differences", "check_budgets", "ROUNDS",
           "RESULT_COLUMNS"]
