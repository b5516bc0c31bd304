"""tune-scorer end to end (curate.novelty.tuning + CLI): the sensitivity score as thesis 003
defines it, on a trained run's never-seen holdout or a named batch; the maximise rule;
one-line errors when the data cannot support a choice."""

import json

import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.embed import embed
from curate.errors import CurateError
from curate.ingest import ingest
from curate.novelty.tuning import (DEFAULT_CANDIDATES, expand_candidates, fit_command,
                                  parse_candidate, run_split, tune_scorer)
from novelty_images import write_batch

FAST = dict(image_size=16, batch_size=16, num_workers=0, progress=False, devices=1,
            accelerator="cpu", checkpoint_every=0, max_steps=2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """60 labelled images (batch lab) -> two 2-step simclr runs holding out 20% (different
    seeds for the run, same split seed), embedded; batch 'fresh' ingested afterwards."""
    import torch

    from curate.trainers.run import quiet_lightning, train
    from curate.workspace import init_workspace

    quiet_lightning()
    root = tmp_path_factory.mktemp("tune")
    ws = init_workspace(root / "ws")
    index = ws.open_index()
    write_batch(root / "lab", "in", 60, 5, labels=3)
    ingest(index, [root / "lab"], batch="lab", labels="folders")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = [train(index, ws, "simclr", name=n, batch="lab", holdout_fraction=0.2, seed=0,
                      **FAST) for n in ("enc-a", "enc-b")]
    finally:
        torch.set_num_threads(threads)
    sets = [embed(index, ws, model=r.name, num_workers=0).embedding_set for r in runs]
    write_batch(root / "fresh", "in", 20, 9, labels=3)
    ingest(index, [root / "fresh"], batch="fresh", labels="folders")
    for r in runs:
        embed(index, ws, model=r.name, num_workers=0)
    pixels = embed(index, ws, encoder="pixels-pca", image_size=16).embedding_set
    yield ws, index, sets + [pixels]
    index.close()


def test_parse_and_expand_candidates():
    assert parse_candidate("knn:k=10,index=flat") == {"kind": "knn", "k": 10, "index": "flat"}
    assert parse_candidate("cosine-weighted:tau=0.02") == {"kind": "cosine-weighted", "tau": 0.02}
    with pytest.raises(CurateError, match="unknown scorer 'nope'"):
        parse_candidate("nope:k=1")
    with pytest.raises(CurateError, match="bad candidate"):
        parse_candidate("knn:k")
    taus = [c["tau"] for c in expand_candidates(None)]
    assert len(DEFAULT_CANDIDATES) == len(taus) == 8 and min(taus) == 0.005 and max(taus) == 0.5
    ks = [c["k"] for c in expand_candidates(["knn"])]
    assert ks[0] == 1 and ks[-1] == 200 and len(ks) == 8


def test_tune_uses_the_runs_holdout_and_picks_the_maximum(trained):
    ws, index, sets = trained
    run, tr, ho = run_split(index, sets[0])
    assert run.name == "enc-a" and len(ho) == 12 and len(tr) == 48
    rep = tune_scorer(index, sets[0], ["knn:k=1", "knn:k=5", "knn:k=20", "knn:k=500"], seed=0)
    assert rep.runs == ["enc-a"] and rep.n_test == 12 and rep.n_train == 48
    assert rep.n_sens == min(12, 48 // 5) and "held-out images of run(s) enc-a" in rep.test_source
    by = {r["label"]: r for r in rep.table}
    assert by["knn:k=500"]["error"] and by["knn:k=500"]["sensitivity"] is None
    ok = [r for r in rep.table if r["sensitivity"] is not None]
    chosen = [r for r in rep.table if r["selected"]]
    assert len(chosen) == 1 and chosen[0]["sensitivity"] == max(r["sensitivity"] for r in ok)
    assert rep.chosen == {"kind": "knn", **chosen[0]["params"]}
    assert all(r["ci"][0] <= r["sensitivity"] <= r["ci"][1] for r in ok)
    # 9 sens vs 12 test images cannot separate anything: the report says so
    assert not rep.decision["above_chance"] and any("not significantly above 0.5" in n
                                                    for n in rep.notes)
    assert rep.labelled and all(r["knn_accuracy"] is not None for r in ok)
    assert fit_command(rep.chosen, rep.embedding_set).startswith(
        f"curate fit-scorer --kind knn --embeddings '{sets[0]}' --k ")


def test_tune_on_a_named_batch_and_across_runs(trained):
    ws, index, sets = trained
    rep = tune_scorer(index, sets[:2], ["cosine-weighted:tau=0.04", "cosine-weighted:tau=0.5"],
                      test_batches=["fresh"])
    assert rep.n_test == 20 and rep.test_source == "batch(es) fresh" and rep.n_train == 48
    assert len(rep.table) == 4 and {r["embedding"] for r in rep.table} == set(sets[:2])
    assert rep.chosen["embedding"] in sets[:2] and rep.embedding_set == rep.chosen["embedding"]
    with pytest.raises(CurateError, match="of --test-batch were used to train enc-a"):
        tune_scorer(index, sets[0], test_batches=["lab"])


def test_what_the_data_cannot_support_is_a_one_line_error(trained):
    ws, index, sets = trained
    with pytest.raises(CurateError, match="comes from encoder 'pixels-pca', which was not trained"):
        tune_scorer(index, sets[2])
    with pytest.raises(CurateError, match=r"mix scorer kinds \(knn, mahalanobis\)"):
        tune_scorer(index, sets[0], ["knn:k=5", "mahalanobis"])
    with pytest.raises(CurateError, match="needs labels|n_sens must be in"):
        tune_scorer(index, sets[0], n_sens=48)
    with pytest.raises(CurateError, match="no batch named"):
        tune_scorer(index, sets[0], test_batches=["nope"])


def test_cli_prints_the_table_the_choice_and_the_command(trained):
    ws, index, sets = trained
    runner = CliRunner()
    base = ["-w", str(ws.root), "tune-scorer", "--embeddings", sets[0]]
    r = runner.invoke(main, base + ["--candidates", "knn:k=1 knn:k=5", "--candidates", "knn:k=10"])
    assert r.exit_code == 0, r.output
    assert "95% CI" in r.stdout and "chosen (maximum sensitivity): knn (k=" in r.stdout
    assert f"fit it: curate fit-scorer --kind knn --embeddings '{sets[0]}' --k" in r.stdout
    assert "note: the best sensitivity" in r.stdout and r.stdout.count("* ") == 1
    js = json.loads(runner.invoke(main, base + ["--json"]).stdout)
    assert js["chosen"]["kind"] == "cosine-weighted" and len(js["table"]) == 8
    assert js["decision"]["rule"].startswith("maximum sensitivity")
    r = runner.invoke(main, ["-w", str(ws.root), "tune-scorer", "--embeddings", sets[2]])
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
