"""A self-contained fake Hugging Face Hub for tests (standard library only).

``LocalHub`` serves, on 127.0.0.1, the part of the Hub HTTP API that ``huggingface_hub`` 2.x and ``transformers``
call to create repos, push files (inline base64 and Git LFS "basic" transfers), read repo info / trees and download
files. The request and response shapes follow the installed client (``huggingface_hub/hf_api.py``,
``_commit_api.py``, ``lfs.py``, ``file_download.py``, ``utils/_http.py``).

The client reads ``HF_ENDPOINT`` when it is imported, so drive it from a subprocess with :func:`run_client`::

    with LocalHub() as hub:
        proc = run_client("from huggingface_hub import create_repo; create_repo('ns/m')", hub.url, tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert ".gitattributes" in hub.repo_files("ns/m")

Like the real Hub, a new repo starts with an "initial commit" holding a ``.gitattributes`` file.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
import secrets
import subprocess
import sys
import textwrap
import threading
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = ["LocalHub", "RequestRecord", "FileEntry", "Commit", "run_client", "client_env"]

REPO_TYPES = ("model", "dataset", "space")
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_THRESHOLD = 10_000  # bytes: "auto" mode sends files at least this big through Git LFS
LFS_SUFFIXES = (".safetensors", ".bin", ".png")
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"  # the client turns this 401 into HfHubHTTPError

GITATTRIBUTES = b"""*.bin filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.msgpack filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
"""


# ----------------------------------------------------------------------------------------------------------- records


class RequestRecord(NamedTuple):
    """One request the server answered: method, raw path (no query string), status (0 = connection dropped)."""

    method: str
    path: str
    status: int


class FileEntry(NamedTuple):
    """A file in a commit snapshot. ``sha`` is the sha256 for LFS files, the git blob sha1 for regular ones."""

    sha: str
    data: bytes
    is_lfs: bool

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def blob_id(self) -> str:
        """The git object id: of the content for a regular file, of the LFS pointer for an LFS file."""
        return git_blob_sha1(lfs_pointer(self.sha, len(self.data)) if self.is_lfs else self.data)


@dataclass
class Commit:
    oid: str
    title: str
    message: str
    parents: list[str]
    date: str
    files: dict[str, FileEntry]


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)  # name (also "refs/pr/N") -> commit oid
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    lfs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content
    pr_count: int = 0


@dataclass
class _Failure:
    method: str
    pattern: re.Pattern
    status: int
    remaining: int
    headers: dict


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None,
                 body: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = headers or {}
        self.body = body


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _repo_not_found() -> _HubError:
    return _HubError(404, "Repository not found", "RepoNotFound")


# ----------------------------------------------------------------------------------------------------------- server


class LocalHub:
    """A fake Hugging Face Hub on 127.0.0.1.

    Args:
        lfs_mode: what the preupload endpoint answers: ``"auto"`` (LFS for files of at least 10 kB or named
            ``*.safetensors`` / ``*.bin`` / ``*.png``, regular otherwise), ``"lfs"`` (always LFS) or ``"regular"``
            (always inline base64).
        required_token: if set, write requests (and reads of private repos) need ``Authorization: Bearer <token>``;
            a wrong or missing token gets a 401.
        username: the namespace for repos created without one, and the ``whoami`` name.
    """

    def __init__(self, lfs_mode: str = "auto", required_token: str | None = None, username: str = "testuser"):
        self.username = username
        self._lock = threading.RLock()
        self._counter = itertools.count()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url: str | None = None
        self.reset(lfs_mode, required_token)

    # ------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> str:
        if self._httpd is not None:
            return self.url  # type: ignore[return-value]
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                         name="LocalHub", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LocalHub:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------- test helpers

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the log of answered requests, oldest first."""
        with self._lock:
            return list(self._requests)

    def reset(self, lfs_mode: str = "auto", required_token: str | None = None) -> None:
        """The hub as a new ``LocalHub(lfs_mode, required_token)`` has it (__init__ calls this), on the same address:
        no repos, requests, failures, tokens or errors (for one hub shared by several tests, one after the other)."""
        if lfs_mode not in ("auto", "lfs", "regular"):
            raise ValueError(f"lfs_mode must be 'auto', 'lfs' or 'regular', not {lfs_mode!r}")
        with self._lock:
            self.lfs_mode, self.required_token = lfs_mode, required_token
            self.tokens: set[str] = set()  # every bearer token seen
            self.errors: list[str] = []  # tracebacks of server-side bugs (answered with 500)
            self._requests: list[RequestRecord] = []
            self._failures: list[_Failure] = []
            self._repos: dict[tuple[str, str], _Repo] = {}
            self._upload_tickets: set[tuple[str, str, str]] = set()

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def fail(self, method: str, path_regex: str, status: int, times: int = 1, headers: dict | None = None) -> None:
        """Answer the next ``times`` requests whose method is ``method`` (``"*"``: any) and whose raw path (no query
        string) matches ``path_regex`` (``re.search``) with ``status`` and a JSON ``{"error": ...}`` body.
        ``status=0`` closes the connection without answering. ``headers`` are added (e.g. ``Retry-After``)."""
        with self._lock:
            self._failures.append(_Failure(method.upper(), re.compile(path_regex), status, times, dict(headers or {})))

    def create_repo(self, repo_id: str, *, private: bool = False, repo_type: str = "model") -> None:
        """Create a repo server-side (with its initial commit), as POST /api/repos/create would."""
        with self._lock:
            self._create_repo(repo_type, repo_id, private)

    def commit_files(self, repo_id: str, files: dict[str, bytes], *, revision: str = "main", repo_type: str = "model",
                     message: str = "Seed files", lfs: bool | None = None) -> str:
        """Commit ``files`` server-side (LFS per ``lfs_mode`` unless ``lfs`` is given); returns the commit oid."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            ops = []
            for path, data in files.items():
                is_lfs = self._wants_lfs(path, len(data)) if lfs is None else lfs
                if is_lfs:
                    sha = hashlib.sha256(data).hexdigest()
                    repo.lfs[sha] = data
                    ops.append(("add", path, FileEntry(sha, data, True)))
                else:
                    ops.append(("add", path, FileEntry(git_blob_sha1(data), data, False)))
            return self._apply_commit(repo, revision, message, "", ops).oid

    def repo_files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        with self._lock:
            commit = self._resolve(self._get_repo(repo_type, repo_id), revision)
            return {path: entry.data for path, entry in sorted(commit.files.items())}

    def commits(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> list[Commit]:
        """The history reachable from ``revision``, newest first (like ``HfApi.list_repo_commits``)."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            return self._history(repo, self._resolve(repo, revision))

    def branches(self, repo_id: str, repo_type: str = "model") -> dict[str, str]:
        with self._lock:
            return dict(self._get_repo(repo_type, repo_id).branches)

    def is_private(self, repo_id: str, repo_type: str = "model") -> bool:
        with self._lock:
            return self._get_repo(repo_type, repo_id).private

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        with self._lock:
            return (repo_type, repo_id) in self._repos

    # ------------------------------------------------------------------------------------------- state (lock held)

    def _get_repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise _repo_not_found()
        return repo

    def _create_repo(self, repo_type: str, repo_id: str, private: bool) -> _Repo:
        if (repo_type, repo_id) in self._repos:
            raise _HubError(409, f"You already created this {repo_type} repo", body={
                "error": f"You already created this {repo_type} repo", "url": self._repo_url(repo_type, repo_id)})
        repo = _Repo(repo_type, repo_id, private, _now())
        self._repos[(repo_type, repo_id)] = repo
        self._apply_commit(repo, "main", "initial commit", "",
                           [("add", ".gitattributes", FileEntry(git_blob_sha1(GITATTRIBUTES), GITATTRIBUTES, False))],
                           allow_new_branch=True)
        return repo

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.url}/{URL_PREFIXES[repo_type]}{repo_id}"

    def _wants_lfs(self, path: str, size: int) -> bool:
        if self.lfs_mode == "lfs":
            return True
        if self.lfs_mode == "regular":
            return False
        return size >= LFS_THRESHOLD or path.lower().endswith(LFS_SUFFIXES)

    def _resolve(self, repo: _Repo, revision: str) -> Commit:
        oid = repo.branches.get(revision) or repo.tags.get(revision)
        if oid is None and re.fullmatch(r"[0-9a-f]{7,40}", revision):
            matches = [c for c in repo.commits if c.startswith(revision)]
            oid = matches[0] if len(matches) == 1 else None
        if oid is None:
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[oid]

    def _history(self, repo: _Repo, commit: Commit) -> list[Commit]:
        history, seen = [], set()
        current: Commit | None = commit
        while current is not None and current.oid not in seen:  # first-parent walk; bounded by the commit count
            seen.add(current.oid)
            history.append(current)
            current = repo.commits.get(current.parents[0]) if current.parents else None
        return history

    def _apply_commit(self, repo: _Repo, branch: str, title: str, description: str, ops: list,
                      parent_commit: str | None = None, allow_new_branch: bool = False) -> Commit:
        head_oid = repo.branches.get(branch)
        if head_oid is None and not allow_new_branch:
            raise _HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        if parent_commit is not None and (head_oid is None or not head_oid.startswith(parent_commit)):
            raise _HubError(412, f"A commit has happened since. Please refresh and try again. (parent {parent_commit}"
                                 f" is not the head {head_oid} of {branch})")
        files = dict(repo.commits[head_oid].files) if head_oid else {}
        for kind, path, entry in ops:
            if kind == "add":
                files[path] = entry
            elif kind == "delete_file":
                if path not in files:
                    raise _HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del files[path]
            elif kind == "delete_folder":
                prefix = path.rstrip("/") + "/"
                doomed = [p for p in files if p.startswith(prefix)]
                if not doomed:
                    raise _HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in doomed:
                    del files[p]
        seed = json.dumps([head_oid, title, description, sorted((p, e.sha) for p, e in files.items()),
                           next(self._counter), _now()])
        oid = hashlib.sha1(seed.encode()).hexdigest()
        message = title + ("\n\n" + description if description else "")
        commit = Commit(oid, title, message, [head_oid] if head_oid else [], _now(), files)
        repo.commits[oid] = commit
        repo.branches[branch] = oid
        return commit

    # ------------------------------------------------------------------------------------------- JSON views

    def _entry_json(self, path: str, entry: FileEntry) -> dict:
        item = {"type": "file", "oid": entry.blob_id, "size": entry.size, "path": path}
        if entry.is_lfs:
            item["lfs"] = {"oid": entry.sha, "size": entry.size, "pointerSize": len(lfs_pointer(entry.sha, entry.size))}
        return item

    @staticmethod
    def _dir_json(path: str, files: dict[str, FileEntry]) -> dict:
        inside = sorted((p, e.sha) for p, e in files.items() if p.startswith(path + "/"))
        return {"type": "directory", "oid": hashlib.sha1(json.dumps(inside).encode()).hexdigest(), "size": 0,
                "path": path}

    def _info_json(self, repo: _Repo, commit: Commit) -> dict:
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sib = {"rfilename": path, "size": entry.size, "blobId": entry.blob_id}
            if entry.is_lfs:
                sib["lfs"] = {"sha256": entry.sha, "size": entry.size,
                              "pointerSize": len(lfs_pointer(entry.sha, entry.size))}
            siblings.append(sib)
        namespace = repo.repo_id.split("/")[0]
        info = {"_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id, "author": namespace,
                "sha": commit.oid, "lastModified": commit.date, "createdAt": repo.created_at,
                "private": repo.private, "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
                "siblings": siblings, "usedStorage": sum(e.size for e in commit.files.values())}
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
        return info

    # ------------------------------------------------------------------------------------------- request handling

    def _take_failure(self, method: str, path: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.remaining > 0 and failure.method in ("*", method) and failure.pattern.search(path):
                    failure.remaining -= 1
                    return failure
            self._failures = [f for f in self._failures if f.remaining > 0]
        return None

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._requests.append(RequestRecord(method, path, status))


class _Response:
    def __init__(self, status: int = 200, body: bytes | dict | list | None = None, headers: dict | None = None,
                 content_type: str | None = None, length: int | None = None):
        self.status = status
        self.headers = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            content_type = content_type or "application/json; charset=utf-8"
        self.body = body or b""
        self.length = len(self.body) if length is None else length
        if content_type:
            self.headers.setdefault("Content-Type", content_type)


class _Handler(BaseHTTPRequestHandler):
    hub: LocalHub
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections are closed after this many seconds
    server_version = "LocalHub/1.0"

    def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
        pass

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")

    # --------------------------------------------------------------------------------------------- plumbing

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        hub = self.hub
        split = urlsplit(self.path)
        raw_path, query = split.path, parse_qs(split.query, keep_blank_values=True)
        body = self._read_body()
        auth = self.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if token:
            with hub._lock:
                hub.tokens.add(token)
        failure = hub._take_failure(method, raw_path)
        if failure is not None:
            if failure.status == 0:
                hub._record(method, raw_path, 0)
                self.close_connection = True
                try:
                    self.connection.shutdown(2)
                except OSError:
                    pass
                return
            response = _Response(failure.status, {"error": f"Injected failure {failure.status} on {method} {raw_path}"},
                                 headers=failure.headers)
        else:
            try:
                response = _Router(hub, method, raw_path, query, body, token, self.headers).dispatch()
            except _HubError as err:
                headers = dict(err.headers)
                if err.code:
                    headers["X-Error-Code"] = err.code
                headers["X-Error-Message"] = err.message
                response = _Response(err.status, err.body or {"error": err.message}, headers=headers)
            except Exception:  # a bug in the fake hub: answer 500 and keep the traceback for the test
                with hub._lock:
                    hub.errors.append(traceback.format_exc())
                response = _Response(500, {"error": "LocalHub internal error"})
        hub._record(method, raw_path, response.status)  # before answering: a client that has its answer sees it
        self._send(method, response)

    def _send(self, method: str, response: _Response) -> None:
        self.send_response(response.status)
        for key, value in response.headers.items():  # header values must be latin-1
            self.send_header(key, str(value).encode("latin-1", "replace").decode("latin-1"))
        self.send_header("Content-Length", str(response.length))
        self.end_headers()
        if method != "HEAD" and response.body:
            self.wfile.write(response.body)
        self.wfile.flush()


class _Router:
    """Dispatches one request; holds the hub lock while it touches state."""

    def __init__(self, hub: LocalHub, method: str, raw_path: str, query: dict, body: bytes, token: str | None,
                 headers):
        self.hub, self.method, self.raw_path, self.query, self.body = hub, method, raw_path, query, body
        self.token, self.headers = token, headers
        self.segments = [s for s in raw_path.split("/") if s != ""]

    # ------------------------------------------------------------------------------------------- auth

    def _token_ok(self) -> bool:
        required = self.hub.required_token
        return self.token is not None and (required is None or self.token == required)

    def require_write(self) -> None:
        if self.hub.required_token is None or self.token == self.hub.required_token:
            return
        message = INVALID_CREDENTIALS if self.token else "Authorization header is missing"
        raise _HubError(401, message)

    def readable_repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self.hub._get_repo(repo_type, repo_id)
        if repo.private and not self._token_ok():
            raise _repo_not_found()
        return repo

    def json_body(self) -> dict:
        try:
            data = json.loads(self.body or b"{}")
        except ValueError:
            raise _HubError(400, "Invalid JSON body")
        if not isinstance(data, dict):
            raise _HubError(400, "Invalid JSON body")
        return data

    # ------------------------------------------------------------------------------------------- routing

    def dispatch(self) -> _Response:
        seg, m = self.segments, self.method
        with self.hub._lock:
            if seg[:1] == ["api"]:
                return self.dispatch_api(seg[1:])
            repo_type = "model"
            if seg[:1] in (["datasets"], ["spaces"]):
                repo_type, seg = seg[0][:-1], seg[1:]
            if len(seg) >= 5 and seg[1].endswith(".git") and seg[2:5] == ["info", "lfs", "objects"]:
                repo_id = unquote(seg[0]) + "/" + unquote(seg[1][:-4])
                rest = seg[5:]
                if rest == ["batch"] and m == "POST":
                    return self.lfs_batch(repo_type, repo_id)
                if rest == ["verify"] and m == "POST":
                    return self.lfs_verify(repo_type, repo_id)
                if len(rest) == 1 and m == "PUT":
                    return self.lfs_put(repo_type, repo_id, rest[0])
                if len(rest) == 1 and m in ("GET", "HEAD"):
                    return self.lfs_get(repo_type, repo_id, rest[0])
            if len(seg) >= 5 and seg[2] == "resolve" and m in ("GET", "HEAD"):
                repo_id = unquote(seg[0]) + "/" + unquote(seg[1])
                rev, path_segments = self.split_revision(seg[3:])
                return self.resolve(repo_type, repo_id, rev, "/".join(unquote(s) for s in path_segments))
        raise _HubError(404, f"Not found: {self.method} {self.raw_path}")

    @staticmethod
    def split_revision(segments: list[str]) -> tuple[str, list[str]]:
        """The revision is one URL-quoted segment; an unquoted ``refs/pr/N`` or ``refs/convert/x`` is accepted too."""
        if segments[0] == "refs" and len(segments) >= 3 and segments[1] in ("pr", "convert", "heads", "tags"):
            return unquote("/".join(segments[:3])), segments[3:]
        return unquote(segments[0]), segments[1:]

    def dispatch_api(self, seg: list[str]) -> _Response:
        m = self.method
        if seg == ["whoami-v2"] and m == "GET":
            return self.whoami()
        if seg == ["agent-harnesses"] and m == "GET":
            return _Response(200, {"standardEnvVars": [], "harnesses": {}})
        if seg == ["validate-yaml"] and m == "POST":
            return _Response(200, {"errors": [], "warnings": []})
        if seg == ["repos", "create"] and m == "POST":
            return self.create_repo()
        if seg == ["repos", "delete"] and m == "DELETE":
            return self.delete_repo()
        if len(seg) >= 3 and seg[0] in ("models", "datasets", "spaces"):
            repo_type = seg[0][:-1]
            repo_id = unquote(seg[1]) + "/" + unquote(seg[2])
            action, rest = (seg[3] if len(seg) > 3 else None), seg[4:]
            if action is None and m == "GET":
                repo = self.readable_repo(repo_type, repo_id)
                return _Response(200, self.hub._info_json(repo, self.hub._resolve(repo, "main")))
            if action == "revision" and rest and m == "GET":
                repo = self.readable_repo(repo_type, repo_id)
                rev, _ = self.split_revision(rest)
                return _Response(200, self.hub._info_json(repo, self.hub._resolve(repo, rev)))
            if action == "settings" and m == "PUT":
                return self.settings(repo_type, repo_id)
            if action == "tree" and rest and m == "GET":
                rev, path_segments = self.split_revision(rest)
                return self.tree(repo_type, repo_id, rev, "/".join(unquote(s) for s in path_segments))
            if action == "paths-info" and rest and m == "POST":
                return self.paths_info(repo_type, repo_id, self.split_revision(rest)[0])
            if action == "preupload" and rest and m == "POST":
                return self.preupload(repo_type, repo_id, self.split_revision(rest)[0])
            if action == "commit" and rest and m == "POST":
                return self.commit(repo_type, repo_id, self.split_revision(rest)[0])
            if action == "branch" and rest and m in ("POST", "DELETE"):
                return self.branch(repo_type, repo_id, unquote("/".join(rest)))
            if action == "tag" and rest and m in ("POST", "DELETE"):
                return self.tag(repo_type, repo_id, unquote("/".join(rest)))
            if action == "refs" and m == "GET":
                return self.refs(repo_type, repo_id)
            if action == "commits" and rest and m == "GET":
                return self.list_commits(repo_type, repo_id, self.split_revision(rest)[0])
        raise _HubError(404, f"Not found: {self.method} {self.raw_path}")

    # ------------------------------------------------------------------------------------------- endpoints

    def whoami(self) -> _Response:
        if not self._token_ok():
            raise _HubError(401, INVALID_CREDENTIALS)
        name = self.hub.username
        return _Response(200, {"type": "user", "id": hashlib.sha1(name.encode()).hexdigest()[:24], "name": name,
                               "fullname": name, "email": f"{name}@localhost", "emailVerified": True,
                               "canPay": False, "isPro": False, "orgs": [],
                               "auth": {"type": "access_token",
                                        "accessToken": {"displayName": "test", "role": "write"}}})

    def create_repo(self) -> _Response:
        self.require_write()
        data = self.json_body()
        name = data.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[\w.\-]+", name):
            raise _HubError(400, f"Invalid repo name: {name!r}")
        repo_type = data.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise _HubError(400, f"Invalid repo type: {repo_type!r}")
        repo_id = f"{data.get('organization') or self.hub.username}/{name}"
        private = data.get("visibility") == "private" or bool(data.get("private"))
        self.hub._create_repo(repo_type, repo_id, private)
        return _Response(200, {"url": self.hub._repo_url(repo_type, repo_id), "name": repo_id,
                               "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]})

    def delete_repo(self) -> _Response:
        self.require_write()
        data = self.json_body()
        repo_type = data.get("type") or "model"
        repo_id = f"{data.get('organization') or self.hub.username}/{data.get('name')}"
        self.hub._get_repo(repo_type, repo_id)
        del self.hub._repos[(repo_type, repo_id)]
        return _Response(200, {})

    def settings(self, repo_type: str, repo_id: str) -> _Response:
        self.require_write()
        repo = self.hub._get_repo(repo_type, repo_id)
        data = self.json_body()
        if "private" in data:
            repo.private = bool(data["private"])
        if "visibility" in data:
            repo.private = data["visibility"] == "private"
        return _Response(200, {"private": repo.private})

    def tree(self, repo_type: str, repo_id: str, rev: str, path: str) -> _Response:
        repo = self.readable_repo(repo_type, repo_id)
        commit = self.hub._resolve(repo, rev)
        path = path.strip("/")
        recursive = self.query.get("recursive", ["false"])[-1].lower() in ("1", "true")
        prefix = path + "/" if path else ""
        under = {p: e for p, e in commit.files.items() if p.startswith(prefix)}
        if path and not under:
            raise _HubError(404, f"Entry not found: {path}", "EntryNotFound",
                            headers={"X-Repo-Commit": commit.oid})
        dirs: set[str] = set()
        files = []
        for p, entry in sorted(under.items()):
            rel_parts = p[len(prefix):].split("/")
            for depth in range(1, len(rel_parts)):
                if recursive or depth == 1:
                    dirs.add(prefix + "/".join(rel_parts[:depth]))
            if recursive or len(rel_parts) == 1:
                files.append(self.hub._entry_json(p, entry))
        return _Response(200, [self.hub._dir_json(d, commit.files) for d in sorted(dirs)] + files)

    def paths_info(self, repo_type: str, repo_id: str, rev: str) -> _Response:
        repo = self.readable_repo(repo_type, repo_id)
        commit = self.hub._resolve(repo, rev)
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            paths = self.json_body().get("paths") or []
        else:
            paths = parse_qs(self.body.decode(), keep_blank_values=True).get("paths", [])
        out = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                out.append(self.hub._entry_json(path, commit.files[path]))
            elif any(p.startswith(path + "/") for p in commit.files):
                out.append(self.hub._dir_json(path, commit.files))
        return _Response(200, out)

    def writable_branch(self, repo: _Repo, rev: str) -> str:
        """The branch a write to ``rev`` goes to (``create_pr=1``: a new ``refs/pr/N`` branch is made later)."""
        if rev in repo.branches:
            return rev
        raise _HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def preupload(self, repo_type: str, repo_id: str, rev: str) -> _Response:
        self.require_write()
        repo = self.hub._get_repo(repo_type, repo_id)
        commit = self.hub._resolve(repo, self.writable_branch(repo, rev))
        files = self.json_body().get("files")
        if not isinstance(files, list):
            raise _HubError(400, "Invalid preupload payload: 'files' must be a list")
        out = []
        for item in files:
            path, size = item.get("path"), item.get("size")
            if not isinstance(path, str) or not isinstance(size, int):
                raise _HubError(400, f"Invalid preupload entry: {item!r}")
            is_lfs = self.hub._wants_lfs(path, size)
            existing = commit.files.get(path)
            oid = None
            if existing is not None:
                oid = existing.sha if existing.is_lfs else existing.blob_id
            out.append({"path": path, "uploadMode": "lfs" if is_lfs else "regular", "shouldIgnore": False,
                        "oid": oid})
        return _Response(200, {"files": out, "commitOid": commit.oid})

    def lfs_batch(self, repo_type: str, repo_id: str) -> _Response:
        data = self.json_body()
        operation = data.get("operation")
        if operation == "upload":
            self.require_write()
            repo = self.hub._get_repo(repo_type, repo_id)
        elif operation == "download":
            repo = self.readable_repo(repo_type, repo_id)
        else:
            raise _HubError(400, f"Invalid LFS operation: {operation!r}")
        ref = (data.get("ref") or {}).get("name")
        if operation == "upload" and ref is not None and ref not in repo.branches:
            raise _HubError(404, f"Invalid rev id: {ref}", "RevisionNotFound")
        base = f"{self.hub.url}/{URL_PREFIXES[repo_type]}{repo_id}.git/info/lfs/objects"
        objects = []
        for obj in data.get("objects") or []:
            oid, size = obj.get("oid"), obj.get("size")
            if not (isinstance(oid, str) and re.fullmatch(r"[0-9a-f]{64}", oid) and isinstance(size, int)):
                objects.append({"oid": str(oid), "size": size if isinstance(size, int) else 0,
                                "error": {"code": 422, "message": "Invalid oid or size"}})
                continue
            present = oid in repo.lfs
            entry: dict = {"oid": oid, "size": size, "authenticated": True}
            if operation == "upload" and not present:
                ticket = secrets.token_hex(8)
                self.hub._upload_tickets.add((f"{repo_type}/{repo_id}", oid, ticket))
                entry["actions"] = {"upload": {"href": f"{base}/{oid}?ticket={ticket}", "expires_in": 3600},
                                    "verify": {"href": f"{base}/verify", "expires_in": 3600}}
            elif operation == "download":
                if present:
                    entry["actions"] = {"download": {"href": f"{base}/{oid}", "expires_in": 3600}}
                else:
                    entry["error"] = {"code": 404, "message": "Object does not exist"}
            objects.append(entry)
        return _Response(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                         content_type="application/vnd.git-lfs+json")

    def lfs_put(self, repo_type: str, repo_id: str, oid: str) -> _Response:
        # Like a presigned S3 URL: no Authorization header is sent, the ticket in the query authorises the upload.
        repo = self.hub._get_repo(repo_type, repo_id)
        ticket = self.query.get("ticket", [""])[-1]
        if (f"{repo_type}/{repo_id}", oid, ticket) not in self.hub._upload_tickets:
            raise _HubError(403, "Invalid or missing upload ticket")
        if hashlib.sha256(self.body).hexdigest() != oid:
            raise _HubError(400, f"Uploaded content does not match sha256 {oid}")
        repo.lfs[oid] = self.body
        return _Response(200, headers={"ETag": f'"{hashlib.md5(self.body).hexdigest()}"'})

    def lfs_get(self, repo_type: str, repo_id: str, oid: str) -> _Response:
        repo = self.readable_repo(repo_type, repo_id)
        if oid not in repo.lfs:
            raise _HubError(404, "Object does not exist")
        return _Response(200, repo.lfs[oid], content_type="application/octet-stream")

    def lfs_verify(self, repo_type: str, repo_id: str) -> _Response:
        self.require_write()
        repo = self.hub._get_repo(repo_type, repo_id)
        data = self.json_body()
        oid, size = data.get("oid"), data.get("size")
        if oid not in repo.lfs:
            raise _HubError(404, f"LFS object {oid} was not uploaded")
        if size is not None and size != len(repo.lfs[oid]):
            raise _HubError(422, f"LFS object {oid} has size {len(repo.lfs[oid])}, not {size}")
        return _Response(200, {"success": True})

    def commit(self, repo_type: str, repo_id: str, rev: str) -> _Response:
        self.require_write()
        repo = self.hub._get_repo(repo_type, repo_id)
        base_branch = self.writable_branch(repo, rev)
        try:
            lines = [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]
        except ValueError:
            raise _HubError(400, "Commit payload must be newline-delimited JSON")
        if not lines or lines[0].get("key") != "header":
            raise _HubError(400, "Commit payload must start with a header line")
        header = lines[0].get("value") or {}
        title = header.get("summary")
        if not isinstance(title, str) or not title:
            raise _HubError(400, "Commit summary is required")
        ops = []
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value") or {}
            path = value.get("path")
            if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/"):
                raise _HubError(400, f"Invalid path in commit: {path!r}")
            if key == "file":
                content = value.get("content", "")
                data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                ops.append(("add", path, FileEntry(git_blob_sha1(data), data, False)))
            elif key == "lfsFile":
                oid = value.get("oid")
                if oid not in repo.lfs:
                    raise _HubError(400, f"Your push was rejected because an LFS pointer pointed to a file that does"
                                         f" not exist: {path} ({oid})")
                if value.get("size") is not None and value["size"] != len(repo.lfs[oid]):
                    raise _HubError(400, f"LFS pointer size mismatch for {path}")
                ops.append(("add", path, FileEntry(oid, repo.lfs[oid], True)))
            elif key == "deletedFile":
                ops.append(("delete_file", path, None))
            elif key == "deletedFolder":
                ops.append(("delete_folder", path, None))
            else:
                raise _HubError(400, f"Unknown commit operation key: {key!r}")
        create_pr = self.query.get("create_pr", ["0"])[-1] in ("1", "true", "True")
        parent = header.get("parentCommit")
        prefix = URL_PREFIXES[repo_type]
        if create_pr:
            repo.pr_count += 1
            num = repo.pr_count
            branch = f"refs/pr/{num}"
            start = parent if parent else repo.branches[base_branch]
            repo.branches[branch] = self.hub._resolve(repo, start).oid
            commit = self.hub._apply_commit(repo, branch, title, header.get("description") or "", ops)
            pr_url = f"{self.hub.url}/{prefix}{repo_id}/discussions/{num}"
        else:
            commit = self.hub._apply_commit(repo, base_branch, title, header.get("description") or "", ops,
                                            parent_commit=parent)
            pr_url = None
        return _Response(200, {"success": True, "commitOid": commit.oid,
                               "commitUrl": f"{self.hub.url}/{prefix}{repo_id}/commit/{commit.oid}",
                               "hookOutput": "", "pullRequestUrl": pr_url})

    def branch(self, repo_type: str, repo_id: str, name: str) -> _Response:
        self.require_write()
        repo = self.hub._get_repo(repo_type, repo_id)
        if self.method == "DELETE":
            if name not in repo.branches or name == "main":
                raise _HubError(404 if name not in repo.branches else 403, f"Cannot delete branch {name}")
            del repo.branches[name]
            return _Response(200, {})
        if name in repo.branches:
            raise _HubError(409, f"Reference already exists: refs/heads/{name}")
        start = self.json_body().get("startingPoint") or "main"
        repo.branches[name] = self.hub._resolve(repo, start).oid
        return _Response(200, {})

    def tag(self, repo_type: str, repo_id: str, rev_or_tag: str) -> _Response:
        self.require_write()
        repo = self.hub._get_repo(repo_type, repo_id)
        if self.method == "DELETE":
            if rev_or_tag not in repo.tags:
                raise _HubError(404, f"Tag {rev_or_tag} does not exist", "RevisionNotFound")
            del repo.tags[rev_or_tag]
            return _Response(200, {})
        tag = self.json_body().get("tag")
        if not isinstance(tag, str) or not tag:
            raise _HubError(400, "A tag name is required")
        if tag in repo.tags:
            raise _HubError(409, f"Tag {tag} already exists")
        repo.tags[tag] = self.hub._resolve(repo, rev_or_tag).oid
        return _Response(200, {})

    def refs(self, repo_type: str, repo_id: str) -> _Response:
        repo = self.readable_repo(repo_type, repo_id)
        branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": o}
                    for n, o in repo.branches.items() if not n.startswith("refs/pr/")]
        prs = [{"name": n, "ref": n, "targetCommit": o} for n, o in repo.branches.items() if n.startswith("refs/pr/")]
        tags = [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": o} for n, o in repo.tags.items()]
        out = {"branches": branches, "converts": [], "tags": tags}
        if self.query.get("include_prs"):
            out["pullRequests"] = prs
        return _Response(200, out)

    def list_commits(self, repo_type: str, repo_id: str, rev: str) -> _Response:
        repo = self.readable_repo(repo_type, repo_id)
        history = self.hub._history(repo, self.hub._resolve(repo, rev))
        return _Response(200, [{"id": c.oid, "title": c.title, "message": c.message, "date": c.date,
                                "authors": [{"user": self.hub.username}], "parents": c.parents} for c in history])

    def resolve(self, repo_type: str, repo_id: str, rev: str, path: str) -> _Response:
        repo = self.readable_repo(repo_type, repo_id)
        commit = self.hub._resolve(repo, rev)
        entry = commit.files.get(path)
        if entry is None:
            raise _HubError(404, "Entry not found", "EntryNotFound", headers={"X-Repo-Commit": commit.oid})
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{entry.sha}"', "Accept-Ranges": "bytes",
                   "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.split('/')[-1])}"}
        if entry.is_lfs:
            headers["X-Linked-Etag"] = f'"{entry.sha}"'
            headers["X-Linked-Size"] = str(entry.size)
        data, status = entry.data, 200
        byte_range = self.headers.get("Range")
        if byte_range:
            match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", byte_range)
            if not match or (not match.group(1) and not match.group(2)):
                raise _HubError(416, f"Invalid range {byte_range!r}", headers={"Content-Range": f"bytes */{entry.size}"})
            if match.group(1):
                start = int(match.group(1))
                end = int(match.group(2)) if match.group(2) else entry.size - 1
            else:  # suffix range: the last N bytes
                start, end = max(entry.size - int(match.group(2)), 0), entry.size - 1
            end = min(end, entry.size - 1)
            if start >= entry.size or start > end:
                raise _HubError(416, f"Range {byte_range!r} not satisfiable",
                                headers={"Content-Range": f"bytes */{entry.size}"})
            data, status = entry.data[start:end + 1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
        return _Response(status, data, headers=headers, content_type="application/octet-stream", length=len(data))


# ----------------------------------------------------------------------------------------------------------- client


def client_env(hub_url: str, tmp_path, token: str | None = "hf_test_token", extra_env: dict | None = None) -> dict:
    """The environment for a ``huggingface_hub`` / ``transformers`` process talking to ``hub_url``: endpoint, token,
    Xet off (the LFS path is served instead), online, and HF_HOME / HF_HUB_CACHE under ``tmp_path``."""
    home = Path(tmp_path) / "hf_home"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGINGFACE_")) and k not in ("TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update({
        "HF_ENDPOINT": hub_url,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_ETAG_TIMEOUT": "30",
        "HF_HUB_DOWNLOAD_TIMEOUT": "30",
        "TOKENIZERS_PARALLELISM": "false",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    })
    if token:
        env["HF_TOKEN"] = token
    env.update(extra_env or {})
    return env


def run_client(code: str, hub_url: str, tmp_path, token: str | None = "hf_test_token", extra_env: dict | None = None,
               *, check: bool = False, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``python -c code`` (dedented) against the fake hub, in ``tmp_path``, capturing text output.

    ``check=True`` raises AssertionError with the output when the process fails."""
    Path(tmp_path).mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=timeout, env=client_env(hub_url, tmp_path, token, extra_env))
    if check and proc.returncode != 0:
        raise AssertionError(f"client failed (exit {proc.returncode})\n--- stdout\n{proc.stdout}\n"
                             f"--- stderr\n{proc.stderr}")
    return proc
