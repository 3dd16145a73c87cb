"""A Hugging Face Hub on 127.0.0.1 for the tests: just the endpoints the course's clients call.

``huggingface_hub``, ``datasets`` and ``diffusers`` reach it through ``HF_ENDPOINT``; torchvision's MNIST reaches
its ``mnist/`` folder through ``COURSE_MNIST_MIRROR``. It serves small stand-ins under the real repo ids (drawn
butterflies as ``huggan/smithsonian_butterflies_subset``, the shipped ``butterflies-32`` pipeline as
``johnowhitaker/ddpm-butterflies-32px``), MNIST-format files made from scikit-learn's digits, and accepts uploads
(create repo, preupload, commit; ``whoami`` for the token) from a client holding ``TOKEN``, served back at once.

Endpoints: ``GET /api/{models,datasets}/<id>[/revision/<rev>]``, ``GET .../tree/<rev>[/<path>]``,
``POST .../paths-info/<rev>``, ``HEAD|GET /[datasets/]<id>/resolve/<rev>/<path>`` (with ``X-Repo-Commit``, ``ETag``,
``Range``), ``POST /api/repos/create``, ``POST .../preupload/<rev>``, ``POST .../commit/<rev>``,
``POST /api/validate-yaml``, ``GET /api/whoami-v2``, ``GET /mnist/<file>``. Anything else is a 404 that the
server also records in ``unknown``, so a test sees what a new client version started to ask for.

Not olah (a self-hosted Hub mirror on PyPI): it caches what it fetches from an upstream Hub, so offline it can only
serve what it fetched before, in its own cache layout, and it has no upload endpoints (create repo, commit) or
whoami; it also brings a web stack (FastAPI, uvicorn, httpx) the course does not install.

Run a command against it: ``python tests/hub_server.py [--expect EVENT]... -- pytest ...`` starts the server,
sets ``HF_ENDPOINT``, ``COURSE_MNIST_MIRROR``, ``HF_TOKEN``, a temporary ``HF_HOME`` and ``COURSE_DATA_DIR``,
unsets the offline switches, points the proxies at a closed port (so a request to any other host fails at once),
runs the command, and fails when an expected event (a download, an upload) did not happen.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_course_test_token"  # a fake write token: the server accepts this one only
USER = "learner"
BUTTERFLIES = "huggan/smithsonian_butterflies_subset"
BUTTERFLY_MODEL = "johnowhitaker/ddpm-butterflies-32px"
N_BUTTERFLIES = 64
NOT_FOUND = {"RepoNotFound": 404, "RevisionNotFound": 404, "EntryNotFound": 404}


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


class Repo:
    """A repo's files (path -> bytes) and the commit sha that names their current state."""

    def __init__(self, files: dict[str, bytes] | None = None):
        self.files: dict[str, bytes] = {}
        self.sha = "0" * 40
        self.commit(files or {})

    def commit(self, added: dict[str, bytes], deleted: tuple[str, ...] = ()) -> str:
        """Apply a commit; return the new sha."""
        self.files.update(added)
        for path in deleted:
            self.files.pop(path, None)
        state = "".join(f"{p}:{_sha1(d)}\n" for p, d in sorted(self.files.items()))
        self.sha = _sha1(f"{self.sha}\n{state}".encode())
        return self.sha

    def entry(self, path: str) -> dict | None:
        """A tree entry (file or directory) as the Hub's tree and paths-info endpoints write it."""
        if path in self.files:
            data = self.files[path]
            item = {"type": "file", "path": path, "size": len(data), "oid": _sha1(b"blob %d\0" % len(data) + data)}
            if path.endswith((".safetensors", ".parquet", ".bin")):
                item["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            return item
        if any(p.startswith(path.rstrip("/") + "/") for p in self.files) or path == "":
            return {"type": "directory", "path": path.rstrip("/"), "oid": _sha1(path.encode())}
        return None

    def tree(self, folder: str, recursive: bool) -> list[dict]:
        """The entries under ``folder`` (all levels when ``recursive``)."""
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        names: set[str] = set()
        for path in self.files:
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            for depth in range(1, len(parts) + 1 if recursive else 2):
                names.add(prefix + "/".join(parts[:depth]))
        return [self.entry(name) for name in sorted(names)]


# ---- The stand-ins ------------------------------------------------------------------------------------------


def butterfly_parquet(n: int = N_BUTTERFLIES) -> bytes:
    """``n`` drawn butterflies of varied sizes as a parquet file with an ``image`` column (like the Hub dataset)."""
    import datasets

    from course_utils.data import synthetic_butterfly

    images = [synthetic_butterfly(i, size=(64, 96, 128)[i % 3]) for i in range(n)]
    datasets.disable_progress_bars()  # the server's start stays quiet
    frame = datasets.Dataset.from_dict({"image": images, "id": list(range(n))},
                                       features=datasets.Features({"image": datasets.Image(),
                                                                   "id": datasets.Value("int64")}))
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


DATASET_CARD = f"""---
license: cc0-1.0
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
---

# {BUTTERFLIES} (test stand-in)

{N_BUTTERFLIES} butterflies drawn by the course (`course_utils.data.synthetic_butterfly`),
served by tests/hub_server.py.
"""


def shipped_pipeline_files(name: str) -> dict[str, bytes]:
    """The files of a pipeline the course ships (``course_utils/pretrained/<name>``): config, weights, card."""
    folder = ROOT / "course_utils" / "pretrained" / name
    keep = ("model_index.json", "README.md", "scheduler/", "unet/", "vae/", "text_encoder/", "tokenizer/")
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.relative_to(folder).as_posix().startswith(keep)}


def idx_file(array) -> bytes:
    """A numpy uint8 array in MNIST's idx format (gzipped): magic number, dimensions, bytes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.tobytes(), mtime=0)


def mnist_files() -> dict[str, bytes]:
    """MNIST's four files made from the course's digits (``digits_28``: train 1,437, test 360 images)."""
    from course_utils.data import digits_28

    files = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = digits_28(split).tensors
        files[f"{prefix}-images-idx3-ubyte.gz"] = idx_file((images[:, 0] * 255).round().byte().numpy())
        files[f"{prefix}-labels-idx1-ubyte.gz"] = idx_file(labels.byte().numpy())
    return files


def standard_repos() -> dict[tuple[str, str], Repo]:
    """The repos the chapters load by id, keyed by (type, id)."""
    return {
        ("datasets", BUTTERFLIES): Repo({"README.md": DATASET_CARD.encode(),
                                         "data/train-00000-of-00001.parquet": butterfly_parquet()}),
        ("models", BUTTERFLY_MODEL): Repo(shipped_pipeline_files("butterflies-32")),
    }


# ---- The server ---------------------------------------------------------------------------------------------


class HubServer(ThreadingHTTPServer):
    """The test Hub: repos in memory, MNIST files, a log of requests it did not know."""

    daemon_threads = True

    def __init__(self, port: int = 0):
        super().__init__(("127.0.0.1", port), Handler)
        self.repos = standard_repos()
        self.mnist = mnist_files()
        self.unknown: list[str] = []
        self.events: set[str] = set()  # "download <type>/<id>", "upload <type>/<id>", "download mnist"
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


API = re.compile(r"^/api/(models|datasets|spaces)/([\w.-]+/[\w.-]+)"
                 r"(?:/(revision|tree|paths-info|preupload|commit)/([^/]+)(/.*)?)?$")
RESOLVE = re.compile(r"^/(?:(datasets|spaces)/)?([\w.-]+/[\w.-]+)/resolve/([^/]+)/(.+)$")


class Handler(BaseHTTPRequestHandler):
    """One request: routed by its path to the repo it names."""

    server: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # quiet: the tests read server.unknown instead
        pass

    # -- replies
    def reply(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def json(self, value, status: int = 200, head: bool = False) -> None:
        self.reply(status, json.dumps(value).encode(), {"Content-Type": "application/json"}, head)

    def error(self, code: str, message: str, head: bool = False) -> None:
        status = NOT_FOUND.get(code, 400 if code == "BadRequest" else 401 if code == "Unauthorized" else 403)
        self.reply(status, json.dumps({"error": message}).encode(),
                   {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message}, head)

    def unknown(self, head: bool = False) -> None:
        with self.server.lock:
            self.server.unknown.append(f"{self.command} {self.path}")
        self.error("EntryNotFound", f"the test Hub has no endpoint for {self.command} {self.path}", head)

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def authorised(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {TOKEN}"

    def repo(self, kind: str, repo_id: str, revision: str | None, head: bool = False) -> Repo | None:
        """The repo, or None after replying 404 (no such repo, or a revision it does not have)."""
        repo = self.server.repos.get((kind, repo_id))
        if repo is None:
            self.error("RepoNotFound", f"Repository Not Found for url: {self.path}", head)
            return None
        if revision is not None and unquote(revision) not in ("main", repo.sha):
            self.error("RevisionNotFound", f"Invalid rev id: {unquote(revision)}", head)
            return None
        return repo

    # -- verbs
    def do_HEAD(self) -> None:
        self.get(head=True)

    def do_GET(self) -> None:
        self.get(head=False)

    def get(self, head: bool) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        if path == "/api/whoami-v2":
            if not self.authorised():
                return self.error("Unauthorized", "Invalid credentials in Authorization header", head)
            return self.json({"type": "user", "name": USER, "orgs": [],
                              "auth": {"type": "access_token",
                                       "accessToken": {"displayName": "course-tests", "role": "write"}}}, head=head)
        if path.startswith("/mnist/"):
            data = self.server.mnist.get(path.removeprefix("/mnist/"))
            if data and not head:
                self.server.events.add("download mnist")
            return self.reply(200, data, {"Content-Type": "application/gzip"}, head) if data else self.unknown(head)
        if match := RESOLVE.match(path):
            kind, repo_id, revision, file = match.groups()
            repo = self.repo(f"{kind or 'model'}s" if kind != "datasets" else "datasets", repo_id, revision, head)
            if repo is None:
                return None
            data = repo.files.get(unquote(file))
            if data is None:
                return self.error("EntryNotFound", f"{file} does not exist on {revision}", head)
            if not head:
                self.server.events.add(f"download {kind or 'models'}/{repo_id}")
            return self.send_file(repo, data, head)
        if match := API.match(path):
            kind, repo_id, action, revision, rest = match.groups()
            repo = self.repo(kind, repo_id, revision, head)
            if repo is None:
                return None
            if action in (None, "revision"):
                return self.json(self.info(kind, repo_id, repo), head=head)
            if action == "tree":
                folder = unquote((rest or "").lstrip("/"))
                recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
                if folder and repo.entry(folder) is None:
                    return self.error("EntryNotFound", f"{folder} does not exist", head)
                return self.json(repo.tree(folder, recursive), head=head)
        return self.unknown(head)

    def send_file(self, repo: Repo, data: bytes, head: bool) -> None:
        etag = f'"{hashlib.sha256(data).hexdigest()}"'
        headers = {"X-Repo-Commit": repo.sha, "ETag": etag, "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        status, span = 200, data
        if (wanted := re.match(r"bytes=(\d*)-(\d*)$", self.headers.get("Range", ""))) and any(wanted.groups()):
            first, last = wanted.groups()
            start = int(first) if first else max(len(data) - int(last), 0)
            end = min(int(last), len(data) - 1) if first and last else len(data) - 1
            status, span = 206, data[start:end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        self.reply(status, span, headers, head)

    def info(self, kind: str, repo_id: str, repo: Repo) -> dict:
        info = {"id": repo_id, "_id": _sha1(repo_id.encode())[:24], "sha": repo.sha, "private": False,
                "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [],
                "lastModified": "2026-12-01T00:00:00.000Z", "createdAt": "2026-12-01T00:00:00.000Z",
                "siblings": [{"rfilename": p, "size": len(d)} for p, d in sorted(repo.files.items())]}
        if kind == "models":
            info.update(modelId=repo_id, library_name="diffusers")
        return info

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self.body()
        if path == "/api/validate-yaml":
            return self.json({"errors": [], "warnings": []})
        if path == "/api/repos/create":
            if not self.authorised():
                return self.error("Unauthorized", "Invalid credentials in Authorization header")
            request = json.loads(body)
            name, namespace = request["name"], request.get("organization") or USER
            kind = f"{request.get('type') or 'model'}s"
            if namespace != USER:
                return self.error("Forbidden", f"You don't have the rights to create a repo under {namespace}")
            repo_id = f"{namespace}/{name}"
            with self.server.lock:
                exists = (kind, repo_id) in self.server.repos
                self.server.repos.setdefault((kind, repo_id), Repo())
            prefix = "" if kind == "models" else f"{kind}/"
            if exists:
                return self.json({"error": "You already created this model repo", "url": f"{self.server.url}/"
                                  f"{prefix}{repo_id}"}, status=409)
            return self.json({"url": f"{self.server.url}/{prefix}{repo_id}", "name": repo_id})
        if not (match := API.match(path)):
            return self.unknown()
        kind, repo_id, action, revision, _ = match.groups()
        if action == "paths-info":
            repo = self.repo(kind, repo_id, revision)
            if repo is None:
                return None
            form = parse_qs(body.decode())
            entries = [repo.entry(p) for p in form.get("paths", [])]
            return self.json([e for e in entries if e is not None])
        if action in ("preupload", "commit"):
            if not self.authorised():
                return self.error("Unauthorized", "Invalid credentials in Authorization header")
            repo = self.repo(kind, repo_id, revision)
            if repo is None:
                return None
            if action == "preupload":  # everything inline in the commit: no LFS or Xet transfer to implement
                files = json.loads(body)["files"]
                return self.json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                            for f in files]})
            added, deleted = {}, []
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    added[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] == "deletedFile":
                    deleted.append(item["value"]["path"])
                elif item["key"] != "header":
                    return self.error("BadRequest", f"the test Hub does not take {item['key']!r} in a commit")
            with self.server.lock:
                sha = repo.commit(added, tuple(deleted))
                self.server.events.add(f"upload {kind}/{repo_id}")
            prefix = "" if kind == "models" else f"{kind}/"
            return self.json({"commitUrl": f"{self.server.url}/{prefix}{repo_id}/commit/{sha}", "commitOid": sha,
                              "success": True})
        return self.unknown()


@contextlib.contextmanager
def serve(port: int = 0) -> Iterator[HubServer]:
    """The test Hub, listening on 127.0.0.1 in a background thread while the block runs."""
    server = HubServer(port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def online_env(server: HubServer, home: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment in which the course is online against ``server`` only, with its caches under ``home``."""
    env = dict(os.environ if base is None else base)
    for switch in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN_PATH"):
        env.pop(switch, None)
    dead = "http://127.0.0.1:9"  # nothing listens there: a request to any host but 127.0.0.1 fails at once
    env.update(HF_ENDPOINT=server.url, COURSE_MNIST_MIRROR=f"{server.url}/mnist/", HF_TOKEN=TOKEN,
               HF_HOME=str(home / "hf-home"), COURSE_DATA_DIR=str(home / "course-data"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1",
               HTTP_PROXY=dead, HTTPS_PROXY=dead, http_proxy=dead, https_proxy=dead,
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return env


def main(argv: list[str]) -> int:
    """``hub_server.py [--expect EVENT]... -- CMD ...``: run CMD online against a fresh test Hub; fail when an
    expected event (``download mnist``, ``download datasets/<id>``, ``upload models/<id>``) did not happen."""
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print("usage: python tests/hub_server.py [--expect EVENT]... -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1:]
    expected = [options[i + 1] for i, flag in enumerate(options) if flag == "--expect"]
    with serve() as server, tempfile.TemporaryDirectory(prefix="course-online-") as home:
        print(f"test Hub at {server.url} (HF_HOME and COURSE_DATA_DIR under {home})", flush=True)
        rc = subprocess.call(command, env=online_env(server, Path(home)))
        print("the test Hub saw:", *sorted(server.events), sep="\n  ")
        if server.unknown:
            print("it was asked for what it does not serve:", *sorted(set(server.unknown)), sep="\n  ")
        if missing := [event for event in expected if event not in server.events]:
            print("error: expected but not seen:", *missing, sep="\n  ", file=sys.stderr)
            rc = rc or 1
    return rc


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main(sys.argv[1:]))
