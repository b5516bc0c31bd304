"""``curate demo``: ingest -> embed -> select on sklearn's digits, no data or server needed."""

import click

from curate.cli.context import Context, pass_ctx, stage_progress
from curate.cli.options import verbose_option, workspace_option


@click.command("demo")
@click.option("--budget", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--no-train", is_flag=True, help="Use pixels-pca instead of training a quick SSL encoder.")
@workspace_option(help="Folder for the demo workspace (default: ./curate-demo, or -2, -3... if taken; "
                       "the same as `curate -w DIR demo`).")
@verbose_option(help="Also show Lightning's own output (banners, tips).")
@pass_ctx
def demo(ctx: Context, budget, no_train, workspace, verbose) -> None:
    """Run the whole job on sklearn's digits in a fresh workspace (or --workspace DIR)."""
    from curate.demo import run_demo
    ctx.err.print("demo: sklearn digits -> ingest -> encoder -> embed -> select")
    with stage_progress(ctx) as cb:
        rep = run_demo(workspace or ctx._workspace_arg, budget=budget, train=not no_train,
                       verbose=verbose or ctx.verbose, progress=cb)
    ctx.table(f"selection {rep.selection_id}: first 15 of {budget} picks ({rep.strategy})",
              ["rank", "image", "score", "digit", "path"],
              [[r.rank, r.image_id, f"{r.score:.4f}" if r.score == r.score else "",
                r.path.rsplit("/", 2)[-2], r.path] for r in rep.picks.head(15).itertuples()])
    ctx.console.print(
        f"digit classes covered by the {budget} picks: {rep.classes_covered}/10 "
        f"(random picks cover {rep.random_classes_covered:.1f} on average)\n"
        f"workspace: {rep.workspace}\nimages:    {rep.images}\n"
        f"encoder:   {rep.encoder}\nembeddings: {rep.embedding_set}\n"
        f"timings (s): {rep.seconds}\n"
        f"next: cd {rep.workspace} && curate select --budget 50   (seeds from these picks)\n"
        f"report: cd {rep.workspace} && curate report --out report.html   (one HTML page)")


COMMANDS = [demo]
