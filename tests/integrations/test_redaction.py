"""Issue 11: the Label Studio token never reaches an error message (URL user part, a
server echoing request headers), and a malformed URL is a one-line error. Uses a local
http.server that echoes the request headers in a 400 body (no Label Studio needed)."""

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

TOKEN = "s3cr3t-token-0123456789abcdef"


class _Echo(BaseHTTPRequestHandler):
    def _answer(self):
        body = json.dumps({"detail": f"bad request, headers were: {dict(self.headers)}"}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *a):
        pass


@pytest.fixture
def echo_server():
    srv = HTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{srv.server_port}"
    srv.shutdown()


def _cli(*args, cwd, env):
    return subprocess.run([sys.executable, "-m", "curate", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, **env})


@pytest.mark.parametrize("where", ["header", "url-user"])
def test_token_is_redacted_from_errors(tmp_path, echo_server, where):
    assert _cli("init", tmp_path / "ws", cwd=tmp_path, env={}).returncode == 0
    env = {"LABEL_STUDIO_API_KEY": TOKEN, "LABEL_STUDIO_URL": f"http://{echo_server}"}
    if where == "url-user":
        env["LABEL_STUDIO_URL"] = f"http://admin:{TOKEN}@{echo_server}"
        env["LABEL_STUDIO_API_KEY"] = "other-key-987654321"
    r = _cli("-w", tmp_path / "ws", "pull", "label-studio", "--project", "p", cwd=tmp_path, env=env)
    assert r.returncode == 4, r.stderr
    assert "HTTP 400" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert TOKEN not in r.stderr + r.stdout and "other-key-987654321" not in r.stderr + r.stdout
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("url", ["http://[::1", "http://host:notaport/", "http://"])
def test_malformed_url_is_one_line(tmp_path, url):
    assert _cli("init", tmp_path / "ws", cwd=tmp_path, env={}).returncode == 0
    r = _cli("-w", tmp_path / "ws", "pull", "label-studio", "--project", "p", cwd=tmp_path,
             env={"LABEL_STUDIO_URL": url, "LABEL_STUDIO_API_KEY": TOKEN})
    assert r.returncode == 2 and "bad Label Studio URL" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and TOKEN not in r.stderr, r.stderr


def test_redact_patterns():
    from curate.integrations.labelstudio_client import redact

    text = ('{"Authorization": "Token abcdefghijkl"} Bearer eyJ0eXAi.eyJzdWIi.sig '
            "http://me:pw123456@h/x?token=zzzzzz&page=2")
    out = redact(text)
    for secret in ("abcdefghijkl", "eyJ0eXAi", "pw123456", "zzzzzz"):
        assert secret not in out, out
    assert "page=2" in out and "http://***@h/x" in out
