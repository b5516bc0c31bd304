"""The LightningModule base shared by every trainer (SSL and metric learning).

A trainer subclasses :class:`TrainModule`, sets ``method`` and ``OPTIONS`` (its own
hyper-parameters, which ``curate train`` turns into command-line options), builds its
heads in ``__init__``, and implements ``train_views()`` (PIL -> list of views) and
``training_step``. Optional hooks, no-ops here: ``bind_data(dm)`` (check the data before
the run is recorded: labels, class-sized heads), ``set_aux(source)`` (auxiliary images
named by the ``aux`` option), ``export_extra()`` (heads saved with the encoder),
``train_sampler(labels)``; ``RECOMMENDED`` holds the method's defaults of the common
settings (:class:`curate.trainers.config.TrainConfig`). ``scoring_backbone()`` is the network whose output ``curate embed``
uses (teacher for DINO, query encoder for MoCo, encoder for the autoencoder); it must
be an architecture that :func:`curate.trainers.backbones.build_backbone` rebuilds.
Register the class with ``@register`` (adds it to ``curate.trainers.TRAINERS``).

Common hyper-parameters: ``backbone``, ``image_size``, ``channels``, ``weights``,
``lr`` (None -> the method's default, scaled by batch/256 where ``lr_scaled``),
``weight_decay``, ``optimizer`` (adamw|sgd|adam), ``warmup_epochs`` (linear warmup,
then cosine decay to 0.1% per step via lightly's ``CosineWarmupScheduler``), ``batch_size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch
from lightly.utils.scheduler import CosineWarmupScheduler, cosine_schedule
from torch import nn

from curate.errors import CurateError
from curate.trainers import TRAINERS
from curate.trainers.backbones import build_backbone, default_backbone


@dataclass(frozen=True)
class Option:
    """A method hyper-parameter: python ``name`` (CLI ``--name-with-dashes``)."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple | None = None


COMMON = ("backbone", "image_size", "channels", "weights", "lr", "weight_decay", "optimizer",
          "warmup_epochs", "batch_size")


def register(cls):
    """Class decorator: add a TrainModule subclass to ``TRAINERS`` under ``cls.method``."""
    TRAINERS.register(cls.method)(cls)
    return cls


class TrainModule(L.LightningModule):
    method = "base"
    OPTIONS: tuple[Option, ...] = ()
    default_lr = 1e-3
    lr_scaled = False  # lr = default_lr * batch_size / 256
    default_weight_decay = 1e-4
    needs_labels = False
    RECOMMENDED: dict[str, Any] = {}  # TrainConfig defaults of this method (epochs, batch_size, ...)
    cpu_tuning = True  # CPU speed knobs in on_fit_start (False: off, for benchmarks)

    def __init__(self, backbone: str | None = None, image_size: int = 32, channels: int = 3,
                 weights: str | Path | None = None, lr: float | None = None,
                 weight_decay: float | None = None, optimizer: str = "adamw",
                 warmup_epochs: float = 0.0, batch_size: int = 256, **options):
        super().__init__()
        if options.get("method") == self.method:  # from saved hparams (load_from_checkpoint)
            options.pop("method")
        unknown = sorted(set(options) - {o.name for o in self.OPTIONS})
        if unknown:
            raise CurateError(f"method {self.method} has no option(s) {', '.join(unknown)}; it "
                              f"takes: {', '.join(o.name for o in self.OPTIONS) or 'none'}")
        opts = {}
        for o in self.OPTIONS:
            v = options.get(o.name, o.default)
            if isinstance(v, str) and o.type is bool:
                if v.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise CurateError(f"option {o.name} needs true or false, got {v!r}")
                v = v.lower() in ("true", "1", "yes")
            elif v is not None and o.type in (int, float, str):
                try:
                    v = o.type(v)
                except (TypeError, ValueError):
                    raise CurateError(f"option {o.name} needs a {o.type.__name__}, got {v!r}") from None
            if o.choices and v not in o.choices:
                raise CurateError(f"option {o.name} must be one of {', '.join(map(str, o.choices))}, "
                                  f"got {v!r}")
            opts[o.name] = v
        if optimizer not in ("adamw", "adam", "sgd"):
            raise CurateError(f"unknown optimizer {optimizer!r}; choose adamw, adam or sgd")
        backbone = backbone or default_backbone(image_size)
        if lr is None:
            lr = self.default_lr * (batch_size / 256 if self.lr_scaled else 1.0)
        if lr <= 0:
            raise CurateError(f"--lr must be positive, got {lr}")
        self.opts = opts
        self.save_hyperparameters({
            "method": self.method, "backbone": backbone, "image_size": int(image_size),
            "channels": int(channels), "weights": str(weights) if weights else None,
            "lr": float(lr), "batch_size": int(batch_size),
            "weight_decay": float(self.default_weight_decay if weight_decay is None else weight_decay),
            "optimizer": optimizer, "warmup_epochs": float(warmup_epochs), **opts})
        self.backbone, self.feature_dim = build_backbone(backbone, channels, image_size, weights)

    # ------------------------------------------------------------ contract
    def train_views(self) -> Callable:
        """PIL image -> list of float views; used by the data module."""
        raise NotImplementedError

    def scoring_backbone(self) -> nn.Module:
        """The backbone whose features ``curate embed`` uses."""
        return self.backbone

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features (B, D) of normalised images (B, C, S, S), eval mode."""
        net = self.scoring_backbone()
        was = net.training
        net.eval()
        try:
            return net(x).flatten(1)
        finally:
            net.train(was)

    def train_sampler(self, labels):
        """A torch Sampler over the training items given their int labels, or None
        (shuffle). Metric trainers return e.g. a class-balanced sampler."""
        return None

    def bind_data(self, dm) -> None:
        """Check and take in the data module before the run is recorded (CurateError for
        unusable data); metric trainers check labels and size their class heads."""

    @property
    def aux(self) -> str | None:
        """The auxiliary images this run needs (a folder or batch name), or None."""
        return self.opts.get("aux")

    def set_aux(self, source) -> None:
        """Receive the auxiliary images (``len`` and ``load(i) -> PIL``) named by :attr:`aux`."""

    def export_extra(self) -> dict[str, Any]:
        """What the exported encoder carries besides the backbone: ``{"file": {...},
        "params": {...}}`` (heads in ``encoder.pt``, their description in the Model row)."""
        return {}

    def configure_for_data(self, n_images: int, batch_size: int) -> dict[str, Any]:
        """Adapt to the data size before training; returns effective params to record."""
        return {}

    def record_params(self) -> dict[str, Any]:
        """Every hyper-parameter, JSON-ready, for TrainingRun.params."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dict(self.hparams).items()}

    def on_fit_start(self):
        """On CPU: channels-last weights and freed buffers kept for the next step
        (:mod:`curate.trainers.cpu`; the batched pipelines feed channels-last views)."""
        if self.device.type == "cpu" and self.cpu_tuning:
            from curate.trainers.cpu import keep_freed_memory

            self.to(memory_format=torch.channels_last)
            self._kept_memory = keep_freed_memory(True)

    def on_fit_end(self):
        if getattr(self, "_kept_memory", False):
            from curate.trainers.cpu import keep_freed_memory

            self._kept_memory = not keep_freed_memory(False)

    # ------------------------------------------------------------ helpers
    def total_steps(self) -> int:
        """Horizon of the step schedules: ``planned_steps`` when a time budget set it
        (:mod:`curate.trainers.schedule`), else :meth:`epoch_horizon`."""
        planned = getattr(self, "planned_steps", None)
        return max(1, int(planned)) if planned else self.epoch_horizon()

    def momentum(self, start: float) -> float:
        """EMA momentum now: cosine from ``start`` to 1 over :meth:`total_steps`."""
        total = self.total_steps()
        return cosine_schedule(min(int(self.global_step), total - 1), total, start, 1.0)

    def epoch_horizon(self) -> int:
        """Optimizer steps of the whole fit from epochs/max_steps (1 without a Trainer)."""
        t = self._trainer
        if t is None:
            return 1
        try:
            n = float(t.estimated_stepping_batches)
        except Exception:  # noqa: BLE001 - infinite loader
            n = float("inf")
        if n == float("inf") or n > 1e12:
            n = t.max_steps if t.max_steps > 0 else 1
        return max(1, int(n))

    def log_loss(self, name: str, value: torch.Tensor, batch_size: int, prog_bar: bool = True):
        if self._trainer is None:
            return
        self.log(name, value, prog_bar=prog_bar, on_step=True, on_epoch=True,
                 batch_size=batch_size, sync_dist=self.trainer.world_size > 1)

    def configure_optimizers(self):
        return make_optimizers(self, [{"params": [p for p in self.parameters() if p.requires_grad]}])


def forward_views(net: Callable[[torch.Tensor], torch.Tensor],
                  views: list[torch.Tensor]) -> list[torch.Tensor]:
    """Run ``net`` once per run of consecutive same-size views; returns one output per view."""
    out: list[torch.Tensor] = []
    i = 0
    while i < len(views):
        j = i + 1
        while j < len(views) and views[j].shape[1:] == views[i].shape[1:]:
            j += 1
        y = net(torch.cat(views[i:j]))
        out += list(y.chunk(j - i))
        i = j
    return out


def make_optimizers(module: "TrainModule", groups: list[dict]) -> Any:
    """Optimizer (``--optimizer``) + per-step linear warm-up and cosine schedule over ``groups``."""
    h = module.hparams
    groups = [g for g in groups if g["params"]]
    if h.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=h.lr, momentum=float(h.get("sgd_momentum", 0.9)),
                              weight_decay=h.weight_decay)
    elif h.optimizer == "adam":
        opt = torch.optim.Adam(groups, lr=h.lr, weight_decay=h.weight_decay)
    else:
        opt = torch.optim.AdamW(groups, lr=h.lr, weight_decay=h.weight_decay)
    total = module.total_steps()
    per_epoch = max(1, total // max(1, module.trainer.max_epochs or 1))
    warm = min(total - 1, int(h.warmup_epochs * per_epoch)) if total > 1 else 0
    sched = CosineWarmupScheduler(opt, warmup_epochs=max(0, warm), max_epochs=total, end_value=0.001)
    return [opt], [{"scheduler": sched, "interval": "step"}]
