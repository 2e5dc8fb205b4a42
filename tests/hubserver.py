"""A small local fake of the Hugging Face Hub, for tests that run the real `datasets` / `huggingface_hub` clients.

Stdlib only at import time (``datasets``/``pyarrow``/``yaml`` are imported lazily inside helpers), so it can be
started before anything reads ``HF_ENDPOINT``. Binds 127.0.0.1 only. Speaks the subset of the Hub API that
``datasets.load_dataset`` / ``push_to_hub`` and ``HfApi`` (repo_info, create_repo, create_commit, upload_folder,
create_branch, list_repo_files, list_repo_refs, whoami) use; see docs/offline-hub.md.

Model: repos keyed by (type, "ns/name"); each commit is an immutable snapshot {path: File} with a fresh random
40-hex sha (never reused: `datasets` caches by sha); branches, tags and ``refs/pr/N`` point at commits.

Access rules (as the real Hub answers them):
- unknown token -> 401 "Invalid credentials in Authorization header"
- private repo: anonymous -> 401 + X-Error-Code RepoNotFound; a user who can't read it -> 404 RepoNotFound
- gated repo: metadata, tree and README.md are public; other files -> 401 (anonymous) / 403 (no access) GatedRepo
- writes need a token whose user may write the namespace (403 otherwise); ``create_pr=1`` only needs read access

Usage: ``hub = HubServer().start(); hub.url; hub.token`` (writes "me" and "prefkit-test"), ``hub.read_token``;
``python tests/hubserver.py [--port N]`` serves until Ctrl-C.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import io
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


def _words(text: str) -> list[str]:
    return text.split()


WRITE_TOKEN = "hf_prefkit_fake_write_token"  # user "me", writes "me" and "prefkit-test"
READ_TOKEN = "hf_prefkit_fake_read_token"  # user "reader", writes only "reader"
LFS_SUFFIXES = tuple(
    _words(".parquet .arrow .gz .zst .bz2 .xz .zip .tar .bin .safetensors .pt .npy .png .jpg .jpeg .wav .mp3")
)
GITATTRIBUTES = b"".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n".encode() for s in LFS_SUFFIXES)
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def new_sha() -> str:
    return hashlib.sha1(uuid.uuid4().bytes).hexdigest()


def is_lfs(path: str, size: int) -> bool:
    return path.endswith(LFS_SUFFIXES) or size >= 10 * 1024 * 1024


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class File:
    data: bytes
    lfs: bool

    @property
    def oid(self) -> str:  # git blob sha1
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class Commit:
    sha: str
    parent: str | None
    files: dict[str, File]
    title: str
    message: str = ""
    author: str = "me"
    date: str = field(default_factory=now)


@dataclass
class Repo:
    type: str
    id: str
    private: bool = False
    gated: bool | str = False  # False, "auto" or "manual"
    readers: set[str] = field(default_factory=set)  # users granted read / gated access
    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # "main" / "refs/pr/1" / "tags/v1" -> sha
    created: str = field(default_factory=now)

    def resolve(self, rev: str) -> Commit | None:
        for key in (
            rev,
            f"tags/{rev}",
            rev.removeprefix("refs/heads/"),
            rev.replace("refs/tags/", "tags/", 1),
        ):
            if key in self.refs:
                return self.commits[self.refs[key]]
        if re.fullmatch(r"[0-9a-f]{40}", rev):
            return self.commits.get(rev)
        return None


@dataclass
class User:
    name: str
    write: set[str]


@dataclass
class Fault:
    pattern: str
    remaining: int
    status: int | str  # an HTTP status, or "drop" to close the connection without an answer
    method: str | None


class HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


# --- README metadata check (a small subset of what the Hub's /api/validate-yaml enforces) --------------------
LICENSES = frozenset(
    _words(
        "apache-2.0 mit openrail openrail++ bigscience-openrail-m creativeml-openrail-m "
        "bigscience-bloom-rail-1.0 bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause "
        "bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 "
        "cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 "
        "cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0 "
        "cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 "
        "agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c "
        "ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib "
        "pddl lgpl-lr deepfloyd-if-license fair-noncommercial-research-license llama2 llama3 llama3.1 "
        "llama3.2 llama3.3 llama4 gemma unknown other"
    )
)
TASK_CATEGORIES = frozenset(
    _words(
        "text-generation text2text-generation text-classification token-classification question-answering "
        "summarization translation fill-mask sentence-similarity feature-extraction "
        "zero-shot-classification table-question-answering text-ranking reinforcement-learning robotics "
        "image-text-to-text visual-question-answering image-classification text-to-image "
        "automatic-speech-recognition text-to-speech other"
    )
)
SIZE_CATEGORIES = frozenset(
    _words(
        "n<1K 1K<n<10K 10K<n<100K 100K<n<1M 1M<n<10M 10M<n<100M 100M<n<1B 1B<n<10B 10B<n<100B 100B<n<1T n>1T"
    )
)


def front_matter(text: str) -> dict | None:
    """The YAML metadata of a README as a dict (None when there is none); ValueError when unparsable."""
    m = re.match(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", text, re.S)
    if not m:
        return None
    import yaml

    try:
        data = yaml.safe_load(m.group(1))
    except yaml.YAMLError as err:
        raise ValueError(f"YAML is not valid: {err}") from None
    if data is not None and not isinstance(data, dict):
        raise ValueError("YAML metadata must be a mapping")
    return data or {}


def validate_metadata(text: str, repo_type: str) -> list[str]:
    try:
        meta = front_matter(text)
    except ValueError as err:
        return [str(err)]
    errors: list[str] = []
    if not meta:
        return errors

    def str_list(key: str, allowed: set[str] | None = None) -> None:
        value = meta.get(key)
        if value is None:
            return
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            errors.append(f'"{key}" must be a string or an array of strings')
        elif allowed is not None:
            errors.extend(f'"{key}" with value "{v}" is not valid' for v in values if v not in allowed)

    str_list("license", LICENSES)
    str_list("tags")
    str_list("language")
    if repo_type == "dataset":
        str_list("task_categories", TASK_CATEGORIES)
        str_list("size_categories", SIZE_CATEGORIES)
        str_list("source_datasets")
        configs = meta.get("configs", [])
        if not isinstance(configs, list) or not all(
            isinstance(c, dict) and "config_name" in c for c in configs
        ):
            errors.append('"configs" must be an array of objects with a "config_name"')
    return errors


# --- the server ----------------------------------------------------------------------------------------------
def validate_card(card) -> None:
    """``card.validate()`` (a ``huggingface_hub`` RepoCard) against this server: before huggingface_hub 2.2 it
    posts to huggingface.co whatever ``HF_ENDPOINT`` says, so there the same check runs here directly."""
    import huggingface_hub
    from packaging.version import Version

    if Version(huggingface_hub.__version__) >= Version("2.2"):
        card.validate()
        return
    errors = validate_metadata(str(card), getattr(card, "repo_type", None) or "model")
    if errors:
        raise ValueError("Invalid metadata in README.md.\n" + "\n".join(f"- {e}" for e in errors))


def client_errors() -> tuple[type[BaseException], ...]:
    """The HTTP library errors the installed Hub client may raise as they are (a dropped connection; ``whoami``
    before huggingface_hub 1.0): httpx2 (huggingface_hub >= 2), httpx (1.x) or requests (< 1)."""
    classes: list[type[BaseException]] = [ConnectionError]
    for module, attr in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            classes.append(getattr(__import__(module), attr))
        except (ImportError, AttributeError):
            continue
    return tuple(classes)


class HubServer:
    def __init__(self, port: int = 0) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs: dict[str, bytes] = {}  # sha256 -> content
        self.users: dict[str, User] = {
            WRITE_TOKEN: User("me", {"me", "prefkit-test"}),
            READ_TOKEN: User("reader", {"reader"}),
        }
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for assertions
        self.lock = threading.RLock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _make_handler(self))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.token, self.read_token = WRITE_TOKEN, READ_TOKEN
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="hubserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- Python API for tests ---------------------------------------------------------------------------------
    def add_user(self, name: str, token: str, write: tuple[str, ...] = ()) -> None:
        self.users[token] = User(name, {name, *write})

    def grant_access(self, repo_id: str, user: str, repo_type: str = "dataset") -> None:
        """Let ``user`` read a private repo or download a gated one."""
        self.get_repo(repo_id, repo_type).readers.add(user)

    def fail_next(
        self, pattern: str, times: int = 1, status: int | str = 500, method: str | None = None
    ) -> None:
        """Make the next ``times`` requests whose path contains ``pattern`` fail with ``status`` (or "drop")."""
        with self.lock:
            self.faults.append(Fault(pattern, times, status, method))

    def unique_id(self, prefix: str = "me/test") -> str:
        """A repo id no test has used yet, e.g. "me/test-3f2a9c1d"."""
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    def get_repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def create_repo(
        self, repo_id: str, repo_type: str = "dataset", private: bool = False, gated: bool | str = False
    ) -> Repo:
        """An empty repo with the Hub's initial commit (a ``.gitattributes``)."""
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                raise ValueError(f"{repo_type} repo {repo_id} already exists")
            repo = Repo(repo_type, repo_id, private=private, gated="auto" if gated is True else gated)
            self.repos[(repo_type, repo_id)] = repo
            sha = new_sha()
            repo.commits[sha] = Commit(
                sha, None, {".gitattributes": File(GITATTRIBUTES, False)}, "initial commit"
            )
            repo.refs["main"] = sha
            return repo

    def create_dataset_repo(
        self,
        repo_id: str,
        files: dict[str, bytes | str] | None = None,
        private: bool = False,
        gated: bool | str = False,
        repo_type: str = "dataset",
    ) -> str:
        """Create a repo (with ``files`` committed on main when given); returns the head sha."""
        repo = self.create_repo(repo_id, repo_type, private=private, gated=gated)
        return self.add_commit(repo_id, files, repo_type=repo_type) if files else repo.refs["main"]

    def add_commit(
        self,
        repo_id: str,
        files: dict[str, bytes | str | None],
        branch: str = "main",
        repo_type: str = "dataset",
        message: str = "Upload files",
    ) -> str:
        """Commit ``files`` (None deletes a path) on ``branch`` (created from main when missing); returns the sha."""
        with self.lock:
            repo = self.get_repo(repo_id, repo_type)
            if branch not in repo.refs:
                repo.refs[branch] = repo.refs["main"]
            adds = {p: (d.encode() if isinstance(d, str) else d) for p, d in files.items() if d is not None}
            snapshot = dict(repo.commits[repo.refs[branch]].files)
            for path, data in files.items():
                if data is None:
                    snapshot.pop(path, None)
            snapshot.update({p: File(d, is_lfs(p, len(d))) for p, d in adds.items()})
            return self._commit(repo, branch, snapshot, message)

    def read_file(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "dataset") -> bytes:
        return self.get_repo(repo_id, repo_type).resolve(revision).files[path].data

    def list_files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> list[str]:
        return sorted(self.get_repo(repo_id, repo_type).resolve(revision).files)

    def add_datasetdict(
        self,
        repo_id: str,
        splits: dict,
        config_name: str = "default",
        data_dir: str | None = None,
        readme: bool = True,
        extra_files: dict[str, bytes | str] | None = None,
        private: bool = False,
        gated: bool | str = False,
        branch: str = "main",
    ) -> str:
        """Lay out ``{split: Dataset | pa.Table | list[dict]}`` like ``push_to_hub`` does and commit it.

        Files go to ``<data_dir>/<split>-00000-of-00001.parquet`` (data_dir defaults to "data" for the default
        config and to the config name otherwise). With ``readme`` the README's ``configs`` gets an entry for this
        config (merged into an existing README, so calling this again adds another named config).
        Creates the repo when missing; returns the new head sha.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        data_dir = data_dir or ("data" if config_name == "default" else config_name)
        files: dict[str, bytes | str] = {}
        for split, data in splits.items():
            buf = io.BytesIO()
            if hasattr(data, "to_parquet"):  # datasets.Dataset: keeps its features in the parquet metadata
                data.to_parquet(buf)
            else:
                pq.write_table(data if isinstance(data, pa.Table) else pa.Table.from_pylist(data), buf)
            files[f"{data_dir}/{split}-00000-of-00001.parquet"] = buf.getvalue()
        if ("dataset", repo_id) not in self.repos:
            self.create_repo(repo_id, private=private, gated=gated)
        if readme:
            import yaml

            repo = self.get_repo(repo_id)
            old = repo.resolve(branch) or repo.resolve("main")
            text = old.files["README.md"].data.decode() if "README.md" in old.files else ""
            meta = front_matter(text) or {}
            body = re.sub(r"\A---\s*\n.*?\n---\s*\n?", "", text, flags=re.S) or f"# {repo_id}\n"
            configs = [c for c in meta.get("configs", []) if c.get("config_name") != config_name]
            entry = {
                "config_name": config_name,
                "data_files": [{"split": s, "path": f"{data_dir}/{s}-*"} for s in splits],
            }
            meta["configs"] = [*configs, entry]
            files["README.md"] = f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n{body}"
        files.update(extra_files or {})
        return self.add_commit(repo_id, files, branch=branch)

    def add_json_files(
        self,
        repo_id: str,
        files: dict[str, list[dict]],
        readme: str | None = None,
        private: bool = False,
        gated: bool | str = False,
        branch: str = "main",
    ) -> str:
        """Commit JSON-lines files such as ``{"helpful-base/train.jsonl.gz": rows}`` (gzipped when the path ends
        in .gz), the layout of Anthropic/hh-rlhf; load with ``load_dataset(repo, data_dir="helpful-base")``."""
        if ("dataset", repo_id) not in self.repos:
            self.create_repo(repo_id, private=private, gated=gated)
        blobs: dict[str, bytes | str] = {}
        for path, rows in files.items():
            data = "".join(json.dumps(r) + "\n" for r in rows).encode()
            blobs[path] = gzip.compress(data, mtime=0) if path.endswith(".gz") else data
        if readme is not None:
            blobs["README.md"] = readme
        return self.add_commit(repo_id, blobs, branch=branch)

    # --- internals ----------------------------------------------------------------------------------------------
    def _commit(
        self, repo: Repo, ref: str, files: dict[str, File], title: str, message: str = "", author: str = "me"
    ) -> str:
        sha = new_sha()
        repo.commits[sha] = Commit(sha, repo.refs.get(ref), files, title, message, author)
        repo.refs[ref] = sha
        return sha

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.remaining > 0 and fault.pattern in path and fault.method in (None, method):
                    fault.remaining -= 1
                    return fault
        return None

    def user_for(self, headers) -> User | None:
        auth = headers.get("Authorization", "")
        if not auth.lower().startswith("bearer "):
            return None
        user = self.users.get(auth[7:].strip())
        if user is None:
            raise HttpError(401, "Invalid credentials in Authorization header")
        return user

    def can_write(self, user: User | None, repo_id: str) -> bool:
        return user is not None and repo_id.split("/")[0] in user.write

    def readable(self, repo_type: str, repo_id: str, user: User | None) -> Repo:
        """The repo if ``user`` may see it, else the error the Hub gives (401/404 RepoNotFound)."""
        repo = self.repos.get((repo_type, repo_id))
        if (
            repo is not None
            and repo.private
            and not (self.can_write(user, repo_id) or (user and user.name in repo.readers))
        ):
            repo = None
        if repo is None:
            status = 401 if user is None else 404
            raise HttpError(status, "Repository not found", "RepoNotFound")
        return repo

    def check_gate(self, repo: Repo, user: User | None, path: str) -> None:
        if not repo.gated or path in ("README.md", ".gitattributes"):
            return
        if user is not None and (self.can_write(user, repo.id) or user.name in repo.readers):
            return
        kind = "dataset" if repo.type == "dataset" else repo.type
        if user is None:
            raise HttpError(
                401,
                f"Access to {kind} {repo.id} is restricted. You must have access to it and be "
                "authenticated to access it. Please log in.",
                "GatedRepo",
            )
        raise HttpError(
            403,
            f"Access to {kind} {repo.id} is restricted and you are not in the authorized list. "
            f"Visit {self.url}/{URL_PREFIX[repo.type]}{repo.id} to ask for access.",
            "GatedRepo",
        )

    def revision(self, repo: Repo, rev: str) -> Commit:
        commit = repo.resolve(rev)
        if commit is None:
            raise HttpError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return commit


def _entries(commit: Commit, prefix: str, recursive: bool) -> list[dict]:
    """Tree entries under ``prefix`` ("" = root), as /api/.../tree answers them."""
    prefix = prefix.strip("/")
    base = f"{prefix}/" if prefix else ""
    if prefix and prefix not in commit.files and not any(p.startswith(base) for p in commit.files):
        raise HttpError(404, f"{prefix} does not exist on {commit.sha}", "EntryNotFound")
    if prefix in commit.files:
        return [_file_entry(prefix, commit.files[prefix])]
    out: dict[str, dict] = {}
    for path in sorted(commit.files):
        if not path.startswith(base):
            continue
        parts = path[len(base) :].split("/")
        for depth in range(1, len(parts)):  # the folders on the way down
            if not recursive and depth > 1:
                break
            d = base + "/".join(parts[:depth])
            out.setdefault(d, {"type": "directory", "path": d, "size": 0, "oid": _dir_oid(commit, d)})
        if recursive or len(parts) == 1:
            out[path] = _file_entry(path, commit.files[path])
    return list(out.values())


def _dir_oid(commit: Commit, path: str) -> str:
    return hashlib.sha1(f"{commit.sha}:{path}".encode()).hexdigest()


def _file_entry(path: str, f: File) -> dict:
    entry = {"type": "file", "path": path, "size": len(f.data), "oid": f.oid}
    if f.lfs:
        entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": 134}
    return entry


def _repo_info(hub: HubServer, repo: Repo, commit: Commit) -> dict:
    card = None
    if "README.md" in commit.files:
        try:
            card = front_matter(commit.files["README.md"].data.decode())
        except ValueError:
            card = None
    return {
        "_id": hashlib.md5(repo.id.encode()).hexdigest()[:24],
        "id": repo.id,
        "author": repo.id.split("/")[0],
        "sha": commit.sha,
        "lastModified": commit.date,
        "createdAt": repo.created,
        "private": repo.private,
        "gated": repo.gated,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": (card or {}).get("tags", []),
        "cardData": card,
        "siblings": [{"rfilename": p} for p in sorted(commit.files)],
    }


def _make_handler(hub: HubServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        # --- plumbing -------------------------------------------------------------------------------------------
        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while (size := int(self.rfile.readline().strip() or b"0", 16)) > 0:
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(
            self,
            status: int,
            body: bytes = b"",
            headers: dict | None = None,
            ctype: str = "application/json",
            length: int | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, obj, status: int = 200, headers: dict | None = None) -> None:
            self._send(status, json.dumps(obj).encode(), headers)

        def _handle(self) -> None:
            split = urlsplit(self.path)
            path, query = split.path, {k: v[-1] for k, v in parse_qs(split.query).items()}
            with hub.lock:
                hub.requests.append((self.command, path))
            body = self._body() if self.command in ("POST", "PUT", "DELETE") else b""
            fault = hub._take_fault(self.command, path)
            if fault is not None and fault.status == "drop":
                self.close_connection = True
                return
            if fault is not None:
                return self._json({"error": "injected failure"}, int(fault.status))
            try:
                self._route(path, query, body)
            except HttpError as err:
                one_line = " ".join(err.message.split()).encode("ascii", "replace").decode()
                headers = {"X-Error-Message": one_line, **err.headers}
                if err.code:
                    headers["X-Error-Code"] = err.code
                self._json({"error": err.message}, err.status, headers)

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle

        # --- routing --------------------------------------------------------------------------------------------
        def _route(self, path: str, query: dict, body: bytes) -> None:
            user = hub.user_for(self.headers)
            seg = [unquote(s) for s in path.strip("/").split("/")]
            m = self.command
            if seg[:2] == ["api", "whoami-v2"]:
                if user is None:
                    raise HttpError(401, "Invalid credentials in Authorization header")
                orgs = sorted(user.write - {user.name})
                return self._json(
                    {
                        "type": "user",
                        "name": user.name,
                        "fullname": user.name,
                        "orgs": [{"type": "org", "name": o} for o in orgs],
                        "auth": {
                            "type": "access_token",
                            "accessToken": {"displayName": "test", "role": "write"},
                        },
                    }
                )
            if seg[:2] == ["api", "validate-yaml"] and m == "POST":
                req = json.loads(body or b"{}")
                errors = validate_metadata(req.get("content", ""), req.get("repoType") or "model")
                return self._json(
                    {"errors": [{"message": e} for e in errors], "warnings": []}, 400 if errors else 200
                )
            if seg[:2] == ["api", "repos"] and m == "POST" and len(seg) == 3:
                return self._repos_action(seg[2], json.loads(body or b"{}"), user)
            if seg[0] == "lfs-upload" and m == "PUT":
                oid = seg[1]
                if hashlib.sha256(body).hexdigest() != oid:
                    raise HttpError(400, "sha256 mismatch")
                with hub.lock:
                    hub.lfs[oid] = body
                return self._send(200)
            if seg[0] == "api" and len(seg) >= 4 and seg[1] in REPO_TYPES:
                return self._api_repo(REPO_TYPES[seg[1]], f"{seg[2]}/{seg[3]}", seg[4:], query, body, user)
            # git LFS batch: /[datasets/]ns/name.git/info/lfs/objects/batch
            rtype, rest = (
                (REPO_TYPES[seg[0]], seg[1:]) if seg[0] in ("datasets", "spaces") else ("model", seg)
            )
            if (
                len(rest) >= 2
                and rest[1].endswith(".git")
                and rest[2:] == ["info", "lfs", "objects", "batch"]
            ):
                return self._lfs_batch(hub.readable(rtype, f"{rest[0]}/{rest[1][:-4]}", user), body, user)
            # /[datasets/]ns/name/resolve/{rev}/{path}
            if len(rest) >= 5 and rest[2] == "resolve" and m in ("GET", "HEAD"):
                return self._resolve(
                    hub.readable(rtype, f"{rest[0]}/{rest[1]}", user), rest[3], "/".join(rest[4:]), user
                )
            raise HttpError(404, f"no route for {m} {path}")

        def _repos_action(self, action: str, req: dict, user: User | None) -> None:
            rtype = req.get("type") or "model"
            repo_id = f"{req.get('organization') or (user.name if user else '')}/{req.get('name')}"
            if user is None:
                raise HttpError(401, "You must be authenticated to do this")
            if action == "create":
                if not hub.can_write(user, repo_id):
                    raise HttpError(
                        403,
                        f"You don't have the rights to create a {rtype} under the namespace "
                        f'"{repo_id.split("/")[0]}"',
                    )
                url = f"{hub.url}/{URL_PREFIX[rtype]}{repo_id}"
                with hub.lock:
                    if (rtype, repo_id) in hub.repos:
                        raise HttpError(409, f"You already created this {rtype} repo", headers={})
                    visibility = req.get("visibility")
                    hub.create_repo(
                        repo_id, rtype, private=bool(req.get("private")) or visibility == "private"
                    )
                return self._json(
                    {"url": url, "name": repo_id, "id": hashlib.md5(repo_id.encode()).hexdigest()}
                )
            if action == "delete":
                repo = hub.readable(rtype, repo_id, user)
                if not hub.can_write(user, repo_id):
                    raise HttpError(403, "You don't have the rights to delete this repo")
                with hub.lock:
                    del hub.repos[(rtype, repo.id)]
                return self._send(200)
            raise HttpError(404, f"no route for repos/{action}")

        def _api_repo(
            self,
            rtype: str,
            repo_id: str,
            seg: list[str],
            query: dict,
            body: bytes,
            user: User | None,
        ) -> None:
            repo = hub.readable(rtype, repo_id, user)
            m, op = self.command, (seg[0] if seg else "")
            if op == "" and m == "GET":
                return self._json(_repo_info(hub, repo, hub.revision(repo, "main")))
            if op == "revision" and m == "GET":
                return self._json(_repo_info(hub, repo, hub.revision(repo, seg[1])))
            if op == "tree" and m == "GET":
                commit = hub.revision(repo, seg[1])
                return self._json(
                    _entries(commit, "/".join(seg[2:]), query.get("recursive") in ("1", "true", "True"))
                )
            if op == "paths-info" and m == "POST":
                commit = hub.revision(repo, seg[1])
                try:
                    paths = json.loads(body)["paths"]
                except (ValueError, KeyError):
                    paths = parse_qs(body.decode()).get("paths", [])
                out = []
                for p in (p.strip("/") for p in paths):
                    if p in commit.files:
                        out.append(_file_entry(p, commit.files[p]))
                    elif any(f.startswith(p + "/") for f in commit.files):
                        out.append({"type": "directory", "path": p, "size": 0, "oid": _dir_oid(commit, p)})
                return self._json(out)
            if op == "refs" and m == "GET":

                def ref(key: str, name: str, full: str) -> dict:
                    return {"name": name, "ref": full, "targetCommit": repo.refs[key]}

                branches = [ref(r, r, f"refs/heads/{r}") for r in repo.refs if "/" not in r]
                tags = [ref(r, r[5:], f"refs/tags/{r[5:]}") for r in repo.refs if r.startswith("tags/")]
                prs = [ref(r, r, r) for r in repo.refs if r.startswith("refs/pr/")]
                return self._json(
                    {
                        "branches": branches,
                        "tags": tags,
                        "converts": [],
                        "pullRequests": prs if query.get("include_prs") else [],
                    }
                )
            if op == "commits" and m == "GET":
                commit, out = hub.revision(repo, seg[1]), []
                while commit is not None:
                    out.append(
                        {
                            "id": commit.sha,
                            "title": commit.title,
                            "message": commit.message,
                            "authors": [{"user": commit.author}],
                            "date": commit.date,
                        }
                    )
                    commit = repo.commits.get(commit.parent) if commit.parent else None
                return self._json(out)
            # everything below writes
            create_pr = query.get("create_pr") in ("1", "true", "True")
            if not (hub.can_write(user, repo_id) or (create_pr and user is not None)):
                if user is None:
                    raise HttpError(401, "You must be authenticated to do this", "RepoNotFound")
                raise HttpError(
                    403,
                    f"You don't have the rights to write to {rtype} {repo_id}. Pass `create_pr=1`"
                    " as a query parameter to create a Pull Request",
                )
            if op == "preupload" and m == "POST":
                hub.revision(repo, seg[1]) if not create_pr else None
                files = json.loads(body)["files"]
                return self._json(
                    {
                        "files": [
                            {
                                "path": f["path"],
                                "uploadMode": "lfs"
                                if is_lfs(f["path"], f.get("size", 0)) and f.get("size", 0) > 0
                                else "regular",
                                "shouldIgnore": False,
                            }
                            for f in files
                        ],
                        "commitOid": repo.refs["main"],
                    }
                )
            if op == "commit" and m == "POST":
                return self._commit(repo, seg[1], body, create_pr, user)
            if op == "branch" and m == "POST":
                req = json.loads(body or b"{}")
                with hub.lock:
                    if seg[1] in repo.refs:
                        raise HttpError(409, "Reference already exists")
                    repo.refs[seg[1]] = hub.revision(repo, req.get("startingPoint") or "main").sha
                return self._send(200)
            if op == "branch" and m == "DELETE":
                with hub.lock:
                    if seg[1] not in repo.refs or seg[1] == "main":
                        raise HttpError(404 if seg[1] != "main" else 403, f"cannot delete branch {seg[1]}")
                    del repo.refs[seg[1]]
                return self._send(200)
            if op == "tag" and m == "POST":
                req = json.loads(body or b"{}")
                with hub.lock:
                    if f"tags/{req['tag']}" in repo.refs:
                        raise HttpError(409, "Tag already exists")
                    repo.refs[f"tags/{req['tag']}"] = hub.revision(repo, seg[1]).sha
                return self._send(200)
            if op == "settings" and m == "PUT":
                req = json.loads(body or b"{}")
                repo.private = req.get("private", repo.private)
                repo.gated = req.get("gated", repo.gated)
                return self._json({})
            raise HttpError(404, f"no route for {m} /api/{rtype}s/{repo_id}/{'/'.join(seg)}")

        def _commit(self, repo: Repo, rev: str, body: bytes, create_pr: bool, user: User) -> None:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            header = next((x["value"] for x in lines if x["key"] == "header"), {})
            with hub.lock:
                if create_pr:
                    base = hub.revision(repo, rev)
                    num = 1 + sum(r.startswith("refs/pr/") for r in repo.refs)
                    ref = f"refs/pr/{num}"
                    repo.refs[ref] = base.sha
                else:
                    base = hub.revision(repo, rev)
                    ref = next((r for r in (rev, rev.removeprefix("refs/heads/")) if r in repo.refs), None)
                    if ref is None:
                        raise HttpError(400, f"Cannot commit to {rev}: not a branch", "RevisionNotFound")
                parent = header.get("parentCommit")
                if parent and parent != base.sha:
                    raise HttpError(412, "A commit has happened since. Please refresh and try again.")
                files = dict(base.files)
                for item in lines:
                    key, value = item["key"], item["value"]
                    p = value.get("path", "")
                    if key == "file":
                        data = base64.b64decode(value["content"])
                        files[p] = File(data, False)
                    elif key == "lfsFile":
                        if value["oid"] not in hub.lfs:
                            raise HttpError(
                                422,
                                f"Your push was rejected because an LFS pointer ({p}) points "
                                "to a file that does not exist",
                            )
                        files[p] = File(hub.lfs[value["oid"]], True)
                    elif key == "deletedFile":
                        if p not in files:
                            raise HttpError(404, f"{p} does not exist", "EntryNotFound")
                        del files[p]
                    elif key == "deletedFolder":
                        files = {k: v for k, v in files.items() if not k.startswith(p.rstrip("/") + "/")}
                if "README.md" in files and files["README.md"] is not base.files.get("README.md"):
                    errors = validate_metadata(files["README.md"].data.decode("utf-8", "replace"), repo.type)
                    if errors:
                        raise HttpError(
                            400, "Invalid metadata in README.md.\n" + "\n".join(f"- {e}" for e in errors)
                        )
                sha = hub._commit(
                    repo,
                    ref,
                    files,
                    header.get("summary") or "Upload",
                    header.get("description") or "",
                    user.name,
                )
            repo_url = f"{hub.url}/{URL_PREFIX[repo.type]}{repo.id}"
            pr = f"{repo_url}/discussions/{ref.rsplit('/', 1)[1]}" if create_pr else None
            return self._json(
                {
                    "commitUrl": f"{repo_url}/commit/{sha}",
                    "commitOid": sha,
                    "pullRequestUrl": pr,
                    "success": True,
                }
            )

        def _lfs_batch(self, repo: Repo, body: bytes, user: User | None) -> None:
            if user is None:
                raise HttpError(401, "You must be authenticated to upload")
            req = json.loads(body)
            objects = []
            for obj in req.get("objects", []):
                entry = {"oid": obj["oid"], "size": obj["size"]}
                if obj["oid"] not in hub.lfs:
                    entry["actions"] = {"upload": {"href": f"{hub.url}/lfs-upload/{obj['oid']}"}}
                objects.append(entry)
            return self._json({"transfer": "basic", "objects": objects})

        def _resolve(self, repo: Repo, rev: str, path: str, user: User | None) -> None:
            commit = hub.revision(repo, rev)
            hub.check_gate(repo, user, path)
            f = commit.files.get(path)
            if f is None:
                raise HttpError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.sha})
            etag = f.sha256 if f.lfs else f.oid
            headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
            if f.lfs:
                headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(f.data))})
            data, status = f.data, 200
            rng = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
            if rng:
                total = len(data)
                start, end = rng.groups()
                if start == "":
                    start, end = max(0, total - int(end)), total - 1
                else:
                    start, end = int(start), min(int(end) if end else total - 1, total - 1)
                if start >= total and total > 0:
                    raise HttpError(
                        416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{total}"}
                    )
                data, status = data[start : end + 1], 206
                headers["Content-Range"] = f"bytes {start}-{end}/{total}"
            self._send(status, data, headers, ctype="application/octet-stream")

    return Handler


if __name__ == "__main__":  # pragma: no cover - manual use
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Serve a local fake Hugging Face Hub.")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = HubServer(args.port).start()
    print(f"HF_ENDPOINT={server.url} HF_HUB_DISABLE_XET=1 HF_TOKEN={server.token}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
