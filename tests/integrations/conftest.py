"""Fixtures for tests against a real Label Studio server.

The server comes from ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` in the environment,
else from the env file written by ``.ci/labelstudio.sh start`` (``$LS_ENV_FILE``, default
``.ci/.labelstudio/env``). No server: tests marked ``labelstudio`` skip with the reason,
except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import tempfile
import threading
import uuid
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def _env_file_values() -> dict[str, str]:
    path = Path(os.environ.get("LS_ENV_FILE", REPO / ".ci" / ".labelstudio" / "env"))
    out: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line.startswith("export "):
                key, _, value = line[len("export "):].partition("=")
                out[key] = shlex.split(value)[0] if value else ""
    return out


class Server:
    def __init__(self, url: str, api_key: str, document_root: str | None):
        self.url, self.api_key, self.document_root = url.rstrip("/"), api_key, document_root

    def __repr__(self) -> str:
        return f"Server({self.url})"


@pytest.fixture(scope="session")
def ls_server() -> Server:
    fromfile = _env_file_values()
    url = os.environ.get("LABEL_STUDIO_URL") or fromfile.get("LABEL_STUDIO_URL")
    key = os.environ.get("LABEL_STUDIO_API_KEY") or fromfile.get("LABEL_STUDIO_API_KEY")
    root = (os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
            or fromfile.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"))
    ci = os.environ.get("CI", "").lower() == "true"
    why = None
    if not (url and key):
        why = "no Label Studio server: set LABEL_STUDIO_URL/LABEL_STUDIO_API_KEY or run .ci/labelstudio.sh start"
    else:
        try:
            r = httpx.get(f"{url.rstrip('/')}/health", timeout=5)
            if r.status_code != 200:
                why = f"Label Studio at {url} answered /health with HTTP {r.status_code}"
        except httpx.HTTPError as e:
            why = f"Label Studio at {url} is unreachable: {type(e).__name__}"
    if why:
        if ci:
            pytest.fail(f"CI=true but {why}")
        pytest.skip(why)
    return Server(url, key, root)


@pytest.fixture
def ls_env(ls_server, monkeypatch) -> Server:
    """The server's credentials in the environment (as the CLI reads them)."""
    monkeypatch.setenv("LABEL_STUDIO_URL", ls_server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls_server.api_key)
    if ls_server.document_root:
        monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", ls_server.document_root)
    return ls_server


@pytest.fixture
def ls_client(ls_server):
    from curate.integrations.labelstudio import Credentials, connect

    return connect(Credentials(ls_server.url, ls_server.api_key))


@pytest.fixture
def project_name(request) -> str:
    return f"c-{request.node.name.removeprefix('test_')[:36]}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def image_root(ls_server):
    """A folder below the server's local-files document root (tmp when it has none)."""
    base = ls_server.document_root
    if base and Path(base).is_dir():
        d = Path(tempfile.mkdtemp(prefix="curate-test-", dir=base))
    else:
        d = Path(tempfile.mkdtemp(prefix="curate-test-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


class TcpProxy:
    """A local TCP proxy to cut mid-push: ``up``, ``down`` (refuse) or ``drop``.

    ``drop`` forwards requests but swallows the answers and closes the connection, as a
    server that dies after committing the work but before replying.
    """

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.mode = "up"
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.mode == "down":
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, answers: bool) -> None:
        try:
            while data := src.recv(65536):
                if answers and self.mode != "up":
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def cut(self, mode: str = "down") -> None:
        self.mode = mode
        if mode == "down":
            self.listener.close()
            with self.lock:
                for s in self.conns:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def close(self) -> None:
        self.cut("down")


@pytest.fixture
def tcp_proxy(ls_server):
    u = httpx.URL(ls_server.url)
    proxy = TcpProxy(u.host, u.port or 80)
    yield proxy
    proxy.close()


@pytest.fixture
def dead_url() -> str:
    """A URL where nothing listens."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"
