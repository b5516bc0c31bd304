"""Training progress for curate's own display, and Lightning's chatter kept quiet.

* :class:`TrainProgress` is what a progress callback receives: epoch, step, loss,
  images/s and an ETA that respects both the step count and ``max_minutes``.
* :class:`ProgressReporter` is the Lightning callback that produces it (rank 0 only,
  at most every ``every_s`` seconds, once at the end of each epoch and once at the end,
  where ``total_steps`` becomes the steps done: a time limit ends it early); rendering is the
  caller's (the CLI draws a rich bar), so the trainers stay free of terminal code.
* :func:`lightning_output` silences Lightning's informational lines ("GPU available: ...",
  "TPU available: ...", the litlogger tip, "`Trainer.fit` stopped: ...") and two
  known-harmless warnings while a fit runs, unless ``verbose``; warnings about the user's
  own setup still show. Logger levels and warning filters are restored afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator

import lightning as L
import torch

LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")
_NOISE = (r".*isinstance\(treespec, LeafSpec\).*", r".*does not have many workers.*",
          r".*dataloader is not resumable.*")


def quiet_lightning() -> None:
    """Hide Lightning's info banners (GPU available..., tips) for the whole process;
    warnings still show. Tests use it; commands use :func:`lightning_output`."""
    for n in LOGGERS:
        logging.getLogger(n).setLevel(logging.WARNING)
    for pattern in _NOISE:
        warnings.filterwarnings("ignore", message=pattern)


@contextlib.contextmanager
def lightning_output(verbose: bool = False) -> Iterator[None]:
    """Within the block, Lightning logs warnings only (info too when ``verbose``); the
    previous levels come back after it."""
    old = {n: logging.getLogger(n).level for n in LOGGERS}
    try:
        with warnings.catch_warnings():
            if not verbose:
                for pattern in _NOISE:
                    warnings.filterwarnings("ignore", message=pattern)
            for n in LOGGERS:   # verbose: info even where quiet_lightning() ran before
                logging.getLogger(n).setLevel(logging.INFO if verbose else logging.WARNING)
            yield
    finally:
        for n, level in old.items():
            logging.getLogger(n).setLevel(level)


@dataclass
class TrainProgress:
    """One progress report. ``epoch`` counts from 1; ``total_steps`` is Lightning's
    estimate (None if unknown); ``eta_s`` is the smaller of the remaining steps at the
    current speed and the rest of the time budget (None until speed is known)."""

    epoch: int
    epochs: int
    step: int
    total_steps: int | None
    loss: float | None
    images_per_second: float
    elapsed_s: float
    eta_s: float | None

    def describe(self) -> str:
        """``epoch 2/4  loss 4.1234  812 img/s`` (the ETA is drawn by the bar)."""
        loss = f"  loss {self.loss:.4f}" if self.loss is not None else ""
        return f"epoch {self.epoch}/{self.epochs}{loss}  {self.images_per_second:,.0f} img/s"


def _batch_len(batch) -> int:
    """Images in a batch: the first dimension of its first tensor (views, pairs, ...)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for item in batch:
            n = _batch_len(item)
            if n:
                return n
    return 0


class ProgressReporter(L.Callback):
    """Calls ``on_progress(TrainProgress)`` during ``fit`` (global rank 0 only)."""

    def __init__(self, on_progress: Callable[[TrainProgress], None], max_minutes: float | None = None,
                 every_s: float = 0.25):
        self.on_progress, self.max_minutes, self.every_s = on_progress, max_minutes, every_s
        self._t0 = self._last = 0.0
        self._images, self._loss, self._steps0, self._total = 0, None, 0, None

    def on_train_start(self, trainer, pl_module):
        self._t0 = self._last = time.monotonic()
        self._steps0 = trainer.global_step  # a resumed run: speed counts this segment only
        try:
            n = float(trainer.estimated_stepping_batches)
            self._total = int(n) if n < 1e12 else None
        except Exception:  # noqa: BLE001 - an infinite loader has no estimate
            self._total = None

    def _report(self, trainer) -> None:
        now = time.monotonic()
        elapsed = now - self._t0
        done = trainer.global_step - self._steps0
        eta = None
        if done > 0 and self._total:
            eta = max(0.0, (self._total - trainer.global_step) * elapsed / done)
        if self.max_minutes:
            left = max(0.0, self.max_minutes * 60 - elapsed)
            eta = left if eta is None else min(eta, left)
        self.on_progress(TrainProgress(
            epoch=min(trainer.current_epoch + 1, max(1, int(trainer.max_epochs or 1))),
            epochs=int(trainer.max_epochs or 0),
            step=trainer.global_step, total_steps=self._total, loss=self._loss,
            images_per_second=self._images / elapsed if elapsed > 0 else 0.0,
            elapsed_s=elapsed, eta_s=eta))
        self._last = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not trainer.is_global_zero:
            return
        self._images += _batch_len(batch) * trainer.world_size
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            v = float(loss.detach())
            self._loss = v if self._loss is None else 0.9 * self._loss + 0.1 * v  # smoothed
        if time.monotonic() - self._last >= self.every_s:
            self._report(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.is_global_zero:
            self._report(trainer)

    def on_train_end(self, trainer, pl_module):
        if trainer.is_global_zero:  # done (also when a time or step limit ended it early):
            self._total = trainer.global_step  # the bar ends full, ETA 0
            self._report(trainer)
