"""Shared CLI state: the workspace and index, opened lazily, and rich rendering."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import click
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table

from curate.workspace import Workspace, find_workspace


class Context:
    def __init__(self, workspace: str | None = None, db: str | None = None, verbose: bool = False):
        self._workspace_arg = workspace
        self.db = db
        self.verbose = verbose
        self._ws: Workspace | None = None
        self._index = None
        self.console = Console(stderr=False, highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False)

    @property
    def workspace(self) -> Workspace:
        if self._ws is None:
            self._ws = find_workspace(self._workspace_arg, db=self.db)
        return self._ws

    @property
    def index(self):
        if self._index is None:
            self._index = self.workspace.open_index()
        return self._index

    def close(self) -> None:
        if self._index is not None:
            self._index.close()

    def table(self, title: str, columns: list[str], rows: list[list[Any]]) -> None:
        t = Table(title=title, show_lines=False)
        for c in columns:
            t.add_column(c, overflow="fold")
        for r in rows:
            t.add_row(*["" if v is None else str(v) for v in r])
        self.console.print(t)

    def json(self, obj: Any) -> None:
        click.echo(json.dumps(obj, indent=2, default=str))


pass_ctx = click.make_pass_decorator(Context)


class RegistryChoice(click.Choice):
    """A ``click.Choice`` over a registry's names, imported only when the option is used.

    Keeps ``curate --help`` from importing torch for the encoder registry.
    """

    def __init__(self, module: str, registry: str):
        self._where = (module, registry)
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:
        import importlib

        module, registry = self._where
        return tuple(getattr(importlib.import_module(module), registry).names())


@contextlib.contextmanager
def progress_bar(ctx: Context, label: str, quiet: bool = False):
    """Yield a ``callback(done, total)`` that drives a rich progress bar on stderr."""
    if quiet:
        yield None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=ctx.err,
                  transient=True) as prog:
        task = prog.add_task(label, total=None)

        def cb(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)

        yield cb


class _EtaColumn(TimeRemainingColumn):
    """Rich's time remaining, or the task's own ``eta`` field (seconds) when it has one."""

    def render(self, task):
        eta = task.fields.get("eta")
        if eta is None:
            return super().render(task)
        from rich.text import Text

        m, sec = divmod(int(round(eta)), 60)
        return Text(f"{m // 60}:{m % 60:02d}:{sec:02d}", style="progress.remaining")


@contextlib.contextmanager
def stage_progress(ctx: Context, quiet: bool = False):
    """Yield ``callback(stage, done, total, info="", eta=None)``: one rich bar per stage
    (ingest, train, embed, ...) on stderr, with an info text (train: epoch, loss, img/s)
    and the ETA (given, else rich's estimate). Finished bars stay; nothing when quiet."""
    if quiet:
        yield None
        return
    with Progress(TextColumn("{task.description:<6}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), _EtaColumn(), TextColumn("{task.fields[info]}"),
                  console=ctx.err) as prog:
        tasks: dict[str, int] = {}

        def cb(stage: str, done: int, total: int | None, info: str = "", eta: float | None = None):
            if stage not in tasks:
                tasks[stage] = prog.add_task(stage, total=total, info=info, eta=eta)
            prog.update(tasks[stage], completed=done, total=total, info=info, eta=eta)

        yield cb


def train_reporter(cb):
    """A ``TrainProgress`` callback drawing on ``cb`` from :func:`stage_progress`."""
    if cb is None:
        return None

    def report(p) -> None:
        cb("train", p.step, p.total_steps, p.describe(), p.eta_s)
    return report
