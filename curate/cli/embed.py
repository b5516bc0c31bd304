"""``curate embed --encoder NAME [--weights FILE] | --model RUN``."""

import click

from curate.cli.context import Context, RegistryChoice, pass_ctx, progress_bar
from curate.cli.options import batch_option, device_option, json_option, ray_option


@click.command("embed")
@click.option("--encoder", type=RegistryChoice("curate.encoders", "ENCODERS"), help="Built-in encoder.")
@click.option("--weights", metavar="NAME|FILE",
              help="Backbone weights: a torchvision name (DEFAULT, IMAGENET1K_V1; read from torch's "
                   "hub cache, downloaded once when missing) or a local file.")
@click.option("--model", help="A trained model (run name) from `curate train`.")
@batch_option(help="Embed only this ingest batch.")
@click.option("--image-size", type=click.IntRange(8, 1024), help="Input size in pixels (encoder default if omitted).")
@device_option()
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=None, help="DataLoader workers (default: by dataset size).")
@ray_option(help="Run on a Ray cluster: auto, HOST:PORT, ray://HOST:PORT, or local (start one here). "
                'Needs pip install "curate[ray]".')
@click.option("--ray-actors", type=click.IntRange(min=1), default=None,
              help="Encoder actors on Ray (default: one per GPU, else one per CPU slot).")
@json_option()
@pass_ctx
def embed(ctx: Context, encoder, weights, model, batch, image_size, device, dtype, batch_size,
          workers, ray, ray_actors, as_json) -> None:
    """Embed ingested images (resumable: only missing images are embedded)."""
    from curate.embed import embed as run_embed
    with progress_bar(ctx, "embed", quiet=as_json) as cb:
        rep = run_embed(ctx.index, ctx.workspace, encoder=encoder, weights=weights, model=model,
                        batch=batch, image_size=image_size, device=device, dtype=dtype,
                        batch_size=batch_size, num_workers=workers, progress=cb, ray=ray,
                        ray_actors=ray_actors)
    if as_json:
        ctx.json(rep.as_dict())
        return
    for p in rep.missing_files[:20]:
        ctx.err.print(f"skipped (file missing or unreadable): {p}", markup=False)
    ctx.table(f"embedding set {rep.embedding_set}",
              ["model", "dim", "dtype", "embedded", "already", "skipped", "images/s", "device"],
              [[rep.model, rep.dim, rep.dtype, rep.embedded, rep.already, len(rep.missing_files),
                f"{rep.images_per_second:.0f}", rep.device]])


COMMANDS = [embed]
