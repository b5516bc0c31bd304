"""``curate push label-studio``, ``curate pull label-studio``, ``curate export``.

The server URL and API key come from ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` or
the workspace config (``[labelstudio] url``, ``api_key_file``); the key is never
printed. Server problems print one line and exit 4.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from curate.cli.context import Context, pass_ctx
from curate.cli.options import SharedOption, json_option, out_option, selection_option, show_option
from curate.export import EXPORT_FORMATS, FORMATS, selection_frame, write_labelstudio_json, write_selection

URL_MODES = ("auto", "local-files", "base-url", "as-is")
PUSH_MODES = URL_MODES + ("upload",)
_url_option = SharedOption("--url", help="Label Studio URL (default: $LABEL_STUDIO_URL or [labelstudio] url).")


def _document_root(ctx: Context, given: str | None) -> str | None:
    return (given or ctx.workspace.setting("labelstudio", "document_root")
            or os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"))


def _client(ctx: Context, url: str | None):
    from curate.integrations.labelstudio import connect, credentials

    return connect(credentials(ctx.workspace, url=url))


def _url_options(f, push: bool = False):
    f = click.option("--image-base-url", metavar="URL",
                     help="Serve images yourself: task URL = URL/<path relative to --document-root>.")(f)
    f = click.option("--document-root", type=click.Path(file_okay=False),
                     help="Folder image paths are made relative to (local-files, base-url). Default: "
                          "[labelstudio] document_root, else $LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT.")(f)
    if push:
        f = click.option("--image-url-mode", type=click.Choice(PUSH_MODES), default="auto",
                         show_default=True,
                         help="upload: send the image files to Label Studio (no server settings; "
                              "small sets); local-files: Label Studio serves them from its document "
                              "root (/data/local-files/?d=...); base-url: --image-base-url; as-is: "
                              "paths/URIs (s3://, gs://) unchanged; auto: as-is for URIs, base-url if "
                              "given, local-files if a document root is known, else upload.")(f)
        return f
    f = click.option("--image-url-mode", type=click.Choice(URL_MODES), default="auto", show_default=True,
                     help="local-files: Label Studio serves the files (/data/local-files/?d=...); "
                          "base-url: --image-base-url; as-is: paths/URIs (s3://, gs://) unchanged; "
                          "auto: as-is for URIs, base-url if given, else local-files.")(f)
    return f


def _push_url_options(f):
    return _url_options(f, push=True)


def _json_or_warnings(ctx: Context, rep, as_json: bool) -> bool:
    """With --json print the report and return True; else print its warnings (stderr)."""
    if as_json:
        ctx.json(rep.as_dict())
        return True
    for w in rep.warnings:
        ctx.err.print(f"warning: {w}")
    return False


@click.group("push")
def push() -> None:
    """Send a selection to a labeling tool."""


@push.command("label-studio")
@selection_option()
@click.option("--project", required=True, help="Label Studio project title or id (created if the title is new).")
@click.option("--classes", help="Comma-separated classes for a new project (default: labels in the index).")
@click.option("--label-config", type=click.Path(dir_okay=False, exists=True),
              help="Labeling config XML for a new project (needs <Image value=\"$image\"> and Choices/Labels).")
@_push_url_options
@click.option("--predictions", metavar="SCORER",
              help="Send each image's novelty score from SCORER as a prediction score (sortable).")
@click.option("--chunk-size", type=click.IntRange(1, 5000), default=500, show_default=True, help="Tasks per import request.")
@_url_option()
@json_option()
@pass_ctx
def push_label_studio(ctx: Context, selection, project, classes, label_config, image_url_mode,
                      document_root, image_base_url, predictions, chunk_size, url, as_json) -> None:
    """Create one Label Studio task per selected image (a rerun pushes only what is missing)."""
    from curate.integrations.labelstudio import push_selection

    client = _client(ctx, url)
    xml = Path(label_config).read_text() if label_config else None
    cls = [c.strip() for c in classes.split(",") if c.strip()] if classes else None

    def progress(r) -> None:
        if not as_json:
            ctx.err.print(f"  pushed {r.already_pushed + r.pushed}/{r.selected}")

    rep = push_selection(ctx.index, client, selection, project, classes=cls, label_config=xml,
                         image_url_mode=image_url_mode, document_root=_document_root(ctx, document_root),
                         image_base_url=image_base_url, predictions=predictions,
                         chunk_size=chunk_size, on_chunk=progress)
    if _json_or_warnings(ctx, rep, as_json):
        return
    ctx.console.print(
        f"project {rep.project_title!r} (id {rep.project_id}{', created' if rep.project_created else ''}): "
        f"selection {rep.selection_id}: {rep.pushed} tasks pushed in {rep.chunks} request(s), "
        f"{rep.already_pushed} already there"
        + (f", {rep.predictions} with predictions" if predictions else "")
        + (f"; {rep.uploaded} image file(s) uploaded to Label Studio" if rep.mode == "upload" else "")
        + (f", {rep.recovered} recovered from an interrupted push" if rep.recovered else ""))
    for d in rep.storages:
        ctx.console.print(f"added local-files storage {d}")
    if rep.server_env:
        ctx.console.print("Label Studio must run with (local-files serving):")
        for k, v in rep.server_env.items():
            ctx.console.print(f"  export {k}={v}")


@click.group("pull")
def pull() -> None:
    """Bring labels back from a labeling tool."""


@pull.command("label-studio")
@click.option("--project", required=True, help="Label Studio project title or id.")
@click.option("--prefer", type=click.Choice(["existing", "label-studio"]), default="existing",
              show_default=True,
              help="When a Label Studio label contradicts a folder/manifest label: keep the existing "
                   "one and report (default), or let Label Studio win (the other is marked overridden).")
@show_option(help="Conflicts to list.")
@_url_option()
@json_option()
@pass_ctx
def pull_label_studio(ctx: Context, project, prefer, show, url, as_json) -> None:
    """Write the latest annotation of each task as a label (source label-studio)."""
    from curate.integrations.labelstudio import pull_annotations

    rep = pull_annotations(ctx.index, _client(ctx, url), project, prefer=prefer)
    if _json_or_warnings(ctx, rep, as_json):
        return
    ctx.console.print(
        f"project {rep.project_title!r} (id {rep.project_id}): {rep.tasks} annotated tasks: "
        f"{rep.new} new, {rep.updated} updated, {rep.unchanged} unchanged, {rep.skipped} skipped, "
        f"{len(rep.conflicts)} conflicts, {rep.cancelled} cancelled, {rep.unmatched} unmatched")
    if rep.conflicts:
        kept = "kept existing labels" if prefer == "existing" else "Label Studio labels win"
        ctx.table(f"conflicts ({kept}; --prefer to change)", ["image", "task", "label-studio", "existing"],
                  [[c["image_id"], c["task_id"], c["label_studio"],
                    ", ".join(f"{k}: {v}" for k, v in c["existing"].items())] for c in rep.conflicts[:show]])
        if len(rep.conflicts) > show:
            ctx.console.print(f"... {len(rep.conflicts) - show} more (--json lists all)")


@click.command("export")
@selection_option()
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS),
              help="Default: from the --out suffix, else csv.")
@out_option(help="Output file (default: standard output).")
@_url_options
@pass_ctx
def export(ctx: Context, selection, fmt, out, image_url_mode, document_root, image_base_url) -> None:
    """Write a selection as CSV, Parquet, JSON, or Label Studio import JSON (labelstudio-json).

    labelstudio-json is a list of tasks {"data": {"image": URL, "curate_id": ID}} to import by
    hand. Label Studio serves local-files URLs only for files inside a Local Files storage of
    the project (`curate push label-studio` adds one; by hand: add one for a subfolder of the
    document root, without syncing it).
    """
    from curate.errors import CurateError

    fmt = fmt or (FORMATS.get(Path(out).suffix.lower()) if out else None) or "csv"
    if fmt == "parquet" and not out:
        raise CurateError("parquet needs --out FILE")
    sel_id, df = selection_frame(ctx.index, selection)
    gone = df.attrs.get("missing", [])
    for p in gone[:20]:
        click.echo(f"skipped (file missing since ingest, now marked rejected): {p}", err=True)
    if len(gone) > 20:
        click.echo(f"... {len(gone) - 20} more missing files skipped", err=True)
    target = Path(out) if out else None
    if fmt == "labelstudio-json":
        from curate.integrations.labelstudio import image_url_builder

        make_url, _ = image_url_builder(image_url_mode, df["path"].tolist(),
                                        _document_root(ctx, document_root), image_base_url)
        if target is None:
            import json

            from curate.export import labelstudio_tasks

            click.echo(json.dumps(labelstudio_tasks(df, make_url), indent=1))
            return
        write_labelstudio_json(df, target, make_url)
    elif target is None:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            p = write_selection(df, Path(d) / f"selection.{fmt}", fmt)
            sys.stdout.write(p.read_text())
        return
    else:
        write_selection(df, target, fmt)
    click.echo(f"selection {sel_id}: {len(df)} rows written to {target} ({fmt})", err=True)


COMMANDS = [push, pull, export]
