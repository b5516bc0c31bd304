"""``curate init [DIR]``: create a workspace; ``curate backup FILE``: copy its index."""

import click

from curate.cli.context import Context, pass_ctx
from curate.workspace import init_workspace


@click.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@pass_ctx
def init(ctx: Context, directory: str) -> None:
    """Create a workspace (curate.toml + data folder with the index) in DIRECTORY."""
    ws = init_workspace(directory, db=ctx.db)
    ctx.console.print(f"workspace ready: {ws.root}\n  config: {ws.root / 'curate.toml'}\n"
                      f"  index:  {ws.open_index().url}\n  data:   {ws.data_dir}")


@click.command("backup")
@click.argument("file", type=click.Path(dir_okay=False))
@pass_ctx
def backup(ctx: Context, file: str) -> None:
    """Copy the SQLite index to FILE, consistent even while curate runs (PostgreSQL: pg_dump).

    Restore: copy FILE over data/index.sqlite with no curate command running. Embeddings
    and models live in the data folder: copy it too, or re-run `curate embed`.
    """
    from curate.backup import backup_index

    dest = backup_index(ctx.workspace, file)
    ctx.console.print(f"index backed up to {dest} (restore: copy it over "
                      f"{ctx.workspace.sqlite_path} with no curate command running)", markup=False)


COMMANDS = [init, backup]
