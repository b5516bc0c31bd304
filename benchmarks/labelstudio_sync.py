"""Benchmark: push 5,000 tasks to and pull 5,000 annotations from a local Label Studio.

Needs a server: ``.ci/labelstudio.sh start`` (the env file is read) or
LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY. Reports wall seconds and the number of HTTP
requests (counted with an httpx event hook) for:

- push: 5,000 tasks of one selection into a new project (chunks of ``--chunk-size``);
- push again: the idempotent rerun (nothing to push);
- pull: 5,000 annotated tasks (one annotation each) through an export snapshot;
- pull again: nothing changed.

Community Label Studio has no bulk "annotate existing tasks" endpoint, so the pull
project is set up by importing 5,000 tasks with their annotations inline (carrying
``curate_id`` like pushed tasks); pull reads it exactly as it would read annotator work.
Saves ``benchmarks/results/labelstudio_sync.json``.

Usage: python benchmarks/labelstudio_sync.py [--n 5000] [--chunk-size 500] [--keep]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import shlex
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["red", "green", "blue"]


def server_env() -> tuple[str, str]:
    env = dict(os.environ)
    f = Path(os.environ.get("LS_ENV_FILE", REPO / ".ci" / ".labelstudio" / "env"))
    if f.is_file():
        for line in f.read_text().splitlines():
            if line.startswith("export "):
                k, _, v = line[7:].partition("=")
                env.setdefault(k, shlex.split(v)[0])
    if not (env.get("LABEL_STUDIO_URL") and env.get("LABEL_STUDIO_API_KEY")):
        sys.exit("no Label Studio server: run .ci/labelstudio.sh start or set LABEL_STUDIO_URL/API_KEY")
    return env["LABEL_STUDIO_URL"], env["LABEL_STUDIO_API_KEY"]


class Counter:
    def __init__(self):
        self.by_kind: collections.Counter = collections.Counter()

    def __call__(self, request: httpx.Request) -> None:
        path = re.sub(r"/\d+", "/{id}", request.url.path)
        self.by_kind[f"{request.method} {path}"] += 1

    def take(self) -> tuple[int, dict]:
        total, kinds = sum(self.by_kind.values()), dict(self.by_kind)
        self.by_kind.clear()
        return total, kinds


def build_index(root: Path, n: int):
    """A workspace with ``n`` distinct tiny PNGs ingested and one selection of them all."""
    import numpy as np
    from PIL import Image

    from curate.ingest import ingest
    from curate.workspace import init_workspace

    ws = init_workspace(root / "ws")
    index = ws.open_index()
    for i in range(n):
        f = root / "imgs" / f"{i // 1000:03d}" / f"img_{i:06d}.png"
        f.parent.mkdir(parents=True, exist_ok=True)
        px = np.frombuffer(i.to_bytes(4, "little") * 12, np.uint8).reshape(4, 4, 3)
        Image.fromarray(px).save(f)
    ingest(index, [root / "imgs"])
    ids = [i for i, _ in index.image_paths()]
    index.add_selection(strategy="kcenter", params={}, embedding_set_id=None, budget=n,
                        versions={}, items=[(i, k + 1, 1.0) for k, i in enumerate(ids)])
    return index, ids


def annotated_project(client, title: str, ids: list[int], root: Path) -> int:
    from curate.integrations.labelstudio import classification_config

    p = client.projects.create(title=title, label_config=classification_config(CLASSES))
    tasks = [{"data": {"image": f"http://img.invalid/{i}.png", "curate_id": i},
              "annotations": [{"result": [{"from_name": "label", "to_name": "image", "type": "choices",
                                           "value": {"choices": [CLASSES[i % 3]]}}]}]} for i in ids]
    for k in range(0, len(tasks), 1000):
        client.projects.import_tasks(p.id, request=tasks[k:k + 1000])
    return p.id


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--chunk-size", type=int, default=500)
    ap.add_argument("--keep", action="store_true", help="keep the two projects on the server")
    args = ap.parse_args()

    from curate.integrations.labelstudio import (Credentials, connect, pull_annotations,
                                                 push_selection)
    from curate.integrations.labelstudio_client import DEFAULT_TIMEOUT

    url, key = server_env()
    counter = Counter()
    client = connect(Credentials(url, key),
                     httpx_client=httpx.Client(timeout=DEFAULT_TIMEOUT, follow_redirects=True,
                                               event_hooks={"request": [counter]}))
    counter.take()
    tag = uuid.uuid4().hex[:6]
    results: dict = {"n": args.n, "chunk_size": args.chunk_size, "steps": {}}
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        index, ids = build_index(root, args.n)

        def step(name, fn):
            t0 = time.perf_counter()
            out = fn()
            secs = time.perf_counter() - t0
            total, kinds = counter.take()
            results["steps"][name] = {"seconds": round(secs, 2), "requests": total, "by_request": kinds}
            print(f"{name:<12} {secs:8.2f} s {total:6d} requests", flush=True)
            return out

        push_title = f"bench-push-{tag}"
        rep = step("push", lambda: push_selection(index, client, "latest", push_title, classes=CLASSES,
                                                   image_url_mode="base-url",
                                                   image_base_url="http://img.invalid",
                                                   document_root=root, chunk_size=args.chunk_size))
        assert rep.pushed == args.n, rep
        rep2 = step("push again", lambda: push_selection(index, client, "latest", push_title,
                                                         image_url_mode="base-url",
                                                         image_base_url="http://img.invalid",
                                                         document_root=root))
        assert rep2.pushed == 0 and rep2.already_pushed == args.n
        t0 = time.perf_counter()
        pull_pid = annotated_project(client, f"bench-pull-{tag}", ids, root)
        results["setup_annotated_project_seconds"] = round(time.perf_counter() - t0, 2)
        counter.take()
        pr = step("pull", lambda: pull_annotations(index, client, pull_pid))
        assert pr.new == args.n, pr
        pr2 = step("pull again", lambda: pull_annotations(index, client, pull_pid))
        assert pr2.unchanged == args.n, pr2
        index.close()
        if not args.keep:
            client.projects.delete(rep.project_id)
            client.projects.delete(pull_pid)
    from importlib.metadata import version

    from curate.provenance import versions

    try:
        server_version = client.versions.get().release
    except Exception:  # noqa: BLE001
        server_version = None
    results.update({"label_studio_server": server_version,
                    "label_studio_sdk": version("label-studio-sdk"), "versions": versions(),
                    "machine": f"{platform.machine()} {os.cpu_count()} cpus", "server": "local 127.0.0.1"})
    out = REPO / "benchmarks" / "results" / "labelstudio_sync.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
