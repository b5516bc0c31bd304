"""Selection exports: CSV / Parquet / JSON writers and Label Studio import JSON."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from curate.db.models import Image, Label, Selection, SelectionItem
from curate.errors import CurateError
from curate.export import (COLUMNS, labelstudio_task, labelstudio_tasks, selection_frame, write_frame,
                           write_labelstudio_json, write_selection)
from curate.workspace import init_workspace

ROWS = pd.DataFrame({"rank": [2, 1, 3], "image_id": [7, 3, 9], "path": ["/d/b.png", "/d/a.png", "/d/c.png"],
                     "score": [0.5, float("nan"), 0.25], "label": [None, "cat", None]})


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".json"])
def test_write_selection_roundtrips_by_suffix(tmp_path, suffix):
    path = write_selection(ROWS, tmp_path / f"sel{suffix}")
    if suffix == ".csv":
        back = pd.read_csv(path)
    elif suffix == ".parquet":
        back = pd.read_parquet(path)
    else:
        back = pd.DataFrame(json.loads(path.read_text()))
    assert list(back.columns) == COLUMNS
    assert back["rank"].tolist() == [1, 2, 3]          # sorted by rank
    assert back["image_id"].tolist() == [3, 7, 9]
    assert back["path"].tolist() == ["/d/a.png", "/d/b.png", "/d/c.png"]
    assert pd.isna(back["score"][0]) and back["score"][1] == 0.5
    assert back["label"][0] == "cat" and pd.isna(back["label"][1])


def test_json_uses_null_for_missing_score(tmp_path):
    recs = json.loads(write_selection(ROWS, tmp_path / "s.json").read_text())
    assert recs[0]["score"] is None and recs[0]["label"] == "cat"


def test_missing_optional_columns_are_added(tmp_path):
    df = ROWS[["rank", "image_id", "path"]]
    back = pd.read_csv(write_selection(df, tmp_path / "s.csv"))
    assert list(back.columns) == COLUMNS and back["score"].isna().all()


def test_unknown_suffix_and_missing_columns_are_user_errors(tmp_path):
    with pytest.raises(CurateError, match="format"):
        write_selection(ROWS, tmp_path / "s.xlsx")
    with pytest.raises(CurateError, match="image_id"):
        write_selection(ROWS.drop(columns=["image_id"]), tmp_path / "s.csv")


def test_labelstudio_tasks_carry_curate_id(tmp_path):
    tasks = labelstudio_tasks(ROWS, lambda p: "http://h/" + p.rsplit("/", 1)[1])
    assert tasks[0] == {"data": {"image": "http://h/a.png", "curate_id": 3, "curate_rank": 1}}
    path = write_labelstudio_json(ROWS, tmp_path / "t.json", lambda p: p)
    assert [t["data"]["curate_id"] for t in json.loads(path.read_text())] == [3, 7, 9]
    # the one task builder (push uses it too): the selection id when the rows have one
    assert labelstudio_tasks(ROWS, str, selection_id=4)[0]["data"]["curate_selection"] == 4
    rows = ROWS.copy()
    rows.attrs["selection_id"] = 5
    assert {t["data"]["curate_selection"] for t in labelstudio_tasks(rows, str)} == {5}
    assert labelstudio_task("u", 3, 1, 2) == {"data": {"image": "u", "curate_id": 3, "curate_rank": 1,
                                                        "curate_selection": 2}}


@pytest.fixture
def ws_with_selection(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    index = ws.open_index()
    with index.session() as s:
        for i in range(4):      # export skips images whose file is gone: these exist
            (tmp_path / f"img{i}.png").write_bytes(b"png")
        imgs = [Image(path=str(tmp_path / f"img{i}.png"), status="ok") for i in range(4)]
        s.add_all(imgs)
        s.flush()
        s.add_all([Label(image_id=imgs[0].id, label="cat", source="folder"),
                   Label(image_id=imgs[0].id, label="dog", source="label-studio"),
                   Label(image_id=imgs[1].id, label=None, source="label-studio", status="skipped")])
        for n in (1, 2):
            sel = Selection(strategy="kcenter", budget=2)
            s.add(sel)
            s.flush()
            s.add_all([SelectionItem(selection_id=sel.id, image_id=imgs[2 * (n - 1) + k].id, rank=k + 1,
                                     score=0.1 * (k + 1)) for k in range(2)])
    yield ws, index
    index.close()


def test_selection_frame_latest_and_by_id(ws_with_selection):
    _, index = ws_with_selection
    sid, df = selection_frame(index, "latest")
    assert sid == 2 and df["rank"].tolist() == [1, 2]
    sid, df = selection_frame(index, 1)
    assert df["label"].tolist() == ["dog", None]  # label-studio beats folder; skipped is no label
    assert df.attrs["selection_id"] == sid == 1
    with pytest.raises(CurateError, match="no selection with id 99"):
        selection_frame(index, 99)
    with pytest.raises(CurateError, match="'latest'"):
        selection_frame(index, "newest")


def test_export_cli(ws_with_selection, tmp_path, monkeypatch):
    from curate.cli import main

    ws, _ = ws_with_selection
    monkeypatch.delenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", raising=False)
    r = CliRunner().invoke(main, ["-w", str(ws.root), "export", "--selection", "1"])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0] == ",".join(COLUMNS)
    out = tmp_path / "sel.parquet"
    r = CliRunner().invoke(main, ["-w", str(ws.root), "export", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert pd.read_parquet(out)["rank"].tolist() == [1, 2]
    r = CliRunner().invoke(main, ["-w", str(ws.root), "export", "--format", "labelstudio-json",
                                  "--image-url-mode", "base-url", "--image-base-url", "http://img/",
                                  "--document-root", str(tmp_path)])
    assert r.exit_code == 0, r.output
    tasks = json.loads(r.stdout)
    assert tasks[0]["data"]["image"] == "http://img/img2.png" and tasks[0]["data"]["curate_id"] == 3
    assert {t["data"]["curate_selection"] for t in tasks} == {2}  # as push sends them
    r = CliRunner().invoke(main, ["-w", str(ws.root), "export", "--format", "labelstudio-json"])
    assert r.exit_code == 2 and "document root" in r.output


def test_write_frame_formats(tmp_path):
    df = pd.DataFrame({"image_id": [1, 2], "score": [0.5, 0.1]})
    for suffix, reader in (("csv", pd.read_csv), ("parquet", pd.read_parquet), ("json", pd.read_json)):
        assert list(reader(write_frame(df, tmp_path / f"s.{suffix}"))["image_id"]) == [1, 2]
    with pytest.raises(CurateError, match="cannot tell the export format"):
        write_frame(df, tmp_path / "s.txt")
