"""Shared fixtures: an isolated cache and hub home per test, and small checkpoints made from random models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


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
