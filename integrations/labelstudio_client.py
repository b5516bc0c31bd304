"""Connecting to Label Studio: credentials, the SDK client, one-line errors, projects.

Credentials: ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` from the environment, else
the workspace config ``[labelstudio] url``, ``api_key`` (in ``curate.toml``) or
``api_key_file`` (a file holding only the key). A config file holding the key must not be
readable by group/others (``mode & 0o077 == 0``), else it is refused.

Both legacy tokens and personal access tokens work: ``LabelStudio(base_url, api_key)``
sends ``Authorization: Token <key>`` for a non-JWT key and, for a JWT personal access
(refresh) token, exchanges it at ``/api/token/refresh/`` and sends ``Bearer <access>``
(label_studio_sdk 2.x ``tokens/client_ext.py``, ``core/client_wrapper.py``).
The key is never printed, logged or stored; errors name the URL and the HTTP status only.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx

from curate.errors import CurateError, ServiceError

DEFAULT_TIMEOUT = httpx.Timeout(300.0, connect=10.0)


@dataclass(frozen=True)
class Credentials:
    url: str
    api_key: str

    def __repr__(self) -> str:  # never show the key
        return f"Credentials(url={self.url!r}, api_key=<hidden>)"


_SECRETS: set[str] = set()  # keys seen by credentials(): redacted from every message
_PATTERNS = [
    (re.compile(r"(?i)\b(token|bearer|basic)(\s+|=|:\s*)[A-Za-z0-9._~+/=-]{6,}"), r"\1\2***"),
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\"',}\s]+(\s+[^\"',}\s]+)?"), r"\1***"),
    (re.compile(r"(?i)([?&](?:token|api_key|apikey|key|access_token|refresh)=)[^&\s]+"), r"\1***"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@"), r"\1***@"),
]


def redact(text: Any) -> str:
    """``text`` with credentials removed: every API key seen, ``Token``/``Bearer``/
    ``Authorization`` values, ``token=``-style query values and URL user parts."""
    s = str(text)
    for secret in _SECRETS:
        s = s.replace(secret, "***")
    for pat, sub in _PATTERNS:
        s = pat.sub(sub, s)
    return s


def _check_url(url: str) -> str:
    """The URL without a trailing slash, or a one-line CurateError when it cannot be parsed."""
    shown = redact(url)
    if not url.startswith(("http://", "https://")):
        raise CurateError(f"Label Studio URL must start with http:// or https://, got {shown!r}")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as e:
        raise CurateError(f"bad Label Studio URL {shown!r}: {redact(e)}") from None
    if not parts.hostname:
        raise CurateError(f"bad Label Studio URL {shown!r}: no host name")
    if parts.password:
        _SECRETS.add(parts.password)
    if parts.username:
        _SECRETS.add(parts.username)
    return url.rstrip("/")


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & 0o077:
        raise CurateError(
            f"{path} holds the Label Studio API key but is readable by others "
            f"(mode {stat.filemode(mode)}); run `chmod 600 {path}` or use LABEL_STUDIO_API_KEY")


def credentials(workspace=None, url: str | None = None) -> Credentials:
    """Find the server URL and API key (environment first, then the workspace config)."""
    cfg: dict[str, Any] = {}
    cfg_path = None
    if workspace is not None:
        cfg = workspace.config.get("labelstudio", {}) or {}
        cfg_path = Path(workspace.root) / "curate.toml"
    url = url or os.environ.get("LABEL_STUDIO_URL") or cfg.get("url")
    if not url:
        raise CurateError("no Label Studio URL: set LABEL_STUDIO_URL or [labelstudio] url in curate.toml")
    key = os.environ.get("LABEL_STUDIO_API_KEY")
    if not key and cfg.get("api_key"):
        _check_private(cfg_path)
        key = str(cfg["api_key"])
    if not key and cfg.get("api_key_file"):
        kf = Path(str(cfg["api_key_file"])).expanduser()
        if not kf.is_absolute() and cfg_path is not None:
            kf = cfg_path.parent / kf
        if not kf.is_file():
            raise CurateError(f"[labelstudio] api_key_file {kf} does not exist")
        _check_private(kf)
        key = kf.read_text().strip()
    if not key:
        raise CurateError("no Label Studio API key: set LABEL_STUDIO_API_KEY (or [labelstudio] "
                          "api_key_file in curate.toml, a file only you can read)")
    if len(key.strip()) >= 4:
        _SECRETS.add(key.strip())
    return Credentials(url=_check_url(url), api_key=key.strip())


def base_url(client) -> str:
    try:
        return redact(client._client_wrapper.get_base_url())
    except AttributeError:
        return "Label Studio"


def _one_line(text: Any, limit: int = 200) -> str:
    s = " ".join(redact(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


@contextlib.contextmanager
def service(url: str, action: str) -> Iterator[None]:
    """Turn SDK/httpx failures inside the block into one-line :class:`ServiceError`s."""
    from label_studio_sdk.core.api_error import ApiError

    url = redact(url)
    try:
        yield
    except CurateError as e:
        if redact(e) != str(e):
            raise type(e)(redact(e), e.exit_code) from None
        raise
    except ApiError as e:
        code = e.status_code
        if code in (401, 403):
            raise ServiceError(f"Label Studio at {url} refused the API key (HTTP {code}) while "
                               f"{action}; check LABEL_STUDIO_API_KEY") from None
        body = e.body if isinstance(e.body, dict) else {"detail": e.body}
        detail = body.get("validation_errors") or body.get("detail") or body
        raise ServiceError(f"Label Studio at {url} answered HTTP {code} while {action}: "
                           f"{_one_line(detail)}") from None
    except httpx.ConnectError:
        raise ServiceError(f"Label Studio at {url} is unreachable (connection refused) while "
                           f"{action}") from None
    except (httpx.NetworkError, httpx.RemoteProtocolError) as e:
        raise ServiceError(f"Label Studio at {url} dropped the connection while {action} "
                           f"({type(e).__name__})") from None
    except httpx.TimeoutException:
        raise ServiceError(f"Label Studio at {url} timed out while {action}") from None
    except (httpx.HTTPError, OSError) as e:
        raise ServiceError(f"Label Studio at {url} failed while {action}: "
                           f"{type(e).__name__}: {_one_line(e)}") from None


def connect(creds: Credentials, *, httpx_client: httpx.Client | None = None, check: bool = True):
    """An SDK client for ``creds``; with ``check``, one request verifies URL and key.

    ``httpx_client`` (optional) lets callers add event hooks (request counting) or
    transports; by default a client with a 10 s connect / 300 s read timeout is used.
    """
    from label_studio_sdk import LabelStudio

    with service(creds.url, "connecting"):
        client = LabelStudio(base_url=creds.url, api_key=creds.api_key,
                             httpx_client=httpx_client or httpx.Client(timeout=DEFAULT_TIMEOUT,
                                                                       follow_redirects=True))
        if check:
            client.users.whoami()
    return client


def find_project(client, project: int | str, *, must_exist: bool = True):
    """The project with this id (int or digits) or exact title; None if absent and allowed."""
    from label_studio_sdk.core.api_error import ApiError

    url = base_url(client)
    key = str(project).strip()
    if key.isdigit():
        with service(url, f"reading project {key}"):
            try:
                return client.projects.get(int(key))
            except ApiError as e:
                if e.status_code != 404:
                    raise
        raise CurateError(f"no Label Studio project with id {key} at {url}")
    with service(url, f"looking up project {key!r}"):
        found = [p for p in client.projects.list(title=key, page_size=100) if p.title == key]
    if len(found) > 1:
        ids = ", ".join(str(p.id) for p in found)
        raise CurateError(f"{len(found)} Label Studio projects are titled {key!r} (ids {ids}); pass an id")
    if found:
        with service(url, f"reading project {found[0].id}"):
            return client.projects.get(found[0].id)
    if must_exist:
        raise CurateError(f"no Label Studio project titled {key!r} at {url}")
    return None
