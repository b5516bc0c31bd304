"""The active-learning simulator: no-leak rule, rounds, curves, paired statistics, the index edge."""

import inspect
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import make_blobs

from curate.errors import CurateError
from curate.select import SCORES, SELECTORS, register
from curate.select.simulation import (Oracle, _state, check_budgets, paired_differences,
                                      simulate_curves)


@pytest.fixture(scope="module")
def toy():
    """4 separable Gaussian blobs in 8-d: pool 300, test 100."""
    X, y = make_blobs(400, centers=4, n_features=8, cluster_std=1.5, random_state=0)
    X = X.astype(np.float32)
    return X[:300], y[:300], X[300:], y[300:]


@pytest.fixture
def strategy():
    """Register a strategy for one test (removed afterwards)."""
    added = []

    def add(name, fn):
        register(name, "test")(fn)
        added.append(name)
        return name
    yield add
    for name in added:
        SELECTORS._items.pop(name)
        SCORES.pop(name)


def _random(X, budget, seeds, random_state):
    return SELECTORS.get("random")(X, budget, seeds, random_state=random_state)


def _curves(toy, names, budgets, **kw):
    Xp, yp, Xt, yt = toy
    return simulate_curves(Xp, yp, Xt, yt, names, budgets, device="cpu", **kw)


# --------------------------------------------------------------------------- no-leak rule
@pytest.mark.parametrize("rounds", ["incremental", "one-shot"])
def test_strategy_sees_only_the_pool_and_revealed_labels(toy, strategy, rounds):
    Xp, yp, Xt, yt = toy
    calls = []

    def peek(X, budget, seeds=None, labels=None, **kw):
        calls.append((X.copy(), budget, np.array(seeds), np.array(labels), kw))
        return _random(X, budget, seeds, kw["random_state"])

    name = strategy("_peek", peek)
    df = _curves(toy, [name], [5, 10, 30], seeds=2, rounds=rounds, keep_picks=True)
    assert len(calls) == 6
    hidden = [yp, yt, Xt]
    for i, (X, budget, seeds, labels, kw) in enumerate(calls):
        np.testing.assert_array_equal(X, Xp)                     # the pool only, no test rows
        assert len(labels) == len(seeds)                          # labels of seed rows only ...
        np.testing.assert_array_equal(labels, yp[seeds])          # ... exactly as revealed
        assert set(kw) <= {"metric", "random_state", "device", "fp16"}
        for arg in (X, seeds, labels, *kw.values()):
            assert not any(np.shape(arg) == np.shape(h) and np.array_equal(arg, h) for h in hidden)
        r = i % 3
        if rounds == "one-shot" or r == 0:
            assert len(seeds) == 0 and budget == [5, 10, 30][r]
        else:                                                     # seeds = everything picked so far
            np.testing.assert_array_equal(seeds, df["picks"][i - 1])
            assert budget == [5, 10, 30][r] - [5, 10, 30][r - 1]


def test_a_strategy_cannot_reach_the_hidden_labels(toy, strategy):
    """A cheater that hunts for labels: nothing of the right shape in its arguments, no
    hidden arrays in the simulator's frame, and an oracle it finds on the stack refuses
    and the run fails (even though the cheater swallows the refusal)."""
    Xp, yp, _, _ = toy
    seen = {"arrays": 0, "oracles": 0, "names": set()}

    def cheat(X, budget, seeds=None, labels=None, **kw):
        for arg in (seeds, labels, *kw.values()):
            if np.ndim(arg) == 1 and len(arg) == len(X):
                seen["arrays"] += 1
        frame = inspect.currentframe().f_back
        while frame is not None:
            if frame.f_code.co_name == "simulate_curves":
                seen["names"] |= {"y_pool", "y_test", "X_test"} & set(frame.f_locals)
            for v in frame.f_locals.values():
                if isinstance(v, Oracle):
                    seen["oracles"] += 1
                    try:
                        by_label = v.reveal(np.arange(len(X)))
                        return _random(X, budget, seeds, 0)._replace(
                            indices=np.flatnonzero(by_label == 0)[:budget])
                    except CurateError:
                        pass
            frame = frame.f_back
        return _random(X, budget, seeds, kw["random_state"])

    name = strategy("_cheat", cheat)
    with pytest.raises(CurateError, match="asked the oracle"):
        _curves(toy, [name], [10, 20], seeds=1)
    assert seen["arrays"] == 0 and seen["names"] == set() and seen["oracles"] >= 1


def test_oracle_reveals_only_what_is_asked():
    o = Oracle(np.array([3, 1, 2, 0]))
    assert o.reveal([2, 0]).tolist() == [2, 3] and o.revealed == {0, 2}
    with o.closed():
        with pytest.raises(CurateError, match="closed"):
            o.reveal([1])
    assert o.violations == 1 and "3" not in repr(o).replace("4 rows", "")


def test_invalid_picks_are_refused(toy, strategy):
    def dup(X, budget, seeds=None, labels=None, **kw):
        return _random(X, budget, seeds, 0)._replace(indices=np.zeros(budget, np.int64))
    name = strategy("_dup", dup)
    with pytest.raises(CurateError, match="invalid picks"):
        _curves(toy, [name], [3], seeds=1)


# --------------------------------------------------------------------------- rounds and curves
def test_incremental_continues_the_picks(toy):
    df = _curves(toy, ["random", "kcenter"], [5, 10, 20, 40], seeds=2, keep_picks=True)
    assert (df["n_labelled"] == df["budget"]).all()
    for _, g in df.groupby(["strategy", "seed"]):
        picks = list(g.sort_values("budget")["picks"])
        for small, big in zip(picks, picks[1:]):
            np.testing.assert_array_equal(big[:len(small)], small)
            assert len(np.unique(big)) == len(big)


def test_one_shot_selects_each_budget_from_scratch(toy):
    Xp = toy[0]
    df = _curves(toy, ["random", "kcenter"], [5, 20], seeds=2, rounds="one-shot", keep_picks=True)
    for r in df.itertuples():
        rnd = 0 if r.budget == 5 else 1
        expect = SELECTORS.get(r.strategy)(Xp, r.budget, np.empty(0, np.int64), np.empty(0, np.int64),
                                           random_state=_state(r.seed, rnd), device="cpu").indices
        np.testing.assert_array_equal(r.picks, expect)


def test_random_curve_rises_on_separable_data(toy):
    df = _curves(toy, ["random"], [2, 10, 100], seeds=3)
    acc = df.groupby("budget")["accuracy"].mean()
    assert acc[2] <= 0.5 + 1e-9          # 2 labels of 4 classes
    assert acc[100] > acc[10] - 0.02 and acc[100] > acc[2] + 0.3 and acc[100] >= 0.9
    assert df["macro_f1"].between(0, 1).all() and (df["seconds"] >= 0).all()


def test_one_class_seen_predicts_that_class(toy):
    Xp, yp, Xt, yt = toy
    df = _curves(toy, ["kcenter"], [1, 20], seeds=2, keep_picks=True)
    for r in df[df.budget == 1].itertuples():
        assert r.accuracy == pytest.approx(np.mean(yt == yp[r.picks[0]]))


def test_results_reproduce_and_seeds_are_common_random_numbers(toy):
    cols = ["strategy", "budget", "seed", "accuracy", "macro_f1", "n_labelled"]
    a = _curves(toy, ["random", "kcenter"], [4, 8], seeds=2, keep_picks=True)
    b = _curves(toy, ["random", "kcenter"], [4, 8], seeds=2, keep_picks=True)
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert all(np.array_equal(x, y) for x, y in zip(a["picks"], b["picks"]))
    assert _state(0, 0) == _state(0, 0) != _state(1, 0) != _state(0, 1)


# --------------------------------------------------------------------------- statistics
def test_paired_differences_by_hand():
    df = pd.DataFrame({"strategy": ["random"] * 3 + ["x"] * 3, "budget": [10] * 6,
                       "seed": [0, 1, 2, 2, 0, 1], "accuracy": [0.5, 0.6, 0.7, 0.7, 0.6, 0.8],
                       "macro_f1": 0.5, "seconds": 1.0, "n_labelled": 10})
    s = paired_differences(df).set_index("strategy")
    # d = x - random per seed: 0.1, 0.2, 0.0 -> mean 0.1, sd 0.1; t(0.975, 2) = 4.302653
    half = 4.302653 * 0.1 / np.sqrt(3)
    assert s.loc["x", "diff"] == pytest.approx(0.1)
    assert (s.loc["x", "diff_low"], s.loc["x", "diff_high"]) == \
        pytest.approx((0.1 - half, 0.1 + half), abs=1e-6)
    assert s.loc["x", "accuracy"] == pytest.approx(0.7) and s.loc["random", "accuracy"] == pytest.approx(0.6)
    a_half = 4.302653 * 0.1 / np.sqrt(3)      # sd of 0.5, 0.6, 0.7 is 0.1 as well
    assert s.loc["random", "accuracy_low"] == pytest.approx(0.6 - a_half, abs=1e-6)
    assert s.loc["random", "diff"] == 0 and s.loc["x", "n_seeds"] == 3
    one = paired_differences(df[df.seed == 1]).set_index("strategy")
    assert one.loc["x", "diff"] == pytest.approx(0.2) and np.isnan(one.loc["x", "diff_low"])
    assert np.isnan(one.loc["x", "accuracy_high"])
    none = paired_differences(df[df.strategy == "x"])
    assert none["diff"].isna().all()


@pytest.mark.parametrize("budgets,match", [([], "at least one"), ([0, 5], "positive"),
                                           ([-1], "positive"), ([10, 10], "increasing"),
                                           ([20, 10], "increasing"), (["a"], "must be an integer"),
                                           ([2.5], "must be an integer")])
def test_bad_budgets(budgets, match):
    with pytest.raises(CurateError, match=match):
        check_budgets(budgets)


@pytest.mark.parametrize("kw,match", [(dict(strategies=["nope"]), "unknown strategy 'nope'"),
                                      (dict(probe="svm"), "unknown probe 'svm'"),
                                      (dict(rounds="twice"), "unknown rounds"),
                                      (dict(budgets=[10, 301]), "larger than the pool of 300")])
def test_core_errors(toy, kw, match):
    args = dict(strategies=["random"], budgets=[5], seeds=1) | kw
    with pytest.raises(CurateError, match=match):
        simulate_curves(*toy, **args)


# --------------------------------------------------------------------------- the index edge
def _fill(index, ws, tmp_path) -> str:
    """b1: 3 classes x 30 labelled images; b2: 3 x 10 more; one: 12 of class c0; embedded."""
    from curate.embed import embed
    from curate.ingest import ingest
    from helpers import write_class_images

    ingest(index, [write_class_images(tmp_path / "b1", 3, 30, seed=1)], batch="b1", labels="folders")
    ingest(index, [write_class_images(tmp_path / "b2", 3, 10, seed=2)], batch="b2", labels="folders")
    ingest(index, [write_class_images(tmp_path / "one", [0], 12, seed=3)], batch="one",
           labels="folders")
    return embed(index, ws, encoder="pixels-pca", image_size=8).embedding_set


@pytest.fixture
def labelled(index, ws, tmp_path):
    """The index of :func:`_fill` on SQLite and PostgreSQL."""
    return _fill(index, ws, tmp_path)


@pytest.fixture
def sqlite_index(sqlite_ws):
    idx = sqlite_ws.open_index()
    yield idx
    idx.close()


def test_simulate_stores_the_run_and_writes_files(index, labelled, tmp_path):
    from sqlalchemy import select

    from curate.db.models import EmbeddingSet, Simulation
    from curate.simulate import simulate

    calls = []
    res = simulate(index, ["random", "kcenter"], [3, 6, 12], seeds=2, name="s1",
                   out=tmp_path / "out", device="cpu", progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (4, 4) and len(res.results) == 12 and res.name == "s1"
    assert res.params["pool_size"] + res.params["test_size"] == 132
    assert res.params["test_size"] == 10 + 8 + 8 and res.params["classes"] == ["c0", "c1", "c2"]
    with index.session() as s:
        row = s.scalar(select(Simulation).where(Simulation.id == res.simulation_id))
        assert row.name == "s1" and row.wall_seconds > 0 and "numpy" in row.versions
        assert s.get(EmbeddingSet, row.embedding_set_id).name == labelled
        p = row.params
        assert (p["strategies"], p["budgets"], p["seeds"], p["probe"], p["rounds"]) == \
            (["random", "kcenter"], [3, 6, 12], 2, "logistic", "incremental")
        assert len(p["pool_ids_sha256"]) == 64 and p["pool_ids_sha256"] != p["test_ids_sha256"]
        assert p["ids_hash_version"] == 2
        assert len(row.results) == 12 and {"accuracy", "macro_f1", "seconds"} <= set(row.results[0])
        paired = {(r["strategy"], r["budget"]): r for r in row.summary["paired"]}
        assert paired["kcenter", 12]["diff"] == pytest.approx(res.summary.set_index(
            ["strategy", "budget"]).loc[("kcenter", 12), "diff"])
        assert set(row.summary["selection_seconds"]) == {"random", "kcenter"}
    out = tmp_path / "out"
    assert sorted(f.name for f in out.iterdir()) == ["accuracy_vs_budget.png", "results.csv",
                                                     "results.json", "summary.csv"]
    with Image.open(out / "accuracy_vs_budget.png") as im:
        im.load()
        assert im.format == "PNG" and im.width > 300
    assert len(pd.read_csv(out / "results.csv")) == 12
    assert len(json.loads((out / "results.json").read_text())) == 12
    again = simulate(index, ["random"], [3], seeds=1, device="cpu")
    assert again.name.startswith("simulate-") and again.simulation_id != res.simulation_id
    with pytest.raises(CurateError, match="named 's1' exists"):
        simulate(index, ["random"], [3], seeds=1, name="s1")


def test_test_batch_is_held_out(index, labelled):
    from curate.data import list_images
    from curate.provenance import ids_hash
    from curate.simulate import simulate

    b2 = np.array([r.id for r in list_images(index, "b2")])
    res = simulate(index, ["random"], [5, 10], seeds=1, batch="b1", test_batch="b2", device="cpu")
    assert (res.params["pool_size"], res.params["test_size"]) == (90, 30)
    assert res.params["test_ids_sha256"] == ids_hash(b2) and res.params["test_fraction"] is None
    whole = simulate(index, ["random"], [5], seeds=1, test_batch="b2", device="cpu")
    assert (whole.params["pool_size"], whole.params["test_size"]) == (102, 30)


def test_simulate_errors(sqlite_index, sqlite_ws, tmp_path):
    """User errors are one-line CurateErrors (the CLI test checks the exit code)."""
    from curate.simulate import simulate

    with pytest.raises(CurateError, match="no embedding set"):
        simulate(sqlite_index, ["random"], [2], seeds=1)
    _fill(sqlite_index, sqlite_ws, tmp_path)
    cases = [(dict(batch="b1", test_batch="b1"), "must not overlap the pool"),
             (dict(batch="one", test_batch="b2"), "fewer than 2 classes"),
             (dict(budgets=[10, 200]), "budget 200 is larger than the pool of 106"),
             (dict(budgets=[10, 5]), "strictly increasing"),
             (dict(batch="nope"), "no batch named 'nope'"),
             (dict(test_fraction=1.5), "test fraction"),
             (dict(seeds=0), "seeds must be at least 1"),
             (dict(strategies=["random", "nope"]), "unknown strategy 'nope'"),
             (dict(probe="svm"), "unknown probe 'svm'"),
             (dict(rounds="twice"), "unknown rounds")]
    for kw, match in cases:
        with pytest.raises(CurateError, match=match):
            simulate(sqlite_index, **(dict(strategies=["random"], budgets=[5], seeds=1) | kw))


def test_no_labelled_images(sqlite_index, sqlite_ws, tmp_path):
    from curate.embed import embed
    from curate.ingest import ingest
    from curate.simulate import simulate
    from helpers import write_class_images

    ingest(sqlite_index, [write_class_images(tmp_path / "u", 2, 5)], batch="u")
    embed(sqlite_index, sqlite_ws, encoder="pixels-pca", image_size=8)
    with pytest.raises(CurateError, match="no labelled images"):
        simulate(sqlite_index, ["random"], [2], seeds=1)
