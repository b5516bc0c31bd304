"""``curate report``: one self-contained HTML page of the index (``curate.report``)."""

import click

from curate.cli.context import Context, pass_ctx
from curate.cli.options import batch_option, json_option, out_option, scorer_option, selection_option


@click.command("report")
@out_option(default="report.html", show_default=True,
            help="The HTML file to write (replaced atomically).")
@selection_option()
@scorer_option(help="Novelty scorer to show (default: the latest).")
@batch_option(help="Novelty scores and batch checks of this batch only.")
@json_option()
@pass_ctx
def report(ctx: Context, out, selection, scorer, batch, as_json) -> None:
    """Write one static HTML page: overview, selection, novelty, batch checks, runs, lineage."""
    from curate.report import build_report
    with ctx.err.status("rendering the report"):
        res = build_report(ctx.index, ctx.workspace, out=out, selection=selection, scorer=scorer,
                           batch=batch)
    if as_json:
        ctx.json(res.as_dict())
        return
    ctx.console.print(f"written: {res.path} ({res.bytes / 1e6:.2f} MB, {res.images_shown} thumbnails, "
                      f"{res.figures} figures, {res.seconds:.1f} s); open it in a browser",
                      markup=False)


COMMANDS = [report]
