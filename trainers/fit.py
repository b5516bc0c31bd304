"""Fit a TrainModule as a recorded run: run row, atomic checkpoints, resume; method-agnostic.

:func:`fit_run` is what :func:`curate.trainers.run.train` ends in, and what any caller
with its own module and data module (benchmarks) can call directly:

* the ``TrainingRun`` row is created (status ``running``) with every parameter, the
  data used (batch, image count, sha256 of the ids), package versions; after each
  epoch its per-epoch metrics are appended; on success it becomes ``finished`` (wall
  time, checkpoint path) and a ``Model`` row (encoder ``trained``) is inserted in the
  same transaction; an exception or Ctrl-C marks it ``failed`` (resumable).
* checkpoints: ``ws.models_dir/NAME/checkpoints/last.ckpt``, written every
  ``checkpoint_every`` steps, at each epoch end and at the end, always via a temporary
  file + rename (a kill never leaves a half-written checkpoint); the final encoder is
  exported to ``ws.models_dir/NAME/encoder.pt`` the same way.
* DDP (``strategy="ddp"``): Lightning re-launches the command once per extra local
  process; only global rank 0 touches the database. The run name reaches the other
  processes through ``$CURATE_TRAIN_RUN``; multi-node runs need an explicit ``name``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from curate.errors import CurateError
from curate.provenance import sha256_file, utcnow, versions
from curate.trainers.config import RuntimeConfig, TrainConfig
from curate.trainers.encoder import atomic_torch_save, export_encoder
from curate.trainers.progress import ProgressReporter, TrainProgress, lightning_output
from curate.trainers.schedule import BudgetSchedule, schedule_record

RUN_ENV = "CURATE_TRAIN_RUN"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that writes a temporary file, fsyncs and renames."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        atomic_torch_save(checkpoint, path)


class _Checkpointer(Checkpoint):
    """``last.ckpt`` every ``every`` optimizer steps, at each epoch end and at the end."""

    def __init__(self, path: Path, every: int):
        self.path, self.every = path, max(0, int(every))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.every and trainer.global_step % self.every == 0:
            trainer.save_checkpoint(self.path, weights_only=False)

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.save_checkpoint(self.path, weights_only=False)

    def on_train_end(self, trainer, pl_module):
        trainer.save_checkpoint(self.path, weights_only=False)


class _Recorder(Checkpoint):
    """Append the epoch's metrics to the TrainingRun row (rank 0; runs after logging), and
    record the run's total wall time (earlier segments + this one) with every checkpoint,
    so a run killed and resumed reports the time of all its segments."""

    def __init__(self, index, run_id: int, t0: float, prev_wall: float = 0.0):
        self.index, self.run_id, self.t0, self.prev_wall = index, run_id, t0, prev_wall

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        if trainer.is_global_zero and self.index is not None:
            self.index.record_run_wall(self.run_id, self.prev_wall + time.time() - self.t0)

    def on_train_epoch_end(self, trainer, pl_module):
        metrics = trainer.callback_metrics  # on every rank: computing it may all-reduce
        if not trainer.is_global_zero or self.index is None:
            return
        entry: dict[str, Any] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        for k, v in metrics.items():
            if k.endswith("_step"):
                continue
            key = k[: -len("_epoch")] if k.endswith("_epoch") else k
            if key in entry and not k.endswith("_epoch"):
                continue
            entry[key] = float(v)
        if trainer.optimizers:
            entry["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        entry["elapsed_s"] = round(time.time() - self.t0, 2)
        self.index.record_run_epoch(self.run_id, entry)


def is_child() -> bool:
    """True in a process that Lightning launched for a local rank > 0 or a node > 0."""
    return os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"


_NAME_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}")


def check_name(name: str) -> str:
    """A run name is one folder name inside the models folder: letters, digits and
    ``._@+-``, not starting with a dot, no path separators, no ``..``."""
    if not isinstance(name, str) or not _NAME_OK.fullmatch(name) or ".." in name:
        raise CurateError(f"invalid run name {name!r}: use letters, digits and ._@+- (no path "
                          "separators, no '..', not starting with '.' or '-', at most 200 characters)")
    return name


def check_checkpoint(path: Path) -> None:
    """Raise a one-line CurateError when ``path`` is not a readable Lightning checkpoint.

    Loaded with ``weights_only=True`` (tensors, containers and primitives only): a
    checkpoint that needs any other object to unpickle is refused, never executed."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CurateError(f"checkpoint {path} is unreadable ({msg}); delete it to restart "
                          "the run from scratch") from None
    if not isinstance(obj, dict) or "state_dict" not in obj or "global_step" not in obj:
        raise CurateError(f"checkpoint {path} is not a Lightning training checkpoint")


def fit_run(index, ws, module, datamodule, config: TrainConfig,
            runtime: RuntimeConfig = RuntimeConfig(), *, name: str | None = None,
            resume: bool = False, params: dict[str, Any] | None = None,
            callbacks: Sequence = (), knn_k: int = 10, trainer_kwargs: dict | None = None,
            on_progress: Callable[[TrainProgress], None] | None = None,
            verbose: bool = False) -> Any:
    """Fit ``module`` on ``datamodule`` as the recorded run ``name`` (module docstring).

    ``config`` gives method, epochs, max_steps, precision, seed; ``runtime`` the devices,
    time budget and checkpointing. ``params``: what the run row stores as its parameters
    (default ``{"args": config.to_params(runtime)}``). ``runtime.progress``: Lightning's
    own bar; ``on_progress``: curate's reports instead (:class:`TrainProgress`).
    Lightning's informational output is silenced unless ``verbose``.
    Returns the finished TrainingRun (global rank 0) or None (other ranks).
    Raises CurateError for user errors (bad name, unreadable checkpoint, bad devices).
    """
    with lightning_output(verbose):
        return _fit_run(index, ws, module, datamodule, config, runtime, name, resume,
                        params if params is not None else {"args": config.to_params(runtime)},
                        callbacks, knn_k, trainer_kwargs, on_progress)


def _fit_run(index, ws, module, datamodule, cfg: TrainConfig, rt: RuntimeConfig, name, resume,
             params, callbacks, knn_k, trainer_kwargs, on_progress):
    child = is_child()
    if child:
        name = os.environ.get(RUN_ENV) or name
    if name is None:
        if rt.num_nodes and int(rt.num_nodes) > 1:
            raise CurateError("multi-node training needs --name (every node must agree on it)")
        name = index.unique_run_name(f"{cfg.method}-{utcnow():%Y%m%d-%H%M%S}")
    check_name(name)
    rundir = Path(ws.models_dir) / name
    ckpt = rundir / "checkpoints" / "last.ckpt"
    if not child and not resume and index.run_name_taken(name):
        raise CurateError(f"a run or model named {name!r} exists; pick another --name "
                          f"or continue it with --resume {name}")
    ckpt_path = None
    if resume and ckpt.exists():
        check_checkpoint(ckpt)
        ckpt_path = str(ckpt)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    cbs = list(callbacks)
    if datamodule.knn_reference is not None:
        from curate.trainers.knn_monitor import KNNMonitor

        cbs.append(KNNMonitor(datamodule.knn_reference, datamodule.knn_holdout,
                              datamodule.eval_fn, k=knn_k))
    progress = rt.progress
    if on_progress is not None:
        cbs.append(ProgressReporter(on_progress, max_minutes=rt.max_minutes))
        progress = False
    if rt.max_minutes:  # schedules laid over the time budget
        cbs.append(BudgetSchedule(rt.max_minutes))
    t0 = time.time()
    recorder = _Recorder(None, 0, t0)
    try:
        trainer = L.Trainer(
            max_epochs=cfg.epochs, max_steps=cfg.max_steps,
            max_time={"minutes": rt.max_minutes} if rt.max_minutes else None,
            devices=rt.devices, num_nodes=rt.num_nodes, strategy=rt.strategy,
            accelerator=rt.accelerator, precision=cfg.precision, logger=False,
            enable_progress_bar=progress, enable_model_summary=False, default_root_dir=str(rundir),
            callbacks=cbs + [recorder, _Checkpointer(ckpt, rt.checkpoint_every)],
            plugins=[AtomicCheckpointIO()],
            sync_batchnorm=bool(rt.multi and rt.accelerator not in ("cpu",)),
            log_every_n_steps=1, **(trainer_kwargs or {}))
    except (ValueError, TypeError, RuntimeError) as e:
        raise CurateError(f"cannot set up training: {str(e).splitlines()[0]}") from None
    module.bind_data(datamodule)  # before the run row exists, so bad labels fail cleanly
    per_rank = datamodule.effective_batch_size(trainer.world_size)
    effective = module.configure_for_data(len(datamodule.source), per_rank * trainer.world_size)
    effective.update(batch_size=per_rank, world_size=trainer.world_size)
    run_id, prev_wall = None, 0.0
    if trainer.is_global_zero:
        run_id, prev_wall = index.start_training_run(
            name, cfg.method, {**params, "effective": effective, "module": module.record_params()},
            datamodule.save_split(rundir),  # + the never-trained holdout's ids file
            versions(), str(ckpt))
        recorder.index, recorder.run_id, recorder.prev_wall = index, run_id, prev_wall
    old_env = os.environ.get(RUN_ENV)
    os.environ[RUN_ENV] = name
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except BaseException as e:
        if run_id is not None:
            index.finish_training_run(run_id, "failed", prev_wall + time.time() - t0)
        if isinstance(e, SystemExit) and trainer.interrupted:
            raise CurateError(f"training interrupted; continue with `curate train --resume {name}`",
                              exit_code=130) from None
        raise
    finally:
        if old_env is None:
            os.environ.pop(RUN_ENV, None)
        else:
            os.environ[RUN_ENV] = old_env
    if not trainer.is_global_zero:
        return None
    path = rundir / "encoder.pt"
    model_params = export_encoder(module, path)
    model_params.setdefault("normalize", True)  # metric trainers may export normalize=False
    model_params.update(image_size=int(module.hparams.image_size))
    stopped = ("max_time" if rt.max_minutes and trainer.current_epoch < cfg.epochs
               and (cfg.max_steps < 0 or trainer.global_step < cfg.max_steps) else
               "max_steps" if cfg.max_steps > 0 and trainer.global_step >= cfg.max_steps
               else "max_epochs")
    return index.finish_training_run(
        run_id, "finished", prev_wall + time.time() - t0,
        model={"weights_path": str(path), "weights_sha256": sha256_file(path), "params": model_params},
        extra={"steps": trainer.global_step, "epochs_done": trainer.current_epoch,
               "stopped_by": stopped, "schedule": schedule_record(module, cbs),
               **datamodule.input_record()})
