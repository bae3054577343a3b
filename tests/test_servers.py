"""Checks that the loopback test servers in tests/servers.py behave like the real services they stand in for.

The olah hub is exercised with the real ``huggingface_hub`` client and the
file server with ``requests`` / ``http.client``, so download code tested
against them meets the same protocol details (headers, revisions, errors,
truncated bodies) it meets in production.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub
import pytest
import requests
import urllib3
from huggingface_hub.utils import LocalEntryNotFoundError, RepositoryNotFoundError

import servers
from servers import OlahServer, Reply, http_file_server, make_hub_repo, set_hf_offline, use_hf_hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OlahServer]:
    """One olah server shared by the tests of this module; each test uses its own repo ids."""
    with OlahServer(tmp_path_factory.mktemp("hub")) as server:
        yield server


@pytest.fixture
def hf_home(hub: OlahServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """huggingface_hub pointed at ``hub`` with an empty per-test cache; returns HF_HOME."""
    home = tmp_path / "hf-home"
    use_hf_hub(monkeypatch, hub.endpoint, home)
    return home


# --------------------------------------------------------------------------- #
# olah hub
# --------------------------------------------------------------------------- #


def test_hf_hub_download_returns_identical_binary(hub: OlahServer, hf_home: Path, tmp_path: Path) -> None:
    """A few MB of random bytes in plain git (no LFS) reach the client unchanged, as do nested and copied files."""
    weights = os.urandom(4 * 1024 * 1024 + 123)
    source = tmp_path / "config.json"
    source.write_bytes(b'{"arch": "resnet50"}')
    sha = make_hub_repo(
        hub.mirrors, "cutmix/binary", {"model.safetensors": weights, "config.json": source, "sub/dir/x.bin": b"\0\1"}
    )

    path = Path(huggingface_hub.hf_hub_download("cutmix/binary", "model.safetensors"))

    assert path.read_bytes() == weights
    assert hf_home in path.parents
    assert path.parent.name == sha
    assert Path(huggingface_hub.hf_hub_download("cutmix/binary", "config.json")).read_bytes() == source.read_bytes()
    assert Path(huggingface_hub.hf_hub_download("cutmix/binary", "x.bin", subfolder="sub/dir")).read_bytes() == b"\0\1"


def test_pinned_revision_keeps_old_content(hub: OlahServer, hf_home: Path) -> None:
    """A second commit moves ``main`` while the first sha (full or abbreviated) still serves the old bytes."""
    first = make_hub_repo(hub.mirrors, "cutmix/revisions", {"model.safetensors": b"version one"})
    second = make_hub_repo(hub.mirrors, "cutmix/revisions", {"model.safetensors": b"version two"})

    def download(revision: str) -> bytes:
        path = huggingface_hub.hf_hub_download("cutmix/revisions", "model.safetensors", revision=revision)
        return Path(path).read_bytes()

    assert first != second
    assert download("main") == b"version two"
    assert download(first) == b"version one"
    assert download(first[:7]) == b"version one"


def test_missing_repo_file_or_branch_raise_repository_not_found(hub: OlahServer, hf_home: Path) -> None:
    """olah answers 401 RepoNotFound for all three, so huggingface_hub raises RepositoryNotFoundError each time.

    The real Hub distinguishes them (RemoteEntryNotFoundError for a missing
    file, RevisionNotFoundError for a missing branch); code meant to pass
    against both must not rely on the finer classes.
    """
    make_hub_repo(hub.mirrors, "cutmix/present", {"model.safetensors": b"w"})

    with pytest.raises(RepositoryNotFoundError):
        huggingface_hub.hf_hub_download("cutmix/absent", "model.safetensors")
    with pytest.raises(RepositoryNotFoundError):
        huggingface_hub.hf_hub_download("cutmix/present", "absent.safetensors")
    with pytest.raises(RepositoryNotFoundError):
        huggingface_hub.hf_hub_download("cutmix/present", "model.safetensors", revision="no-such-branch")


def test_offline_mode_serves_cache_before_and_after_server_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """set_hf_offline takes effect at runtime: no request is made, cached files come back, others are missing."""
    with OlahServer(tmp_path / "hub") as own_hub:
        use_hf_hub(monkeypatch, own_hub.endpoint, tmp_path / "hf-home")
        first = make_hub_repo(own_hub.mirrors, "cutmix/offline", {"model.safetensors": b"cached"})
        huggingface_hub.hf_hub_download("cutmix/offline", "model.safetensors")
        make_hub_repo(own_hub.mirrors, "cutmix/offline", {"model.safetensors": b"newer"})

        set_hf_offline(monkeypatch, True)
        # Online, this would fetch b"newer": offline mode really skipped the server.
        assert Path(huggingface_hub.hf_hub_download("cutmix/offline", "model.safetensors")).read_bytes() == b"cached"

    cached = huggingface_hub.hf_hub_download("cutmix/offline", "model.safetensors", revision=first)
    assert Path(cached).read_bytes() == b"cached"
    with pytest.raises(LocalEntryNotFoundError):
        huggingface_hub.hf_hub_download("cutmix/offline", "never-downloaded.bin")
    with pytest.raises(LocalEntryNotFoundError):
        huggingface_hub.hf_hub_download("cutmix/never-downloaded", "model.safetensors")


@pytest.mark.slow
def test_use_hf_hub_reaches_subprocesses(hub: OlahServer, hf_home: Path) -> None:
    """The environment set by use_hf_hub lets a child process (e.g. a CLI) download from the hub into hf_home."""
    make_hub_repo(hub.mirrors, "cutmix/child", {"model.safetensors": b"from a child"})
    code = "import huggingface_hub; print(huggingface_hub.hf_hub_download('cutmix/child', 'model.safetensors'))"

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip().splitlines()[-1])
    assert hf_home in path.parents
    assert path.read_bytes() == b"from a child"


def test_olah_startup_failure_reports_its_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When olah dies on startup, the error says so and carries olah's own traceback."""
    monkeypatch.setattr(servers, "_olah_config", lambda *args: "this is [not toml\n")

    with pytest.raises(RuntimeError, match="olah exited") as failure:
        OlahServer(tmp_path / "broken").start()
    assert "Decode" in str(failure.value)


def test_make_hub_repo_rejects_bad_names(tmp_path: Path) -> None:
    """Repo ids need exactly one org and name; file names may not escape the repo or touch .git."""
    for repo_id in ("no-org", "a/b/c", "/name"):
        with pytest.raises(ValueError):
            make_hub_repo(tmp_path, repo_id, {"f": b""})
    for filename in ("../escape", "/abs", ".git/config", ""):
        with pytest.raises(ValueError):
            make_hub_repo(tmp_path, "org/name", {filename: b""})


# --------------------------------------------------------------------------- #
# HTTP file server
# --------------------------------------------------------------------------- #

BODY = bytes(range(256)) * 4096  # 1 MiB


def test_file_server_serves_bytes_ignoring_query_and_counts_hits() -> None:
    with http_file_server({"/s/abc/w.pth": BODY}) as server:
        first = requests.get(server.url + "/s/abc/w.pth?dl=1")
        second = requests.get(server.url + "/s/abc/w.pth")
        assert requests.head(server.url + "/s/abc/w.pth").headers["Content-Length"] == str(len(BODY))

    assert first.content == second.content == BODY
    assert server.hits("/s/abc/w.pth") == 2
    assert server.hits("/s/abc/w.pth", method="HEAD") == 1
    assert server.requests[0].query == "dl=1"


def test_file_server_error_statuses() -> None:
    with http_file_server({"/broken": Reply(b"oops", status=500)}) as server:
        broken = requests.get(server.url + "/broken")
        unknown = requests.get(server.url + "/unknown")

    assert (broken.status_code, broken.content) == (500, b"oops")
    assert unknown.status_code == 404
    with pytest.raises(requests.HTTPError):
        broken.raise_for_status()


def test_truncated_reply_ends_early_then_next_reply_is_complete() -> None:
    """A truncated reply announces the full length, sends less and closes; the list then moves on."""
    with http_file_server({"/w": [Reply(BODY, truncate_to=1000), BODY]}) as server:
        connection = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=10)
        connection.request("GET", "/w")
        response = connection.getresponse()
        assert response.getheader("Content-Length") == str(len(BODY))
        with pytest.raises(http.client.IncompleteRead) as short:
            response.read()
        connection.close()

        assert len(short.value.partial) == 1000
        assert requests.get(server.url + "/w").content == BODY
        assert requests.get(server.url + "/w").content == BODY  # the last reply repeats
        assert server.hits("/w") == 3


def test_requests_raises_on_truncated_stream_with_urllib3_2() -> None:
    """urllib3 >= 2 enforces Content-Length: requests raises ChunkedEncodingError mid-iteration.

    urllib3 1.x does not and ends the stream silently short, so download code
    must also compare the received size with the expected one.
    """
    with http_file_server({"/w": Reply(BODY, truncate_to=1000)}) as server:
        response = requests.get(server.url + "/w", stream=True)
        if int(urllib3.__version__.split(".")[0]) >= 2:
            with pytest.raises(requests.exceptions.ChunkedEncodingError) as failure:
                b"".join(response.iter_content(64 * 1024))
            assert isinstance(failure.value.args[0], urllib3.exceptions.ProtocolError)
        else:
            assert len(b"".join(response.iter_content(64 * 1024))) == 1000


def test_head_does_not_consume_replies_and_set_route_replaces_them() -> None:
    with http_file_server({"/w": [Reply(b"", status=503), b"ok"]}) as server:
        assert requests.head(server.url + "/w").status_code == 503
        assert requests.get(server.url + "/w").status_code == 503
        assert requests.get(server.url + "/w").content == b"ok"
        server.set_route("/w", Reply(b"gone", status=404))
        assert requests.get(server.url + "/w").status_code == 404


def test_range_requests_resume_like_a_file_host() -> None:
    with http_file_server({"/w": BODY}) as server:
        tail = requests.get(server.url + "/w", headers={"Range": "bytes=1000-"})
        middle = requests.get(server.url + "/w", headers={"Range": "bytes=10-19"})
        beyond = requests.get(server.url + "/w", headers={"Range": f"bytes={len(BODY)}-"})

    assert (tail.status_code, tail.content) == (206, BODY[1000:])
    assert tail.headers["Content-Range"] == f"bytes 1000-{len(BODY) - 1}/{len(BODY)}"
    assert (middle.status_code, middle.content) == (206, BODY[10:20])
    assert beyond.status_code == 416


def test_redirect_via_headers_is_followed() -> None:
    """Dropbox-style ``?dl=1`` links redirect to a content host; a Location header reproduces that."""
    routes = {"/s/abc/w.pth": Reply(status=302, headers={"Location": "/content/w.pth"}), "/content/w.pth": BODY}
    with http_file_server(routes) as server:
        response = requests.get(server.url + "/s/abc/w.pth?dl=1")

    assert response.content == BODY
    assert [r.path for r in server.requests] == ["/s/abc/w.pth", "/content/w.pth"]
