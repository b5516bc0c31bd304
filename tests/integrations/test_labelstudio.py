"""Label Studio round trip against a real server (marked ``labelstudio``), plus offline units.

Server tests need ``.ci/labelstudio.sh start`` (or LABEL_STUDIO_URL/API_KEY); they skip
without one, and fail under CI=true.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from helpers import bare_scorer
from PIL import Image as PILImage
from sqlalchemy import func, select

from curate.db.models import Image, Label, LabelStudioTask, Score, Selection, SelectionItem
from curate.errors import CurateError, ServiceError
from curate.integrations.labelstudio import (Credentials, annotation_label, classification_config,
                                             connect, credentials, export_tasks, image_url_builder,
                                             parse_config, pull_annotations, push_selection)
from curate.workspace import init_workspace

ls = pytest.mark.labelstudio
COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def choice(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


def write_images(root: Path, n_per_class: int = 4, sub: str = "pool") -> dict[Path, str]:
    """PNG files whose colour tells their class: {path: class}."""
    out = {}
    for k, (name, rgb) in enumerate(COLORS.items()):
        for i in range(n_per_class):
            p = root / sub / f"{name}_{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            shade = tuple(min(255, c + 6 * i) for c in rgb)
            PILImage.new("RGB", (16, 16), shade).save(p)
            out[p] = name
    return out


def orm_workspace(tmp_path: Path, paths: list[Path], labels: dict[Path, str] | None = None,
                  source: str = "folder"):
    """A workspace whose index holds ``paths`` as ok images and one selection of all of them."""
    ws = init_workspace(tmp_path / "ws")
    index = ws.open_index()
    with index.session() as s:
        rows = [Image(path=str(p.resolve()), sha256=hashlib.sha256(p.read_bytes()).hexdigest(),
                      bytes=p.stat().st_size, width=16, height=16, mode="RGB", status="ok") for p in paths]
        s.add_all(rows)
        s.flush()
        for p, r in zip(paths, rows):
            if labels and p in labels:
                s.add(Label(image_id=r.id, label=labels[p], source=source))
        sel = Selection(strategy="kcenter", budget=len(rows))
        s.add(sel)
        s.flush()
        s.add_all(SelectionItem(selection_id=sel.id, image_id=r.id, rank=k + 1, score=1.0 / (k + 1))
                  for k, r in enumerate(rows))
        ids = [r.id for r in rows]
    return ws, index, ids


def task_map(index, project_id: int) -> dict[int, int]:
    with index.session() as s:
        return dict(s.execute(select(LabelStudioTask.image_id, LabelStudioTask.task_id)
                              .where(LabelStudioTask.project_id == project_id)).all())


def server_curate_ids(client, project_id: int) -> list[int]:
    return [t.data["curate_id"] for t in client.tasks.list(project=project_id, page_size=1000,
                                                           fields="task_only")]


def labels_of(index, source="label-studio") -> dict[int, Label]:
    with index.session() as s:
        return {r.image_id: r for r in s.scalars(select(Label).where(Label.source == source))}


def run_cli(args: list[str], ws) -> "click.testing.Result":  # noqa: F821
    from curate.cli import main

    return CliRunner().invoke(main, ["-w", str(ws.root), *args], catch_exceptions=False)


# ---------------------------------------------------------------- offline units

def test_classification_config_is_valid_and_escaped():
    info = parse_config(classification_config(["cat", 'a "b" & <c>']))
    assert info.image_name == "image" and info.choices_control == "label"
    assert info.classes == ["cat", 'a "b" & <c>']
    with pytest.raises(CurateError, match="no classes"):
        classification_config([])


@pytest.mark.parametrize("xml, msg", [
    ("<View><Image name='i' value='$image'>", "well-formed"),
    ("<View><Image name='i' value='$img'/><Choices name='c' toName='i'/></View>", r"\$image"),
    ("<View><Image name='i' value='$image'/><Choices name='c' toName='other'/></View>", "no <Choices>"),
    ("<View><Image name='i' value='$image'/></View>", "no <Choices>"),
])
def test_custom_label_config_is_validated(xml, msg):
    with pytest.raises(CurateError, match=msg):
        parse_config(xml)


def test_labels_controls_and_multi_choice_results():
    info = parse_config("<View><Image name='im' value='$image'/><RectangleLabels name='box' toName='im'>"
                        "<Label value='car'/></RectangleLabels></View>")
    assert info.controls == {"box": "RectangleLabels"} and info.classes == ["car"]
    res = [{"from_name": "box", "value": {"rectanglelabels": ["car"]}},
           {"from_name": "box", "value": {"rectanglelabels": ["bus"]}},
           {"from_name": "other", "value": {"choices": ["x"]}}]
    assert annotation_label(res, info) == "car,bus"
    assert annotation_label([], info) is None


def test_image_urls(tmp_path):
    paths = [str(tmp_path / "a" / "x y.png")]
    f, mode = image_url_builder("auto", paths, tmp_path)
    assert mode == "local-files" and f(paths[0]) == "/data/local-files/?d=a/x%20y.png"
    f, mode = image_url_builder("auto", paths, tmp_path, "http://h/imgs/")
    assert mode == "base-url" and f(paths[0]) == "http://h/imgs/a/x%20y.png"
    f, mode = image_url_builder("auto", ["s3://b/k.png", "gs://b/k2.png"])
    assert mode == "as-is" and f("s3://b/k.png") == "s3://b/k.png"
    with pytest.raises(CurateError, match="outside the document root"):
        image_url_builder("local-files", ["/elsewhere/a.png"], tmp_path)[0]("/elsewhere/a.png")
    with pytest.raises(CurateError, match="document root"):
        image_url_builder("local-files", paths)


def test_credentials_env_then_config_and_private_files(tmp_path, monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    ws = init_workspace(tmp_path / "ws")
    with pytest.raises(CurateError, match="no Label Studio URL"):
        credentials(ws)
    cfg = ws.root / "curate.toml"
    cfg.write_text(cfg.read_text() + '\n[labelstudio]\nurl = "http://ls:8080"\napi_key = "s3cret-key"\n')
    cfg.chmod(0o644)
    from curate.workspace import find_workspace

    with pytest.raises(CurateError, match="readable by others") as e:
        credentials(find_workspace(ws.root))
    assert "s3cret-key" not in str(e.value)
    cfg.chmod(0o600)
    c = credentials(find_workspace(ws.root))
    assert (c.url, c.api_key) == ("http://ls:8080", "s3cret-key") and "s3cret" not in repr(c)
    keyfile = ws.root / "ls.key"
    keyfile.write_text("file-key\n")
    keyfile.chmod(0o640)
    cfg.write_text(cfg.read_text().replace('api_key = "s3cret-key"', 'api_key_file = "ls.key"'))
    with pytest.raises(CurateError, match="readable by others"):
        credentials(find_workspace(ws.root))
    keyfile.chmod(0o400)
    assert credentials(find_workspace(ws.root)).api_key == "file-key"
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "env-key")
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://env:1")
    c = credentials(find_workspace(ws.root))
    assert (c.url, c.api_key) == ("http://env:1", "env-key")


def test_unreachable_url_is_one_line(dead_url, tmp_path, monkeypatch):
    with pytest.raises(ServiceError, match="unreachable") as e:
        connect(Credentials(dead_url, "whatever"))
    assert "\n" not in str(e.value) and e.value.exit_code == 4
    ws = init_workspace(tmp_path / "ws")
    monkeypatch.setenv("LABEL_STUDIO_URL", dead_url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "secret-token-xyz")
    r = run_cli(["pull", "label-studio", "--project", "p1"], ws)
    assert r.exit_code == 4
    assert r.output.strip().count("\n") == 0 and "unreachable" in r.output
    assert "secret-token-xyz" not in r.output


# ---------------------------------------------------------------- against the server

@ls
def test_round_trip_with_real_commands(ls_env, ls_client, image_root, tmp_path, project_name):
    truth = write_images(image_root, n_per_class=5)
    ws = init_workspace(tmp_path / "ws")
    assert run_cli(["ingest", str(image_root / "pool")], ws).exit_code == 0
    r = run_cli(["embed", "--encoder", "pixels-pca", "--device", "cpu"], ws)
    assert r.exit_code == 0, r.output
    r = run_cli(["select", "--budget", "6", "--json"], ws)
    assert r.exit_code == 0, r.output
    first = json.loads(r.output)
    r = run_cli(["push", "label-studio", "--project", project_name, "--classes", "red,green,blue",
                 "--image-url-mode", "local-files", "--document-root", ls_env.document_root or "/",
                 "--json"], ws)
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["pushed"] == 6 and rep["project_created"]
    assert rep["server_env"]["LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED"] == "true"
    index = ws.open_index()
    tasks = task_map(index, rep["project_id"])
    assert len(tasks) == 6
    with index.session() as s:
        paths = dict(s.execute(select(Image.id, Image.path)).all())
    # the server serves the image through local-files (a storage was registered for it)
    task = ls_client.tasks.get(next(iter(tasks.values())))
    if ls_env.document_root:
        img = httpx.get(ls_env.url + task.data["image"],
                        headers={"Authorization": f"Token {ls_env.api_key}"}, timeout=10)
        assert img.status_code == 200 and img.content == Path(paths[task.data["curate_id"]]).read_bytes()
    # annotators label every task by its colour (as the UI would: one annotation per task)
    for image_id, task_id in tasks.items():
        ls_client.annotations.create(task_id, result=choice(truth[Path(paths[image_id])]), lead_time=1.5)
    r = run_cli(["pull", "label-studio", "--project", project_name, "--json"], ws)
    assert r.exit_code == 0, r.output
    pulled = json.loads(r.output)
    assert (pulled["new"], pulled["updated"], pulled["conflict_count"]) == (6, 0, 0)
    got = labels_of(index)
    assert {i: g.label for i, g in got.items()} == {i: truth[Path(paths[i])] for i in tasks}
    assert all(g.status == "labeled" and g.annotator == "admin@example.com" for g in got.values())
    # the next selection treats them as labelled centres and never picks them again
    assert set(tasks) <= index.datapool_ids()
    r = run_cli(["select", "--budget", "6", "--json"], ws)
    assert r.exit_code == 0, r.output
    second = json.loads(r.output)
    assert not {p["image_id"] for p in second["picks"]} & set(tasks)
    assert second["params"]["n_centres"] >= 6 and first["selection_id"] != second["selection_id"]
    # rerun of pull: nothing changes
    again = json.loads(run_cli(["pull", "label-studio", "--project", project_name, "--json"], ws).output)
    assert (again["new"], again["updated"], again["unchanged"]) == (0, 0, 6)
    index.close()


@ls
def test_rerun_push_is_a_noop_and_chunks(ls_client, image_root, tmp_path, project_name):
    files = write_images(image_root, n_per_class=3)
    ws, index, ids = orm_workspace(tmp_path, list(files))
    rep = push_selection(index, ls_client, "latest", project_name, classes=list(COLORS),
                         image_url_mode="base-url", image_base_url="http://img.example",
                         document_root=image_root, chunk_size=4)
    assert (rep.pushed, rep.chunks, rep.already_pushed) == (9, 3, 0)
    again = push_selection(index, ls_client, "latest", project_name, image_url_mode="base-url",
                           image_base_url="http://img.example", document_root=image_root)
    assert (again.pushed, again.already_pushed, again.project_created) == (0, 9, False)
    assert sorted(server_curate_ids(ls_client, rep.project_id)) == sorted(ids)
    t = ls_client.tasks.get(task_map(index, rep.project_id)[ids[0]])
    assert t.data["image"] == "http://img.example/pool/red_0.png" and t.data["curate_rank"] == 1


@ls
def test_server_down_mid_push_then_rerun_completes(ls_server, tcp_proxy, image_root, tmp_path,
                                                   project_name, ls_client):
    files = write_images(image_root, n_per_class=3)
    ws, index, ids = orm_workspace(tmp_path, list(files))
    client = connect(Credentials(tcp_proxy.url, ls_server.api_key))
    with pytest.raises(ServiceError) as e:
        push_selection(index, client, "latest", project_name, classes=list(COLORS),
                       image_url_mode="as-is", chunk_size=3, on_chunk=lambda r: tcp_proxy.cut("down"))
    msg = str(e.value)
    assert "\n" not in msg and "3 of 9 tasks were pushed" in msg
    assert "unreachable" in msg or "dropped the connection" in msg
    pid = ls_client.projects.list(title=project_name).items[0].id
    assert len(task_map(index, pid)) == 3  # the record matches what the server holds
    assert len(server_curate_ids(ls_client, pid)) == 3
    rep = push_selection(index, ls_client, "latest", project_name, image_url_mode="as-is", chunk_size=3)
    assert (rep.already_pushed, rep.pushed, rep.recovered) == (3, 6, 0)
    assert sorted(server_curate_ids(ls_client, pid)) == sorted(ids)


@ls
def test_lost_answer_mid_push_is_recovered_without_duplicates(ls_server, tcp_proxy, image_root,
                                                             tmp_path, project_name, ls_client):
    files = write_images(image_root, n_per_class=3)
    ws, index, ids = orm_workspace(tmp_path, list(files))
    client = connect(Credentials(tcp_proxy.url, ls_server.api_key))
    with pytest.raises(ServiceError, match="3 of 9 tasks were pushed"):
        push_selection(index, client, "latest", project_name, classes=list(COLORS),
                       image_url_mode="as-is", chunk_size=3, on_chunk=lambda r: tcp_proxy.cut("drop"))
    pid = ls_client.projects.list(title=project_name).items[0].id
    assert len(task_map(index, pid)) == 3
    assert len(server_curate_ids(ls_client, pid)) == 6  # chunk 2 landed, its answer was lost
    rep = push_selection(index, ls_client, "latest", project_name, image_url_mode="as-is", chunk_size=3)
    assert (rep.recovered, rep.already_pushed, rep.pushed) == (3, 6, 3)
    on_server = server_curate_ids(ls_client, pid)
    assert sorted(on_server) == sorted(ids)  # no duplicates
    assert task_map(index, pid).keys() == set(ids)


@ls
def test_wrong_token_is_one_line_401(ls_server, tmp_path, monkeypatch):
    with pytest.raises(ServiceError, match="401") as e:
        connect(Credentials(ls_server.url, "0" * 40))
    assert "\n" not in str(e.value) and e.value.exit_code == 4
    ws = init_workspace(tmp_path / "ws")
    monkeypatch.setenv("LABEL_STUDIO_URL", ls_server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "wrong-token-abcdef")
    r = run_cli(["push", "label-studio", "--project", "anything"], ws)
    assert r.exit_code == 4 and r.output.count("\n") == 1
    assert "401" in r.output and "wrong-token-abcdef" not in r.output


@ls
def test_personal_access_token_works(ls_server, ls_client):
    from curate.integrations.labelstudio_client import connect as connect_

    from label_studio_sdk.core.api_error import ApiError

    try:
        pat = ls_client.tokens.create().token
    except ApiError as e:  # 409: the user already holds one (a reused server); the SDK lists it truncated
        pytest.skip(f"cannot create a personal access token (HTTP {e.status_code}); needs a fresh server")
    client = connect_(Credentials(ls_server.url, pat))
    assert client._client_wrapper._tokens_client._use_legacy_token is False  # Bearer scheme
    assert client.users.whoami().email == "admin@example.com"


@ls
def test_existing_project_without_our_classes_warns(ls_client, image_root, tmp_path, project_name):
    files = write_images(image_root, n_per_class=1)
    ws, index, ids = orm_workspace(tmp_path, list(files))
    ls_client.projects.create(title=project_name, label_config=classification_config(["cat", "red"]))
    rep = push_selection(index, ls_client, "latest", project_name, classes=["red", "green", "blue"],
                         image_url_mode="as-is")
    assert rep.pushed == 3 and not rep.project_created
    assert any("green, blue" in w for w in rep.warnings)
    bad = f"{project_name}-text"
    ls_client.projects.create(title=bad, label_config="<View><Text name='t' value='$text'/>"
                              "<Choices name='c' toName='t'><Choice value='a'/></Choices></View>")
    with pytest.raises(CurateError, match=r"no <Image value=\"\$image\">"):
        push_selection(index, ls_client, "latest", bad, image_url_mode="as-is")


@ls
def test_custom_label_config_is_checked_before_creating(ls_client, image_root, tmp_path, project_name):
    files = write_images(image_root, n_per_class=1)
    ws, index, _ = orm_workspace(tmp_path, list(files))
    with pytest.raises(CurateError, match="well-formed"):
        push_selection(index, ls_client, "latest", project_name, label_config="<View><Image",
                       image_url_mode="as-is")
    assert not [p for p in ls_client.projects.list(title=project_name)]
    xml = ("<View><Image name='img' value='$image'/><Choices name='kind' toName='img' choice='multiple'>"
           "<Choice value='red'/><Choice value='warm'/></Choices></View>")
    rep = push_selection(index, ls_client, "latest", project_name, label_config=xml, image_url_mode="as-is")
    assert rep.project_created and rep.pushed == 3
    tid = task_map(index, rep.project_id)
    first = min(tid)
    ls_client.annotations.create(tid[first], result=[
        {"from_name": "kind", "to_name": "img", "type": "choices", "value": {"choices": ["red", "warm"]}}])
    pull_annotations(index, ls_client, project_name)
    assert labels_of(index)[first].label == "red,warm"


@ls
def test_updated_annotation_replaces_older_and_skips_and_cancels(ls_client, image_root, tmp_path,
                                                                 project_name):
    files = write_images(image_root, n_per_class=1)
    ws, index, ids = orm_workspace(tmp_path, list(files))
    rep = push_selection(index, ls_client, "latest", project_name, classes=list(COLORS), image_url_mode="as-is")
    tid = task_map(index, rep.project_id)
    a, b, c = ids
    ann = ls_client.annotations.create(tid[a], result=choice("green"))
    ls_client.annotations.create(tid[b], result=[], was_cancelled=True)      # "Skip" in the UI
    ls_client.annotations.create(tid[c], result=choice("blue"))
    r1 = pull_annotations(index, ls_client, rep.project_id)
    assert (r1.new, r1.skipped, r1.updated) == (2, 1, 0)
    got = labels_of(index)
    assert got[a].label == "green" and got[b].status == "skipped" and got[b].label is None
    assert got[b].meta["reason"] == "cancelled"
    ls_client.annotations.update(ann.id, result=choice("red"))              # the annotator fixes it
    second = ls_client.annotations.create(tid[c], result=choice("green"))   # a newer annotation
    ls_client.annotations.create(tid[c], result=[], was_cancelled=True)     # cancelled: ignored
    r2 = pull_annotations(index, ls_client, project_name)
    assert (r2.new, r2.updated, r2.unchanged, r2.skipped) == (0, 2, 0, 1)
    got = labels_of(index)
    assert got[a].label == "red" and got[c].label == "green"
    assert got[c].meta["annotation_id"] == second.id
    ls_client.annotations.delete(second.id)                                 # back to the older one
    ls_client.annotations.delete(ann.id)                                    # task a: no annotation
    r3 = pull_annotations(index, ls_client, project_name)
    assert (r3.updated, r3.cancelled) == (1, 1)
    got = labels_of(index)
    assert got[c].label == "blue" and got[a].status == "cancelled" and got[a].label is None


@ls
def test_conflict_with_folder_label_is_reported_not_overwritten(ls_env, ls_client, image_root, tmp_path,
                                                                project_name):
    files = write_images(image_root, n_per_class=1)
    paths = list(files)
    ws, index, ids = orm_workspace(tmp_path, paths, labels={p: files[p] for p in paths})
    rep = push_selection(index, ls_client, "latest", project_name, image_url_mode="as-is")  # classes from index
    assert rep.project_created
    tid = task_map(index, rep.project_id)
    red, green, _ = ids
    ls_client.annotations.create(tid[red], result=choice("blue"))    # contradicts folder "red"
    ls_client.annotations.create(tid[green], result=choice("green"))  # agrees
    r = pull_annotations(index, ls_client, project_name)
    assert (r.new, len(r.conflicts)) == (1, 1)
    assert r.conflicts[0]["existing"] == {"folder": "red"} and r.conflicts[0]["label_studio"] == "blue"
    folder = labels_of(index, "folder")
    assert folder[red].label == "red" and folder[red].status == "labeled"
    assert labels_of(index)[red].status == "conflict"
    r = pull_annotations(index, ls_client, project_name, prefer="label-studio")
    assert len(r.conflicts) == 1 and r.conflicts[0]["kept"] == "label-studio"
    assert labels_of(index)[red].status == "labeled" and labels_of(index)[red].label == "blue"
    assert labels_of(index, "folder")[red].status == "overridden"
    pull_annotations(index, ls_client, project_name)   # back to the default: existing wins again
    assert labels_of(index, "folder")[red].status == "labeled"
    assert labels_of(index)[red].status == "conflict"
    r = run_cli(["pull", "label-studio", "--project", project_name], ws)
    assert r.exit_code == 0 and "1 conflicts" in r.output and "folder: red" in r.output


@ls
def test_predictions_carry_novelty_scores(ls_client, image_root, tmp_path, project_name):
    files = write_images(image_root, n_per_class=1)
    paths = list(files)
    ws, index, ids = orm_workspace(tmp_path, paths, labels={paths[0]: "red"})
    with index.session() as s:
        sc = bare_scorer(s, "knn")
        s.add_all([Score(scorer_id=sc, image_id=i, score=0.1 * (k + 1)) for k, i in enumerate(ids[:2])])
    with pytest.raises(CurateError, match="no scorer named 'nope'; have: knn"):
        push_selection(index, ls_client, "latest", project_name, classes=list(COLORS),
                       image_url_mode="as-is", predictions="nope")
    rep = push_selection(index, ls_client, "latest", project_name, classes=list(COLORS),
                         image_url_mode="as-is", predictions="knn")
    assert rep.predictions == 2
    tid = task_map(index, rep.project_id)
    t0 = ls_client.tasks.get(tid[ids[0]])
    preds = ls_client.predictions.list(task=t0.id)
    assert len(preds) == 1 and preds[0].model_version == "knn" and preds[0].score == pytest.approx(0.1)
    assert preds[0].result[0]["value"]["choices"] == ["red"]  # pre-annotation from the folder label
    assert ls_client.predictions.list(task=tid[ids[2]]) == []


@ls
def test_token_never_in_output_or_index(ls_env, ls_client, image_root, tmp_path, project_name):
    files = write_images(image_root, n_per_class=1)
    ws, index, ids = orm_workspace(tmp_path, list(files))
    out = []
    for args in (["push", "label-studio", "--project", project_name, "--classes", "red,green,blue",
                  "--image-url-mode", "as-is"],
                 ["push", "label-studio", "--project", project_name, "--json", "--image-url-mode", "as-is"]):
        r = run_cli(args, ws)
        assert r.exit_code == 0, r.output
        out.append(r.output)
    pid = ls_client.projects.list(title=project_name).items[0].id
    for tid in task_map(index, pid).values():
        ls_client.annotations.create(tid, result=choice("red"))
    for args in (["pull", "label-studio", "--project", project_name],
                 ["pull", "label-studio", "--project", str(pid), "--json"],
                 ["export", "--format", "labelstudio-json", "--image-url-mode", "as-is"]):
        r = run_cli(args, ws)
        assert r.exit_code == 0, r.output
        out.append(r.output)
    index.close()
    key = ls_env.api_key
    assert all(key not in o for o in out)
    for f in ws.data_dir.rglob("*"):
        if f.is_file():
            assert key.encode() not in f.read_bytes(), f
    assert len(labels_of(ws.open_index())) == 3


@ls
def test_export_snapshot_reads_all_annotated_tasks(ls_client, image_root, tmp_path, project_name):
    files = write_images(image_root, n_per_class=2)
    ws, index, ids = orm_workspace(tmp_path, list(files))
    rep = push_selection(index, ls_client, "latest", project_name, classes=list(COLORS), image_url_mode="as-is")
    tid = task_map(index, rep.project_id)
    for i in ids[:4]:
        ls_client.annotations.create(tid[i], result=choice("red"))
    tasks = export_tasks(ls_client, rep.project_id)
    assert sorted(t["data"]["curate_id"] for t in tasks) == sorted(ids[:4])
    assert ls_client.projects.exports.list(rep.project_id) == []  # snapshot cleaned up
    with index.session() as s:
        assert s.scalar(select(func.count()).select_from(LabelStudioTask)) == len(ids)
