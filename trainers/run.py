"""Training runs: record in the index, checkpoint atomically, resume; method-agnostic.

``train(index, ws, method, **options) -> TrainingRun`` is the library form of
``curate train``: it resolves defaults from the data (channels, image size), builds
the method's module (``TRAINERS``) and the :class:`ImageDataModule`, and calls
:func:`fit_run`, which any trainer (SSL or metric learning) can call directly:

* the ``TrainingRun`` row is created (status ``running``) with every parameter, the
  data used (batch, image count, sha256 of the ids), package versions; after each
  epoch its per-epoch metrics are appended; on success it becomes ``finished`` (wall
  time, checkpoint path) and a ``Model`` row (encoder ``trained``) is inserted in the
  same transaction; an exception or Ctrl-C marks it ``failed`` (resumable).
* checkpoints: ``ws.models_dir/NAME/checkpoints/last.ckpt``, written every
  ``checkpoint_every`` steps, at each epoch end and at the end, always via a temporary
  file + rename (a kill never leaves a half-written checkpoint); the final encoder is
  exported to ``ws.models_dir/NAME/encoder.pt`` the same way.
* ``resume=NAME`` continues a running/failed run from ``last.ckpt`` with its stored
  parameters (Lightning restores step count, optimizer, schedules, MoCo queue, timer);
  only runtime options (devices, nodes, strategy, accelerator, max_minutes, workers,
  progress) may change.
* DDP (``strategy="ddp"``): Lightning re-launches the command once per extra local
  process; only global rank 0 touches the database. The run name reaches the other
  processes through ``$CURATE_TRAIN_RUN``; multi-node runs need an explicit ``name``.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from sqlalchemy import select

from curate.db.models import Image, Model, TrainingRun
from curate.errors import CurateError
from curate.provenance import sha256_file, utcnow, versions
from curate.trainers import TRAINERS
from curate.trainers.encoder import atomic_torch_save, export_encoder
from curate.trainers.progress import (ProgressReporter, TrainProgress, lightning_output,  # noqa: F401
                                      quiet_lightning)  # quiet_lightning: re-exported for tests
from curate.trainers.schedule import BudgetSchedule, schedule_record

RUN_ENV = "CURATE_TRAIN_RUN"
RUNTIME = ("devices", "num_nodes", "strategy", "accelerator", "max_minutes", "num_workers",
           "progress", "checkpoint_every")
_NOT_METHODS = {"run", "base", "backbones", "augment", "datamodule", "encoder", "knn_monitor",
                "progress", "cache", "batch_augment", "schedule"}
GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def load_methods() -> list[str]:
    """Import every trainer module in ``curate.trainers`` (registration); method names."""
    import curate.trainers as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name not in _NOT_METHODS and not info.name.startswith("_"):
            importlib.import_module(f"curate.trainers.{info.name}")
    return TRAINERS.names()


def data_defaults(index, batch: str | None = None, sample: int = 2000) -> tuple[int, int]:
    """(channels, image_size) suggested by the ok images: 1 if all are grayscale, and the
    median shorter side clamped to [16, 224]."""
    from curate.data import list_images

    recs = list_images(index, batch=batch)  # validates the batch name
    ids = [r.id for r in recs[:: max(1, len(recs) // sample)]][:sample]
    if not ids:
        return 3, 32
    with index.session() as s:
        rows = s.execute(select(Image.mode, Image.width, Image.height).where(Image.id.in_(ids))).all()
    channels = 1 if all(m in GRAY_MODES for m, _, _ in rows) else 3
    sides = [min(w, h) for _, w, h in rows if w and h]
    size = int(statistics.median(sides)) if sides else 32
    return channels, max(16, min(224, size))


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
            with self.index.session() as s:
                s.get(TrainingRun, self.run_id).wall_seconds = round(
                    self.prev_wall + time.time() - self.t0, 3)

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
        with self.index.session() as s:
            run = s.get(TrainingRun, self.run_id)
            run.metrics = [e for e in (run.metrics or []) if e.get("epoch") != entry["epoch"]] + [entry]


def _unique_name(index, base: str) -> str:
    with index.session() as s:
        taken = set(s.scalars(select(TrainingRun.name).where(TrainingRun.name.like(f"{base}%"))))
        taken |= set(s.scalars(select(Model.name).where(Model.name.like(f"{base}%"))))
    name, i = base, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    return name


def _is_child() -> bool:
    return os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"


def get_run(index, name: str) -> TrainingRun:
    with index.session() as s:
        run = s.scalar(select(TrainingRun).where(TrainingRun.name == name))
    if run is None:
        raise CurateError(f"no training run named {name!r}")
    return run


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


def fit_run(index, ws, module, datamodule, *, verbose: bool = False,
            **kwargs) -> TrainingRun | None:
    """Fit ``module`` on ``datamodule`` as a recorded run; see the module docstring.

    Keyword arguments as :func:`_fit_run`. Lightning's informational output (device
    banners, tips) is silenced unless ``verbose`` (:func:`lightning_output`).
    Returns the finished TrainingRun (global rank 0) or None (other ranks).
    Raises CurateError for user errors (bad name, unreadable checkpoint, bad devices).
    """
    with lightning_output(verbose):
        return _fit_run(index, ws, module, datamodule, **kwargs)


def _fit_run(index, ws, module, datamodule, *, method: str, params: dict[str, Any],
             name: str | None = None, resume: bool = False, epochs: int = 100,
             max_steps: int = -1, max_minutes: float | None = None, devices: Any = "auto",
             num_nodes: int = 1, strategy: str = "auto", accelerator: str = "auto",
             precision: str = "32-true", seed: int = 0, checkpoint_every: int = 100,
             progress: bool = True, callbacks: Sequence = (), knn_k: int = 10,
             trainer_kwargs: dict | None = None,
             on_progress: Callable[[TrainProgress], None] | None = None) -> TrainingRun | None:
    """``progress``: Lightning's own bar; ``on_progress``: curate's reports instead
    (:class:`TrainProgress`, e.g. drawn by the CLI as a rich bar)."""
    if _is_child():
        name = os.environ.get(RUN_ENV) or name
    if name is None:
        if num_nodes and int(num_nodes) > 1:
            raise CurateError("multi-node training needs --name (every node must agree on it)")
        name = _unique_name(index, f"{method}-{utcnow():%Y%m%d-%H%M%S}")
    check_name(name)
    rundir = Path(ws.models_dir) / name
    ckpt = rundir / "checkpoints" / "last.ckpt"
    child = _is_child()
    if not child and not resume:
        with index.session() as s:
            if s.scalar(select(TrainingRun.id).where(TrainingRun.name == name)) is not None or \
                    s.scalar(select(Model.id).where(Model.name == name)) is not None:
                raise CurateError(f"a run or model named {name!r} exists; pick another --name "
                                  f"or continue it with --resume {name}")
    ckpt_path = None
    if resume and ckpt.exists():
        check_checkpoint(ckpt)
        ckpt_path = str(ckpt)
    L.seed_everything(seed, workers=True, verbose=False)
    cbs = list(callbacks)
    if datamodule.knn_reference is not None:
        from curate.trainers.knn_monitor import KNNMonitor

        cbs.append(KNNMonitor(datamodule.knn_reference, datamodule.knn_holdout,
                              datamodule.eval_fn, k=knn_k))
    if on_progress is not None:
        cbs.append(ProgressReporter(on_progress, max_minutes=max_minutes))
        progress = False
    if max_minutes:  # schedules laid over the time budget
        cbs.append(BudgetSchedule(max_minutes))
    t0 = time.time()
    recorder = _Recorder(None, 0, t0)
    multi = (num_nodes or 1) > 1 or devices not in ("auto", 1, "1", None)
    try:
        trainer = L.Trainer(
            max_epochs=epochs, max_steps=max_steps,
            max_time={"minutes": max_minutes} if max_minutes else None,
            devices=devices, num_nodes=num_nodes, strategy=strategy, accelerator=accelerator,
            precision=precision, logger=False, enable_progress_bar=progress,
            enable_model_summary=False, default_root_dir=str(rundir),
            callbacks=cbs + [recorder, _Checkpointer(ckpt, checkpoint_every)],
            plugins=[AtomicCheckpointIO()],
            sync_batchnorm=bool(multi and accelerator not in ("cpu",)),
            log_every_n_steps=1, **(trainer_kwargs or {}))
    except (ValueError, TypeError, RuntimeError) as e:
        raise CurateError(f"cannot set up training: {str(e).splitlines()[0]}") from None
    if hasattr(module, "bind_data"):  # hook (metric trainers): check labels, size class heads
        module.bind_data(datamodule)      # before the run row exists, so bad labels fail cleanly
    per_rank = datamodule.effective_batch_size(trainer.world_size)
    effective = module.configure_for_data(len(datamodule.source), per_rank * trainer.world_size)
    effective.update(batch_size=datamodule.effective_batch_size(trainer.world_size),
                     world_size=trainer.world_size)
    run_id, prev_wall = None, 0.0
    if trainer.is_global_zero:
        with index.session() as s:
            run = s.scalar(select(TrainingRun).where(TrainingRun.name == name))
            if run is None:
                run = TrainingRun(name=name, method=method, metrics=[])
                s.add(run)
            run.params = {**params, "effective": effective, "module": module.record_params()}
            run.data = datamodule.save_split(rundir)  # + the never-trained holdout's ids file
            run.status, run.versions = "running", versions()
            run.checkpoint_path = str(ckpt)
            s.flush()
            run_id, prev_wall = run.id, run.wall_seconds or 0.0
        recorder.index, recorder.run_id, recorder.prev_wall = index, run_id, prev_wall
    old_env = os.environ.get(RUN_ENV)
    os.environ[RUN_ENV] = name
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except BaseException as e:
        if run_id is not None:
            _finish(index, run_id, "failed", prev_wall + time.time() - t0)
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
    model_params = export_encoder(module, rundir / "encoder.pt")
    model_params.setdefault("normalize", True)  # metric trainers may export normalize=False
    model_params.update(image_size=int(module.hparams.image_size))
    stopped = ("max_time" if max_minutes and trainer.current_epoch < epochs
               and (max_steps < 0 or trainer.global_step < max_steps) else
               "max_steps" if max_steps > 0 and trainer.global_step >= max_steps else "max_epochs")
    return _finish(index, run_id, "finished", prev_wall + time.time() - t0,
                   model=(rundir / "encoder.pt", model_params),
                   extra={"steps": trainer.global_step, "epochs_done": trainer.current_epoch,
                          "stopped_by": stopped, "schedule": schedule_record(module, cbs),
                          **datamodule.input_record()})


def _finish(index, run_id: int, status: str, wall: float, model=None, extra=None) -> TrainingRun:
    with index.session() as s:
        run = s.get(TrainingRun, run_id)
        run.status, run.finished_at, run.wall_seconds = status, utcnow(), round(wall, 3)
        if extra:
            run.data = {**(run.data or {}), **extra}
        if model is not None:
            path, mparams = model
            s.add(Model(name=run.name, encoder="trained", weights_path=str(path),
                        weights_sha256=sha256_file(path), params=mparams, run_id=run.id))
        s.flush()
        s.refresh(run)
        return run


def train(index, ws, method: str | None = None, *, resume: str | None = None,
          name: str | None = None, batch: str | None = None, backbone: str | None = None,
          image_size: int | None = None, channels: int | None = None,
          weights: str | Path | None = None, epochs: int = 100, batch_size: int = 256,
          lr: float | None = None, weight_decay: float | None = None, optimizer: str = "adamw",
          warmup_epochs: float = 0.0, max_steps: int = -1, precision: str = "32-true",
          seed: int = 0, knn_monitor: bool = False, knn_holdout: float = 0.1,
          holdout_fraction: float = 0.1, max_minutes: float | None = None, devices: Any = None, num_nodes: int | None = None,
          strategy: str | None = None, accelerator: str | None = None,
          num_workers: int | None = None, progress: bool | None = None,
          checkpoint_every: int | None = None, callbacks: Sequence = (),
          on_progress: Callable[[TrainProgress], None] | None = None, verbose: bool = False,
          compare: bool = True, **options) -> TrainingRun | None:
    """Train ``method`` (``TRAINERS``) on the ok images of ``batch`` (or all) and record it.

    ``options`` are the method's own hyper-parameters (``TRAINERS.get(m).OPTIONS``).
    ``channels``/``image_size`` default to the data (grayscale -> 1; median shorter
    side clamped to [16, 224]). ``holdout_fraction`` of the images (seeded) are never
    trained on; their ids are stored with the run (``data["holdout_split"]``) for
    ``tune-scorer``. ``weights``: a file or a torchvision name (``DEFAULT``, ...).
    ``on_progress`` receives :class:`TrainProgress` reports (instead of Lightning's bar);
    Lightning's banners and tips are silenced unless ``verbose``. ``compare``: end with the
    short comparison against pixels-pca on the held-out images, stored in
    ``data["comparison"]`` (:func:`curate.compare_training.compare_and_record`).
    Returns the finished TrainingRun (None on DDP ranks > 0).
    """
    load_methods()
    runtime = dict(devices=devices, num_nodes=num_nodes, strategy=strategy,
                   accelerator=accelerator, max_minutes=max_minutes, num_workers=num_workers,
                   progress=progress, checkpoint_every=checkpoint_every)
    if resume:
        run = get_run(index, resume)
        if run.status == "finished":
            raise CurateError(f"run {resume!r} already finished; nothing to resume")
        args = dict(run.params.get("args", {}))
        method, name = run.method, run.name
        for k, v in runtime.items():
            if v is not None:
                args[k] = v
    else:
        if method is None:
            raise CurateError("give --method (or --resume RUN)")
        TRAINERS.get(method)  # unknown method -> one-line error before any work
        if channels is None or image_size is None:
            c, s = data_defaults(index, batch)
            channels, image_size = channels or c, image_size or s
        if weights:  # a file, or a torchvision name (DEFAULT, ...) -> its cached file
            from curate.encoders.weights import resolve_weights, weights_name
            from curate.trainers.backbones import default_backbone

            named = weights_name(weights)
            weights = resolve_weights(backbone or default_backbone(int(image_size)), weights)
        args = dict(batch=batch, backbone=backbone, image_size=int(image_size),
                    channels=int(channels), weights=str(weights) if weights else None,
                    **({"weights_name": named} if weights and named else {}),
                    epochs=int(epochs), batch_size=int(batch_size), lr=lr,
                    weight_decay=weight_decay, optimizer=optimizer, warmup_epochs=warmup_epochs,
                    max_steps=int(max_steps), precision=str(precision), seed=int(seed),
                    knn_monitor=bool(knn_monitor), knn_holdout=float(knn_holdout),
                    holdout_fraction=float(holdout_fraction),
                    options={k: v for k, v in options.items() if v is not None},
                    **{k: v for k, v in runtime.items()})
        if name is not None:
            check_name(name)
        if image_size is not None and not 8 <= int(image_size) <= 1024:
            raise CurateError(f"--image-size {image_size} is out of range (8-1024 px)")
        if epochs < 1:
            raise CurateError("--epochs must be at least 1")
    ckpt_exists = resume and (Path(ws.models_dir) / name / "checkpoints" / "last.ckpt").exists()
    L.seed_everything(args["seed"], workers=True, verbose=False)
    cls = TRAINERS.get(method)
    module = cls(backbone=args["backbone"], image_size=args["image_size"],
                 channels=args["channels"], weights=None if ckpt_exists else args["weights"],
                 lr=args["lr"], weight_decay=args["weight_decay"], optimizer=args["optimizer"],
                 warmup_epochs=args["warmup_epochs"], batch_size=args["batch_size"],
                 **args["options"])
    from curate.trainers.datamodule import ImageDataModule, aux_source

    aux_info = {}
    aux = module.opts.get("aux") if hasattr(module, "opts") else None
    if aux and hasattr(module, "set_aux"):
        src, aux_info = aux_source(index, aux, args["channels"])
        module.set_aux(src)
    dm = ImageDataModule.from_index(
        index, module.train_views(), args["image_size"], args["channels"], batch=args["batch"],
        knn_holdout=args["knn_holdout"] if args["knn_monitor"] else 0.0, seed=args["seed"],
        holdout_fraction=args.get("holdout_fraction", 0.0),  # runs from before: none
        batch_size=args["batch_size"], num_workers=args.get("num_workers"),
        sampler_fn=getattr(module, "train_sampler", None),
        labelled_only=bool(getattr(module, "needs_labels", False)),
        cache_dir=Path(ws.data_dir) / "cache")  # decoded images (curate.trainers.cache)
    dm.data_info.update(aux_info)
    params = {"args": args}
    run = fit_run(index, ws, module, dm, method=method, params=params, name=name or args.get("name"),
                  resume=bool(resume), epochs=args["epochs"], max_steps=args["max_steps"],
                  max_minutes=args.get("max_minutes"), devices=args.get("devices") or "auto",
                  num_nodes=args.get("num_nodes") or 1, strategy=args.get("strategy") or "auto",
                  accelerator=args.get("accelerator") or "auto", precision=args["precision"],
                  seed=args["seed"],
                  checkpoint_every=100 if args.get("checkpoint_every") is None else args["checkpoint_every"],
                  progress=True if args.get("progress") is None else args["progress"],
                  callbacks=callbacks, on_progress=on_progress, verbose=verbose)
    if compare and run is not None and run.status == "finished":  # the new encoder vs pixels-pca
        from curate.compare_training import compare_and_record

        run = compare_and_record(index, ws, run)
    return run


def quick_demo_train(index, ws, seconds: float = 15.0, image_size: int = 16,
                     threads: int | None = 1, epochs: int = 4,
                     on_progress: Callable[[TrainProgress], None] | None = None,
                     verbose: bool = False) -> str:
    """Train a small SimCLR encoder (small-cnn, ``image_size`` px) for ~``seconds`` on all
    ok images, for ``curate demo``; returns the Model name (usable by ``embed --model``).

    ``threads``: torch intra-op threads while training (1: a tiny net on small images
    gains little from more and loses a lot when the CPU is shared); restored after.
    """
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        run = train(index, ws, "simclr", name=_unique_name(index, "demo-simclr"),
                    backbone="small-cnn", image_size=image_size, batch_size=128, epochs=epochs,
                    max_minutes=seconds / 60.0, num_workers=0, progress=False, devices=1,
                    accelerator="cpu", checkpoint_every=0, warmup_epochs=1, temperature=0.1,
                    on_progress=on_progress, verbose=verbose)
    finally:
        torch.set_num_threads(old)
    return run.name

