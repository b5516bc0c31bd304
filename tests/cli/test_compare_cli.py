"""``curate compare`` and the comparison that ends ``curate train``, on a real workspace:
sklearn's digits as PNGs (two labelled batches) plus an unlabelled out-of-distribution
batch. A tiny SimCLR encoder trained for 2 steps at 8 px is worse than pixels-pca on
digits: `curate train` must say so in one warning line."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.compare import compare
from curate.datasets import load_digits, write_pngs
from curate.embed import embed
from curate.ingest import ingest
from curate.workspace import init_workspace
from helpers import gray_noise_workspace, write_class_images

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = ["train", "--method", "simclr", "--batch", "digits", "--image-size", "8",
         "--max-steps", "2", "--batch-size", "64", "--holdout-fraction", "0.3", "--seed", "1",
         "--workers", "0", "--accelerator", "cpu", "--devices", "1", "--checkpoint-every", "0",
         "--no-progress", "--name", "tiny"]


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("CURATE_WORKSPACE", "CURATE_DB")}
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "200"}


@pytest.fixture(scope="module")
def digits_ws(tmp_path_factory):
    """digits (1,500 labelled, 32 px), digits-test (297 labelled), other (40 RGB, no labels);
    then `curate train` (subprocess) of a tiny SimCLR on digits and its embedding set tiny@8;
    returns (root, train result)."""
    root = tmp_path_factory.mktemp("cmp")
    images, labels = load_digits()
    write_pngs(images[:1500], labels[:1500], root / "digits", upscale=4)
    write_pngs(images[1500:], labels[1500:], root / "digits-test", upscale=4)
    ws = init_workspace(root / "ws")
    index = ws.open_index()
    ingest(index, [root / "digits"], batch="digits", labels="folders")
    ingest(index, [root / "digits-test"], batch="digits-test", labels="folders")
    ingest(index, [write_class_images(root / "other", 2, 20, size=32)], batch="other")
    index.close()
    r = subprocess.run([sys.executable, "-m", "curate", "-w", str(ws.root), *TRAIN],
                       capture_output=True, text=True, env=_env())
    if r.returncode == 0:
        index = ws.open_index()
        embed(index, ws, model="tiny", device="cpu")     # set tiny@8 (no pixels-pca set yet)
        index.close()
    return ws.root, r


def _cli(*args):
    return CliRunner(env={"COLUMNS": "200"}).invoke(main, [str(a) for a in args])


def test_train_ends_with_the_comparison_and_warns_when_worse(digits_ws):
    root, r = digits_ws
    assert r.returncode == 0, r.stderr
    assert "tiny vs pixels-pca on 450 held-out images (reference: 1000 trained images)" in r.stdout
    assert "10-NN accuracy" in r.stdout and "shift AUROC rot90 (knn)" in r.stdout
    warning = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "Traceback" not in r.stderr
    assert warning[0].startswith("warning: tiny is worse than pixels-pca on its held-out images: "
                                 "10-NN accuracy -0.")
    index = init_workspace(root).open_index()
    from sqlalchemy import select

    from curate.db.models import TrainingRun
    with index.session() as s:
        run = s.scalar(select(TrainingRun).where(TrainingRun.name == "tiny"))
    index.close()
    cmp = run.data["comparison"]
    assert cmp["baseline"] == "pixels-pca" and cmp["info"]["n_holdout"] == 450
    assert cmp["info"]["labelled"] and "10-NN accuracy" in cmp["verdicts"]["tiny"]["worse"]
    knn = [t for t in cmp["table"] if t["metric"] == "10-NN accuracy" and t["set"] == "tiny"][0]
    assert knn["diff_high"] < 0 and knn["n"] == 450


def test_train_no_compare_and_too_small_holdout(tmp_path):
    from curate.trainers.run import train

    ws, index = gray_noise_workspace(tmp_path, 40)
    kw = dict(image_size=16, batch_size=8, max_steps=1, num_workers=0, progress=False,
              devices=1, accelerator="cpu", checkpoint_every=0)
    run = train(index, ws, "simclr", name="small", **kw)     # holdout of 4 images
    assert run.data["comparison"] == {
        "error": "4 held-out images are too few to compare with pixels-pca (need 20; "
                 "raise --holdout-fraction)"}
    run = train(index, ws, "simclr", name="off", compare=False, **kw)
    assert "comparison" not in run.data
    index.close()


def test_compare_table_computes_the_baseline_and_writes_out(digits_ws, tmp_path):
    root, _ = digits_ws
    out = tmp_path / "cmp.csv"
    r = _cli("-w", root, "compare", "--embeddings", "tiny@8", "--ood-batch", "other",
             "--budgets", "10,40", "--seeds", "2", "--bootstrap", "200", "--out", out)
    assert r.exit_code == 0, r.output
    assert "compare on 1837 images (1797 labelled, 5-fold cross-validation)" in r.output
    assert "pixels-pca-default@32 (baseline)" in r.output and "embed images/s" in r.output
    assert "note: computed the baseline pixels-pca-default@32: 1837 images" in r.output
    line = [x for x in r.output.splitlines() if x.startswith("tiny@8:")][0]
    assert "worse than pixels-pca-default@32 on 10-NN accuracy" in line
    df = pd.read_csv(out)
    assert set(df["set"]) == {"pixels-pca-default@32", "tiny@8"}
    assert {"10-NN accuracy", "linear probe accuracy", "AL auto @10", "AL auto @40",
            "AL random @10", "AL random @40", "OOD AUROC other (knn)", "OOD AUROC other (mahalanobis)",
            "sensitivity (knn, not judged)"} == set(df["metric"])
    ood = df[(df.metric == "OOD AUROC other (knn)") & (df.set == "pixels-pca-default@32")].iloc[0]
    assert ood["value"] > 0.95 and ood["low"] <= ood["value"] <= ood["high"]


def test_compare_python_api_with_a_test_batch(digits_ws):
    root, _ = digits_ws
    ws = init_workspace(root)
    index = ws.open_index()
    try:
        res = compare(index, ws, ["tiny@8"], test_batch="digits-test", al=False, n_boot=200)
    finally:
        index.close()
    assert res.baseline == "pixels-pca-default@32" and res.info["labelled_eval"] == "test batch"
    assert res.info["n_test"] == 297 and res.info["n_train"] == 1500
    assert [s["name"] for s in res.sets] == ["pixels-pca-default@32", "tiny@8"]
    assert [s["dim"] for s in res.sets] == [64, 256]
    assert all(s["images_per_second"] > 0 for s in res.sets)      # recorded by `curate embed`
    knn = res.table[(res.table.metric == "10-NN accuracy")].set_index("set")
    assert knn.loc["pixels-pca-default@32", "value"] > 0.9 and knn["n"].eq(297).all()
    assert res.verdicts["tiny@8"]["worse"][:1] == ["10-NN accuracy"]
    assert json.loads(json.dumps(res.as_dict()))["table"][0]["set"] in ("tiny@8", "pixels-pca-default@32")


def test_compare_errors_are_one_line(digits_ws, tmp_path):
    root, _ = digits_ws
    r = _cli("-w", root, "compare", "--embeddings", "nope@8")
    assert r.exit_code == 2 and r.output.startswith("error: no embedding set named 'nope@8'; ")
    assert len(r.output.splitlines()) == 1
    r = _cli("-w", root, "compare", "--test-batch", "other", "--ood-batch", "other")
    assert r.exit_code == 2 and r.output == ("error: batch 'other' is both the test batch and an "
                                             "OOD batch\n")
    r = _cli("-w", root, "compare", "--ood-batch", "missing")
    assert r.exit_code == 2 and r.output == "error: no batch named 'missing'\n"
    ws, index = gray_noise_workspace(tmp_path, 30)       # no labels at all
    index.close()
    r = _cli("-w", ws.root, "compare")
    assert r.exit_code == 2 and len(r.output.splitlines()) == 1
    assert r.output.startswith("error: nothing to compare on: no image has a label and no "
                               "--ood-batch was given; ingest with --labels")
    assert not list(ws.embeddings_dir.iterdir())         # refused before computing a baseline
    r = _cli("-w", root, "compare", "--embeddings", "tiny@8", "--ood-batch", "digits-test",
             "--ood-batch", "digits", "--json")            # every labelled image is OOD now
    assert r.exit_code == 0, r.output
    js = json.loads(r.output)
    assert {t["metric"] for t in js["table"]} == {
        f"OOD AUROC {b} ({s})" for b in ("digits-test", "digits") for s in ("knn", "mahalanobis")
    } | {"sensitivity (knn, not judged)"}
    assert js["info"]["ood_reference"] + js["info"]["ood_in"] == 40     # the `other` batch
    assert js["notes"] == ["skipped labelled metrics: no labelled images"]
    assert js["lines"][0].startswith("tiny@8: ")
