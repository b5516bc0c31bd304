"""check-batch on real image files: verdicts, stored evidence, Benjamini-Hochberg family
(curate.novelty.batch_check), on SQLite and PostgreSQL."""

import pytest
from sqlalchemy import func, select

from curate.db.models import Batch, BatchCheck, Image
from curate.errors import CurateError
from curate.novelty.batch_check import check_batch
from curate.novelty.stored import fit_scorer
from novelty_images import ingest_and_embed, write_corpus

PERM = 200


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("shift-images"))


@pytest.fixture
def fitted(index, ws, corpus):
    ingest_and_embed(index, ws, corpus)
    return fit_scorer(index, ws, "knn", k=5, reference_batches=["ref"], calibration_fraction=0.25,
                      alpha=0.1).name


def test_novel_batch_shifted_in_distribution_batch_not(index, fitted):
    ok = check_batch(index, "new-in", permutations=PERM)
    bad = check_batch(index, "new-out", fitted, permutations=PERM)
    assert ok.verdict == "no shift" and not ok.shifted
    assert bad.verdict == "shifted" and bad.shifted
    r = bad.result
    assert r["flagged_fraction"] == 1.0 and r["flag_alpha"] == 0.1 and r["flag_p"] < 1e-10
    # 20 stored calibration scores, threshold = the 19th smallest: exact beta-binomial
    assert (r["n_cal"], r["threshold_rank"], r["flag_test"]) == (20, 19, "beta-binomial(30, 2, 19)")
    assert ok.result["flag_p"] > 0.025 and "with this calibration set" in ok.result["evidence"]
    assert r["mmd"]["p_value"] == pytest.approx(1 / (PERM + 1)) and r["mmd"]["effect_size"] > 0.3
    assert r["mmd"]["n_ref"] == 60 and r["mmd"]["n_batch"] == 30 and r["effect"].startswith("100.0%")
    assert ok.result["flagged_fraction"] <= 0.2 and ok.result["mmd"]["p_value"] > 0.05
    assert ok.result["mmd"]["effect_size"] < r["mmd"]["effect_size"]
    # BH family: the earlier check of new-in, then this one
    assert [f["batch"] for f in r["bh"]["family"]] == ["new-in", "new-out"]
    assert r["bh"]["n_batches"] == 2 and r["bh"]["adjusted_p"] >= r["combined_p"]
    with index.session() as s:
        row = s.get(BatchCheck, bad.check_id)
        assert row.verdict == "shifted" and s.get(Batch, row.batch_id).name == "new-out"
        assert row.params["permutations"] == PERM and row.params["scorer"] == fitted
        assert row.params["alpha"] == 0.1 and row.params["n_ref_used"] == 60
        assert "numpy" in row.versions and row.result["mmd"]["statistic"] > 0
        assert len(row.result["most_novel"]) == 10
        from curate.provenance import matches_ids, same_ids
        from curate.novelty.stored import load_scorer

        ids = [i for i, b in s.execute(select(Image.id, Batch.name).join(Batch)).all() if b == "new-out"]
        assert matches_ids(ids, row.params, "batch_ids_sha256") and row.params["ids_hash_version"] == 2
        cal = load_scorer(index, fitted).calibration  # 60 reference images, all used here
        assert same_ids(row.params, "reference_ids_sha256", cal, "reference_ids_sha256") is True


def test_recheck_replaces_the_batch_in_the_family(index, fitted):
    check_batch(index, "new-out", permutations=PERM)
    check_batch(index, "new-in", permutations=PERM)
    again = check_batch(index, "new-in", permutations=PERM, alpha=0.2)
    assert again.result["bh"]["n_batches"] == 2 and again.params["alpha"] == 0.2
    assert again.result["flag_alpha"] == 0.2  # re-calibrated at the given alpha
    assert again.result["threshold_rank"] == 17  # floor(0.2 * 21) = 4 of 21 above it
    with index.session() as s:
        assert s.scalar(select(func.count()).select_from(BatchCheck)) == 3


BAD = [
    ({"batch": "ref"}, "holds \\(almost\\) all of scorer"),
    ({"batch": "empty"}, "batch 'empty' has no embedded images"),
    ({"batch": "nope"}, "no batch named 'nope'"),
    ({"batch": "new-in", "alpha": 1.0}, r"alpha must be in \(0, 1\)"),
    ({"batch": "new-in", "alpha": 0.01}, "below 1/"),
    ({"batch": "new-in", "permutations": 0}, "permutations must be >= 1"),
    ({"batch": "new-in", "scorer": "nope"}, "no scorer named 'nope'"),
]


def test_bad_checks_store_nothing(index, fitted):
    with index.session() as s:
        s.add(Batch(name="empty"))
    for kw, match in BAD:
        with pytest.raises(CurateError, match=match) as exc:
            check_batch(index, **kw)
        assert "\n" not in str(exc.value)
    with index.session() as s:
        assert s.scalar(select(func.count()).select_from(BatchCheck)) == 0


def test_no_scorer_yet(index):
    with pytest.raises(CurateError, match="no scorer yet"):
        check_batch(index, "x")
