"""Every download failure a user can meet: one sentence, bounded time, an intact cache, no silent wrong result.

No network is simulated with a closed loopback port and a host name that cannot resolve; Hub outages with
a loopback server answering 500/503; slow and stalled servers with a small server of this module; a zip
bomb, an HTML page and the other wrong files with the loopback Dropbox of conftest.py.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

import cutmix_zoo
from cutmix_zoo.cli import main as cli_main
from cutmix_zoo.hub import cache as zoo_cache
from cutmix_zoo.hub import network as hub_network
from cutmix_zoo.hub import original as original_source

import tiny
from servers import Reply, delaying_proxy, http_file_server, make_hub_repo, serve_http

TESTS = str(Path(__file__).parent)


def cache_entries(root: Path) -> list[str]:
    """Everything in the zoo cache (folders too), the lock folder and verification markers excepted."""
    cache = root / "zoo-cache"
    if not cache.exists():
        return []
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.relative_to(cache).parts[0] not in (".locks", ".verified"))


X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def same_logits(model, state) -> bool:
    with torch.no_grad():
        return torch.equal(model(X), tiny.logits(state, X))


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and ". " not in message and "Traceback" not in message


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def warm_imports():
    """Import what a load imports, and build huggingface_hub's request headers once (its first build asks the Hub for
    its agent registry, once a process), so that elapsed times measure the load's own requests."""
    import requests  # noqa: F401
    from huggingface_hub.utils import build_hf_headers

    import cutmix_zoo.builder  # noqa: F401
    import cutmix_zoo.hub.convert  # noqa: F401

    build_hf_headers()


# ---------------------------------------------------------------- no network, Hub outages

NO_NETWORK = [
    pytest.param(lambda: f"http://127.0.0.1:{closed_port()}", "the connection was refused", id="closed-port"),
    pytest.param(lambda: "http://nonexistent.invalid", "could not be resolved", id="unresolvable-host"),
]


def _timed_failed_load() -> tuple[float, cutmix_zoo.DownloadError]:
    """Load the tiny entry, which must fail with a DownloadError: how long the failure took, and the error."""
    started = time.monotonic()
    with pytest.raises(cutmix_zoo.DownloadError) as e:
        cutmix_zoo.load(tiny.FILE_ENTRY, progress=False)
    return time.monotonic() - started, e.value


@pytest.mark.parametrize(("endpoint", "reason"), NO_NETWORK)
def test_no_network_fails_fast_in_one_sentence_naming_both_sources_and_what_to_do(tiny_registry, isolated_env, monkeypatch,
                                                                                   endpoint, reason):
    base = endpoint()
    monkeypatch.setenv("HF_ENDPOINT", base)
    monkeypatch.setenv("CUTMIX_ZOO_ORIGINAL_URL", base + "/")
    elapsed, error = _timed_failed_load()
    message = str(error)
    assert elapsed < 5, f"{elapsed:.1f} s: {message}"
    assert one_sentence(message), message
    assert f"the Hub ({base})" in message and f"the original release ({base}/{tiny.FILE_PATH}" in message
    assert message.count(reason) == 2
    for remedy in ("HF_HUB_OFFLINE=1", f"cutmix-zoo download {tiny.FILE_ENTRY}", "weights=", "CUTMIX_ZOO_ORIGINAL_URL"):
        assert remedy in message
    assert error.__cause__ is not None  # the cause is chained for debugging
    assert cache_entries(isolated_env) == []


@pytest.mark.parametrize(("endpoint", "reason"), NO_NETWORK)
def test_no_network_cli_prints_one_line(tiny_registry, isolated_env, monkeypatch, capsys, endpoint, reason):
    base = endpoint()
    monkeypatch.setenv("HF_ENDPOINT", base)
    monkeypatch.setenv("CUTMIX_ZOO_ORIGINAL_URL", base + "/")
    started = time.monotonic()
    assert cli_main(["download", tiny.FILE_ENTRY]) == 1
    assert time.monotonic() - started < 5
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1 and reason in captured.err


@contextmanager
def black_hole() -> Iterator[str]:
    """The URL of a loopback port that behaves like a network dropping packets: a connection to it never completes.

    Its listening socket's accept queue (backlog 0) is filled with connections that are never accepted, after which
    Linux drops the SYN of every new one, as a firewall that drops packets does, and the client waits for its timeout.
    """
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        held: list[socket.socket] = []
        try:
            for _ in range(16):  # the kernel's queue holds a connection or two beyond the backlog
                probe = socket.socket()
                probe.settimeout(0.5)
                held.append(probe)
                try:
                    probe.connect(server.getsockname())
                except TimeoutError:
                    break
            else:
                pytest.fail("the listening socket kept accepting connections: no black hole")
            yield f"http://127.0.0.1:{server.getsockname()[1]}"
        finally:
            for sock in held:
                sock.close()


@contextmanager
def silent_server() -> Iterator[str]:
    """The URL of a loopback port that completes every connection and never answers a request (a read stall)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)  # the kernel completes the handshakes; nobody accepts, reads or answers
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


_LOAD_IN_A_FRESH_PROCESS = """
import sys, time
import cutmix_zoo, cutmix_zoo.builder, cutmix_zoo.hub.convert, huggingface_hub, requests  # imported before the clock: it times the network
started = time.monotonic()
try:
    cutmix_zoo.load("resnet50", progress=False)
except cutmix_zoo.DownloadError as e:
    print(f"{time.monotonic() - started:.2f}", e, sep="\\n")
"""


@pytest.mark.slow
def test_a_network_that_drops_packets_fails_within_seconds_naming_both_sources(isolated_env, monkeypatch):
    """The default timeouts in a fresh process, as a user meets them: HUB_CONNECT_TIMEOUT, CONNECT_TIMEOUT, and what
    huggingface_hub spends on its own first request (its agent registry, from the same unreachable endpoint)."""
    monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)
    monkeypatch.delenv("CUTMIX_ZOO_DOWNLOAD_TIMEOUT", raising=False)
    with black_hole() as base:
        env = dict(os.environ, HF_ENDPOINT=base, CUTMIX_ZOO_ORIGINAL_URL=base + "/")
        done = subprocess.run([sys.executable, "-c", _LOAD_IN_A_FRESH_PROCESS], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stdout.count("\n") == 2, done.stdout + done.stderr[-3000:]
    elapsed, message = done.stdout.splitlines()
    assert hub_network.HUB_CONNECT_TIMEOUT + original_source.CONNECT_TIMEOUT <= float(elapsed) < 10, f"{elapsed} s: {message}"
    assert one_sentence(message), message
    assert f"the Hub ({base}) could not be reached (no answer in time)" in message
    assert f"the original release ({base}/" in message and message.count("could not be reached (no answer in time)") == 2
    assert cache_entries(isolated_env) == []


def _failed_load_against(server, seconds: str, monkeypatch) -> tuple[float, str, str]:
    """Point both sources at ``server`` (a context manager giving its base URL) with both timeouts at ``seconds``, load
    the tiny entry, and return how long the failure took, its message and the URL."""
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", seconds)
    monkeypatch.setenv("CUTMIX_ZOO_DOWNLOAD_TIMEOUT", seconds)
    with server as base:
        monkeypatch.setenv("HF_ENDPOINT", base)
        monkeypatch.setenv("CUTMIX_ZOO_ORIGINAL_URL", base + "/")
        elapsed, error = _timed_failed_load()
        return elapsed, str(error), base


def test_the_connect_timeouts_follow_hf_hub_etag_timeout_and_the_download_timeout(tiny_registry, isolated_env, monkeypatch):
    elapsed, message, _ = _failed_load_against(black_hole(), "0.5", monkeypatch)
    assert 1 <= elapsed < 3, f"{elapsed:.1f} s: {message}"
    assert one_sentence(message) and message.count("could not be reached (no answer in time)") == 2, message


def test_servers_that_connect_and_never_answer_fail_within_the_timeouts(tiny_registry, isolated_env, monkeypatch):
    elapsed, message, base = _failed_load_against(silent_server(), "1", monkeypatch)
    assert 2 <= elapsed < 4, f"{elapsed:.1f} s: {message}"
    assert one_sentence(message), message
    assert f"the Hub ({base}) could not be reached (no answer in time)" in message and f"the original release ({base}/" in message


@pytest.mark.slow
def test_a_hub_slow_to_answer_still_serves_the_weights(env, hub, monkeypatch):
    """A live Hub that takes 4.5 s over its first answer (longer than the connect bound, shorter than
    huggingface_hub's 10 s) is slow, not down: the weights come from it, and the original release is never asked."""
    monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)
    state = tiny.state_dict(21)
    make_hub_repo(hub.mirrors, f"{env}/{tiny.FILE_ENTRY}", {"model.safetensors": save(state)})
    with delaying_proxy(hub.endpoint, first_delay=4.5) as slow:
        monkeypatch.setenv("HF_ENDPOINT", slow.url)
        started = time.monotonic()
        model = cutmix_zoo.load(tiny.FILE_ENTRY, progress=False)
        elapsed = time.monotonic() - started
    assert elapsed >= 4.5 > hub_network.HUB_CONNECT_TIMEOUT, f"{elapsed:.1f} s: the first answer was not the delayed one"
    assert "hf-home" in model.pretrained_cfg["source"] and same_logits(model, state)
    assert slow.count("GET", "/model.safetensors") == 1
    assert cache_entries(Path(os.environ["CUTMIX_ZOO_CACHE"]).parent) == []  # nothing converted from the original


def _hub_answering(status: int, org: str):
    paths = [f"/{org}/{name}/resolve/main/{file}" for name in (tiny.FILE_ENTRY, tiny.FOLDER_ENTRY)
             for file in ("model.safetensors", "config.json")]
    return http_file_server({path: Reply(b"the Hub is down", status=status) for path in paths})


@pytest.mark.parametrize("status", [500, 503])
def test_hub_outage_falls_back_at_once_and_quietly(dropbox, env, monkeypatch, capsys, status):
    with _hub_answering(status, env) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        started = time.monotonic()
        assert cli_main(["download", tiny.FILE_ENTRY, "--quiet"]) == 0
        assert time.monotonic() - started < 5
    captured = capsys.readouterr()
    assert captured.err == "" and len(captured.out.splitlines()) == 1
    assert dropbox.hits("/" + tiny.FILE_PATH) == 1


@pytest.mark.parametrize("status", [500, 503])
def test_hub_outage_reason_is_kept_when_the_original_fails_too(dropbox, env, monkeypatch, capsys, status):
    dropbox.set_route("/" + tiny.FILE_PATH, Reply(b"gone", status=502))
    with _hub_answering(status, env) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        started = time.monotonic()
        assert cli_main(["download", tiny.FILE_ENTRY, "--quiet"]) == 1
        assert time.monotonic() - started < 5
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and one_sentence(err), err
    assert f"the Hub ({hub.url}) answered HTTP {status}" in err and "answered HTTP 502" in err and tiny.FILE_PATH in err


# ---------------------------------------------------------------- slow, stalled and killed downloads


class SlowServer:
    """Serves ``body`` at every path, in one of three ways: ``ok``; ``trickle`` (a byte every 0.1 s for at most 10 s, then
    the connection closes); ``stall`` (half the body, then nothing for at most 15 s). ``stop`` ends every reply."""

    def __init__(self, body: bytes, mode: str) -> None:
        self.body, self.mode, self.stop = body, mode, threading.Event()
        self.url = ""

    def reply(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(self.body)))
        handler.end_headers()
        try:
            if self.mode == "ok":
                handler.wfile.write(self.body)
            elif self.mode == "trickle":
                ends = time.monotonic() + 10
                for i in range(len(self.body)):
                    if self.stop.is_set() or time.monotonic() > ends:
                        break
                    handler.wfile.write(self.body[i:i + 1])
                    handler.wfile.flush()
                    time.sleep(0.1)
            else:
                handler.wfile.write(self.body[:len(self.body) // 2])
                handler.wfile.flush()
                self.stop.wait(15)
        except OSError:
            pass  # the client gave up
        handler.close_connection = True


@contextmanager
def slow_server(body: bytes, mode: str) -> Iterator[SlowServer]:
    state = SlowServer(body, mode)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.reply(self)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serve_http(Handler) as url:
        state.url = url
        try:
            yield state
        finally:
            state.stop.set()  # release a trickling handler before the server shuts down


@pytest.fixture
def no_hub(tiny_registry, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")


def test_a_trickling_server_meets_the_overall_deadline(no_hub, isolated_env, monkeypatch):
    monkeypatch.setenv("CUTMIX_ZOO_DOWNLOAD_TIMEOUT", "2")
    with slow_server(tiny.save_bytes(tiny.state_dict(5)), "trickle") as server:
        monkeypatch.setenv("CUTMIX_ZOO_ORIGINAL_URL", server.url + "/")
        elapsed, error = _timed_failed_load()
    message = str(error)
    assert elapsed < 5, f"{elapsed:.1f} s"
    assert one_sentence(message) and "within 2 s (CUTMIX_ZOO_DOWNLOAD_TIMEOUT)" in message, message
    assert cache_entries(isolated_env) == []


def test_a_stall_reports_the_bytes_that_did_arrive(no_hub, isolated_env, monkeypatch):
    monkeypatch.setenv("CUTMIX_ZOO_DOWNLOAD_TIMEOUT", "2")
    body = tiny.save_bytes(tiny.state_dict(5))
    with slow_server(body, "stall") as server:
        monkeypatch.setenv("CUTMIX_ZOO_ORIGINAL_URL", server.url + "/")
        elapsed, error = _timed_failed_load()
        assert elapsed < 5
    message = str(error)
    assert one_sentence(message), message
    assert f"sent {len(body) // 2:,} of {len(body):,} bytes and then nothing" in message
    assert cache_entries(isolated_env) == []


def test_the_download_timeout_must_be_a_positive_number(no_hub, monkeypatch):
    monkeypatch.setenv("CUTMIX_ZOO_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(cutmix_zoo.InvalidArgumentError, match="CUTMIX_ZOO_DOWNLOAD_TIMEOUT must be a positive number"):
        cutmix_zoo.load(tiny.FILE_ENTRY, progress=False)


def _hold_lock(path: Path, seconds: float) -> subprocess.Popen:
    """Another process that holds the download lock at ``path`` for ``seconds``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); "
                               "lock.acquire(); print('held', flush=True); time.sleep(float(sys.argv[2]))", str(path), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.slow
def test_a_waiting_process_says_what_it_waits_for(dropbox, isolated_env, monkeypatch, caplog):
    monkeypatch.setattr(zoo_cache, "WAIT_NOTICE_AFTER", 0.2)
    holder = _hold_lock(isolated_env / "zoo-cache" / ".locks" / f"{tiny.FILE_ENTRY}.lock", 2)
    try:
        with caplog.at_level(logging.WARNING, logger="cutmix_zoo"):
            model = cutmix_zoo.load(tiny.FILE_ENTRY, progress=True)
    finally:
        holder.wait(timeout=30)
    waits = [r.getMessage() for r in caplog.records if "Waiting for another process" in r.getMessage()]
    assert len(waits) == 1 and tiny.FILE_ENTRY in waits[0] and ".lock" in waits[0]
    assert same_logits(model, dropbox.states["file"])


@pytest.mark.slow
def test_a_waiting_process_gives_up_after_the_deadline(dropbox, isolated_env, monkeypatch):
    monkeypatch.setenv("CUTMIX_ZOO_DOWNLOAD_TIMEOUT", "1")
    holder = _hold_lock(isolated_env / "zoo-cache" / ".locks" / f"{tiny.FILE_ENTRY}.lock", 30)
    try:
        started = time.monotonic()
        with pytest.raises(cutmix_zoo.DownloadError, match="Another process held the download lock") as e:
            cutmix_zoo.load(tiny.FILE_ENTRY, progress=False)
        assert time.monotonic() - started < 5 and one_sentence(str(e.value))
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_a_killed_download_leaves_nothing_that_outlives_the_next_one(no_hub, isolated_env, monkeypatch):
    body = tiny.save_bytes(tiny.state_dict(5))
    folder = isolated_env / "zoo-cache" / tiny.FILE_ENTRY
    with slow_server(body, "stall") as server:
        monkeypatch.setenv("CUTMIX_ZOO_ORIGINAL_URL", server.url + "/")
        script = ("import sys; sys.path.insert(0, sys.argv[1]); import tiny; tiny.register(); import cutmix_zoo; "
                  "cutmix_zoo.load(tiny.FILE_ENTRY, progress=False)")
        child = subprocess.Popen([sys.executable, "-c", script, TESTS], env=dict(os.environ))
        try:
            ends = time.monotonic() + 60
            while not any(p.stat().st_size for p in folder.glob(".download-*/download")):
                assert child.poll() is None and time.monotonic() < ends, "the child never started its download"
                time.sleep(0.05)
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        assert list(folder.glob(".download-*"))  # what kill -9 leaves
        (folder / ".model.safetensors.abc123.tmp").write_bytes(b"half a file")  # a killed atomic write
        server.mode = "ok"
        assert same_logits(cutmix_zoo.load(tiny.FILE_ENTRY, progress=False), tiny.state_dict(5))
    assert cache_entries(isolated_env) == [tiny.FILE_ENTRY, f"{tiny.FILE_ENTRY}/model.safetensors", f"{tiny.FILE_ENTRY}/source.json"]


def test_a_failed_download_leaves_no_lock_file_among_the_models(dropbox, isolated_env):
    dropbox.set_route("/" + tiny.FILE_PATH, Reply(b"gone", status=500))
    with pytest.raises(cutmix_zoo.DownloadError):
        cutmix_zoo.load(tiny.FILE_ENTRY, progress=False)
    assert sorted(p.name for p in (isolated_env / "zoo-cache").iterdir()) == [".locks"]


# ---------------------------------------------------------------- zip bombs


def _zip(files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_a_zip_bomb_is_refused_before_it_fills_the_cache(dropbox, isolated_env):
    bomb = _zip({"tiny/model_best.pth.tar": bytes(64 << 20), "tiny/notes.txt": b"best epoch"})
    assert len(bomb) < 1 << 20
    dropbox.set_route("/" + tiny.FOLDER_PATH, bomb)
    with pytest.raises(cutmix_zoo.DownloadError) as e:
        cutmix_zoo.load(tiny.FOLDER_ENTRY, progress=False)
    message = str(e.value)
    assert one_sentence(message) and "not unpacked" in message and tiny.FOLDER_PATH in message, message
    assert cache_entries(isolated_env) == []


def test_a_member_larger_than_a_checkpoint_can_be_is_refused(dropbox, isolated_env, monkeypatch):
    monkeypatch.setattr(original_source, "MAX_CHECKPOINT_BYTES", 10_000)
    with pytest.raises(cutmix_zoo.DownloadError, match="more than a checkpoint can be, so it was not unpacked"):
        cutmix_zoo.load(tiny.FOLDER_ENTRY, progress=False)
    assert cache_entries(isolated_env) == []


def test_only_the_checkpoint_is_extracted(dropbox, isolated_env, monkeypatch):
    big_notes = os.urandom(3 << 20)
    state = dropbox.states["folder"]
    dropbox.set_route("/" + tiny.FOLDER_PATH, _zip({"tiny/model_best.pth.tar": tiny.trainpy_bytes(state), "tiny/log.txt": big_notes},
                                                   zipfile.ZIP_STORED))
    written = []
    real_open = open

    def spying_open(path, mode="r", *args, **kwargs):
        if "w" in mode:
            written.append(os.path.basename(str(path)))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(original_source, "open", spying_open, raising=False)
    cutmix_zoo.load(tiny.FOLDER_ENTRY, progress=False)
    assert written == ["download", "checkpoint.pth.tar"]


# ---------------------------------------------------------------- files that are not what they claim to be


def _symlink_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        info = zipfile.ZipInfo("tiny/model_best.pth.tar")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "../../../etc/passwd")
        zf.writestr("tiny/notes.txt", b"best epoch")
    return buffer.getvalue()


WRONG_FILES = [
    pytest.param("file", lambda: b"<!DOCTYPE html><html><body>This link was removed</body></html>" * 20, "an HTML page", id="html-page"),
    pytest.param("file", lambda: b"\n  <html><head><title>Too many requests</title></head></html>", "an HTML page", id="html-rate-limit"),
    pytest.param("file", lambda: save(tiny.state_dict(5)), "a safetensors file", id="renamed-safetensors"),
    pytest.param("file", lambda: b"", "an empty file", id="empty-body"),
    pytest.param("folder", _symlink_zip, "as a symbolic link", id="symlink-member"),
    pytest.param("folder", lambda: _zip({"tiny/model_best.pth.tar": save(tiny.state_dict(4))}), "a safetensors file", id="safetensors-in-zip"),
    pytest.param("folder", lambda: b"<html><body>Error (429)</body></html>", "an HTML page", id="html-instead-of-zip"),
]


@pytest.mark.parametrize(("which", "body", "said"), WRONG_FILES)
def test_a_wrong_file_is_named_for_what_it_is_with_its_url(dropbox, isolated_env, which, body, said):
    path, entry = (tiny.FILE_PATH, tiny.FILE_ENTRY) if which == "file" else (tiny.FOLDER_PATH, tiny.FOLDER_ENTRY)
    dropbox.set_route("/" + path, Reply(body()))
    with pytest.raises(cutmix_zoo.ZooError) as e:
        cutmix_zoo.load(entry, progress=False)
    message = str(e.value)
    assert one_sentence(message) and said in message and path in message, message
    assert "could run code" not in message and ".download-" not in message and "weights_only" not in message
    assert cache_entries(isolated_env) == []


def test_a_renamed_safetensors_file_given_as_weights_is_named(tiny_registry, tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(save(tiny.state_dict(5)))
    with pytest.raises(cutmix_zoo.WeightsError, match=f"The file {path} is a safetensors file, not a PyTorch checkpoint"):
        cutmix_zoo.load(tiny.FILE_ENTRY, weights=path)


def test_the_pickle_refusal_does_not_suggest_weights_only_false(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth.tar"
    path.write_bytes(tiny.malicious_bytes(marker))
    with pytest.raises(cutmix_zoo.WeightsError) as e:
        cutmix_zoo.load("resnet50", weights=path)
    message = str(e.value)
    assert "could run code" in message and "posix.system" in message and one_sentence(message), message
    assert "weights_only" not in message and "trusted source" not in message
    assert not marker.exists() and e.value.__cause__ is not None


def test_a_gzip_content_encoding_delivers_the_file(dropbox, isolated_env):
    good = tiny.save_bytes(dropbox.states["file"])
    dropbox.set_route("/" + tiny.FILE_PATH, Reply(gzip.compress(good), headers={"Content-Encoding": "gzip"}))
    model = cutmix_zoo.load(tiny.FILE_ENTRY, progress=False)
    assert same_logits(model, dropbox.states["file"])


# ---------------------------------------------------------------- convert: no silent overwrite, no non-finite weights


def test_convert_does_not_overwrite_without_force(tiny_registry, tmp_path, capsys):
    source = tmp_path / "ckpt.pth"
    source.write_bytes(tiny.save_bytes(tiny.state_dict(6)))
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"someone's file")
    assert cli_main(["convert", str(source), "--model", tiny.FILE_ENTRY, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "already exists" in err and "--force" in err
    assert out.read_bytes() == b"someone's file"
    assert cli_main(["convert", str(source), "--model", tiny.FILE_ENTRY, "-o", str(out), "--force"]) == 0
    assert same_logits(cutmix_zoo.load(tiny.FILE_ENTRY, weights=out), tiny.state_dict(6))


NON_FINITE = [
    pytest.param("conv1.weight", float("nan"), id="nan-weight"),
    pytest.param("fc.bias", float("inf"), id="inf-bias"),
    pytest.param("bn_final.running_var", float("-inf"), id="neg-inf-buffer"),
]


def _poisoned(key: str, value: float) -> dict[str, torch.Tensor]:
    state = tiny.state_dict(6)
    state[key] = state[key].clone()
    state[key].view(-1)[0] = value
    return state


@pytest.mark.parametrize(("key", "value"), NON_FINITE)
def test_convert_refuses_non_finite_weights(tiny_registry, tmp_path, capsys, key, value):
    state = _poisoned(key, value)
    source = tmp_path / "ckpt.pth"
    source.write_bytes(tiny.save_bytes(state))
    out = tmp_path / "out.safetensors"
    assert cli_main(["convert", str(source), "--model", tiny.FILE_ENTRY, "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "non-finite" in err and key in err and str(source) in err
    assert not out.exists()


@pytest.mark.parametrize(("key", "value"), NON_FINITE)
def test_a_non_finite_original_is_not_cached(dropbox, isolated_env, key, value):
    dropbox.set_route("/" + tiny.FILE_PATH, tiny.save_bytes(_poisoned(key, value)))
    with pytest.raises(cutmix_zoo.WeightsError, match="non-finite values") as e:
        cutmix_zoo.load(tiny.FILE_ENTRY, progress=False)
    assert tiny.FILE_PATH in str(e.value) and one_sentence(str(e.value))
    assert cache_entries(isolated_env) == []


# ---------------------------------------------------------------- where a model came from, at -v


def test_the_sources_tried_are_logged(dropbox, isolated_env, caplog):
    with caplog.at_level(logging.INFO, logger="cutmix_zoo"):
        cutmix_zoo.load(tiny.FILE_ENTRY, progress=False)
        cutmix_zoo.load(tiny.FILE_ENTRY, progress=False)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("cutmix_zoo")]
    assert any("not taken from the Hub (it has no repo" in line for line in lines), lines
    assert any("converted from the original release" in line and tiny.FILE_PATH in line for line in lines), lines
    assert any(line.startswith(f"{tiny.FILE_ENTRY}: cached at") for line in lines), lines


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [False, True])
def test_cli_verbose_shows_the_sources_and_still_ends_in_one_error_line(isolated_env, monkeypatch, verbose):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("CUTMIX_ZOO_ORIGINAL_URL", f"http://127.0.0.1:{closed_port()}/")
    args = ["-v"] * verbose + ["download", "resnet50", "--quiet"]
    result = subprocess.run([sys.executable, "-m", "cutmix_zoo", *args], capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and lines[-1].startswith("cutmix-zoo: error: Could not fetch resnet50.cutmix_in1k: the Hub")
    if verbose:
        assert any("not taken from the Hub" in line and "the connection was refused" in line for line in lines[:-1]), lines
    else:
        assert len(lines) == 1, lines
