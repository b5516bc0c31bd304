"""``curate ingest PATH... [--batch NAME] [--labels folders|FILE.csv]``."""

import click

from curate.cli.context import Context, pass_ctx, progress_bar
from curate.cli.options import batch_option, json_option
from curate.imageio import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from curate.ingest import ingest as run_ingest

SHOW = 50


@click.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@batch_option(help="Batch name for these images (default: 'default'; at most 255 characters).")
@click.option("--labels", metavar="folders|FILE.csv",
              help="Labels from parent folder names (ImageFolder layout) or a CSV/Parquet (path,label).")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help=f"Reject larger images as decompression bombs (default {DEFAULT_MAX_PIXELS}).")
@click.option("--max-bytes", type=click.IntRange(min=1), default=None,
              help=f"Reject larger files without reading them (default {DEFAULT_MAX_BYTES}).")
@click.option("--allow-outside", is_flag=True,
              help="Follow symlinks leaving the given folders and read manifest paths outside "
                   "the manifest's folder (skipped and reported by default).")
@json_option(help="Print a machine-readable summary.")
@pass_ctx
def ingest(ctx: Context, paths, batch, labels, max_pixels, max_bytes, allow_outside, as_json) -> None:
    """Validate, hash and index image folders, files or manifests (.csv/.parquet).

    Rejected files are checked again on every run.
    """
    if max_pixels is None:
        max_pixels = ctx.workspace.setting("ingest", "max_pixels", DEFAULT_MAX_PIXELS)
    if max_bytes is None:
        max_bytes = ctx.workspace.setting("ingest", "max_bytes", DEFAULT_MAX_BYTES)
    with progress_bar(ctx, "ingest", quiet=as_json) as cb:
        rep = run_ingest(ctx.index, list(paths), batch=batch, labels=labels, max_pixels=max_pixels,
                         max_bytes=max_bytes, allow_outside=allow_outside, progress=cb)
    if as_json:
        ctx.json(rep.as_dict())
        return
    lines = ([f"rejected: {p}: {r}" for p, r in rep.rejected]
             + [f"skipped: {p}: {r}" for p, r in rep.skipped]
             + [f"label conflict: {p}: {' | '.join(labs)} (no label stored)" for p, labs in rep.conflicts])
    for line in lines[:SHOW]:
        ctx.err.print(line, markup=False)
    if len(lines) > SHOW:
        ctx.err.print(f"... and {len(lines) - SHOW} more (--json lists all)")
    ctx.table(f"ingest into batch {rep.batch!r} ({rep.seconds:.1f} s)",
              ["files", "added", "duplicates", "already indexed", "rejected", "skipped",
               "label conflicts", "labels"],
              [[rep.files, rep.added, rep.duplicates, rep.already, len(rep.rejected),
                len(rep.skipped), len(rep.conflicts), rep.labels]])


COMMANDS = [ingest]
