"""The ``curate`` command line: thin click commands over the library.

Each command parses its options, makes one library call and renders the result.
User errors (:class:`curate.errors.CurateError`) print one line and exit non-zero.
"""

from __future__ import annotations

import sys

import click

from curate.cli.context import Context
from curate.cli.options import verbose_option, workspace_option
from curate.errors import CurateError


class CurateGroup(click.Group):
    """A group that turns user errors into one line and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CurateError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        except click.UsageError as e:  # bad option values: one line too (exit 2)
            cmd = e.ctx.command_path if e.ctx else "curate"
            click.echo(f"error: {e.format_message()} (see `{cmd} --help`)", err=True)
            sys.exit(e.exit_code)
        except Exception as e:  # a damaged SQLite index can surface in any query
            from curate.workspace import damaged_index_error

            ws = getattr(ctx.obj, "_ws", None)
            err = damaged_index_error(e, ws.sqlite_path if ws else None)
            if err is None:
                raise
            click.echo(f"error: {err}", err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted; rerun the command to finish the work", err=True)
            sys.exit(130)


@click.group(cls=CurateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@workspace_option(envvar="CURATE_WORKSPACE",
                  help="Workspace folder (default: search upwards from the current folder).")
@click.option("--db", envvar="CURATE_DB", metavar="URL",
              help="Index database URL, e.g. postgresql+psycopg://user@host/db (default: SQLite in the workspace).")
@verbose_option(help="Also show the libraries' own output (Lightning's device banners and tips).")
@click.version_option(package_name="curate")
@click.pass_context
def main(ctx: click.Context, workspace: str | None, db: str | None, verbose: bool) -> None:
    """curate: ingest images, build latent spaces, select what to label, score novelty."""
    ctx.obj = Context(workspace=workspace, db=db, verbose=verbose)
    ctx.call_on_close(ctx.obj.close)


def _register() -> None:
    from curate.cli import commands

    for cmd in commands.COMMANDS:
        main.add_command(cmd)


_register()
