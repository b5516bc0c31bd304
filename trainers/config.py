"""What a training run is given: :class:`TrainConfig` (stored with the run) and
:class:`RuntimeConfig` (how it runs; may change on ``--resume``).

Both are built once, validated once (:meth:`TrainConfig.build`), stored as the run's
``params["args"]`` (one flat dict, the keys runs have always had) and passed down to
:func:`curate.trainers.fit.fit_run`. The defaults live here only: the dataclass fields,
overridden by the method's ``RECOMMENDED`` values when a setting is not given (e.g. the
classifier's 5 epochs, batch 32, SGD), for Python and CLI callers alike.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field, fields
from typing import Any

from curate.errors import CurateError

GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
OPTIMIZERS = ("adamw", "adam", "sgd")


@dataclass(frozen=True)
class RuntimeConfig:
    """How a run executes (Lightning devices, time budget, loader workers, checkpointing);
    the only settings ``--resume`` may change."""

    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    accelerator: str = "auto"
    max_minutes: float | None = None
    num_workers: int | None = None  # None: min(4, CPUs - 1)
    progress: bool = True  # Lightning's own progress bar
    checkpoint_every: int = 100  # optimizer steps; 0 = epoch ends only

    @classmethod
    def from_params(cls, args: dict[str, Any], **given) -> "RuntimeConfig":
        """From stored ``args`` (None = default), then the ``given`` values that are not None."""
        names = {f.name for f in fields(cls)}
        vals = {k: v for k, v in args.items() if k in names and v is not None}
        vals.update({k: v for k, v in given.items() if k in names and v is not None})
        return cls(**vals)

    @property
    def multi(self) -> bool:
        """More than one process (several devices or nodes)."""
        return (self.num_nodes or 1) > 1 or self.devices not in ("auto", 1, "1", None)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run's result: data, network, optimisation, method options.

    ``channels``/``image_size`` None: from the data (:func:`data_defaults`) in :meth:`build`.
    ``weights``: a file path (a torchvision name is resolved to its cached file by
    :meth:`build`, the name kept in ``weights_name``). ``options``: the method's own
    hyper-parameters (``TRAINERS.get(method).OPTIONS``).
    """

    method: str
    batch: str | None = None
    backbone: str | None = None
    image_size: int | None = None
    channels: int | None = None
    weights: str | None = None
    weights_name: str | None = None
    epochs: int = 100
    batch_size: int = 256
    lr: float | None = None  # None: the method's default
    weight_decay: float | None = None  # None: the method's default
    optimizer: str = "adamw"
    warmup_epochs: float = 0.0
    max_steps: int = -1
    precision: str = "32-true"
    seed: int = 0
    knn_monitor: bool = False
    knn_holdout: float = 0.1
    holdout_fraction: float = 0.1
    options: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------ build / store
    @classmethod
    def build(cls, method: str, index=None, **given) -> "TrainConfig":
        """Defaults, then the method's ``RECOMMENDED``, then ``given`` (None = not given);
        keys that are not fields go to ``options``. Fills channels/image_size from the
        images of ``index`` when not given, resolves named weights, and validates.
        Raises CurateError (one line) for bad values or an unknown method."""
        from curate.trainers import TRAINERS

        module = TRAINERS.get(method)  # unknown method -> one-line error before any work
        names = {f.name for f in fields(cls)} - {"method", "options"}
        vals = {k: v for k, v in given.items() if k in names and v is not None}
        options = dict(given.get("options") or {})
        options.update({k: v for k, v in given.items()
                        if k not in names and k != "options" and v is not None})
        vals = {**module.RECOMMENDED, **vals}
        if vals.get("channels") is None or vals.get("image_size") is None:
            c, s = data_defaults(index, vals.get("batch")) if index is not None else (3, 32)
            vals.setdefault("channels", c)
            vals.setdefault("image_size", s)
        cfg = cls(method=method, options=options, **vals)
        cfg.validate()
        if cfg.weights and cfg.weights_name is None:  # a file, or a torchvision name -> its file
            from curate.encoders.weights import resolve_weights, weights_name
            from curate.trainers.backbones import default_backbone

            named = weights_name(cfg.weights)
            path = resolve_weights(cfg.backbone or default_backbone(int(cfg.image_size)), cfg.weights)
            cfg = dataclasses.replace(cfg, weights=str(path), weights_name=named)
        return cfg

    def validate(self) -> None:
        """One-line CurateError for a value out of range."""
        if self.image_size is not None and not 8 <= int(self.image_size) <= 1024:
            raise CurateError(f"--image-size {self.image_size} is out of range (8-1024 px)")
        if self.channels is not None and int(self.channels) not in (1, 3):
            raise CurateError(f"--channels must be 1 or 3, got {self.channels}")
        if int(self.epochs) < 1:
            raise CurateError("--epochs must be at least 1")
        if int(self.batch_size) < 1:
            raise CurateError("--batch-size must be at least 1")
        if self.optimizer not in OPTIMIZERS:
            raise CurateError(f"unknown optimizer {self.optimizer!r}; choose {', '.join(OPTIMIZERS)}")
        if self.lr is not None and not float(self.lr) > 0:
            raise CurateError(f"--lr must be positive, got {self.lr}")
        if not 0 <= float(self.holdout_fraction) < 1:
            raise CurateError(f"--holdout-fraction must be in [0, 1), got {self.holdout_fraction}")
        if not 0 < float(self.knn_holdout) < 1:
            raise CurateError(f"--knn-holdout must be in (0, 1), got {self.knn_holdout}")

    def to_params(self, runtime: RuntimeConfig) -> dict[str, Any]:
        """The run's ``params["args"]``: every field but ``method`` (the run's column) and
        the runtime settings, flat (``weights_name`` only when set)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "method"}
        if out["weights_name"] is None:
            out.pop("weights_name")
        out["weights"] = str(self.weights) if self.weights else None
        return {**out, **dataclasses.asdict(runtime)}

    @classmethod
    def from_params(cls, method: str, args: dict[str, Any]) -> "TrainConfig":
        """Back from a stored ``params["args"]`` (runs from before ``holdout_fraction``
        existed held nothing out)."""
        names = {f.name for f in fields(cls)} - {"method"}
        vals = {k: v for k, v in args.items() if k in names}
        vals.setdefault("holdout_fraction", 0.0)
        return cls(method=method, **vals)

    def module_kwargs(self, with_weights: bool = True) -> dict[str, Any]:
        """Keyword arguments of the method's TrainModule."""
        return dict(backbone=self.backbone, image_size=int(self.image_size),
                    channels=int(self.channels), weights=self.weights if with_weights else None,
                    lr=self.lr, weight_decay=self.weight_decay, optimizer=self.optimizer,
                    warmup_epochs=self.warmup_epochs, batch_size=int(self.batch_size),
                    **self.options)


def data_defaults(index, batch: str | None = None, sample: int = 2000) -> tuple[int, int]:
    """(channels, image_size) suggested by the ok images: 1 if all are grayscale, and the
    median shorter side clamped to [16, 224]. Cost: one query of <= ``sample`` rows."""
    from curate.data import list_images

    recs = list_images(index, batch=batch)  # validates the batch name
    ids = [r.id for r in recs[:: max(1, len(recs) // sample)]][:sample]
    if not ids:
        return 3, 32
    rows = index.image_shapes(ids)
    channels = 1 if all(m in GRAY_MODES for m, _, _ in rows) else 3
    sides = [min(w, h) for _, w, h in rows if w and h]
    size = int(statistics.median(sides)) if sides else 32
    return channels, max(16, min(224, size))


def field_default(name: str) -> Any:
    """The default of a TrainConfig or RuntimeConfig field (for help texts)."""
    for cls in (TrainConfig, RuntimeConfig):
        for f in fields(cls):
            if f.name == name:
                return f.default
    raise KeyError(name)


__all__ = ["TrainConfig", "RuntimeConfig", "data_defaults", "field_default"]
