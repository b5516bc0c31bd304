"""Pull annotations from a Label Studio project into the index (``labels`` table).

Reads the project through an export snapshot (create, poll, download, delete: 4+
requests whatever the project size; never one request per task), maps each task back
by ``data.curate_id`` (falling back to our recorded task id, then to the name of a file
curate uploaded, ``.../<hex>-curate<id>-<name>``), and writes one ``Label``
row per image with ``source="label-studio"``:

- the latest (by ``updated_at``) non-cancelled annotation wins; its choices give the
  label (several choices are joined with ``","``); ``annotator`` is the e-mail (or id)
  of whoever completed it; ``created_at`` is the annotation's update time (UTC);
- a task whose annotations are all cancelled ("Skip" in the UI), or whose winning
  annotation holds no choice, gets ``status="skipped"`` and ``label=None``;
- a task pulled before whose annotations are gone (deleted in Label Studio, task
  deleted) gets ``status="cancelled"`` and ``label=None``;
- a label that contradicts a ``labeled`` row of another source (folder, manifest...) is
  a conflict. ``prefer="existing"`` (default): the other row stays as it is and the
  label-studio row is stored with ``status="conflict"`` (so it seeds nothing) and the
  conflict is reported. ``prefer="label-studio"``: the label-studio row is ``labeled``
  and the contradicted row gets ``status="overridden"`` (kept, not rewritten; restored to
  ``labeled`` by a later pull that prefers existing or no longer contradicts it).

Each task lands in exactly one count: new, updated, unchanged, skipped or conflict;
``cancelled`` and ``unmatched`` (tasks we cannot map to an image) are counted apart.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import tempfile
import time
from dataclasses import asdict, dataclass, field

from curate.db.store.labels import LabelRow
from curate.errors import CurateError, ServiceError
from curate.integrations.labelstudio_client import base_url, find_project, service
from curate.integrations.labelstudio_config import annotation_label, parse_config
from curate.integrations.labelstudio_upload import image_id_of
from curate.provenance import utcnow

SOURCE = "label-studio"
PREFER = ("existing", "label-studio")


@dataclass
class PullReport:
    project_id: int
    project_title: str
    prefer: str
    tasks: int = 0
    annotations: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    cancelled: int = 0
    unmatched: int = 0
    conflicts: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["conflict_count"] = len(self.conflicts)
        return d


def _time(s: str | None) -> dt.datetime | None:
    if not s:
        return None
    t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    return t.astimezone(dt.timezone.utc).replace(tzinfo=None) if t.tzinfo else t


def _annotator(a: dict) -> str | None:
    who = a.get("completed_by")
    if isinstance(who, dict):
        return who.get("email") or (str(who["id"]) if who.get("id") is not None else None)
    return None if who is None else str(who)


def export_tasks(client, project_id: int, *, timeout: float = 1800.0) -> list[dict]:
    """All tasks of a project that have annotations (cancelled ones included), as dicts.

    Uses the export snapshot API, which the server builds in batches, instead of task
    listing (slow for large projects: label-studio-sdk#658). The snapshot is deleted after.
    """
    url = base_url(client)
    ex = client.projects.exports
    with service(url, f"creating an export snapshot of project {project_id}"):
        snap = ex.create(project_id, title="curate pull",
                         task_filter_options={"only_with_annotations": True},
                         annotation_filter_options={"usual": True, "ground_truth": True, "skipped": True},
                         serialization_options={"annotations__completed_by": {"only_id": False},
                                                "include_annotation_history": False})
    start, wait = time.monotonic(), 0.2
    status = snap.status
    while status not in ("completed", "failed"):
        if time.monotonic() - start > timeout:
            raise ServiceError(f"Label Studio at {url}: export snapshot {snap.id} of project "
                               f"{project_id} not ready after {timeout:.0f} s")
        time.sleep(wait)
        wait = min(wait * 2, 5.0)
        with service(url, f"waiting for export snapshot {snap.id}"):
            status = ex.get(project_id, export_pk=snap.id).status
    if status == "failed":
        raise ServiceError(f"Label Studio at {url}: export snapshot {snap.id} of project {project_id} failed")
    with tempfile.SpooledTemporaryFile(max_size=64 << 20) as f:
        with service(url, f"downloading export snapshot {snap.id}"):
            for part in ex.download(project_id, export_pk=snap.id, export_type="JSON",
                                    request_options={"chunk_size": 1 << 20}):
                f.write(part)
        f.seek(0)
        tasks = json.load(f)
    try:
        with service(url, "deleting the export snapshot"):
            ex.delete(project_id, export_pk=snap.id)
    except ServiceError:
        pass  # a leftover snapshot file on the server is harmless
    return tasks


def _winner(task: dict, info) -> tuple[str, str | None, dict] | None:
    """(status, label, annotation) for a task, or None when it has no annotation."""
    anns = task.get("annotations") or []
    if not anns:
        return None
    key = lambda a: (_time(a.get("updated_at") or a.get("created_at")) or dt.datetime.min, a.get("id") or 0)  # noqa: E731
    live = [a for a in anns if not a.get("was_cancelled")]
    if live:
        a = max(live, key=key)
        label = annotation_label(a.get("result") or [], info)
        return ("labeled" if label is not None else "skipped"), label, a
    return "skipped", None, max(anns, key=key)


def _by_image(rows: list[LabelRow]) -> dict[int, list[LabelRow]]:
    out: dict[int, list[LabelRow]] = {}
    for row in rows:
        out.setdefault(row.image_id, []).append(row)
    return out


def _restore(rows: list[LabelRow]) -> None:
    for r in rows:
        if r.source != SOURCE and r.status == "overridden":
            r.status = "labeled"
            r.meta = {k: v for k, v in (r.meta or {}).items() if k != "overridden_by"}


def pull_annotations(index, client, project: int | str, prefer: str = "existing", *,
                     timeout: float = 1800.0) -> PullReport:
    """Bring the annotations of ``project`` (id or title) into the index; see module doc."""
    if prefer not in PREFER:
        raise CurateError(f"--prefer must be one of {', '.join(PREFER)}, got {prefer!r}")
    proj = find_project(client, project)
    report = PullReport(project_id=proj.id, project_title=proj.title, prefer=prefer)
    try:
        info = parse_config(proj.label_config or "", "project labeling config")
    except CurateError as e:
        info = None
        report.warnings.append(f"{e}; reading every choice/label in the results")
    tasks = export_tasks(client, proj.id, timeout=timeout)
    report.tasks = len(tasks)
    pid = proj.id
    by_task = {t: i for i, t in index.labelstudio_tasks(pid).items()}
    mapped: dict[int, dict] = {}
    for t in tasks:
        data = t.get("data") or {}
        cid = data.get("curate_id")
        image_id = int(cid) if isinstance(cid, (int, str)) and str(cid).isdigit() else by_task.get(t.get("id"))
        if image_id is None:  # a task made from a file curate uploaded (upload/<p>/<hex>-curate<id>-...)
            image_id = next((i for v in data.values() if (i := image_id_of(v)) is not None), None)
        if image_id is None:
            report.unmatched += 1
            continue
        old = mapped.get(image_id)
        if old is None or (t.get("id") or 0) > (old.get("id") or 0):
            mapped[image_id] = t  # a duplicate task of the same image: the newer task wins
    ids = sorted(mapped)
    known = index.known_image_ids(ids)
    report.unmatched += len(set(ids) - known)
    ids = [i for i in ids if i in known]
    # pulled before from this project: those left without any annotation become cancelled
    stale = [r for r in index.label_rows(source=SOURCE, not_status="cancelled")
             if (r.meta or {}).get("project_id") == pid]
    loaded = index.label_rows(sorted(set(ids) | {r.image_id for r in stale}))
    before = {r.id: dataclasses.replace(r, meta=dict(r.meta) if r.meta is not None else None)
              for r in loaded}
    rows = _by_image(loaded)
    new: list[LabelRow] = []
    seen: set[int] = set()
    for image_id in ids:
        t = mapped[image_id]
        report.annotations += len(t.get("annotations") or [])
        won = _winner(t, info)
        if won is None:
            continue
        seen.add(image_id)
        status, label, a = won
        mine = rows.get(image_id, [])
        ls_row = next((r for r in mine if r.source == SOURCE), None)
        others = [r for r in mine if r.source != SOURCE and r.label is not None
                  and r.status in ("labeled", "overridden")]
        meta = {"project_id": pid, "task_id": t.get("id"), "annotation_id": a.get("id"),
                "updated_at": a.get("updated_at"), "lead_time": a.get("lead_time")}
        if a.get("was_cancelled"):
            meta["reason"] = "cancelled"
        elif status == "skipped":
            meta["reason"] = "empty"
        against = [r for r in others if r.label != label] if status == "labeled" else []
        if against:
            report.conflicts.append({
                "image_id": image_id, "task_id": t.get("id"), "label_studio": label,
                "existing": {r.source: r.label for r in against}, "kept": prefer})
            meta["conflict"] = {r.source: r.label for r in against}
            if prefer == "existing":
                status = "conflict"
                _restore(against)
            else:
                for r in against:
                    r.status = "overridden"
                    r.meta = {**(r.meta or {}), "overridden_by": SOURCE}
        _restore([r for r in others if r not in against or prefer == "existing"])
        values = dict(label=label, status=status, annotator=_annotator(a),
                      created_at=_time(a.get("updated_at") or a.get("created_at")) or utcnow())
        if ls_row is None:
            new.append(LabelRow(id=None, image_id=image_id, source=SOURCE, meta=meta, **values))
            outcome = "new"
        elif (any(getattr(ls_row, k) != v for k, v in values.items())
              or (ls_row.meta or {}) != meta):
            for k, v in values.items():
                setattr(ls_row, k, v)
            ls_row.meta = meta
            outcome = "updated"
        else:
            outcome = "unchanged"
        if status == "conflict":
            outcome = "conflict"
        elif status == "skipped":
            outcome = "skipped"
        if outcome != "conflict":
            setattr(report, outcome, getattr(report, outcome) + 1)
    for r in stale:
        if r.image_id not in seen:
            r = next(x for x in rows[r.image_id] if x.id == r.id)   # the row written back
            r.status, r.label = "cancelled", None
            r.meta = {**(r.meta or {}), "cancelled_at": utcnow().isoformat()}
            _restore(rows[r.image_id])
            report.cancelled += 1
    index.write_labels(new, [r for r in loaded if r != before[r.id]])
    return report
