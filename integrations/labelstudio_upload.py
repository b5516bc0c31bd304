"""Upload mode of ``push``: Label Studio stores the image files itself (no configuration).

Label Studio 1.x (tested with 1.23.2) keeps each file posted to ``POST
/api/projects/{id}/import`` (multipart) as a FileUpload named
``upload/<project>/<8 hex>-<file name>`` and serves it at ``/data/upload/...`` to users of
the project; no local-files serving, document root or storage is needed. A task that Label
Studio makes from a bare image file holds only ``{"image": "/data/upload/..."}``: no
``curate_id``. So the files are posted with ``commit_to_project=false`` (stored, no task)
and push then imports its own JSON tasks pointing at them, exactly as in the other modes
(``curate_id``, ``curate_rank``, ``curate_selection``, predictions), and pull maps them
back by ``curate_id``.

Upload names are ``curate<image id>-<file name>``: a rerun after an interrupted push finds
the files it already sent (one listing of the project's uploads) instead of sending them
again, and pull maps a task without ``curate_id`` back by that name (e.g. tasks made from
these files in the UI). Formats: Label Studio accepts .bmp .gif .jpg .jpeg .png .webp;
other images (TIFF) are sent as PNG. Requests per chunk of at most :data:`MAX_FILES` files
(Label Studio's ``DATA_UPLOAD_MAX_NUMBER_FILES`` default) and :data:`MAX_BYTES`: 1 upload
and 1 listing, then the tasks' import. For tens of thousands of images prefer the
local-files or base-url modes (no copy of every file into Label Studio's media folder).
"""

from __future__ import annotations

import io
import json
import mimetypes
import re
from pathlib import Path
from urllib.parse import urlsplit

from curate.errors import CurateError
from curate.integrations.labelstudio_client import base_url, service

MAX_FILES = 100          # Label Studio: DATA_UPLOAD_MAX_NUMBER_FILES (default 100 per request)
MAX_BYTES = 100 << 20    # well under its DATA_UPLOAD_MAX_MEMORY_SIZE (250 MB)
ACCEPTED = (".bmp", ".gif", ".jpg", ".jpeg", ".png", ".webp")  # of Label Studio's SUPPORTED_EXTENSIONS
UPLOADED = re.compile(r"(?:^|/)[0-9a-f]{8}-curate(\d+)-[^/]*$")
_UNSAFE = re.compile(r"[^-\w.]")


def upload_name(image_id: int, path: str) -> str:
    """``curate<id>-<name>`` with characters Django would rewrite replaced (PNG for
    formats Label Studio does not accept)."""
    p = Path(path)
    suffix = p.suffix.lower() if p.suffix.lower() in ACCEPTED else ".png"
    return f"curate{int(image_id)}-{_UNSAFE.sub('_', p.stem)[:80]}{suffix}"


def image_id_of(value) -> int | None:
    """Our image id from an uploaded file's name or URL (``.../<8 hex>-curate<id>-...``)."""
    if not isinstance(value, str):
        return None
    m = UPLOADED.search(value.split("?", 1)[0])
    return int(m.group(1)) if m else None


def _payload(path: str) -> bytes:
    if Path(path).suffix.lower() in ACCEPTED:
        return Path(path).read_bytes()
    from curate.imageio import load_image

    buf = io.BytesIO()
    load_image(path).save(buf, format="PNG")
    return buf.getvalue()


def _url(client, file: str) -> str:
    """The task URL of an uploaded file (as Label Studio's own tasks: ``/data/upload/...``,
    behind the server's path prefix when it is served below one)."""
    if file.startswith(("/", "http://", "https://")):
        return file
    prefix = urlsplit(client._client_wrapper.get_base_url()).path.rstrip("/")
    return f"{prefix}/data/{file}"


def existing_uploads(client, project_id: int) -> dict[int, tuple[str, int | None]]:
    """image id -> (task URL, size) of files this user uploaded to the project before."""
    with service(base_url(client), f"listing uploaded files of project {project_id}"):
        files = client.files.list(id=project_id, all_=True)
    out: dict[int, tuple[str, int | None]] = {}
    for f in files:
        i = image_id_of(f.file)
        if i is not None:
            out[i] = (_url(client, f.file), f.size)
    return out


def _post(client, project_id: int, batch: list[tuple[int, str, bytes]]) -> dict[int, str]:
    files = {f"file{k}": (name, data, mimetypes.guess_type(name)[0] or "application/octet-stream")
             for k, (_, name, data) in enumerate(batch)}
    url = base_url(client)
    from label_studio_sdk.core.api_error import ApiError

    with service(url, f"uploading {len(batch)} image file(s) to project {project_id}"):
        r = client._client_wrapper.httpx_client.request(
            f"api/projects/{project_id}/import", method="POST",
            params={"commit_to_project": "false"}, files=files,
            request_options={"max_retries": 0, "timeout_in_seconds": 600})
        if not 200 <= r.status_code < 300:
            try:
                body = r.json()
            except ValueError:
                body = r.text
            raise ApiError(status_code=r.status_code, headers=dict(r.headers), body=body)
        ids = r.json().get("file_upload_ids") or []
    with service(url, f"reading the names of {len(ids)} uploaded file(s)"):
        stored = client.files.list(id=project_id, ids=json.dumps([int(i) for i in ids]))
    got = {image_id_of(f.file): _url(client, f.file) for f in stored}
    missing = [i for i, _, _ in batch if i not in got]
    if missing:
        raise CurateError(f"Label Studio stored {len(got)} of {len(batch)} uploaded files "
                          f"(image ids {missing[:5]} missing); rerun push", exit_code=4)
    return {i: got[i] for i, _, _ in batch}


def upload_images(client, project_id: int, items: list[tuple[int, str]],
                  known: dict[int, tuple[str, int | None]] | None = None) -> tuple[dict[int, str], int]:
    """Task URLs for ``items`` ``(image_id, path)``, uploading those not in ``known``
    (:func:`existing_uploads`; a file whose size differs is sent again).
    Returns ``({image_id: url}, number of files uploaded)``."""
    urls: dict[int, str] = {}
    todo: list[tuple[int, str, bytes]] = []
    for image_id, path in items:
        data = _payload(path)
        prev = (known or {}).get(image_id)
        if prev is not None and prev[1] in (None, len(data)):
            urls[image_id] = prev[0]
        else:
            todo.append((image_id, upload_name(image_id, path), data))
    batch: list[tuple[int, str, bytes]] = []
    for item in todo:
        if batch and (len(batch) >= MAX_FILES or sum(len(b[2]) for b in batch) + len(item[2]) > MAX_BYTES):
            urls.update(_post(client, project_id, batch))
            batch = []
        batch.append(item)
    if batch:
        urls.update(_post(client, project_id, batch))
    return urls, len(todo)
