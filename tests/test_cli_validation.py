"""Issue 11: numeric options are range-checked by click and reported in one line (exit 2)."""

import os
import subprocess
import sys

import pytest


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "curate", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ})


@pytest.mark.parametrize("args,needle", [
    (["embed", "--encoder", "pixels-pca", "--batch-size", "0"], "--batch-size"),
    (["embed", "--encoder", "pixels-pca", "--image-size", "100000"], "--image-size"),
    (["embed", "--encoder", "pixels-pca", "--workers", "-1"], "--workers"),
    (["train", "--method", "simclr", "--image-size", "100000"], "--image-size"),
    (["train", "--method", "simclr", "--epochs", "0"], "--epochs"),
    (["train", "--method", "simclr", "--holdout-fraction", "1.5"], "--holdout-fraction"),
    (["select", "--budget", "0"], "--budget"),
    (["select", "--budget", "3", "--seed", "-1"], "--seed"),
    (["push", "label-studio", "--project", "p", "--chunk-size", "0"], "--chunk-size"),
    (["fit-scorer", "--alpha", "2"], "--alpha"),
    (["simulate", "--seeds", "0"], "--seeds"),
])
def test_out_of_range_numbers_are_one_line_errors(tmp_path, args, needle):
    r = _cli(*args, cwd=tmp_path)  # parsed before any workspace is needed
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and needle in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_train_image_size_is_checked_by_the_library_too(tmp_path):
    from curate.errors import CurateError
    from curate.trainers.run import train
    from curate.workspace import init_workspace

    ws = init_workspace(tmp_path / "ws")
    with pytest.raises(CurateError, match="out of range"):
        train(ws.open_index(), ws, "simclr", image_size=100000, channels=3)
