"""Issue 11, training side: checkpoints are never unpickled unsafely, run names stay in the
models folder, a resumed run records the wall time of all its segments."""

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import Callback

from curate.errors import CurateError
from curate.trainers.run import load_methods, quiet_lightning, train

load_methods()
quiet_lightning()
FAST = dict(image_size=16, batch_size=4, num_workers=0, progress=False, devices=1,
            accelerator="cpu", holdout_fraction=0.0)


@pytest.fixture(scope="module")
def ws_index(tmp_path_factory):
    from helpers import gray_noise_workspace

    ws, index = gray_noise_workspace(tmp_path_factory.mktemp("safety"), 16)
    yield ws, index
    index.close()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_without_running_code(ws_index, tmp_path):
    ws, index = ws_index
    with pytest.raises(RuntimeError):
        train(index, ws, "simclr", name="evil", epochs=1, checkpoint_every=1,
              callbacks=[_Crash()], **FAST)
    marker = tmp_path / "pwned"
    ckpt = Path(index.training_run("evil").checkpoint_path)
    with open(ckpt, "wb") as f:
        pickle.dump({"state_dict": {}, "global_step": 1, "x": _Evil(marker)}, f)
    with pytest.raises(CurateError, match="unreadable"):
        train(index, ws, resume="evil")
    assert not marker.exists()


class _Crash(Callback):
    def on_train_batch_end(self, trainer, *a):
        if trainer.global_step == 2:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("name", ["../../escape", "/tmp/abs-run", "a/b", "..", ".hidden", "x" * 300])
def test_run_names_cannot_leave_the_models_folder(ws_index, name):
    ws, index = ws_index
    with pytest.raises(CurateError, match="invalid run name"):
        train(index, ws, "simclr", name=name, epochs=1, **FAST)
    assert not (ws.models_dir.parent.parent / "escape").exists()


def test_cli_bad_name_is_one_line(ws_index, tmp_path):
    ws, _ = ws_index
    r = subprocess.run([sys.executable, "-m", "curate", "-w", str(ws.root), "train", "--method",
                        "simclr", "--name", "../../../x", "--epochs", "1"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "invalid run name" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_resumed_run_records_total_wall_time(ws_index, tmp_path):
    ws, index = ws_index
    script = tmp_path / "killme.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, time
        import torch
        from lightning.pytorch.callbacks import Callback
        from curate.workspace import find_workspace
        from curate.trainers.run import train, quiet_lightning
        torch.set_num_threads(1)
        quiet_lightning()
        class SlowThenKill(Callback):
            def on_train_batch_end(self, trainer, *a):
                time.sleep(1.0)
                if trainer.global_step == 3:
                    os.kill(os.getpid(), signal.SIGKILL)
        ws = find_workspace({str(ws.root)!r})
        train(ws.open_index(), ws, "simclr", name="timed", epochs=1, checkpoint_every=2,
              callbacks=[SlowThenKill()], **{FAST!r})
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    first = index.training_run("timed").wall_seconds
    assert first is not None and first >= 2.0  # recorded with the checkpoint at step 2
    run = train(index, ws, resume="timed")
    assert run.status == "finished" and run.wall_seconds > first
