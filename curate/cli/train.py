"""``curate train --method simclr|moco|dino|dino-neg|autoencoder|... [options]``.

Common options are declared here; each method's own hyper-parameters come from its
``OPTIONS`` (see :mod:`curate.trainers.base`) and are added on first use, so that the
trainers (torch, Lightning) load only when ``train`` runs or shows its help.
"""

from __future__ import annotations

import os

import click

from curate.cli.context import Context, pass_ctx
from curate.cli.options import batch_option, json_option, seed_option, verbose_option

_TYPES = {int: click.INT, float: click.FLOAT, str: click.STRING, bool: click.BOOL}


def _devices(value: str | None):
    if value is None or value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        return value  # e.g. "0,1"


def _common_params() -> list[click.Parameter]:
    from curate.trainers.backbones import backbone_names
    from curate.trainers.config import field_default as d
    from curate.trainers.run import load_methods

    O = click.Option
    per_method = " [default: {}, or the method's recommended value]".format
    return [
        O(["--method"], type=click.Choice(load_methods()), help="Training method."),
        O(["--resume"], metavar="RUN", help="Continue an interrupted run from its last checkpoint "
          "(its stored options are used; only runtime options may change)."),
        O(["--name"], help="Run/model name (default: METHOD-TIMESTAMP)."),
        batch_option.param(metavar="NAME", help="Train on one ingested batch (default: all ok images)."),
        O(["--backbone"], type=click.Choice(backbone_names()),
          help="Backbone (default: small-cnn up to 64 px, resnet18 above)."),
        O(["--weights"], metavar="NAME|FILE", help="Start from pretrained backbone weights: a torchvision "
          "name (DEFAULT, IMAGENET1K_V1; resnet18/50) or a local file."),
        O(["--image-size"], type=click.IntRange(8, 1024), help="Training size in px (default: median shorter side, 16-224)."),
        O(["--channels"], type=click.Choice(["1", "3"]), help="1 = grayscale, 3 = RGB (default: from the data)."),
        O(["--epochs"], type=click.IntRange(min=1), help="Training epochs." + per_method(d("epochs"))),
        O(["--batch-size"], type=click.IntRange(min=1), help="Images per step." + per_method(d("batch_size"))),
        O(["--lr"], type=click.FloatRange(min=0, min_open=True), help="Learning rate (default: per method)."),
        O(["--weight-decay"], type=click.FloatRange(min=0), help="Weight decay (default: per method)."),
        O(["--optimizer"], type=click.Choice(["adamw", "adam", "sgd"]), help="Optimizer." + per_method(d("optimizer"))),
        O(["--warmup-epochs"], type=click.FloatRange(min=0),
          help=f"Linear LR warm-up, then cosine. [default: {d('warmup_epochs')}]"),
        O(["--max-steps"], type=click.IntRange(min=-1), help="Stop after this many optimizer steps."),
        O(["--max-minutes"], type=click.FloatRange(min=0, min_open=True), help="Stop after this many minutes (the run is still finished)."),
        O(["--devices"], default=None, help="Lightning devices: auto, a count or ids like 0,1."),
        O(["--num-nodes"], type=click.IntRange(min=1), help="Number of nodes (multi-node needs --name)."),
        O(["--strategy"], help="Lightning strategy, e.g. ddp (default: auto)."),
        O(["--accelerator"], help="auto, cpu, gpu (default: auto)."),
        O(["--precision"], help=f"e.g. 32-true, 16-mixed, bf16-mixed. [default: {d('precision')}]"),
        seed_option.param(),
        O(["--workers"], type=click.IntRange(min=0), help="DataLoader workers per process (default: min(4, CPUs-1))."),
        O(["--knn-monitor"], is_flag=True, help="Report k-NN accuracy on a held-out labelled split each epoch."),
        O(["--knn-holdout"], type=click.FloatRange(0, 1, min_open=True, max_open=True),
          help=f"Held-out fraction for --knn-monitor. [default: {d('knn_holdout')}]"),
        O(["--holdout-fraction"], type=click.FloatRange(0, 1, max_open=True),
          help="Share of the images never trained on (seeded by --seed, ids stored with the "
          "run): the in-distribution test set of `curate tune-scorer`. 0 = train on all. "
          f"[default: {d('holdout_fraction')}]"),
        O(["--checkpoint-every"], type=click.IntRange(min=0),
          help=f"Checkpoint every N steps (0 = epoch ends only). [default: {d('checkpoint_every')}]"),
        O(["--no-progress"], is_flag=True, help="No progress bar."),
        O(["--no-compare"], is_flag=True, help="Skip the closing comparison with pixels-pca "
          "on the held-out images (10-NN / linear probe with labels, shift AUROC without)."),
        verbose_option.param(help="Also show Lightning's own output (device banners, tips)."),
        json_option.param(help="Print the run as JSON."),
    ]


def _method_params(taken: set[str]) -> list[click.Parameter]:
    """One option per distinct method hyper-parameter across TRAINERS."""
    from curate.trainers import TRAINERS

    seen: dict[str, tuple] = {}
    for m in TRAINERS.names():
        for o in TRAINERS.get(m).OPTIONS:
            if o.name in taken:
                continue
            if o.name not in seen:
                seen[o.name] = (o, [m])
            else:
                seen[o.name][1].append(m)
    params = []
    for name, (o, methods) in seen.items():
        if o.type is bool:  # hook (metric trainers, e.g. ncl --vmf): boolean options are flags
            params.append(click.Option([f"--{name.replace('_', '-')}", name], is_flag=True,
                                       default=None, help=f"({', '.join(methods)}) {o.help}"))
            continue
        typ = click.Choice(o.choices) if o.choices else _TYPES.get(o.type, click.STRING)
        dflt = "" if o.default is None or len(methods) > 1 else f" [default: {o.default}]"
        params.append(click.Option([f"--{name.replace('_', '-')}", name], type=typ, default=None,
                                   help=f"({', '.join(methods)}) {o.help}{dflt}"))
    return params


class TrainCommand(click.Command):
    """A command whose options are built on first use (imports the trainers lazily)."""

    def __init__(self):
        super().__init__("train", callback=_run, params=[], help=_run.__doc__,
                         short_help="Train an encoder (SimCLR, MoCo, DINO, DINO-neg, autoencoder, ...).")
        self._loaded = False

    def get_params(self, ctx):
        if not self._loaded:  # first use: torch loads here, so set its OpenMP waits first
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see curate.trainers.cpu
            common = _common_params()
            taken = {p.name for p in common} | {"weights", "backbone", "lr", "batch_size"}
            self.params = common + _method_params(taken)
            self._loaded = True
        return super().get_params(ctx)


@pass_ctx
def _run(ctx: Context, method, resume, name, channels, devices, workers, no_progress, no_compare,
         verbose, as_json, **settings) -> None:
    """Train an encoder on the ingested images; the run is recorded and its backbone
    becomes a model for `curate embed --model NAME`.

    Checkpoints: WORKSPACE/data/models/NAME/. Interrupted runs continue with --resume NAME.
    Method options apply only to the methods named in their help.
    """
    from curate.cli.context import stage_progress, train_reporter
    from curate.trainers.run import train

    with stage_progress(ctx, quiet=no_progress or as_json) as cb:
        run = train(ctx.index, ctx.workspace, method, resume=resume, name=name,
                    channels=int(channels) if channels else None, devices=_devices(devices),
                    num_workers=workers, progress=False, on_progress=train_reporter(cb),
                    verbose=verbose or ctx.verbose, compare=not no_compare,
                    **{k: v for k, v in settings.items() if v is not None})
    if run is None:  # a DDP worker process: rank 0 reports
        return
    from curate.cli.compare import render_training

    last = (run.metrics or [{}])[-1]
    if as_json:
        ctx.json({"name": run.name, "method": run.method, "status": run.status,
                  "params": run.params, "data": run.data, "metrics": run.metrics,
                  "checkpoint": run.checkpoint_path, "wall_seconds": run.wall_seconds,
                  "model": run.name})
        render_training(ctx, run, table=False)  # the warning only, on stderr
        return
    ctx.table(f"training run {run.name}",
              ["method", "status", "images", "epochs", "steps", "loss", "knn_acc", "minutes", "stopped by"],
              [[run.method, run.status, run.data.get("images"), run.data.get("epochs_done"),
                run.data.get("steps"), f"{last['loss']:.4f}" if "loss" in last else None,
                f"{last['knn_acc']:.3f}" if "knn_acc" in last else None,
                f"{(run.wall_seconds or 0) / 60:.1f}", run.data.get("stopped_by")]])
    ctx.console.print(f"checkpoint: {run.checkpoint_path}\nmodel: {run.name} "
                      f"(embed with `curate embed --model {run.name}`)", markup=False)
    render_training(ctx, run)


train_cmd = TrainCommand()
COMMANDS = [train_cmd]
