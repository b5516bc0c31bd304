"""``curate ingest PATH... [--batch NAME] [--labels folders|FILE.csv]``."""

import click

from curate.cli.context import Context, pass_ctx, progress_bar
from curate.imageio import DEFAULT_MAX_PIXELS
from curate.ingest import ingest as run_ingest


@click.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--batch", help="Batch name for these images (default: 'default').")
@click.option("--labels", metavar="folders|FILE.csv",
              help="Labels from parent folder names (ImageFolder layout) or a CSV/Parquet (path,label).")
@click.option("--max-pixels", type=int, default=None,
              help=f"Reject larger images as decompression bombs (default {DEFAULT_MAX_PIXELS}).")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@pass_ctx
def ingest(ctx: Context, paths, batch, labels, max_pixels, as_json) -> None:
    """Validate, hash and index image folders, files or manifests (.csv/.parquet)."""
    limit = max_pixels or ctx.workspace.setting("ingest", "max_pixels", DEFAULT_MAX_PIXELS)
    with progress_bar(ctx, "ingest", quiet=as_json) as cb:
        rep = run_ingest(ctx.index, list(paths), batch=batch, labels=labels, max_pixels=limit,
                         progress=cb)
    if as_json:
        ctx.json(rep.as_dict())
        return
    for path, reason in rep.rejected[:50]:
        ctx.err.print(f"rejected: {path}: {reason}", markup=False)
    if len(rep.rejected) > 50:
        ctx.err.print(f"... and {len(rep.rejected) - 50} more rejected")
    ctx.table(f"ingest into batch {rep.batch!r} ({rep.seconds:.1f} s)",
              ["files", "added", "duplicates", "already indexed", "rejected", "labels"],
              [[rep.files, rep.added, rep.duplicates, rep.already, len(rep.rejected), rep.labels]])


COMMANDS = [ingest]
