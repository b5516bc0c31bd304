"""Run recording and resume (crash, kill -9), bad input as one-line errors, the CLI."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from lightning.pytorch.callbacks import Callback
from sqlalchemy import select

from curate.db.models import Batch, Model
from curate.errors import CurateError
from curate.trainers.run import load_methods, quiet_lightning, train

load_methods()
quiet_lightning()
FAST = dict(image_size=16, batch_size=4, num_workers=0, progress=False, devices=1,
            accelerator="cpu", holdout_fraction=0.0)  # step counts below: all 24 images train


@pytest.fixture(scope="module")
def ws_index(tmp_path_factory):
    from helpers import gray_noise_workspace

    ws, index = gray_noise_workspace(tmp_path_factory.mktemp("run"), 24, batch="b1")
    with index.session() as s:
        s.add(Batch(name="empty"))
    yield ws, index
    index.close()


class _CrashAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


class _Steps(Callback):
    def __init__(self):
        self.steps, self.queue = [], None

    def on_train_start(self, trainer, pl_module):
        if hasattr(pl_module, "criterion") and hasattr(pl_module.criterion, "memory_bank"):
            self.queue = pl_module.criterion.memory_bank.bank.clone()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.steps.append(trainer.global_step)


def _model(index, name):
    with index.session() as s:
        return s.scalar(select(Model).where(Model.name == name))


def test_crash_then_resume_continues_the_step_count(ws_index):
    ws, index = ws_index
    with pytest.raises(RuntimeError, match="simulated"):
        train(index, ws, "moco", name="crash", epochs=2, checkpoint_every=2, queue_size=8,
              callbacks=[_CrashAt(5)], **FAST)
    run = index.training_run("crash")
    assert run.status == "failed" and _model(index, "crash") is None
    ckpt = torch.load(run.checkpoint_path, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 4 and "moco_queue" in ckpt
    rec = _Steps()
    run = train(index, ws, resume="crash", callbacks=[rec])
    assert rec.steps[0] == 4 and rec.steps[-1] == 11  # 24 images / 4 = 6 steps x 2 epochs
    assert torch.equal(rec.queue, ckpt["moco_queue"]["bank"])  # the MoCo queue came back
    assert run.status == "finished" and run.data["steps"] == 12
    assert [e["epoch"] for e in run.metrics] == [0, 1]
    assert run.params["args"]["options"]["queue_size"] == run.params["effective"]["queue_size"] == 8
    assert _model(index, "crash").run_id == run.id
    with pytest.raises(CurateError, match="already finished"):
        train(index, ws, resume="crash")


def test_kill_9_mid_epoch_then_resume(ws_index, tmp_path):
    ws, index = ws_index
    script = tmp_path / "killme.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal
        import torch
        from lightning.pytorch.callbacks import Callback
        from curate.workspace import find_workspace
        from curate.trainers.run import train, quiet_lightning
        torch.set_num_threads(1)
        quiet_lightning()
        class Kill(Callback):
            def on_train_batch_end(self, trainer, *a):
                if trainer.global_step == 3:
                    os.kill(os.getpid(), signal.SIGKILL)
        ws = find_workspace({str(ws.root)!r})
        train(ws.open_index(), ws, "simclr", name="killed", epochs=1, checkpoint_every=2,
              callbacks=[Kill()], **{FAST!r})
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    run = index.training_run("killed")
    assert run.status == "running" and _model(index, "killed") is None
    assert not list(Path(run.checkpoint_path).parent.glob(".*tmp*"))
    rec = _Steps()
    run = train(index, ws, resume="killed", callbacks=[rec])
    assert rec.steps[0] == 2 and run.status == "finished" and run.data["steps"] == 6
    assert _model(index, "killed") is not None


def test_corrupt_checkpoint_is_a_one_line_error(ws_index):
    ws, index = ws_index
    with pytest.raises(RuntimeError):
        train(index, ws, "simclr", name="corrupt", epochs=1, checkpoint_every=1,
              callbacks=[_CrashAt(2)], **FAST)
    Path(index.training_run("corrupt").checkpoint_path).write_bytes(b"\x80garbage")
    with pytest.raises(CurateError, match="unreadable") as e:
        train(index, ws, resume="corrupt")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kwargs,match", [
    (dict(method="nope"), "unknown training method"),
    (dict(method="simclr", backbone="nope"), "unknown backbone"),
    (dict(method="simclr", backbone="resnet18", image_size=8), "too small"),
    (dict(method="simclr", batch="empty"), "no ok images"),
    (dict(method="simclr", batch="missing"), "no batch named"),
    (dict(method="simclr", weights="/nonexistent.pt"), "not found"),
    (dict(method="dino-neg", neg_source="aux", aux="/nonexistent/folder"), "no such folder"),
    (dict(method="simclr", epochs=0), "epochs"),
    (dict(resume="no-such-run"), "no training run"),
])
def test_bad_input_is_a_curate_error(ws_index, kwargs, match):
    ws, index = ws_index
    kw = {**FAST, **kwargs}
    method = kw.pop("method", None)
    with pytest.raises(CurateError, match=match) as e:
        train(index, ws, method, name="bad", max_steps=1, **kw)
    assert "\n" not in str(e.value)
    assert _model(index, "bad") is None


def test_duplicate_name_is_refused(ws_index):
    ws, index = ws_index
    train(index, ws, "autoencoder", name="dup", max_steps=1, **FAST)
    with pytest.raises(CurateError, match="exists"):
        train(index, ws, "autoencoder", name="dup", max_steps=1, **FAST)


def test_cli_train_and_one_line_errors(ws_index):
    from curate.cli import main

    ws, _ = ws_index
    base = ["-w", str(ws.root), "train", "--image-size", "16", "--batch-size", "4",
            "--workers", "0", "--no-progress", "--accelerator", "cpu", "--devices", "1"]
    r = CliRunner().invoke(main, base + ["--method", "dino", "--max-steps", "2", "--name", "cli1",
                                         "--out-dim", "64", "--local-crops", "1", "--json"])
    assert r.exit_code == 0, r.output
    assert '"status": "finished"' in r.output and '"model": "cli1"' in r.output
    r = CliRunner().invoke(main, ["-w", str(ws.root), "embed", "--model", "cli1", "--device", "cpu",
                                  "--workers", "0", "--json"])
    assert r.exit_code == 0, r.output  # the teacher backbone embeds through `curate embed`
    r = CliRunner().invoke(main, base + ["--method", "simclr", "--backbone", "resnet18",
                                         "--image-size", "8"])
    assert r.exit_code == 2 and r.output.strip().startswith("error:") and \
        len(r.output.strip().splitlines()) == 1, r.output
    r = CliRunner().invoke(main, base + ["--method", "simclr", "--queue-size", "8"])
    assert r.exit_code == 2 and "has no option" in r.output
    r = CliRunner().invoke(main, ["train", "--help"])
    assert "--neg-shift" in r.output and "--knn-monitor" in r.output


DDP_SCRIPT = """
import sys, torch
from pathlib import Path
from lightning.pytorch.callbacks import Callback
from curate.workspace import find_workspace
from curate.trainers.run import train, quiet_lightning
torch.set_num_threads(1)
quiet_lightning()
out = Path(sys.argv[2])
class Dump(Callback):
    def on_train_end(self, trainer, pl):
        mb = pl.criterion.memory_bank
        torch.save({"bank": mb.bank.clone(), "ptr": int(mb.bank_ptr), "step": trainer.global_step,
                    "w": next(pl.backbone.parameters()).detach().clone()},
                   out / f"rank{trainer.global_rank}.pt")
ws = find_workspace(sys.argv[1])
train(ws.open_index(), ws, "moco", name="ddp", epochs=1, batch_size=4, image_size=16,
      num_workers=0, progress=False, accelerator="cpu", devices=2, strategy="ddp",
      queue_size=16, holdout_fraction=0.0, callbacks=[Dump()])
"""


@pytest.mark.slow
def test_ddp_two_cpu_processes_share_the_moco_queue(ws_index, tmp_path):
    """2 gloo processes: every rank enqueues the keys of both (all-gathered) -> same queue."""
    ws, index = ws_index
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(ws.root), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    # 24 images / 2 ranks / batch 4 = 3 steps, 2 x 4 keys enqueued per step: 24 -> ptr 24 mod 16
    assert a["step"] == b["step"] == 3 and a["ptr"] == b["ptr"] == 8
    assert torch.equal(a["bank"], b["bank"]) and torch.equal(a["w"], b["w"])
    run = index.training_run("ddp")
    assert run.status == "finished" and run.params["effective"]["world_size"] == 2


def test_weights_start_from_a_previous_runs_encoder(ws_index):
    from curate.trainers.encoder import read_encoder_file

    ws, index = ws_index
    train(index, ws, "simclr", name="wa", max_steps=1, **FAST)
    path = ws.models_dir / "wa" / "encoder.pt"

    class First(Callback):
        def on_train_start(self, trainer, pl_module):
            self.state = {k: v.clone() for k, v in pl_module.backbone.state_dict().items()}

    cb = First()
    run = train(index, ws, "moco", name="wb", weights=str(path), max_steps=1, callbacks=[cb], **FAST)
    saved = read_encoder_file(path)["state_dict"]
    assert all(torch.equal(cb.state[k], saved[k]) for k in saved)
    assert run.params["args"]["weights"] == str(path)
