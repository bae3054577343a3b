"""Loopback servers for tests: a Hugging Face Hub (olah) and a scriptable HTTP file server.

Everything binds to 127.0.0.1 and needs no network, so download code can be
tested end to end with the real ``huggingface_hub`` and ``requests`` clients.
The module exposes context managers and plain functions rather than pytest
fixtures so that any conftest can wrap them at whatever scope it needs::

    @pytest.fixture(scope="session")
    def hub(tmp_path_factory):
        with OlahServer(tmp_path_factory.mktemp("hub")) as server:
            yield server

    def test_download(hub, tmp_path, monkeypatch):
        sha = make_hub_repo(hub.mirrors, "org/model", {"model.safetensors": b"..."})
        use_hf_hub(monkeypatch, hub.endpoint, tmp_path / "hf-home")
        path = huggingface_hub.hf_hub_download("org/model", "model.safetensors", revision=sha)

    def test_dropbox(tmp_path):
        routes = {"/s/abc/w.pth": [Reply(b"xx", truncate_to=1), Reply(b"xx")]}
        with http_file_server(routes) as server:
            ...  # GET server.url + "/s/abc/w.pth?dl=1"; server.hits("/s/abc/w.pth") == 2
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import NamedTuple
from urllib.parse import urlsplit

import pytest
from huggingface_hub import constants as hf_constants

LOOPBACK = "127.0.0.1"

# A commit identity and a config that ignores the machine's git configuration:
# CI runners have no ``user.name`` and a developer's global config may sign
# commits, rewrite line endings or route files through git-lfs filters.
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "cutmix-zoo tests",
    "GIT_AUTHOR_EMAIL": "tests@cutmix-zoo.invalid",
    "GIT_COMMITTER_NAME": "cutmix-zoo tests",
    "GIT_COMMITTER_EMAIL": "tests@cutmix-zoo.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
}
_GIT_OPTIONS = ("-c", "commit.gpgsign=false", "-c", "core.autocrlf=false", "-c", "core.safecrlf=false")


# --------------------------------------------------------------------------- #
# Hugging Face Hub served by olah from local git repositories
# --------------------------------------------------------------------------- #


def _git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` isolated from user/system config; return stdout or raise with stderr."""
    git = shutil.which("git")
    if git is None:
        raise RuntimeError("the olah test hub needs the `git` executable on PATH (olah reads repos through GitPython)")
    result = subprocess.run(
        [git, *_GIT_OPTIONS, *args],
        cwd=repo,
        env={**os.environ, **_GIT_ENV},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}:\n{result.stderr}")
    return result.stdout


def _repo_file(repo: Path, filename: str) -> Path:
    """Resolve a repo-relative POSIX filename inside ``repo``, refusing paths that escape it or touch .git."""
    parts = PurePosixPath(filename).parts
    if not parts or PurePosixPath(filename).is_absolute() or ".." in parts or ".git" in parts:
        raise ValueError(f"invalid file name for a hub repo: {filename!r}")
    return repo.joinpath(*parts)


def make_hub_repo(
    mirrors: Path,
    repo_id: str,
    files: Mapping[str, bytes | Path],
    message: str | None = None,
) -> str:
    """Commit ``files`` to model repo ``repo_id`` on branch ``main`` under ``mirrors``; return the commit sha.

    The first call creates ``mirrors/models/ORG/NAME`` as a git repository (the
    layout olah's ``mirrors-path`` expects); later calls add a new commit on
    top, overwriting the given files and keeping the others, so tests can pin
    an older revision by its sha. Values are file contents or paths to copy.
    Files are stored as plain git blobs (no LFS); olah serves them byte-exact.
    The server picks up new commits immediately, no restart needed.
    """
    org, _, name = repo_id.partition("/")
    if not org or not name or "/" in name:
        raise ValueError(f"repo_id must look like 'org/name', got {repo_id!r}")
    repo = mirrors / "models" / org / name
    if not (repo / ".git").is_dir():
        repo.mkdir(parents=True, exist_ok=True)
        _git(repo, "init", "--quiet")
        # Hub clients ask for revision "main"; older git defaults to "master".
        _git(repo, "symbolic-ref", "HEAD", "refs/heads/main")
    for filename, content in files.items():
        target = _repo_file(repo, filename)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_bytes(content)
    _git(repo, "add", "--all")
    _git(repo, "commit", "--quiet", "--allow-empty", "-m", message or f"Update {', '.join(sorted(files))}")
    return _git(repo, "rev-parse", "HEAD").strip()


def free_port() -> int:
    """Ask the OS for a currently unused loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    """True once something accepts TCP connections on the loopback ``port``."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def _olah_config(port: int, repos: Path, mirrors: Path) -> str:
    """TOML for an offline olah that serves ``mirrors`` and allows every repo.

    Paths are JSON strings, which TOML accepts as basic strings.
    ``offline = true`` stops olah from contacting huggingface.co. The explicit
    allow rules are required: without them olah answers 401 to everything.
    ``metadata-cache-ttl = 0`` keeps it from reusing a resolved branch when a
    test commits again.
    """
    netloc = f"{LOOPBACK}:{port}"
    return (
        "[basic]\n"
        f'host = "{LOOPBACK}"\n'
        f"port = {port}\n"
        f"repos-path = {json.dumps(str(repos))}\n"
        'mirror-scheme = "http"\n'
        f'mirror-netloc = "{netloc}"\n'
        f'mirror-lfs-netloc = "{netloc}"\n'
        f"mirrors-path = [{json.dumps(str(mirrors))}]\n"
        "metadata-cache-ttl = 0\n"
        "\n"
        "[accessibility]\n"
        "offline = true\n"
        "\n"
        "[[accessibility.proxy]]\n"
        'repo = "*/*"\n'
        "allow = true\n"
        "\n"
        "[[accessibility.cache]]\n"
        'repo = "*/*"\n'
        "allow = true\n"
    )


class OlahServer:
    """An olah process serving the git repos under ``root/mirrors`` as a Hugging Face Hub on loopback.

    All olah state stays inside ``root``: ``mirrors/`` (repos, see
    :func:`make_hub_repo`), ``repos/`` (olah's cache), ``home/`` (its HOME,
    so its ``~/.olah`` database lands here), ``logs/`` and ``olah.out`` (its
    stdout/stderr). olah is started as ``sys.executable -c "from olah.server
    import cli; cli()"``, the console script's entry point, so it works in any
    environment where ``pip install olah`` was run, whether or not its
    ``olah-cli`` script is on PATH. It needs the ``git`` executable.

    Use as a context manager, or call :meth:`start` / :meth:`stop`. Once
    started, ``port`` is the bound port and ``startup_seconds`` how long olah
    took to accept connections.
    """

    def __init__(self, root: Path, startup_timeout: float = 60.0) -> None:
        self.root = Path(root).resolve()
        self.mirrors = self.root / "mirrors"
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        """Base URL to use as ``HF_ENDPOINT``, e.g. ``http://127.0.0.1:40123``."""
        if self.port is None:
            raise RuntimeError("OlahServer is not started")
        return f"http://{LOOPBACK}:{self.port}"

    def log(self) -> str:
        """olah's captured stdout/stderr and its own log file, for failure messages."""
        chunks = []
        for path in (self.root / "olah.out", self.root / "logs" / "olah.log"):
            if path.exists():
                chunks.append(f"--- {path} ---\n{path.read_text(errors='replace')[-8000:]}")
        return "\n".join(chunks) or "(olah wrote no output)"

    def start(self) -> OlahServer:
        """Start olah on a free port and block until it accepts connections.

        The port is chosen before olah binds it, so another process can grab
        it in between; a start that fails with "address already in use" is
        retried on a new port. Raises RuntimeError with olah's output if it
        exits or is not listening within ``startup_timeout`` seconds.
        """
        if self._process is not None:
            raise RuntimeError("OlahServer is already started")
        for directory in ("mirrors", "repos", "home", "logs"):
            (self.root / directory).mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            if self._start_once():
                return self
        raise RuntimeError(f"olah could not bind a free port after 3 attempts\n{self.log()}")

    def _start_once(self) -> bool:
        """Launch olah once; True when listening, False when its port was taken, else raise."""
        port = free_port()
        config = self.root / "olah.toml"
        config.write_text(_olah_config(port, self.root / "repos", self.mirrors))
        # olah imports huggingface_hub.constants, so keep the caller's HF_* settings away from it.
        env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE_"))}
        env.update(_GIT_ENV, HOME=str(self.root / "home"), PYTHONUNBUFFERED="1")
        started = time.monotonic()
        with open(self.root / "olah.out", "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-c", "from olah.server import cli; cli()",
                 "--config", str(config), "--log-path", str(self.root / "logs")],
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        while time.monotonic() - started < self.startup_timeout:
            if process.poll() is not None:
                if "address already in use" in self.log().lower():
                    return False
                raise RuntimeError(f"olah exited with code {process.returncode} during startup\n{self.log()}")
            if _port_open(port):
                self._process, self.port = process, port
                self.startup_seconds = time.monotonic() - started
                return True
            time.sleep(0.05)
        _terminate(process)
        raise RuntimeError(f"olah did not listen on port {port} within {self.startup_timeout:.0f}s\n{self.log()}")

    def stop(self) -> None:
        """Stop olah (SIGTERM, then SIGKILL after 10 s). Safe to call twice; files under root are kept."""
        if self._process is not None:
            _terminate(self._process)
            self._process = None

    def __enter__(self) -> OlahServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _terminate(process: subprocess.Popen) -> None:
    """Terminate ``process``, killing it if it ignores SIGTERM for 10 seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --------------------------------------------------------------------------- #
# Pointing huggingface_hub at a test hub
# --------------------------------------------------------------------------- #

_HF_ENV_TO_CLEAR = (
    "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE", "HUGGINGFACE_ASSETS_CACHE", "HF_XET_CACHE",
    "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "TRANSFORMERS_OFFLINE", "HUGGINGFACE_CO_STAGING",
)


def use_hf_hub(monkeypatch: pytest.MonkeyPatch, endpoint: str, hf_home: Path) -> None:
    """Make huggingface_hub use ``endpoint`` and a cache under ``hf_home``, online, for one test.

    huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, at
    import, into ``huggingface_hub.constants``; setting the environment
    variables later changes nothing in this process. So both are set: the
    constants for in-process calls, the environment for subprocesses (e.g. a
    CLI run with ``subprocess``). ``HUGGINGFACE_CO_URL_TEMPLATE`` must follow
    ``ENDPOINT``: ``hf_hub_url`` builds URLs from it. A token the developer
    has stored is hidden so nothing depends on the machine's login.
    """
    endpoint = endpoint.rstrip("/")
    hf_home = Path(hf_home)
    for name in _HF_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    patches = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hf_home / "hub"),
        "HUGGINGFACE_HUB_CACHE": str(hf_home / "hub"),
        "HF_ASSETS_CACHE": str(hf_home / "assets"),
        "HUGGINGFACE_ASSETS_CACHE": str(hf_home / "assets"),
        "HF_XET_CACHE": str(hf_home / "xet"),
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
    }
    for name, value in patches.items():
        if hasattr(hf_constants, name):  # the set of constants varies across huggingface_hub versions
            monkeypatch.setattr(hf_constants, name, value)
    set_hf_offline(monkeypatch, False)


def set_hf_offline(monkeypatch: pytest.MonkeyPatch, offline: bool) -> None:
    """Switch huggingface_hub's offline mode (HF_HUB_OFFLINE) at runtime, in-process and for subprocesses."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", offline)


# --------------------------------------------------------------------------- #
# Scriptable plain HTTP file server (stands in for Dropbox and similar hosts)
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Reply:
    """One scripted response of :func:`http_file_server`.

    ``status`` 200 serves ``body`` and honours ``Range: bytes=A-B`` requests
    with 206 (416 when out of range), like a real file host does for resumed
    downloads; other statuses send ``body`` as is (e.g. 404/500 pages).
    ``headers`` are added to the response (e.g. ``Location`` for a redirect).
    ``truncate_to`` simulates a dropped connection: the full Content-Length is
    announced but only that many body bytes are sent before the socket closes.
    ``delay`` waits that many seconds before the body, so concurrent clients overlap.
    """

    body: bytes = b""
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    truncate_to: int | None = None
    delay: float = 0.0


RouteSpec = bytes | Reply | Sequence[bytes | Reply]


class RequestRecord(NamedTuple):
    """A request received by :class:`FileServer`: method, path without query, query string, headers."""

    method: str
    path: str
    query: str
    headers: dict[str, str]


def _as_replies(spec: RouteSpec) -> list[Reply]:
    """Normalise a route spec to a non-empty list of replies."""
    items = [spec] if isinstance(spec, (bytes, Reply)) else list(spec)
    if not items:
        raise ValueError("a route needs at least one reply")
    return [item if isinstance(item, Reply) else Reply(item) for item in items]


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """Parse a single ``bytes=A-B`` / ``bytes=A-`` / ``bytes=-N`` header into [start, end); None if unsatisfiable."""
    unit, _, spec = header.partition("=")
    first, _, last = spec.strip().partition("-")
    if unit.strip() != "bytes" or "," in spec:
        return None
    try:
        if not first:  # suffix range: the last N bytes
            start, end = max(size - int(last), 0), size
        else:
            start, end = int(first), (min(int(last) + 1, size) if last else size)
    except ValueError:
        return None
    return (start, end) if start < end else None


class FileServer:
    """State of a running :func:`http_file_server`: its URL, routes and the requests it received.

    A route maps a URL path (the query string, e.g. ``?dl=1``, is ignored) to
    a list of :class:`Reply` that GET requests consume in order, the last one
    repeating forever; HEAD requests answer with the next reply's headers
    without consuming it. Unknown paths get 404. Thread-safe.
    """

    def __init__(self, routes: Mapping[str, RouteSpec]) -> None:
        self._lock = threading.Lock()
        self._routes = {path: _as_replies(spec) for path, spec in routes.items()}
        self.requests: list[RequestRecord] = []
        self.url = ""

    def set_route(self, path: str, spec: RouteSpec) -> None:
        """Replace what ``path`` serves from the next request on."""
        with self._lock:
            self._routes[path] = _as_replies(spec)

    def hits(self, path: str, method: str = "GET") -> int:
        """How many ``method`` requests ``path`` received (query strings ignored)."""
        with self._lock:
            return sum(1 for r in self.requests if r.path == path and r.method == method)

    def _next_reply(self, record: RequestRecord) -> Reply:
        """Log ``record`` and pick its reply, consuming it for GET unless it is the last of its route."""
        with self._lock:
            self.requests.append(record)
            replies = self._routes.get(record.path)
            if replies is None:
                return Reply(b"not found", status=404)
            if record.method == "GET" and len(replies) > 1:
                return replies.pop(0)
            return replies[0]


def _handler_for(state: FileServer) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``state``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._respond(send_body=True)

        def do_HEAD(self) -> None:
            self._respond(send_body=False)

        def _respond(self, send_body: bool) -> None:
            url = urlsplit(self.path)
            reply = state._next_reply(RequestRecord(self.command, url.path, url.query, dict(self.headers)))
            status, body = reply.status, reply.body
            headers = {"Content-Type": "application/octet-stream"}
            if status == 200:
                headers["Accept-Ranges"] = "bytes"
                if "Range" in self.headers:
                    span = _byte_range(self.headers["Range"], len(body))
                    if span is None:
                        status, body = 416, b""
                        headers["Content-Range"] = f"bytes */{len(reply.body)}"
                    else:
                        status, body = 206, body[span[0]:span[1]]
                        headers["Content-Range"] = f"bytes {span[0]}-{span[1] - 1}/{len(reply.body)}"
            headers["Content-Length"] = str(len(body))
            headers.update(reply.headers)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if send_body:
                time.sleep(reply.delay)
                sent = body if reply.truncate_to is None else body[:reply.truncate_to]
                try:
                    self.wfile.write(sent)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up; nothing to report
            # HTTP/1.0: the connection closes after every response, so a truncated body ends in EOF.
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            """Keep pytest output clean; requests are recorded in ``state.requests``."""

    return Handler


@contextmanager
def http_file_server(routes: Mapping[str, RouteSpec]) -> Iterator[FileServer]:
    """Serve ``routes`` over HTTP on a free loopback port for the duration of the block.

    A route value is the body (``bytes``), a :class:`Reply`, or a sequence of
    them consumed one per GET with the last repeating, e.g. a truncated reply
    followed by a good one to exercise a retry. Yields the :class:`FileServer`
    whose ``url`` is the base URL (``http://127.0.0.1:PORT``, no trailing slash).
    """
    state = FileServer(routes)
    with serve_http(_handler_for(state)) as url:
        state.url = url
        yield state


@contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Run ``handler`` on a free loopback port in a thread for the duration of the block; yields the base URL."""
    server = ThreadingHTTPServer((LOOPBACK, 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --------------------------------------------------------------------------- #
# A slow Hub: a TCP proxy that holds its first answer
# --------------------------------------------------------------------------- #


def _pipe(source: socket.socket, target: socket.socket, delay: float, seen: list[str] | None = None) -> None:
    """Copy ``source`` to ``target`` until EOF, waiting ``delay`` seconds before the first bytes go on; the request
    heads that pass (method, path and headers, one string each) are added to ``seen`` where it is given."""
    try:
        while data := source.recv(1 << 16):
            if seen is not None:
                seen.extend(head.decode("latin-1") for head in data.split(b"\r\n\r\n")
                            if head.split(b" ", 1)[0] in (b"GET", b"HEAD"))
            time.sleep(delay)
            delay = 0.0
            target.sendall(data)
        target.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # either side closed; the other thread sees it too


@dataclass
class Proxy:
    """A running :func:`delaying_proxy`: its base URL and the request heads it passed on, in order."""

    url: str = ""
    requests: list[str] = field(default_factory=list)

    def count(self, method: str, path_end: str) -> int:
        """How many ``method`` requests for a path ending in ``path_end`` passed."""
        return sum(1 for r in self.requests if r.startswith(f"{method} ") and r.split(" ", 2)[1].endswith(path_end))


@contextmanager
def delaying_proxy(target: str, first_delay: float = 0.0) -> Iterator[Proxy]:
    """A loopback TCP proxy to ``target`` (a base URL such as an olah hub's) that records the requests it passes on and
    holds its first connection's answer ``first_delay`` seconds: a live server slow to answer its first request
    (connections complete at once; only the reply is late). Later connections pass straight through."""
    host, _, port = urlsplit(target).netloc.partition(":")
    listener = socket.create_server((LOOPBACK, 0))
    proxy = Proxy(f"http://{LOOPBACK}:{listener.getsockname()[1]}")
    delays = [first_delay]

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            upstream = socket.create_connection((host, int(port)))
            delay = delays.pop() if delays else 0.0
            threading.Thread(target=_pipe, args=(client, upstream, 0.0, proxy.requests), daemon=True).start()
            threading.Thread(target=_pipe, args=(upstream, client, delay), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        listener.close()
        thread.join(timeout=5)
