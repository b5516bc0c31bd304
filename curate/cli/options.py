"""Options shared by several commands, declared once (as sqlite-utils does).

Each is a :class:`SharedOption`: ``@json_option()`` decorates a command,
``json_option.param()`` is the same ``click.Option`` for commands built from a list
(``curate train``). Keyword arguments override the declaration for one command, e.g.
``@batch_option(help="Embed only this ingest batch.")``: the option name, parameter name
and type stay the same everywhere.
"""

from __future__ import annotations

import click

from curate.errors import CurateError

SEED_RANGE = click.IntRange(0, 2**32 - 1)  # numpy / sklearn random_state bounds


class SharedOption:
    """One option's declarations and attributes; call it for a decorator, ``param`` for an Option."""

    def __init__(self, *decls: str, **attrs):
        self.decls, self.attrs = decls, attrs

    def __call__(self, **override):
        return click.option(*self.decls, **{**self.attrs, **override})

    def param(self, **override) -> click.Option:
        return click.Option(list(self.decls), **{**self.attrs, **override})


json_option = SharedOption("--json", "as_json", is_flag=True, help="Print the result as JSON.")
batch_option = SharedOption("--batch", help="Only images of this ingest batch.")
seed_option = SharedOption("--seed", type=SEED_RANGE, default=0, show_default=True)
device_option = SharedOption("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
out_option = SharedOption("--out", type=click.Path(dir_okay=False))
workspace_option = SharedOption("--workspace", "-w", "workspace", type=click.Path(file_okay=False))
verbose_option = SharedOption("--verbose", "-v", is_flag=True)
embeddings_option = SharedOption("--embeddings", help="Embedding set name (default: the latest).")
scorer_option = SharedOption("--scorer", help="Stored scorer name (default: the latest).")
selection_option = SharedOption("--selection", default="latest", show_default=True,
                                help="Selection id or 'latest'.")
metric_option = SharedOption("--metric", type=click.Choice(["cosine", "euclidean"]),
                             default="cosine", show_default=True)
show_option = SharedOption("--show", type=click.IntRange(min=0), default=20, show_default=True,
                           help="Rows to print.")
seeds_option = SharedOption("--seeds", type=click.IntRange(min=1), default=5, show_default=True)
test_batch_option = SharedOption("--test-batch")
ray_option = SharedOption("--ray", "ray", metavar="ADDRESS")


def int_list(value: str, option: str = "--budgets") -> list[int]:
    """``"20,100"`` -> ``[20, 100]``; a one-line error naming ``option`` otherwise."""
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise CurateError(f"{option} takes comma-separated integers, got {value!r}") from None
