"""``curate fit-scorer | score | check-batch | tune-scorer``: novelty scores and batch shift."""

import click

from curate.cli.context import Context, pass_ctx
from curate.cli.options import (batch_option, embeddings_option, json_option, out_option,
                                ray_option, scorer_option, seed_option)
from curate.errors import CurateError
from curate.novelty import SCORERS
from curate.export import write_frame


def _fmt(v, spec=".4g"):
    return "" if v is None else format(v, spec)


def _settings(kind, params) -> str:
    """Parameters that differ from the scorer's defaults, as ``k=v, ...``."""
    import inspect

    sig = inspect.signature(SCORERS.get(kind).__init__).parameters
    diff = {k: v for k, v in params.items() if k in sig and sig[k].default != v}
    return ", ".join(f"{k}={v}" for k, v in diff.items()) or "defaults"


def _busy(ctx: Context, quiet: bool, what: str):
    """A spinner on stderr while a long scoring step runs (none with --json)."""
    import contextlib

    return contextlib.nullcontext() if quiet else ctx.err.status(f"{what} ...")


def _shrinkage(value):
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


@click.command("fit-scorer")
@click.option("--kind", required=True, metavar="KIND",
              help=f"Scorer kind: {', '.join(SCORERS.names())}.")
@click.option("--name", help="Name to store it under (default: KIND@EMBEDDING_SET).")
@embeddings_option()
@click.option("--reference-batch", "batches", multiple=True,
              help="Batch(es) forming the reference (repeatable; default: all ok images).")
@click.option("--calibration-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1, show_default=True,
              help="Share of the reference held out to calibrate the threshold.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="Target false-positive rate of the flag.")
@seed_option()
@click.option("--k", type=click.IntRange(min=1), help="knn: which neighbour (k-th nearest).")
@click.option("--tau", type=click.FloatRange(min=0, min_open=True), help="cosine-weighted: temperature.")
@click.option("--metric", help="centroid: l1, l2, minkowski or cosine.")
@click.option("--p", type=click.FloatRange(min=0, min_open=True), help="centroid: Minkowski order.")
@click.option("--shrinkage", help="mahalanobis*: ledoit-wolf, oas or a number in [0, 1].")
@click.option("--C", "C", type=click.FloatRange(min=0, min_open=True),
              help="softmax: inverse regularisation strength of the logistic regression.")
@click.option("--index", "index_kind", help="knn/max-cosine: flat, ivf or hnsw.")
@json_option()
@pass_ctx
def fit_scorer(ctx: Context, kind, name, embeddings, batches, calibration_fraction, alpha, seed,
               k, tau, metric, p, shrinkage, C, index_kind, as_json) -> None:
    """Fit a novelty scorer on reference images and calibrate its flag at ALPHA."""
    from curate.novelty.stored import fit_scorer as run_fit
    rep = run_fit(ctx.index, ctx.workspace, kind, name=name, embeddings=embeddings,
                  reference_batches=list(batches) or None,
                  calibration_fraction=calibration_fraction, alpha=alpha, seed=seed, k=k, tau=tau,
                  metric=metric, p=p, shrinkage=_shrinkage(shrinkage), C=C, index=index_kind)
    if as_json:
        ctx.json(rep.as_dict())
        return
    cal = rep.calibration
    ctx.table(f"scorer {rep.name} ({rep.kind}) on {rep.embedding_set}",
              ["reference", "calibration", "alpha", "threshold", "guaranteed FPR", "params"],
              [[cal["n_ref"], cal["n_cal"], rep.alpha, _fmt(rep.threshold),
                _fmt(cal["guaranteed_fpr"]), _settings(rep.kind, rep.params)]])
    ctx.console.print(f"state: {rep.state_path}", markup=False)


@click.command("score")
@scorer_option()
@batch_option(help="Score only this ingest batch.")
@embeddings_option(help="Must be the scorer's embedding set (the default).")
@click.option("--top", type=click.IntRange(min=0), default=20, show_default=True, help="Rows to print, most novel first.")
@out_option(help="Write all scores to FILE.csv|.parquet|.json.")
@ray_option(help='Score row blocks on a Ray cluster: auto, HOST:PORT or local (pip install "curate[ray]").')
@json_option()
@pass_ctx
def score(ctx: Context, scorer, batch, embeddings, top, out, ray, as_json) -> None:
    """Score images (higher = more novel), store score, p-value and flag per image."""
    from curate.novelty.scoring import score_images
    with _busy(ctx, as_json, "scoring" + (f" batch {batch}" if batch else "")):
        rep = score_images(ctx.index, scorer, batch=batch, embeddings=embeddings, ray=ray)
    if out:
        write_frame(rep.scores, out)
    if as_json:
        ctx.json(rep.as_dict(top))
        return
    ctx.table(f"{rep.scorer}: {len(rep.scores)} scored, {rep.n_flagged} flagged at alpha="
              f"{rep.alpha:g} (score > {rep.threshold:.4g})",
              ["rank", "image", "score", "p-value", "flagged", "batch", "label", "path"],
              [[r.rank, r.image_id, f"{r.score:.4g}", f"{r.p_value:.3g}", "yes" if r.flagged else "",
                r.batch, r.label, r.path] for r in rep.scores.head(top).itertuples()])
    if out:
        ctx.console.print(f"written: {out}", markup=False)


@click.command("check-batch")
@batch_option(required=True, help="The ingest batch to check.")
@scorer_option()
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), help="Significance / flag level (default: the scorer's alpha).")
@click.option("--permutations", type=click.IntRange(min=1), default=1000, show_default=True, help="MMD permutations.")
@click.option("--max-ref", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Reference images used by the MMD test (random subsample).")
@seed_option()
@click.option("--fail-on-shift", is_flag=True, help="Exit with status 3 when the batch is shifted.")
@json_option()
@pass_ctx
def check_batch(ctx: Context, batch, scorer, alpha, permutations, max_ref, seed, fail_on_shift,
                as_json) -> None:
    """Is BATCH shifted from the scorer's reference? Flag rate + MMD test, BH across batches."""
    from curate.novelty.batch_check import check_batch as run_check
    with _busy(ctx, as_json, f"checking batch {batch} ({permutations} MMD permutations)"):
        rep = run_check(ctx.index, batch, scorer, alpha=alpha, permutations=permutations,
                        max_ref=max_ref, seed=seed)
    r = rep.result
    if as_json:
        ctx.json(rep.as_dict())
    else:
        mmd = r["mmd"]
        ctx.table(f"batch {batch} vs scorer {rep.scorer}: {rep.verdict.upper()}",
                  ["test", "statistic", "p-value", "effect"],
                  [[f"flag count (beta-binomial, n_cal={r['n_cal']})",
                    f"{r['n_flagged']}/{r['n_batch']}", _fmt(r["flag_p"], ".3g"), r["effect"]],
                   [f"MMD^2 ({mmd['n_permutations']} permutations)", _fmt(mmd["statistic"]),
                    _fmt(mmd["p_value"], ".3g"),
                    f"effect size {mmd['effect_size']:.3f} ({mmd['n_ref']} ref vs {mmd['n_batch']})"],
                   ["combined (Bonferroni)", "", _fmt(r["combined_p"], ".3g"), r["per_batch_verdict"]],
                   [f"Benjamini-Hochberg over {r['bh']['n_batches']} batch(es)", "",
                    _fmt(r["bh"]["adjusted_p"], ".3g"), f"q = {r['bh']['q']:g}"]])
        ctx.console.print(f"flags: {r['evidence']}", markup=False)
        ctx.console.print(f"verdict: {rep.verdict} (check {rep.check_id})", markup=False)
    if fail_on_shift and rep.shifted:
        raise CurateError(f"batch {batch!r} is shifted (BH-adjusted p = "
                          f"{r['bh']['adjusted_p']:.3g} <= {r['bh']['q']:g})", exit_code=3)


def _split_candidates(values):
    out = []
    for v in values:
        out += [c for c in v.replace(";", " ").split() if c]
    return out or None


@click.command("tune-scorer")
@embeddings_option(multiple=True, help="Embedding set(s) of `curate train` runs (repeat to compare "
                                        "runs; default: the latest).")
@click.option("--candidates", multiple=True, metavar="KIND[:p=v,...]",
              help="Settings of one scorer kind, space-separated or repeated, e.g. "
                   "'cosine-weighted:tau=0.02 cosine-weighted:tau=0.04'; a bare 'knn' or "
                   "'cosine-weighted' is its grid (default: cosine-weighted, tau 0.005-0.5).")
@click.option("--test-batch", "test_batches", multiple=True,
              help="Never-seen in-distribution batch(es) as test set (default: the run's holdout).")
@click.option("--n-sens", type=click.IntRange(min=1), help="Trained images taken out of the reference as 'sens' "
              "(default: min(test images, trained / 5)).")
@seed_option()
@json_option()
@pass_ctx
def tune_scorer(ctx: Context, embeddings, candidates, test_batches, n_sens, seed, as_json) -> None:
    """Pick a scorer's settings by the maximum sensitivity score (thesis 003): AUROC of
    never-seen images vs training images of the encoder left out of the reference."""
    from curate.novelty.tuning import fit_command, tune_scorer as run_tune
    rep = run_tune(ctx.index, list(embeddings) or None, _split_candidates(candidates),
                   list(test_batches) or None, n_sens=n_sens, seed=seed)
    if as_json:
        ctx.json(rep.as_dict())
        return
    d = rep.decision
    pct = f"{d['level']:.0%}"
    many = len(rep.embedding_sets) > 1
    ctx.table(f"sensitivity: {rep.n_sens} trained images (sens) vs {rep.n_test} never-seen "
              f"({rep.test_source}); {rep.n_train - rep.n_sens} reference",
              ["candidate"] + (["embeddings"] if many else []) +
              ["sensitivity", f"{pct} CI", "best - this", "10-NN acc", "note"],
              [[("* " if t["selected"] else "  ") + t["label"]] + ([t["embedding"]] if many else []) +
               [_fmt(t["sensitivity"], ".3f"),
                "" if t["ci"] is None else f"{t['ci'][0]:.3f}-{t['ci'][1]:.3f}",
                "" if t["diff_ci"] is None or t["selected"] else
                f"{t['diff_to_best']:.3f} [{t['diff_ci'][0]:.3f}, {t['diff_ci'][1]:.3f}]",
                _fmt(t["knn_accuracy"], ".3f"),
                t["error"] or ("within noise of best" if t["tied_with_best"] else "")]
               for t in rep.table])
    for note in rep.notes:
        ctx.console.print(f"note: {note}", markup=False)
    chosen = ", ".join(f"{k}={v}" for k, v in rep.chosen.items() if k not in ("kind", "embedding"))
    ctx.console.print(f"chosen (maximum sensitivity): {rep.chosen['kind']}" +
                      (f" ({chosen})" if chosen else "") +
                      (f" on {rep.embedding_set}" if many else ""), markup=False)
    ctx.console.print(f"fit it: {fit_command(rep.chosen, rep.embedding_set)}", markup=False)


COMMANDS = [fit_scorer, score, check_batch, tune_scorer]
