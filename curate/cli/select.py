"""``curate select --budget N``: run a selection strategy (``curate.select.strategies.SELECTORS``)."""

import click

from curate.cli.context import Context, pass_ctx
from curate.cli.options import (batch_option, device_option, embeddings_option, json_option,
                                metric_option, out_option, scorer_option, seed_option, show_option)
from curate.errors import CurateError
from curate.export import write_selection
from curate.select.strategies import DEFAULT_STRATEGY, SELECTORS


@click.command("select")
@click.option("--budget", type=click.IntRange(min=1), required=True, help="How many images to pick.")
@click.option("--strategy", type=click.Choice(SELECTORS.names()), default=DEFAULT_STRATEGY,
              show_default=True, help="See README 'Which strategy?'.")
@metric_option()
@embeddings_option()
@batch_option(help="Pick only from this ingest batch.")
@out_option(help="Write picks to FILE.csv|.parquet|.json.")
@seed_option()
@device_option()
@click.option("--fp16", is_flag=True, help="Half-precision embeddings on the GPU.")
@click.option("--dry-run", is_flag=True, help="Compute and show, but store nothing.")
@click.option("--exclude-novel", is_flag=True, help="Leave out images the novelty scorer flags.")
@scorer_option(help="Scorer for --exclude-novel (default: the latest).")
@show_option()
@json_option()
@pass_ctx
def select(ctx: Context, budget, strategy, metric, embeddings, batch, out, seed, device, fp16,
           dry_run, exclude_novel, scorer, show, as_json) -> None:
    """Pick BUDGET images to label, seeded by labelled images and earlier picks."""
    from curate.select.selection import select_images
    if scorer and not exclude_novel:
        raise CurateError("--scorer is used with --exclude-novel; add --exclude-novel")
    flagged = None
    if exclude_novel:
        from curate.novelty.scoring import flagged_ids
        flagged = flagged_ids(ctx.index, scorer, batch=batch)
    res = select_images(ctx.index, budget, strategy=strategy, metric=metric, embeddings=embeddings,
                        batch=batch, seed=seed, dry_run=dry_run, device=device, fp16=fp16,
                        exclude_ids=flagged,
                        extra_params=None if flagged is None else {"exclude_novel": flagged.params})
    if out:
        write_selection(res.picks, out)
    if as_json:
        ctx.json(res.as_dict())
        return
    head = res.picks.head(show)
    title = (f"selection {res.selection_id}" if res.selection_id else "dry run (not stored)") + \
        f": {budget} by {strategy}/{metric} over {res.embedding_set} " \
        f"({res.params['n_centres']} centres, pool {res.params['pool_size']})"
    if exclude_novel:
        ex = res.params["exclude_novel"]
        title += f", {ex['excluded']} novel excluded by {ex['scorer']}"
    info = res.params.get("info", {})
    if "fallback" in info or "chose" in info:
        title += f" [{info.get('chose') or info['fallback']}]"
    ctx.table(title, ["rank", "image", "score", "label", "batch", "path"],
              [[r.rank, r.image_id, "" if r.score != r.score else f"{r.score:.4f}",
                r.label, r.batch, r.path] for r in head.itertuples()])
    if info.get("chose") == "random" and "cluster_gap" in info:
        ctx.console.print(f"auto picked at random: this embedding is barely clustered (cluster gap "
                          f"{info['cluster_gap']:.3f} < {info['min_cluster_gap']}), where no strategy "
                          "beat random in our benchmark; a trained encoder may help (README "
                          "'Which strategy?')")
    if res.missing:
        ctx.console.print(f"{len(res.missing)} picked files no longer exist and were skipped "
                          f"(marked rejected): {', '.join(res.missing[:3])}"
                          + (" ..." if len(res.missing) > 3 else ""))
    if len(res.picks) > show:
        ctx.console.print(f"... {len(res.picks) - show} more" + (f"; all in {out}" if out else ""))
    elif out:
        ctx.console.print(f"written: {out}")


COMMANDS = [select]
