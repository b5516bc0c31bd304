"""``curate embed --ray ADDRESS``: the forward passes on a Ray cluster (Ray Data).

The driver plans as the local path does (:func:`curate.embed._plan`: model row, fitted
encoder state, embedding-set row, damaged shards, which images are missing), then
streams the missing ``(image_id, path)`` rows through ``Dataset.map_batches`` with a pool
of encoder actors, one per CPU slot (or per GPU). Each call gets one block of at most
``shard_size`` rows, loads and encodes them in loader batches, and writes them as one
shard with its rows through :func:`curate.embeddings.append_shard` in one transaction,
so the store and the index are exactly those of the local path and everything
downstream is unchanged.

Resumable and idempotent: a shard's rows are committed after its file is renamed into
place, and ``append_shard`` leaves out images that already have a row (under the set's
lock). A killed actor is restarted by Ray and its call retried (Ray Data's defaults:
``max_restarts=-1``, ``max_task_retries=-1``); a killed driver takes its job's actors
with it, and a rerun embeds only what has no row yet.

Every worker must reach the index (PostgreSQL; a SQLite file only when the whole
cluster is this one machine) and see the image paths and the workspace's data folder at
the same paths (a shared filesystem). Cost: as the local path, divided over the actors;
the driver holds only ids and paths.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import time
from pathlib import Path

import numpy as np

from curate.errors import CurateError, ServiceError

INSTALL_HINT = 'pip install "curate[ray]"'


def require_ray():
    """Import Ray, or a one-line CurateError saying what to install."""
    try:
        import ray  # noqa: PLC0415
        import ray.data  # noqa: F401, PLC0415
    except ImportError:
        raise CurateError(f"--ray needs Ray Data, which is not installed: {INSTALL_HINT}") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str):
    """Connect to the cluster at ``address`` (``auto``, ``host:port``, ``ray://...``) or
    start a one-machine cluster (``local``); reuse an already connected session as is.
    Only a session started here is shut down on exit."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    _probe(address)
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
        raise ServiceError(f"cannot reach the Ray cluster at {address!r}: "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _probe(address: str, timeout: float = 5.0) -> None:
    """A one-line ServiceError when ``HOST:PORT`` (or ``ray://HOST:PORT``) does not answer:
    Ray itself would retry for minutes."""
    hostport = address.removeprefix("ray://")
    if address in ("auto", "local") or ":" not in hostport:
        return
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except ValueError:
        raise CurateError(f"bad Ray address {address!r}; use auto, local, HOST:PORT or "
                          "ray://HOST:PORT") from None
    except OSError as e:
        raise ServiceError(f"cannot reach the Ray cluster at {address!r}: "
                           f"{e.strerror or type(e).__name__}") from None


def _cluster_nodes(ray) -> list[str]:
    """IP addresses of the cluster's alive nodes."""
    return sorted({n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")})


def sqlite_reachable(nodes: list[str], here: str) -> bool:
    """Whether workers on ``nodes`` (IP addresses) can share a SQLite file on ``here``."""
    return set(nodes) == {here}


def check_cluster(index, address: str) -> None:
    """Refuse, in one line, a SQLite index on a cluster that is not this machine alone:
    its workers could not reach the file. A ``local`` cluster is always this machine."""
    if index.dialect != "sqlite" or address == "local":
        return
    with ray_session(address) as ray:
        nodes = _cluster_nodes(ray)
        here = ray.util.get_node_ip_address()
    if not sqlite_reachable(nodes, here):
        raise CurateError(f"the Ray cluster at {address!r} has {len(nodes)} machine(s) "
                          f"({', '.join(nodes[:3])}) and the index is a SQLite file its workers "
                          "cannot reach; put the index in PostgreSQL (--db postgresql+psycopg://...)")


class EmbedActor:
    """One encoder on one CPU slot or GPU; ``__call__`` embeds a block and stores it as a shard.

    Input block: ``{"image_id": int64[n], "path": str[n]}``. Output: one row with how many
    rows were stored, how many another run had stored already, and the ids whose file
    was missing (marked rejected, as the local path does).
    """

    def __init__(self, encoder, db_url: str, set_name: str, folder: str, device: str,
                 loader_kw: dict):
        import torch  # noqa: PLC0415

        from curate.db.index import open_index  # noqa: PLC0415

        self.dev = torch.device(device)
        self.enc = encoder.to(self.dev)
        self.folder = Path(folder)
        if not self.folder.parent.parent.is_dir():  # the workspace's data folder
            raise CurateError(f"the data folder {self.folder.parent.parent} is not visible on this "
                              "Ray worker; the embedding store must be on a shared filesystem")
        self.index = open_index(db_url, migrate=False)
        self.es, self.loader_kw = self.index.embedding_set(set_name), loader_kw

    def __call__(self, block: dict) -> dict:
        from curate.data import ImageRecord  # noqa: PLC0415
        from curate.embed import encode_records, mark_missing  # noqa: PLC0415
        from curate.embeddings import append_shard  # noqa: PLC0415

        records = [ImageRecord(int(i), str(p)) for i, p in zip(block["image_id"], block["path"])]
        ids, zs, missing = [], [], []
        for i, z, miss, _n in encode_records(self.enc, records, self.dev, self.loader_kw):
            ids.append(i)
            zs.append(z)
            missing += miss
        ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
        X = np.concatenate(zs) if zs else np.empty((0, self.enc.dim), np.float32)
        added = append_shard(self.index, self.es, ids, X, self.folder) if len(ids) else 0
        mark_missing(self.index, missing)
        return {"rows": np.array([len(records)]), "added": np.array([added]),
                "encoded": np.array([len(ids)]),
                "missing": np.array([np.array([r.id for r in missing], np.int64)], dtype=object)}


def _resources(ray, device: str, actors: int | None) -> tuple[str, dict, int]:
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), int(res.get("CPU", 0))
    if device.startswith("cuda") and not gpus:
        raise CurateError("--device cuda asked for, but the Ray cluster has no GPU")
    if gpus and device != "cpu":
        return "cuda", {"num_gpus": 1}, actors or gpus
    if cpus < 1:
        raise CurateError("the Ray cluster has no CPU to run encoders on")
    return "cpu", {"num_cpus": 1}, actors or cpus


def _cause(e: BaseException) -> CurateError | None:
    """The CurateError inside a Ray error chain, if any (Ray wraps user exceptions)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, CurateError):
            return CurateError(str(e).splitlines()[-1].split("CurateError: ")[-1], e.exit_code)
        e = getattr(e, "cause", None) or e.__cause__ or e.__context__
    return None


def embed_on_ray(index, plan, address: str, device: str = "auto", shard_size: int = 10000,
                 actors: int | None = None, num_workers: int | None = None, progress=None):
    """Run ``plan`` (from :func:`curate.embed._plan`) on the Ray cluster at ``address``.

    ``device``: ``auto`` (one actor per GPU when the cluster has GPUs, else one per CPU
    slot), ``cpu`` or ``cuda``; ``actors`` overrides the number of actors.

    Blocks (= shards) hold ``min(shard_size, ceil(n / (4 * actors)))`` images, at least a
    loader batch, so every actor gets work. Returns the plan's EmbedReport, filled in.
    """
    import pandas as pd  # noqa: PLC0415

    report, todo = plan.report, plan.todo
    with ray_session(address) as ray:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        dev, res, n_actors = _resources(ray, device, actors)
        report.device = f"ray:{dev} x{n_actors}"
        per = max(1, min(shard_size, max(plan.loader_kw["batch_size"],
                                         math.ceil(len(todo) / (4 * n_actors)))))
        df = pd.DataFrame({"image_id": np.array([r.id for r in todo], dtype=np.int64),
                           "path": [r.path for r in todo]})
        ds = ray.data.from_pandas([df.iloc[i:i + per] for i in range(0, len(df), per)])
        loader_kw = {**plan.loader_kw, "num_workers": num_workers or 0,
                     "pin_memory": dev == "cuda"}
        out = ds.map_batches(EmbedActor, batch_size=None, batch_format="numpy",
                             compute=ray.data.ActorPoolStrategy(size=n_actors),
                             zero_copy_batch=True,
                             fn_constructor_kwargs=dict(
                                 encoder=plan.enc,
                                 db_url=index.engine.url.render_as_string(hide_password=False),
                                 set_name=plan.es.name, folder=str(plan.folder), device=dev,
                                 loader_kw=loader_kw), **res)
        paths = {r.id: r.path for r in todo}
        t0, seen = time.perf_counter(), 0
        try:
            for b in out.iter_batches(batch_size=None, batch_format="numpy"):
                for rows, added, encoded, missing in zip(b["rows"], b["added"], b["encoded"],
                                                         b["missing"]):
                    report.embedded += int(added)
                    report.already += int(encoded) - int(added)
                    report.missing_files += [paths[int(i)] for i in missing]
                    seen += int(rows)
                if progress:
                    progress(seen, len(todo))
        except Exception as e:  # noqa: BLE001 - Ray wraps what the actors raised
            err = _cause(e)
            if err is None:
                raise
            raise err from None
        report.seconds = time.perf_counter() - t0
    return report
