"""``train(index, ws, method, **settings) -> TrainingRun``: the library form of ``curate train``.

It builds the run's :class:`~curate.trainers.config.TrainConfig` once (defaults, the
method's ``RECOMMENDED`` values, the data's channels and image size, validation), then
the method's module (``TRAINERS``) and the :class:`ImageDataModule`, and calls
:func:`curate.trainers.fit.fit_run` (run row, atomic checkpoints, DDP).

``resume=NAME`` continues a running/failed run from ``last.ckpt`` with its stored
configuration (Lightning restores step count, optimizer, schedules, MoCo queue, timer);
only the runtime settings (:class:`~curate.trainers.config.RuntimeConfig`: devices,
nodes, strategy, accelerator, max_minutes, workers, progress, checkpoint_every) may change.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Callable, Sequence

import lightning as L
import torch

from curate.errors import CurateError
from curate.trainers import TRAINERS
from curate.trainers.config import RuntimeConfig, TrainConfig
from curate.trainers.fit import check_name, fit_run
from curate.trainers.progress import TrainProgress, quiet_lightning  # noqa: F401  (re-exported for tests)

RUNTIME = tuple(RuntimeConfig.__dataclass_fields__)


def load_methods() -> list[str]:
    """Import every method module of ``curate.trainers.methods`` (registration); their names."""
    import curate.trainers.methods as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"curate.trainers.methods.{info.name}")
    return TRAINERS.names()


def train(index, ws, method: str | None = None, *, resume: str | None = None,
          name: str | None = None, callbacks: Sequence = (),
          on_progress: Callable[[TrainProgress], None] | None = None, verbose: bool = False,
          compare: bool = True, **settings):
    """Train ``method`` (``TRAINERS``) on the ok images of ``batch`` (or all) and record it.

    ``settings``: :class:`TrainConfig` fields (``batch``, ``epochs``, ``lr``, ...),
    :class:`RuntimeConfig` fields (``devices``, ``max_minutes``, ``num_workers``, ...) and
    the method's own hyper-parameters (``TRAINERS.get(m).OPTIONS``); None = the default.
    ``channels``/``image_size`` default to the data (grayscale -> 1; median shorter side
    clamped to [16, 224]). ``holdout_fraction`` of the images (seeded) are never trained
    on; their ids are stored with the run (``data["holdout_split"]``) for ``tune-scorer``.
    ``weights``: a file or a torchvision name (``DEFAULT``, ...). ``on_progress`` receives
    :class:`TrainProgress` reports (instead of Lightning's bar); Lightning's banners and
    tips are silenced unless ``verbose``. ``compare``: end with the short comparison
    against pixels-pca on the held-out images, stored in ``data["comparison"]``
    (:func:`curate.compare_training.compare_and_record`).
    Returns the finished TrainingRun (None on DDP ranks > 0).
    """
    load_methods()
    given_rt = {k: settings.pop(k) for k in RUNTIME if k in settings}
    if resume:
        run = index.training_run(resume)
        if run.status == "finished":
            raise CurateError(f"run {resume!r} already finished; nothing to resume")
        args = dict(run.params.get("args", {}))
        config = TrainConfig.from_params(run.method, args)
        runtime = RuntimeConfig.from_params(args, **given_rt)
        name = run.name
    else:
        if method is None:
            raise CurateError("give --method (or --resume RUN)")
        if name is not None:
            check_name(name)
        config = TrainConfig.build(method, index, **settings)
        runtime = RuntimeConfig.from_params({}, **given_rt)
    ckpt_exists = resume and (Path(ws.models_dir) / name / "checkpoints" / "last.ckpt").exists()
    L.seed_everything(config.seed, workers=True, verbose=False)
    module = TRAINERS.get(config.method)(**config.module_kwargs(with_weights=not ckpt_exists))
    dm = _datamodule(index, ws, module, config, runtime)
    run = fit_run(index, ws, module, dm, config, runtime, name=name, resume=bool(resume),
                  callbacks=callbacks, on_progress=on_progress, verbose=verbose)
    if compare and run is not None and run.status == "finished":  # the new encoder vs pixels-pca
        from curate.compare_training import compare_and_record

        run = compare_and_record(index, ws, run)
    return run


def _datamodule(index, ws, module, config: TrainConfig, runtime: RuntimeConfig):
    """The run's :class:`ImageDataModule` (+ the module's auxiliary images, if it takes any)."""
    from curate.trainers.datamodule import ImageDataModule, aux_source

    aux_info = {}
    if module.aux:
        src, aux_info = aux_source(index, module.aux, config.channels)
        module.set_aux(src)
    dm = ImageDataModule.from_index(
        index, module.train_views(), config.image_size, config.channels, batch=config.batch,
        knn_holdout=config.knn_holdout if config.knn_monitor else 0.0, seed=config.seed,
        holdout_fraction=config.holdout_fraction, batch_size=config.batch_size,
        num_workers=runtime.num_workers, sampler_fn=module.train_sampler,
        labelled_only=module.needs_labels,
        cache_dir=Path(ws.data_dir) / "cache")  # decoded images (curate.trainers.cache)
    dm.data_info.update(aux_info)
    return dm


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
        run = train(index, ws, "simclr", name=index.unique_run_name("demo-simclr"),
                    backbone="small-cnn", image_size=image_size, batch_size=128, epochs=epochs,
                    max_minutes=seconds / 60.0, num_workers=0, progress=False, devices=1,
                    accelerator="cpu", checkpoint_every=0, warmup_epochs=1, temperature=0.1,
                    on_progress=on_progress, verbose=verbose)
    finally:
        torch.set_num_threads(old)
    return run.name
