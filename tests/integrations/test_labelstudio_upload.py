"""`push label-studio` in upload mode against a real Label Studio server: the image files go
through Label Studio's own import endpoint (no local-files serving, no document root), the
tasks still carry curate_id, and pull maps the annotations back (issue 13).

Server tests need ``.ci/labelstudio.sh start`` (or LABEL_STUDIO_URL/API_KEY); they skip
without one, and fail under CI=true.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image as PILImage
from sqlalchemy import select

from curate.db.models import Image, Label, LabelStudioTask
from curate.integrations.labelstudio import pull_annotations, push_selection
from curate.integrations.labelstudio_upload import image_id_of, upload_images, upload_name
from curate.workspace import init_workspace

ls = pytest.mark.labelstudio
COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def choice(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


def write_images(root: Path, n_per_class: int = 2, shift: int = 0) -> dict[Path, str]:
    """Colour-coded images {path: class}, outside any Label Studio document root; the
    blue ones are TIFF (sent as PNG) and one name has a space."""
    out = {}
    for name, rgb in COLORS.items():
        for i in range(n_per_class):
            p = root / "pool" / (f"{name} {i}.tif" if name == "blue" else f"{name}_{i}.png")
            p.parent.mkdir(parents=True, exist_ok=True)
            PILImage.new("RGB", (16, 16), tuple(min(255, c + 9 * i + shift) for c in rgb)).save(p)
            out[p] = name
    return out


def run_cli(args: list[str], ws):
    from curate.cli import main

    return CliRunner().invoke(main, ["-w", str(ws.root), *args], catch_exceptions=False)


def task_map(index, project_id: int) -> dict[int, int]:
    with index.session() as s:
        return dict(s.execute(select(LabelStudioTask.image_id, LabelStudioTask.task_id)
                              .where(LabelStudioTask.project_id == project_id)).all())


def fetch(server, url: str) -> bytes:
    r = httpx.get(server.url + url, headers={"Authorization": f"Token {server.api_key}"}, timeout=20)
    assert r.status_code == 200, (url, r.status_code)
    return r.content


def pixels(data: bytes | Path) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(data) if isinstance(data, bytes) else data).convert("RGB"))


def uploads(client, project_id: int) -> list[str]:
    return [f.file for f in client.files.list(id=project_id, all_=True)]


# ---------------------------------------------------------------- offline units

def test_upload_names_carry_the_image_id():
    assert upload_name(12, "/d/red 0.png") == "curate12-red_0.png"
    assert upload_name(7, "/d/scan.TIFF") == "curate7-scan.png"          # sent as PNG
    assert upload_name(3, "/d/a.JPG") == "curate3-a.jpg"
    assert image_id_of("/data/upload/4/0a1b2c3d-curate12-red_0.png") == 12
    assert image_id_of("upload/4/0a1b2c3d-curate12-red_0.png") == 12
    assert image_id_of("/data/upload/4/0a1b2c3d-red_0.png") is None       # not ours
    assert image_id_of("/data/local-files/?d=pool/curate12-x.png") is None
    assert image_id_of(5) is None


# ---------------------------------------------------------------- real server

@ls
def test_upload_round_trip_with_real_commands(ls_env, ls_client, tmp_path, project_name, monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", raising=False)  # nothing configured
    truth = write_images(tmp_path / "imgs")
    ws = init_workspace(tmp_path / "ws")
    assert run_cli(["ingest", str(tmp_path / "imgs" / "pool")], ws).exit_code == 0
    assert run_cli(["embed", "--encoder", "pixels-pca", "--device", "cpu"], ws).exit_code == 0
    r = run_cli(["select", "--budget", "6", "--strategy", "random", "--json"], ws)
    assert r.exit_code == 0, r.output
    sel = json.loads(r.output)["selection_id"]
    # auto with no document root and no base URL: the files are uploaded
    r = run_cli(["push", "label-studio", "--project", project_name, "--classes", "red,green,blue",
                 "--json"], ws)
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert (rep["mode"], rep["pushed"], rep["uploaded"]) == ("upload", 6, 6)
    assert rep["server_env"] == {} and rep["storages"] == []
    pid = rep["project_id"]
    index = ws.open_index()
    tasks = task_map(index, pid)
    with index.session() as s:
        paths = dict(s.execute(select(Image.id, Image.path)).all())
    assert len(tasks) == 6 and len(uploads(ls_client, pid)) == 6
    for image_id, task_id in tasks.items():
        data = ls_client.tasks.get(task_id).data
        assert data["curate_id"] == image_id and data["curate_selection"] == sel
        assert data["image"].startswith(f"/data/upload/{pid}/") and image_id_of(data["image"]) == image_id
        served = fetch(ls_env, data["image"])  # Label Studio serves the uploaded file itself
        local = Path(paths[image_id])
        if local.suffix == ".png":
            assert served == local.read_bytes()
        else:  # TIFF was sent as PNG: same pixels
            assert served[:8] == b"\x89PNG\r\n\x1a\n" and (pixels(served) == pixels(local)).all()
    # annotators label each task by its colour; pull brings the labels into the index
    for image_id, task_id in tasks.items():
        ls_client.annotations.create(task_id, result=choice(truth[Path(paths[image_id])]))
    r = run_cli(["pull", "label-studio", "--project", project_name, "--json"], ws)
    assert r.exit_code == 0, r.output
    pulled = json.loads(r.output)
    assert (pulled["new"], pulled["unmatched"], pulled["conflict_count"]) == (6, 0, 0)
    with index.session() as s:
        got = dict(s.execute(select(Label.image_id, Label.label).where(Label.source == "label-studio")).all())
    assert got == {i: truth[Path(paths[i])] for i in tasks}
    # a rerun pushes and uploads nothing; the text output names the mode
    r = run_cli(["push", "label-studio", "--project", project_name], ws)
    assert r.exit_code == 0 and "0 tasks pushed" in r.output and "0 image file(s) uploaded" in r.output
    assert len(uploads(ls_client, pid)) == 6
    # the report after the round trip: the pulled labels are on the page, every image decodes
    r = run_cli(["report", "--out", str(tmp_path / "report.html")], ws)
    assert r.exit_code == 0, r.output
    html = (tmp_path / "report.html").read_text()
    assert all(f">{label}<" in html for label in set(got.values()))
    thumbs = re.findall(r'src="data:image/(?:jpeg|png);base64,([^"]+)"', html)
    assert len(thumbs) >= 7   # the 6 picks and the map
    for b64 in thumbs:
        PILImage.open(io.BytesIO(base64.b64decode(b64))).load()
    index.close()


@ls
def test_interrupted_upload_is_reused_not_sent_twice(ls_client, tmp_path, project_name):
    truth = write_images(tmp_path / "imgs", n_per_class=1)
    ws = init_workspace(tmp_path / "ws")
    index = ws.open_index()
    from curate.ingest import ingest

    ingest(index, [tmp_path / "imgs" / "pool"])
    with index.session() as s:
        ids = sorted(s.scalars(select(Image.id)))
    from curate.db.models import Selection, SelectionItem

    with index.session() as s:
        sel = Selection(strategy="random", budget=len(ids))
        s.add(sel)
        s.flush()
        s.add_all(SelectionItem(selection_id=sel.id, image_id=i, rank=k + 1) for k, i in enumerate(ids))
    first = push_selection(index, ls_client, "latest", project_name, classes=list(COLORS),
                           image_url_mode="upload", chunk_size=1)  # creates the project
    assert (first.pushed, first.uploaded, first.chunks) == (3, 3, 3)
    # a push that died after sending the files of 2 new images but before their tasks
    more = write_images(tmp_path / "more", n_per_class=1, shift=5)
    ingest(index, [tmp_path / "more" / "pool"], batch="more")
    with index.session() as s:
        new = sorted(set(s.scalars(select(Image.id))) - set(ids))
        paths = dict(s.execute(select(Image.id, Image.path)).all())
        sel = Selection(strategy="random", budget=len(new))
        s.add(sel)
        s.flush()
        s.add_all(SelectionItem(selection_id=sel.id, image_id=i, rank=k + 1) for k, i in enumerate(new))
    sent, n = upload_images(ls_client, first.project_id, [(i, paths[i]) for i in new[:2]])
    assert n == 2 and len(uploads(ls_client, first.project_id)) == 5
    again = push_selection(index, ls_client, "latest", project_name, image_url_mode="upload")
    assert (again.pushed, again.uploaded) == (3, 1)  # 2 files reused, 1 sent
    assert len(uploads(ls_client, first.project_id)) == 6
    tid = task_map(index, first.project_id)
    for i in new[:2]:
        assert ls_client.tasks.get(tid[i]).data["image"] == sent[i]
    assert len(truth) + len(more) == len(tid) == 6
    index.close()


@ls
def test_tasks_made_by_label_studio_from_our_files_map_back_by_name(ls_client, tmp_path, project_name):
    """Files imported as bare images (Label Studio makes tasks holding only the image, as when
    the files are dropped into its UI): pull maps them back by the upload name."""
    truth = write_images(tmp_path / "imgs", n_per_class=1)
    ws = init_workspace(tmp_path / "ws")
    index = ws.open_index()
    from curate.ingest import ingest
    from curate.integrations.labelstudio import classification_config

    ingest(index, [tmp_path / "imgs" / "pool"])
    with index.session() as s:
        paths = dict(s.execute(select(Image.id, Image.path)).all())
    proj = ls_client.projects.create(title=project_name, label_config=classification_config(list(COLORS)))
    files = {f"f{k}": (upload_name(i, p), Path(p).read_bytes() if p.endswith(".png") else
                       _png(p), "image/png") for k, (i, p) in enumerate(paths.items())}
    r = ls_client._client_wrapper.httpx_client.request(
        f"api/projects/{proj.id}/import", method="POST", params={"return_task_ids": "true"}, files=files)
    assert r.status_code == 201, r.text
    task_ids = r.json()["task_ids"]
    assert len(task_ids) == 3
    for tid in task_ids:
        t = ls_client.tasks.get(tid)
        assert "curate_id" not in t.data and image_id_of(t.data["image"]) in paths
        ls_client.annotations.create(tid, result=choice(truth[Path(paths[image_id_of(t.data["image"])])]))
    rep = pull_annotations(index, ls_client, proj.id)
    assert (rep.new, rep.unmatched) == (3, 0)
    with index.session() as s:
        got = dict(s.execute(select(Label.image_id, Label.label).where(Label.source == "label-studio")).all())
    assert got == {i: truth[Path(p)] for i, p in paths.items()}
    index.close()


def _png(path: str) -> bytes:
    buf = io.BytesIO()
    PILImage.open(path).save(buf, format="PNG")
    return buf.getvalue()
