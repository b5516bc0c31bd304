"""``curate plot embedding --model RUN``: a 2-D map of an embedding set as PNG."""

import click

from curate.cli.context import Context, pass_ctx
from curate.cli.options import batch_option, json_option, out_option, scorer_option
from curate.plot import COLOR_BY, embedding_map


@click.group("plot")
def plot() -> None:
    """Plots of the index (PNG files)."""


@plot.command("embedding")
@click.option("--model", help="A model (run name) whose embedding set to draw; embeds if needed.")
@click.option("--set", "set_name", help="An embedding set name instead of --model.")
@batch_option()
@click.option("--color", type=click.Choice(COLOR_BY), default="label", show_default=True,
              help="Colour points by label, batch, selected or not, or novelty score.")
@click.option("--selection", "selection_id", type=click.IntRange(min=1),
              help="Ring the picks of this selection (default: the latest).")
@scorer_option(help="Flags/scores from this scorer (default: any / the latest).")
@click.option("--tsne", is_flag=True, help="t-SNE instead of PCA (ignored for 2-D embeddings).")
@click.option("--max-points", type=click.IntRange(min=1), default=20000, show_default=True,
              help="Subsample larger sets (seeded).")
@out_option(help="PNG file (default: data/plots/...).")
@json_option()
@pass_ctx
def embedding(ctx: Context, model, set_name, batch, color, selection_id, scorer, tsne, max_points,
              out, as_json) -> None:
    """2-D map of an embedding (itself when 2-D, else PCA or t-SNE), selections and flags marked."""
    res = embedding_map(ctx.index, ctx.workspace, model=model, set_name=set_name, batch=batch,
                        color=color, selection_id=selection_id, scorer=scorer,
                        method="tsne" if tsne else "pca", out=out, max_points=max_points)
    if as_json:
        ctx.json(res)
        return
    ctx.console.print(f"written: {res['path']} ({res['points']} images of {res['embedding_set']}, "
                      f"{res['projection']}; {res['selected']} selected, {res['flagged']} flagged)",
                      markup=False)


COMMANDS = [plot]
