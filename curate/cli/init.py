"""``curate init [DIR]``: create a workspace."""

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


COMMANDS = [init]
