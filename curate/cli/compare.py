"""``curate compare``: embedding sets side by side, pixels-pca as the baseline; also the
renderer of the comparison that ends ``curate train``."""

from __future__ import annotations

import math

import click
from rich.table import Table
from rich.text import Text

from curate.cli.context import Context, pass_ctx
from curate.cli.options import (device_option, embeddings_option, int_list, json_option,
                                out_option, seed_option, seeds_option, test_batch_option)

STYLE = {"better": "green", "worse": "red", "not distinguishable": "yellow"}


def _num(v, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def comparison_table(res, title: str) -> Table:
    """A rich table: one column per set (baseline first), one row per metric; each cell the
    value [interval] and, for other sets, the paired difference to the baseline [interval]."""
    names = [s["name"] for s in res.sets]
    t = Table(title=title, show_lines=True)
    t.add_column("metric", overflow="fold")
    for n in names:
        t.add_column(n + (" (baseline)" if n == res.baseline else ""), overflow="fold")
    by = {s["name"]: s for s in res.sets}
    t.add_row("dimensions", *[str(by[n]["dim"]) for n in names])
    if any(by[n].get("images_per_second") for n in names):
        t.add_row("embed images/s", *[
            f"{by[n]['images_per_second']:.0f} ({by[n].get('embed_device') or '?'})"
            if by[n].get("images_per_second") else "-" for n in names])
    tab = res.table
    for metric in dict.fromkeys(tab["metric"]):
        cells = []
        for n in names:
            r = tab[(tab["metric"] == metric) & (tab["set"] == n)]
            if r.empty:
                cells.append(Text("-"))
                continue
            r = r.iloc[0]
            cell = Text(f"{_num(r['value'])} [{_num(r['low'])}, {_num(r['high'])}]")
            if n != res.baseline and r["diff"] == r["diff"]:
                cell.append(f"\nΔ {_num(r['diff'], True)} [{_num(r['diff_low'], True)}, "
                            f"{_num(r['diff_high'], True)}]", style=STYLE.get(r["verdict"], ""))
            cells.append(cell)
        t.add_row(metric, *cells)
    return t


def render(ctx: Context, res, title: str) -> None:
    """Print the table, the one-line verdicts and the notes."""
    ctx.console.print(comparison_table(res, title))
    for line, name in zip(res.lines, res.verdicts):
        v = res.verdicts[name]
        style = "red" if v.get("worse") else "green" if v.get("better") else "yellow"
        ctx.console.print(Text(line, style=style))
    for note in res.notes:
        ctx.console.print(Text(f"note: {note}", style="dim"))


def render_training(ctx: Context, run, table: bool = True) -> None:
    """The comparison stored by ``curate train`` in ``run.data["comparison"]`` (with
    ``table``), and a one-line warning on stderr when the new encoder is worse than pixels-pca."""
    from curate.compare import CompareResult

    rec = (run.data or {}).get("comparison")
    if not rec:
        return
    if "error" in rec:
        if table:
            ctx.console.print(Text(f"no comparison with pixels-pca: {rec['error']}", style="dim"))
        return
    res = CompareResult.from_dict(rec)
    info = res.info
    if table:
        render(ctx, res, f"{run.name} vs {res.baseline} on {info['n_holdout']} held-out images "
                         f"(reference: {info['n_reference']} trained images), "
                         f"{res.seconds:.1f} s")
    worse = res.worse(run.name)
    if len(worse):
        what = "; ".join(f"{r.metric} {r.diff:+.3f} [{r.diff_low:+.3f}, {r.diff_high:+.3f}]"
                         for r in worse.itertuples())
        ctx.err.print(Text(f"warning: {run.name} is worse than {res.baseline} on its held-out "
                           f"images: {what}; train longer or keep using {res.baseline} "
                           "(`curate compare` for the full picture)", style="bold yellow"),
                      soft_wrap=True)


@click.command("compare")
@embeddings_option(multiple=True, metavar="SET",
                   help="Embedding set to compare (repeat, or comma-separated; default: every set).")
@click.option("--ood-batch", "ood_batches", multiple=True, metavar="NAME",
              help="An out-of-distribution batch (repeat): OOD AUROC against the other images.")
@test_batch_option(metavar="NAME",
                   help="Labelled batch held out as the test set (default: 5-fold cross-validation).")
@click.option("--baseline", metavar="SET",
              help="The pixels-pca set (default: the latest; computed when there is none).")
@click.option("--budgets", default="20,100", show_default=True,
              help="AL budgets (default strategy vs random).")
@seeds_option(help="AL repetitions.")
@click.option("--no-al", is_flag=True, help="Skip the active-learning simulation.")
@click.option("--max-images", type=click.IntRange(min=10), default=10000, show_default=True,
              help="At most this many labelled images (OOD rows: half).")
@click.option("--bootstrap", type=click.IntRange(min=100), default=1000, show_default=True,
              help="Bootstrap resamples per interval.")
@seed_option()
@device_option(help="For computing the baseline: auto, cpu or cuda.")
@out_option(help="Write the table (.csv, .parquet, .json).")
@json_option()
@pass_ctx
def compare(ctx: Context, embeddings, ood_batches, test_batch, baseline, budgets, seeds, no_al,
            max_images, bootstrap, seed, device, out, as_json) -> None:
    """Compare embedding sets on the same images against pixels-pca: 10-NN, linear probe
    and AL accuracy (labelled images), OOD AUROC (--ood-batch), with 95% intervals."""
    from curate.compare import compare as run

    say = None if as_json or not ctx.err.is_terminal else (
        lambda m: ctx.err.print(Text(m, style="dim")))
    res = run(ctx.index, ctx.workspace, list(embeddings) or None, ood_batches=ood_batches,
              test_batch=test_batch, baseline=baseline, al=not no_al, al_budgets=int_list(budgets),
              al_seeds=seeds, max_images=max_images, n_boot=bootstrap, seed=seed, device=device,
              out=out, progress=say)
    if as_json:
        ctx.json(res.as_dict())
        return
    i = res.info
    how = i.get("labelled_eval")
    title = (f"compare on {i['n_images']} images ({i['n_labelled']} labelled"
             + (f", {how}" if how else "") + "): value [95% interval], Δ to the baseline")
    render(ctx, res, title)
    if out:
        ctx.console.print(f"written: {out}", markup=False)


COMMANDS = [compare]
