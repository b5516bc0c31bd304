"""Push a selection to a Label Studio project: one task per image, in chunks.

Each task's data carries ``image`` (URL), ``curate_id`` (our image id; annotations map
back by it, never by order), ``curate_rank`` and ``curate_selection``. Images reach the
annotators through Label Studio's local-files serving, your own server (base-url), as
storage URIs (as-is), or uploaded into Label Studio (``upload``, zero configuration:
:mod:`curate.integrations.labelstudio_upload`); ``auto`` uploads when no document root
or base URL is known. Task ids are
recorded in ``labelstudio_tasks`` and committed after every chunk, so an interrupted
push leaves an accurate record; a rerun pushes only images without a task.

Recovery: a chunk whose request reached the server but whose answer was lost (server
killed, timeout) created tasks the index does not know. Before pushing, the project's
``task_number`` is compared with our records (one request); on a mismatch the project's
tasks are listed once (pages of 1,000) and the records are repaired by ``curate_id``.

Requests: 2-3 to resolve the project, 1 per chunk of ``chunk_size`` tasks (+1 to list
storages in local-files mode). Cost O(selection) in memory.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import httpx

from curate.errors import CurateError, ServiceError
from curate.export import URI, drop_missing, labelstudio_task
from curate.integrations.labelstudio_client import base_url, find_project, service
from curate.integrations.labelstudio_config import (ConfigInfo, classification_config,
                                                    missing_classes, parse_config)
from curate.integrations.labelstudio_upload import MAX_FILES, existing_uploads, upload_images

URL_MODES = ("auto", "local-files", "base-url", "as-is")
PUSH_MODES = URL_MODES + ("upload",)  # upload: push only (export writes URLs)
LOCAL_FILES_PREFIX = "/data/local-files/?d="


@dataclass
class PushReport:
    project_id: int
    project_title: str
    project_created: bool
    selection_id: int
    selected: int
    already_pushed: int
    pushed: int = 0
    chunks: int = 0
    predictions: int = 0
    mode: str = ""       # how the images are served: local-files, base-url, as-is or upload
    uploaded: int = 0    # upload mode: files sent (files already on the server are reused)
    recovered: int = 0   # tasks found on the server that the index had not recorded
    stale: int = 0       # records dropped: their task is gone from the project
    missing: list[str] = field(default_factory=list)  # files gone since ingest: not pushed
    storages: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    server_env: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def chunked(seq: list, n: int):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def image_url_builder(mode: str, paths: list[str], document_root: str | Path | None = None,
                      image_base_url: str | None = None) -> tuple[Callable[[str], str], str]:
    """A function path -> task image URL, and the resolved mode.

    ``local-files``: ``/data/local-files/?d=<path relative to document_root>``;
    ``base-url``: ``image_base_url/<path relative to document_root>``; ``as-is``: the
    path unchanged. Storage URIs (``s3://``, ``gs://``, ``https://``...) are always kept.
    ``auto``: as-is when every path is a URI, else base-url with ``image_base_url``,
    else local-files. Raises :class:`CurateError` for a path outside the root.
    """
    if mode not in URL_MODES:
        raise CurateError(f"unknown image URL mode {mode!r}; choose one of {', '.join(URL_MODES)}")
    if mode == "auto":
        mode = ("as-is" if all(URI.match(p) for p in paths)
                else "base-url" if image_base_url else "local-files")
    if mode == "as-is":
        return (lambda p: p), mode
    if mode == "base-url" and not image_base_url:
        raise CurateError("--image-url-mode base-url needs --image-base-url URL")
    if document_root is None:
        raise CurateError(
            f"image URL mode {mode} needs a document root (--document-root DIR, [labelstudio] "
            "document_root in curate.toml or LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT): image paths "
            "are sent relative to it")
    root = Path(document_root).expanduser().resolve()

    def rel(p: str) -> str:
        try:
            return Path(p).resolve().relative_to(root).as_posix()
        except ValueError:
            raise CurateError(f"image {p} is outside the document root {root}") from None

    if mode == "local-files":
        return (lambda p: p if URI.match(p) else LOCAL_FILES_PREFIX + quote(rel(p), safe="/")), mode
    base = image_base_url.rstrip("/")
    return (lambda p: p if URI.match(p) else f"{base}/{quote(rel(p), safe='/')}"), mode


def _storage_dirs(paths: list[str], root: Path) -> list[Path]:
    """Folders to register as Local Files storages: the first level below ``root``.

    Label Studio serves ``/data/local-files/`` only for files inside a Local Files import
    storage of a project, whose path must be a strict subfolder of the document root.
    """
    dirs = set()
    for p in paths:
        if URI.match(p):
            continue
        parts = Path(p).resolve().relative_to(root).parts
        if len(parts) < 2:
            raise CurateError(f"image {p} lies directly in the document root {root}; Label Studio "
                              "serves only files in its subfolders: use a parent folder as root")
        dirs.add(root / parts[0])
    return sorted(dirs)


def _ensure_storages(client, project_id: int, dirs: list[Path]) -> list[str]:
    url = base_url(client)
    with service(url, "listing local storages"):
        have = [Path(s.path) for s in client.import_storage.local.list(project=project_id) if s.path]
    added = []
    for d in dirs:
        if any(d == h or h in d.parents for h in have):
            continue
        with service(url, f"adding local-files storage {d}"):
            client.import_storage.local.create(project=project_id, path=str(d), title=f"curate {d.name}",
                                               use_blob_urls=False, recursive_scan=True)
        added.append(str(d))
    return added


def _reconcile(index, client, project_id: int, report: PushReport,
               selection_id: int | None = None, selected: set[int] = frozenset()) -> None:
    """Repair our records of ``project_id`` from one listing of its tasks (by curate_id)."""
    url = base_url(client)
    server: dict[int, int] = {}
    task_ids: set[int] = set()
    with service(url, f"listing tasks of project {project_id} to repair the record"):
        for t in client.tasks.list(project=project_id, page_size=1000, fields="task_only"):
            task_ids.add(t.id)
            cid = (t.data or {}).get("curate_id")
            if isinstance(cid, (int, str)) and str(cid).isdigit():
                server.setdefault(int(cid), t.id)
    recs = index.labelstudio_tasks(project_id)   # image id -> task id
    retarget: dict[int, int] = {}
    drop: list[int] = []
    for image_id, task_id in recs.items():
        if task_id not in task_ids:
            if image_id in server:
                retarget[image_id] = server[image_id]
            else:
                drop.append(image_id)
                report.stale += 1
    missing = [i for i in server if i not in recs]
    known = index.known_image_ids(missing)
    add = [(i, server[i], selection_id if i in selected else None) for i in missing if i in known]
    report.recovered += len(add)
    index.record_labelstudio_tasks(project_id, add=add, retarget=retarget, drop=drop)


def _ensure_project(client, project, classes, explicit_classes: bool, label_config, report_warnings):
    url = base_url(client)
    proj = find_project(client, project, must_exist=False)
    if proj is None:
        if not 3 <= len(str(project)) <= 50:
            raise CurateError(f"a new Label Studio project title must have 3 to 50 characters, got {project!r}")
        xml = label_config or classification_config(classes)
        info = parse_config(xml, "--label-config" if label_config else "generated labeling config")
        with service(url, f"creating project {project!r}"):
            created = client.projects.create(title=str(project), label_config=xml,
                                             description="Created by curate (push label-studio)")
        return created.id, created.title, True, info, 0
    info = parse_config(proj.label_config or "",
                        f"the labeling config of project {proj.title!r} (id {proj.id})")
    if label_config:
        report_warnings.append(f"project {proj.title!r} exists: kept its labeling config "
                               "(--label-config applies to new projects only)")
    gone = missing_classes(info, classes)
    if gone and (explicit_classes or info.classes):
        report_warnings.append(
            f"project {proj.title!r} offers no choice for {len(gone)} class(es) known to curate: "
            f"{', '.join(gone[:10])}{' ...' if len(gone) > 10 else ''}")
    return proj.id, proj.title, False, info, proj.task_number or 0


def _prediction(info: ConfigInfo, label: str | None, score: float, model_version: str) -> dict:
    result = []
    if label is not None and info.choices_control and label in info.classes:
        result = [{"from_name": info.choices_control, "to_name": info.image_name, "type": "choices",
                   "value": {"choices": [label]}}]
    return {"result": result, "score": float(score), "model_version": model_version}


def _import_chunk(client, project_id: int, tasks: list[dict]):
    """One import request; a refused connection is retried (nothing was sent), else not."""
    for attempt in range(3):
        try:
            return client.projects.import_tasks(
                project_id, request=tasks, return_task_ids=True,
                request_options={"max_retries": 0, "timeout_in_seconds": 300})
        except httpx.ConnectError:
            if attempt == 2:
                raise
            time.sleep(0.5 * 2 ** attempt)


def push_selection(index, client, selection: int | str, project: int | str, *,
                   classes: list[str] | None = None, label_config: str | None = None,
                   image_url_mode: str = "auto", document_root: str | Path | None = None,
                   image_base_url: str | None = None, predictions: str | None = None,
                   chunk_size: int = 500,
                   on_chunk: Callable[[PushReport], None] | None = None) -> PushReport:
    """Push the images of ``selection`` (id or ``"latest"``) to ``project`` (id or title).

    Creates the project when no project has that title (config from ``label_config``
    XML, else a classification config over ``classes`` or the labels in the index).
    ``predictions``: a scorer name; its novelty score per image is sent as a prediction
    (``score``, ``model_version`` = scorer name) so annotators can sort by it.
    ``image_url_mode``: one of :data:`PUSH_MODES` (see :func:`image_url_builder`; ``upload``
    sends the files to Label Studio, at most 100 per request; ``auto`` = upload when
    neither ``document_root`` nor ``image_base_url`` is given and the paths are local).
    Raises :class:`ServiceError` (after committing finished chunks) when the server fails.
    """
    if not 1 <= chunk_size <= 5000:
        raise CurateError("chunk size must be between 1 and 5000 tasks")
    url = base_url(client)
    warnings: list[str] = []
    sel = index.selection(selection)
    items = [(i, rank, p) for rank, i, p, _ in index.selection_rows(sel.id)]
    if not items:
        raise CurateError(f"selection {sel.id} has no images")
    explicit = bool(classes)
    classes = list(classes) if classes else index.label_classes()
    scorer = index.scorer(predictions) if predictions else None
    items, gone = drop_missing(index, items, when="push")
    if gone:
        warnings.append(f"skipped {len(gone)} image(s) whose file is gone since ingest (now "
                        f"marked rejected): {', '.join(gone[:5])}" + (" ..." if len(gone) > 5 else ""))
    if not items:
        raise CurateError(f"every image of selection {sel.id} is missing on disk; nothing to push")
    paths = [p for _, _, p in items]
    if image_url_mode not in PUSH_MODES:
        raise CurateError(f"unknown image URL mode {image_url_mode!r}; choose one of {', '.join(PUSH_MODES)}")
    if (image_url_mode == "auto" and document_root is None and not image_base_url
            and not all(URI.match(p) for p in paths)):
        image_url_mode = "upload"  # nothing configured: Label Studio stores the files itself
    if image_url_mode == "upload":
        uri = next((p for p in paths if URI.match(p)), None)
        if uri:
            raise CurateError(f"upload mode sends local files; {uri} is a URI (use --image-url-mode as-is)")
        mode, urls = "upload", {}
        chunk_size = min(chunk_size, MAX_FILES)
    else:
        make_url, mode = image_url_builder(image_url_mode, paths, document_root, image_base_url)
        urls = {i: make_url(p) for i, _, p in items}  # fails early on a path outside the root
    pid, title, created, info, n_server = _ensure_project(client, project, classes, explicit,
                                                          label_config, warnings)
    report = PushReport(project_id=pid, project_title=title, project_created=created,
                        selection_id=sel.id, selected=len(items) + len(gone), already_pushed=0,
                        warnings=warnings, missing=gone, mode=mode)
    if mode == "local-files":
        root = Path(document_root).expanduser().resolve()
        report.server_env = {"LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
                             "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(root)}
        report.storages = _ensure_storages(client, pid, _storage_dirs(paths, root))

    done = index.labelstudio_tasks(pid)   # image id -> task id
    if not created and n_server != len(done):
        _reconcile(index, client, pid, report, sel.id, {i for i, _, _ in items})
        done = index.labelstudio_tasks(pid)
    todo = [(i, r, p) for i, r, p in items if i not in done]
    report.already_pushed = len(items) - len(todo)
    uploads = existing_uploads(client, pid) if mode == "upload" and todo and not created else {}
    scores: dict[int, float] = {}
    existing: dict[int, str] = {}
    if scorer is not None:
        ids = [i for i, _, _ in todo]
        scores = index.scores_of(scorer.id, ids)
        existing = index.labels(ids, except_source="label-studio")   # the prediction's class

    for chunk in chunked(todo, chunk_size):
        if mode == "upload":
            got, sent = upload_images(client, pid, [(i, p) for i, _, p in chunk], uploads)
            urls.update(got)
            report.uploaded += sent
        tasks = []
        for image_id, rank, _ in chunk:
            task = labelstudio_task(urls[image_id], image_id, rank, sel.id)
            if image_id in scores:
                task["predictions"] = [_prediction(info, existing.get(image_id), scores[image_id],
                                                   scorer.name)]
            tasks.append(task)
        first = report.already_pushed + report.pushed + 1
        try:
            with service(url, f"importing tasks {first}-{first + len(chunk) - 1} of {len(items)}"):
                resp = _import_chunk(client, pid, tasks)
        except ServiceError as e:
            raise ServiceError(f"{e}; {report.pushed} of {len(todo)} tasks were pushed and recorded "
                               "before that, rerun to push the rest") from None
        task_ids = (resp.model_extra or {}).get("task_ids") if resp is not None else None
        if task_ids and len(task_ids) == len(chunk):
            # the server returns the ids of the tasks it created, in request order
            # (label_studio data_import/api.py sync_import); pull maps by curate_id anyway
            index.record_labelstudio_tasks(pid, add=[(image_id, int(tid), sel.id) for
                                                     (image_id, _, _), tid in zip(chunk, task_ids)])
        else:  # asynchronous import (Enterprise) or unexpected answer: map by curate_id
            time.sleep(1.0)
            before = report.recovered
            _reconcile(index, client, pid, report, sel.id, {i for i, _, _ in items})
            got, report.recovered = report.recovered - before, before
            if got < len(chunk):
                warnings.append(f"the server did not return task ids; {got} of {len(chunk)} "
                                "tasks of a chunk recorded so far: rerun push to record the rest")
        report.pushed += len(chunk)
        report.chunks += 1
        report.predictions += sum(1 for t in tasks if "predictions" in t)
        if on_chunk is not None:
            on_chunk(report)
    return report
