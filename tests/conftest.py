"""Shared fixtures: an isolated cache and hub home per test, and small checkpoints made from random models."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import torch

import tiny
from servers import OlahServer, http_file_server


def pytest_configure(config: pytest.Config) -> None:
    """In a pytest-xdist worker: one torch thread, and ``OMP_NUM_THREADS=1`` for the subprocesses its tests start.

    The suite runs as two workers on two cores; with torch's default of a thread per core each, OpenMP threads would
    outnumber the cores and spin (runs several times slower). One process alone keeps torch's default.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own zoo cache and HF home and can never reach the real Hub or Dropbox."""
    monkeypatch.setenv("CUTMIX_ZOO_CACHE", str(tmp_path / "zoo-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("CUTMIX_ZOO_ORIGINAL_URL", "http://127.0.0.1:9/")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("CUTMIX_ZOO_HUB_ORG", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def resnet50_state() -> dict[str, torch.Tensor]:
    """State dict of a randomly initialised torchvision resnet50 (BN statistics perturbed so they matter)."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50()
    state = model.state_dict()
    for k, v in state.items():
        if k.endswith("running_mean"):
            v.normal_(0, 0.1)
        elif k.endswith("running_var"):
            v.uniform_(0.5, 1.5)
    return state


@pytest.fixture(scope="session")
def resnet50_file(tmp_path_factory: pytest.TempPathFactory, resnet50_state: dict[str, torch.Tensor]) -> Path:
    """The random resnet50 as a safetensors file."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("weights") / "resnet50.safetensors"
    save_file(resnet50_state, path)
    return path


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    """A real Hugging Face-compatible server (olah) on loopback, shared by the session's tests."""
    with OlahServer(tmp_path_factory.mktemp("olah")) as server:
        yield server


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tests on the tiny embedded models: the fastest on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_registry():
    """The tiny test architecture and its two entries in the registry for one test."""
    from cutmix_zoo import registry

    with registry.registered(*tiny.items()):
        yield


@pytest.fixture
def env(tiny_registry, monkeypatch, hub, isolated_env):
    """Tiny entries registered, HF_ENDPOINT on the loopback hub, a fresh hub organisation per test."""
    org = f"org{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("CUTMIX_ZOO_HUB_ORG", org)
    return org


@pytest.fixture
def dropbox(env, monkeypatch):
    """A loopback stand-in for Dropbox serving the tiny entries' original files (the Hub has no repos for them)."""
    states = {"folder": tiny.state_dict(4), "file": tiny.state_dict(5)}
    routes = {
        "/" + tiny.FOLDER_PATH: tiny.folder_zip({"tiny/model_best.pth.tar": tiny.trainpy_bytes(states["folder"]),
                                                "tiny/notes.txt": b"best epoch"}),
        "/" + tiny.FILE_PATH: tiny.save_bytes(states["file"]),
    }
    with http_file_server(routes) as server:
        monkeypatch.setenv("CUTMIX_ZOO_ORIGINAL_URL", server.url + "/")
        server.states = states
        yield server
