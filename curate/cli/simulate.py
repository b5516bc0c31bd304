"""``curate simulate``: the active-learning loop on labelled images, strategy vs random."""

import click

from curate.cli.context import Context, RegistryChoice, pass_ctx, progress_bar
from curate.cli.options import (batch_option, device_option, embeddings_option, int_list,
                                json_option, metric_option, out_option, seeds_option,
                                test_batch_option)
from curate.errors import CurateError


def _pct(v) -> str:
    return "" if v is None or v != v else f"{100 * v:+.1f}"


@click.command("simulate")
@click.option("--strategies", default="random,kcenter", show_default=True,
              help="Comma-separated strategies (see `curate select --help`).")
@click.option("--budgets", default="10,20,50,100,200,500", show_default=True,
              help="Comma-separated, increasing labelling budgets.")
@seeds_option(help="Repetitions per strategy.")
@batch_option(help="Pool: only the labelled images of this ingest batch.")
@test_batch_option(help="Hold out this batch's labelled images as the test set.")
@click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2, show_default=True,
              help="Without --test-batch: a seeded stratified fraction of the pool is the test set.")
@click.option("--probe", type=RegistryChoice("curate.select.probe", "PROBES"), default="logistic",
              show_default=True, help="Classifier trained on the revealed labels.")
@click.option("--rounds", type=click.Choice(["incremental", "one-shot"]), default="incremental",
              show_default=True, help="incremental: each budget continues from the previous one.")
@metric_option()
@embeddings_option()
@out_option(type=click.Path(file_okay=False),
            help="Write results.csv/.json, summary.csv and accuracy_vs_budget.png here.")
@click.option("--name", help="Name of the stored simulation (default: simulate-<time>).")
@device_option()
@json_option()
@pass_ctx
def simulate(ctx: Context, strategies, budgets, seeds, batch, test_batch, test_fraction, probe,
             rounds, metric, embeddings, out, name, device, as_json) -> None:
    """Replay labelling rounds on labelled images: test accuracy of each strategy's picks."""
    from curate.simulate import simulate as run

    source = click.get_current_context().get_parameter_source("test_fraction")
    if test_batch and source == click.core.ParameterSource.COMMANDLINE:
        raise CurateError("give --test-batch or --test-fraction, not both")
    names = [s.strip() for s in strategies.split(",") if s.strip()]
    with progress_bar(ctx, "strategy x seed", quiet=as_json or not ctx.err.is_terminal) as cb:
        res = run(ctx.index, names, int_list(budgets), seeds=seeds, batch=batch,
                  test_batch=test_batch, test_fraction=test_fraction, probe=probe,
                  rounds=rounds, embeddings=embeddings, out=out, name=name, metric=metric,
                  device=device, progress=cb)
    if as_json:
        ctx.json(res.as_dict())
        return
    p, sm = res.params, res.summary
    budgets = sorted(sm["budget"].unique())
    title = (f"simulation {res.simulation_id} ({res.name}): test accuracy, {p['probe']} probe, "
             f"{p['rounds']}, pool {p['pool_size']}, test {p['test_size']}, {p['seeds']} seeds, "
             f"{len(p['classes'])} classes")
    cell = {(r.strategy, r.budget): r for r in sm.itertuples()}
    ctx.table(title, ["strategy", *map(str, budgets), "select s"],
              [[s, *[f"{cell[s, b].accuracy:.3f}" for b in budgets],
                f"{res.results.loc[res.results.strategy == s, 'seconds'].sum():.1f}"]
               for s in p["strategies"]])
    if p["baseline"] in p["strategies"] and len(p["strategies"]) > 1:
        ctx.table(f"paired difference to {p['baseline']}, points [95% interval]",
                  ["strategy", *map(str, budgets)],
                  [[s, *[f"{_pct(cell[s, b].diff)} [{_pct(cell[s, b].diff_low)}, "
                         f"{_pct(cell[s, b].diff_high)}]" if p["seeds"] > 1
                         else _pct(cell[s, b].diff) for b in budgets]]
                   for s in p["strategies"] if s != p["baseline"]])
    for f in res.files:
        ctx.console.print(f"written: {f}")


COMMANDS = [simulate]
