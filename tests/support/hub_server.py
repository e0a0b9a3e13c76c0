"""A tiny stand-in for the Hugging Face Hub's download API, for tests (and demos) with no network.

It answers what ``huggingface_hub.snapshot_download`` asks (``HF_ENDPOINT=http://127.0.0.1:PORT``):

- ``GET /api/models/{repo}/revision/{rev}``: repo info with the commit sha;
- ``GET /api/models/{repo}/tree/{rev}[/{path}]``: the file listing (sizes, git blob ids, LFS sha256);
- ``HEAD|GET /{repo}/resolve/{rev}/{file}``: the file, with ``ETag``, ``X-Repo-Commit``, ``Content-Length`` and
  ``Range`` support (``206`` + ``Content-Range``) so interrupted downloads resume;

and 404 with the hub's ``X-Error-Code`` header (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) for anything
else; gated repos answer 403 ``GatedRepo``. Faults for tests: ``cut_once`` (send half a file, then drop the
connection) and ``fail_once`` (answer 503 to the first GET). Every request is logged in ``requests``.

Run it by hand: ``python tests/support/hub_server.py org/name=DIR [org/other=DIR ...] [--port 8000]``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".model")


@dataclass
class Repo:
    files: dict[str, bytes]
    sha: str
    branches: dict[str, str] = field(default_factory=dict)
    gated: bool = False

    def resolve(self, revision: str) -> str | None:
        if revision in (self.sha, *self.branches):
            return self.branches.get(revision, self.sha)
        return None


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _is_lfs(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


class FakeHub:
    """Holds the repos and the fault switches; :meth:`start` serves them on 127.0.0.1 at a free port."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.cut_once: set[str] = set()  # file names: first GET sends half, then drops the connection
        self.fail_once: set[str] = set()  # file names: first GET answers 503
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    # -- content --
    def add_repo(self, repo_id: str, source: Path | dict[str, bytes], *, gated: bool = False) -> str:
        """Serve a folder (or name -> bytes) as ``repo_id``; returns its commit sha (also reachable as ``main``)."""
        if isinstance(source, dict):
            files = dict(source)
        else:
            root = Path(source)
            files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        digest = hashlib.sha1(repo_id.encode())
        for name in sorted(files):
            digest.update(name.encode() + hashlib.sha256(files[name]).digest())
        sha = digest.hexdigest()
        self.repos[repo_id] = Repo(files=files, sha=sha, branches={"main": sha}, gated=gated)
        return sha

    def requested(self, method: str | None = None, contains: str = "") -> list[tuple[str, str, str | None]]:
        with self._lock:
            return [r for r in self.requests if (method is None or r[0] == method) and contains in r[1]]

    # -- serving --
    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, port: int = 0) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<kind>revision|tree)/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - keep test output clean
        pass

    def do_HEAD(self):
        self._dispatch(head=True)

    def do_GET(self):
        self._dispatch(head=False)

    def _dispatch(self, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        with self.fake._lock:
            self.fake.requests.append((self.command, path, self.headers.get("Range")))
        if match := _API.match(path):
            repo = self._repo(match["repo"])
            if repo is None:
                return
            sha = repo.resolve(match["rev"])
            if sha is None:
                return self._error(404, "RevisionNotFound", repo_sha=repo.sha)
            if match["kind"] == "revision":
                body = {
                    "id": match["repo"],
                    "modelId": match["repo"],
                    "sha": sha,
                    "private": False,
                    "gated": "manual" if repo.gated else False,
                    "siblings": [{"rfilename": name} for name in repo.files],
                }
            else:
                query = parse_qs(urlsplit(self.path).query)
                recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
                body = self._tree(repo, match["path"] or "", recursive)
            return self._json(body, sha=sha, head=head)
        if match := _RESOLVE.match(path):
            repo = self._repo(match["repo"], files=True)
            if repo is None:
                return
            sha = repo.resolve(match["rev"])
            if sha is None:
                return self._error(404, "RevisionNotFound", repo_sha=repo.sha)
            if match["path"] not in repo.files:
                return self._error(404, "EntryNotFound", repo_sha=sha)
            return self._file(repo, sha, match["path"], head)
        self._error(404, None)

    def _repo(self, repo_id: str, files: bool = False) -> Repo | None:
        repo = self.fake.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound")
        elif repo.gated and files:  # as on the hub: anyone sees a gated repo's listing, not its files
            self._error(403, "GatedRepo", repo_sha=repo.sha)
            return None
        return repo

    @staticmethod
    def _tree(repo: Repo, prefix: str, recursive: bool) -> list[dict]:
        prefix = prefix.strip("/")
        entries, folders = [], set()
        for name, data in sorted(repo.files.items()):
            if prefix and not name.startswith(prefix + "/"):
                continue
            rest = name[len(prefix) + 1 :] if prefix else name
            if "/" in rest:  # sub-folders are entries of their own; their files only in recursive listings
                folders.add((prefix + "/" if prefix else "") + rest.split("/")[0])
                if not recursive:
                    continue
            entry = {"type": "file", "path": name, "size": len(data), "oid": git_blob_id(data)}
            if _is_lfs(name):
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        return [{"type": "directory", "path": f, "oid": "0" * 40, "size": 0} for f in sorted(folders)] + entries

    def _file(self, repo: Repo, sha: str, name: str, head: bool) -> None:
        data = repo.files[name]
        etag = hashlib.sha256(data).hexdigest() if _is_lfs(name) else git_blob_id(data)
        start = 0
        if (value := self.headers.get("Range")) and (m := re.match(r"bytes=(\d+)-", value)):
            start = min(int(m[1]), len(data))
        if not head:
            with self.fake._lock:
                fail = name in self.fake.fail_once
                cut = name in self.fake.cut_once
                self.fake.fail_once.discard(name)
                self.fake.cut_once.discard(name)
            if fail:
                return self._error(503, None, repo_sha=sha)
        else:
            cut = False
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", sha)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if head:
            return
        if cut:  # half the body, then drop the connection as a flaky network would
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def _json(self, body, *, sha: str, head: bool) -> None:
        raw = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("X-Repo-Commit", sha)
        self.end_headers()
        if not head:
            self.wfile.write(raw)

    def _error(self, status: int, code: str | None, repo_sha: str | None = None) -> None:
        raw = json.dumps({"error": code or "Not Found"}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        if repo_sha:
            self.send_header("X-Repo-Commit", repo_sha)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Serve folders as hub model repos on 127.0.0.1.")
    parser.add_argument("repos", nargs="+", metavar="ORG/NAME=DIR")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    hub = FakeHub()
    for spec in args.repos:
        repo_id, _, directory = spec.partition("=")
        print(f"{repo_id} @ {hub.add_repo(repo_id, Path(directory))}", flush=True)
    hub.start(args.port)
    print(f"HF_ENDPOINT={hub.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        hub.stop()


if __name__ == "__main__":
    main()
