"""A loopback stand-in for the Hugging Face Hub: just enough HTTP API for create_repo, upload_folder,
ModelCard/DatasetCard.push_to_hub, DatasetDict.push_to_hub, snapshot_download and HfFileSystem.

Repos live in memory as a chain of commits (each a full {path: bytes} snapshot), so tests can count commits and
read back exactly what was uploaded. Writes need `Authorization: Bearer <token>`; every request is logged
(headers included) so tests can check where the token travelled.
"""

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml


LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".parquet", ".arrow", ".gguf")
LFS_MIN_SIZE = 10 * 1024 * 1024
POINTER_SIZE = 134


def git_blob_sha(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    sha: str
    message: str
    files: dict[str, bytes]
    lfs: set[str]


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    branches: dict[str, list[Commit]] = field(default_factory=dict)

    def head(self, revision: str) -> Commit | None:
        for commits in self.branches.values():
            for commit in commits:
                if commit.sha == revision:
                    return commit
        history = self.branches.get(revision)
        return history[-1] if history else None


class FakeHub:
    """Start with `with FakeHub(token) as hub:`; `hub.endpoint` is the URL to put in HF_ENDPOINT."""

    def __init__(self, token: str, user: str = "tester"):
        self.token = token
        self.user = user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "FakeHub":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def client_env(self, home) -> dict[str, str]:
        """Environment for a child process that talks to this hub, logged in with its token, caching under `home`."""
        return {
            "HF_ENDPOINT": self.endpoint,
            "HF_TOKEN": self.token,
            "HF_HUB_OFFLINE": "0",
            "HF_DATASETS_OFFLINE": "0",
            "HF_HUB_DISABLE_XET": "1",  # hf_xet would bypass the LFS endpoints this fake implements
            "HF_HOME": str(home),
        }

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def commits(self, repo_id: str, repo_type: str = "model", branch: str = "main") -> list[Commit]:
        return self.repo(repo_id, repo_type).branches[branch]


def _make_handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        # ---- plumbing -------------------------------------------------------------------------------------
        def _send(self, status: int, body=b"", headers: dict | None = None, content_type="application/json"):
            if not isinstance(body, bytes):
                body = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, code: str, message: str):
            self._send(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)

        def _authorized(self) -> bool:
            return self.headers.get("Authorization") == f"Bearer {hub.token}"

        def _repo(self, repo_type: str, repo_id: str, write: bool = False) -> Repo | None:
            repo = hub.repos.get((repo_type, repo_id))
            if repo is None or ((write or repo.private) and not self._authorized()):
                status = 404 if not write or repo is None else 401
                self._error(status, "RepoNotFound", f"Repository {repo_id} not found")
                return None
            return repo

        def _dispatch(self):
            url = urlsplit(self.path)
            hub.requests.append((self.command, url.path, {k.lower(): v for k, v in self.headers.items()}))
            self.body = self._read_body()  # always drained: the connection is reused
            parts = [unquote(part) for part in url.path.strip("/").split("/")]
            query = parse_qs(url.query)
            with hub._lock:
                if parts[:2] == ["api", "whoami-v2"]:
                    return self._whoami()
                if parts[:3] == ["api", "repos", "create"]:
                    return self._create(json.loads(self.body))
                if parts[:2] == ["api", "validate-yaml"]:
                    return self._validate_yaml(json.loads(self.body))
                if parts[0] == "lfs-upload":
                    return self._lfs_put(parts[1])
                if parts[0] == "api" and parts[1] in ("models", "datasets", "spaces") and len(parts) >= 4:
                    repo_type, repo_id = parts[1][:-1], "/".join(parts[2:4])
                    return self._api(repo_type, repo_id, parts[4:], query)
                repo_type = {"datasets": "dataset", "spaces": "space"}.get(parts[0], "model")
                parts = parts[1:] if repo_type != "model" else parts
                if len(parts) >= 2 and parts[1].endswith(".git"):
                    return self._lfs_batch(repo_type, f"{parts[0]}/{parts[1][:-4]}", json.loads(self.body))
                if len(parts) >= 5 and parts[2] == "resolve":
                    return self._resolve(repo_type, "/".join(parts[:2]), parts[3], "/".join(parts[4:]))
            self._error(404, "NotFound", f"no route for {self.command} {url.path}")

        do_GET = do_POST = do_PUT = do_HEAD = _dispatch

        # ---- endpoints ------------------------------------------------------------------------------------
        def _whoami(self):
            if not self._authorized():
                return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
            self._send(200, {"type": "user", "name": hub.user, "orgs": [], "auth": {"type": "access_token"}})

        def _create(self, payload: dict):
            if not self._authorized():
                return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
            repo_type = payload.get("type") or "model"
            repo_id = f"{payload.get('organization') or hub.user}/{payload['name']}"
            prefix = "" if repo_type == "model" else f"{repo_type}s/"
            if (repo_type, repo_id) in hub.repos:
                return self._send(409, {"error": "Repo exists", "url": f"{hub.endpoint}/{prefix}{repo_id}"})
            repo = Repo(repo_id, repo_type, payload.get("visibility") == "private")
            sha = hashlib.sha1(f"init {repo_type} {repo_id}".encode()).hexdigest()
            repo.branches["main"] = [Commit(sha, "initial commit", {}, set())]
            hub.repos[(repo_type, repo_id)] = repo
            self._send(200, {"url": f"{hub.endpoint}/{prefix}{repo_id}", "name": repo_id})

        def _validate_yaml(self, payload: dict):
            content = payload["content"]
            errors = []
            if content.startswith("---"):
                try:
                    metadata = yaml.safe_load(content.split("---")[1]) or {}
                except yaml.YAMLError as error:
                    metadata, errors = {}, [{"message": f"YAML parse error: {error}"}]
                errors += [{"message": message} for message in check_model_index(metadata.get("model-index"))]
            self._send(400 if errors else 200, {"errors": errors, "warnings": []})

        def _api(self, repo_type: str, repo_id: str, rest: list[str], query: dict):
            action = rest[0] if rest else "revision"
            write = action in ("preupload", "commit", "branch")
            repo = self._repo(repo_type, repo_id, write=write)
            if repo is None:
                return
            revision = rest[1] if len(rest) > 1 else "main"
            if action == "branch":
                if revision in repo.branches:
                    return self._send(409, {"error": "Branch already exists"})
                repo.branches[revision] = [repo.head("main")]
                return self._send(200, {})
            head = repo.head(revision)
            if head is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            if action == "revision":
                siblings = [{"rfilename": path} for path in sorted(head.files)]
                return self._send(200, {"id": repo_id, "sha": head.sha, "private": repo.private, "siblings": siblings})
            if action == "tree":
                return self._tree(head, "/".join(rest[2:]), query.get("recursive", ["false"])[0].lower() == "true")
            if action == "paths-info":
                paths = parse_qs(self.body.decode()).get("paths", [])
                return self._send(200, [entry for path in paths for entry in _entries(head, path, exact=True)])
            if action == "preupload":
                return self._preupload(head, json.loads(self.body))
            if action == "commit":
                return self._commit(repo, revision, head)
            self._error(404, "NotFound", f"unknown action {action}")

        def _tree(self, head: Commit, path: str, recursive: bool):
            if path and path not in head.files and not any(f.startswith(path + "/") for f in head.files):
                return self._error(404, "EntryNotFound", f"{path} does not exist")
            self._send(200, _entries(head, path, recursive=recursive))

        def _preupload(self, head: Commit, payload: dict):
            files = []
            for item in payload["files"]:
                lfs = item["path"].endswith(LFS_SUFFIXES) or item["size"] >= LFS_MIN_SIZE
                existing = head.files.get(item["path"])
                oid = None
                if existing is not None:
                    oid = hashlib.sha256(existing).hexdigest() if lfs else git_blob_sha(existing)
                mode = "lfs" if lfs else "regular"
                files.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
            self._send(200, {"files": files})

        def _lfs_batch(self, repo_type: str, repo_id: str, payload: dict):
            if self._repo(repo_type, repo_id, write=True) is None:
                return
            objects = []
            for obj in payload["objects"]:
                entry = {"oid": obj["oid"], "size": obj["size"]}
                if obj["oid"] not in hub.lfs_objects:
                    entry["actions"] = {"upload": {"href": f"{hub.endpoint}/lfs-upload/{obj['oid']}"}}
                objects.append(entry)
            self._send(200, {"transfer": "basic", "objects": objects})

        def _lfs_put(self, oid: str):
            data = self.body
            if hashlib.sha256(data).hexdigest() != oid:
                return self._error(400, "BadRequest", "sha256 mismatch")
            hub.lfs_objects[oid] = data
            self._send(200, {})

        def _commit(self, repo: Repo, revision: str, head: Commit):
            lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
            header = lines[0]["value"]
            if header.get("parentCommit") and header["parentCommit"] != head.sha:
                return self._error(412, "PreconditionFailed", "parent commit is not the head")
            files, lfs = dict(head.files), set(head.lfs)
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                if key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                    lfs.discard(value["path"])
                elif key == "lfsFile":
                    if value["oid"] not in hub.lfs_objects:
                        return self._error(400, "BadRequest", f"LFS object {value['oid']} was never uploaded")
                    files[value["path"]] = hub.lfs_objects[value["oid"]]
                    lfs.add(value["path"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    files = {p: c for p, c in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            sha = hashlib.sha1(f"{head.sha}{header['summary']}{len(repo.branches[revision])}".encode()).hexdigest()
            repo.branches[revision].append(Commit(sha, header["summary"], files, lfs & set(files)))
            prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
            self._send(200, {"commitUrl": f"{hub.endpoint}/{prefix}{repo.repo_id}/commit/{sha}", "commitOid": sha})

        def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str):
            repo = self._repo(repo_type, repo_id)
            if repo is None:
                return
            head = repo.head(revision)
            if head is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            if path not in head.files:
                return self._error(404, "EntryNotFound", f"{path} does not exist")
            content = head.files[path]
            etag = hashlib.sha256(content).hexdigest() if path in head.lfs else git_blob_sha(content)
            headers = {"ETag": f'"{etag}"', "X-Repo-Commit": head.sha}
            if path in head.lfs:
                headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(content))})
            self._send(200, content, headers, content_type="application/octet-stream")

    return Handler


def _entries(head: Commit, path: str, recursive: bool = False, exact: bool = False) -> list[dict]:
    """Tree entries under `path` (or the entry at `path` itself when `exact`), as the Hub API returns them."""
    path = path.strip("/")
    entries, folders = [], set()
    for file_path in sorted(head.files):
        if exact:
            if file_path == path:
                entries.append(_file_entry(head, file_path))
            elif file_path.startswith(path + "/"):
                folders.add(path)
            continue
        relative = file_path[len(path) + 1 :] if path else file_path
        if path and not file_path.startswith(path + "/"):
            continue
        pieces = relative.split("/")
        for depth in range(1, len(pieces)):
            if depth == 1 or recursive:
                folders.add("/".join(([path] if path else []) + pieces[:depth]))
        if len(pieces) == 1 or recursive:
            entries.append(_file_entry(head, file_path))
    folder_entries = [
        {"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "path": folder}
        for folder in sorted(folders)
    ]
    return folder_entries + entries


def _file_entry(head: Commit, path: str) -> dict:
    content = head.files[path]
    entry = {"type": "file", "oid": git_blob_sha(content), "size": len(content), "path": path}
    if path in head.lfs:
        entry["lfs"] = {"oid": hashlib.sha256(content).hexdigest(), "size": len(content), "pointerSize": POINTER_SIZE}
    return entry


def check_model_index(model_index) -> list[str]:
    """The shape checks the Hub applies to `model-index`: name, and per result a task type, a dataset and metrics."""
    if model_index is None:
        return []
    errors = []
    for index, model in enumerate(model_index if isinstance(model_index, list) else [model_index]):
        if not isinstance(model, dict) or not model.get("name"):
            errors.append(f"model-index[{index}].name is required")
            continue
        for r, result in enumerate(model.get("results") or []):
            where = f"model-index[{index}].results[{r}]"
            if not (result.get("task") or {}).get("type"):
                errors.append(f"{where}.task.type is required")
            dataset = result.get("dataset") or {}
            if not dataset.get("type") or not dataset.get("name"):
                errors.append(f"{where}.dataset.type and .name are required")
            metrics = result.get("metrics") or []
            if not metrics or any("type" not in m or "value" not in m for m in metrics):
                errors.append(f"{where}.metrics need type and value")
    return errors
