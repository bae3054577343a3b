"""hubconf.py: torch.hub.load/list/help see one documented entrypoint per architecture and per registry name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import cutmix_zoo

REPO = Path(__file__).resolve().parents[1]


def test_local_hub_load_builds_a_feature_extractor(resnet50_file):
    model = torch.hub.load(str(REPO), "resnet50", source="local", weights=str(resnet50_file), features_only=True)
    assert model.feature_info.channels() == [64, 256, 512, 1024, 2048]
    direct = cutmix_zoo.load("resnet50", weights=resnet50_file, features_only=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model(x), direct(x)))


def test_full_name_entrypoint_forwards_keyword_arguments():
    model = torch.hub.load(str(REPO), "pyramidnet200_a240_mixup_c100", source="local", pretrained=False, num_classes=0)
    assert model.pretrained_cfg["name"] == "pyramidnet200_a240.mixup_c100"
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1024)


@pytest.fixture
def github_cache(tmp_path: Path) -> str:
    """The repo laid out as torch.hub caches a GitHub checkout, so list/help run exactly as for the published repo."""
    hub_dir = tmp_path / "torch-hub"
    shutil.copytree(REPO, hub_dir / "someone_cutmix-zoo_main", ignore=shutil.ignore_patterns(".git", "tests", "*.egg-info", "__pycache__"))
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(hub_dir))
    yield "someone/cutmix-zoo:main"
    torch.hub.set_dir(old)


def test_hub_list_and_help_from_a_github_checkout(github_cache):
    names = torch.hub.list(github_cache, trust_repo=True, skip_validation=True)
    expected = {n.replace(".", "_") for n in cutmix_zoo.list_models()} | set(cutmix_zoo.list_models(architectures=True))
    assert set(names) == expected and len(names) == 26
    doc = torch.hub.help(github_cache, "resnet50_mixup_in1k", trust_repo=True, skip_validation=True)
    assert "mixup" in doc and "22.58" in doc and "features_only" in doc
    model = torch.hub.load(github_cache, "resnet101", trust_repo=True, skip_validation=True, pretrained=False, features_only=True, out_indices=[4])
    assert model.feature_info.channels() == [2048]
