"""hubconf.py: torch.hub.load/list/help see one documented entrypoint per architecture and per registry name."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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
    shutil.copytree(REPO, hub_dir / "someone_cutmix-zoo_main", ignore=shutil.ignore_patterns(".git", ".venv", "tests", "*.egg-info", "__pycache__"))
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


def test_hubconf_declares_only_torch_and_torchvision():
    text = (REPO / "hubconf.py").read_text()
    namespace: dict = {}
    exec(next(line for line in text.splitlines() if line.startswith("dependencies")), namespace)
    assert namespace["dependencies"] == ["torch", "torchvision"]


def test_pretrained_is_the_first_positional_argument_as_in_torchvision():
    model = torch.hub.load(str(REPO), "resnet50", False, source="local", num_classes=0)
    assert model.pretrained_cfg["source"] is None and model.num_features == 2048
    model = torch.hub.load(str(REPO), "pyramidnet20_a48_cutmix_shapes", True, source="local")
    assert model.pretrained_cfg["source"].endswith(".safetensors")


# Packages a torch.hub user who never ran pip may lack (torch itself needs filelock, so it is always there).
NOT_INSTALLED = ("huggingface_hub", "safetensors", "requests", "tqdm")


def _without(packages: tuple[str, ...], root: Path) -> Path:
    """A copy (of symlinks) of this environment's site-packages with ``packages`` and their metadata left out."""
    root.mkdir()
    for site_dir in {p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)}:
        for item in os.listdir(site_dir):
            top = item.split("-")[0].removesuffix(".py")
            if top in packages or item.startswith("__editable__") or item.endswith(".pth") or (root / item).exists():
                continue
            (root / item).symlink_to(os.path.join(site_dir, item))
    return root


_HUB_USER = r"""
import importlib.util, json, sys
import torch

REPO, BLOCKED = sys.argv[1], sys.argv[2].split(",")
out = {"absent": [p for p in BLOCKED if importlib.util.find_spec(p) is None], "built": {}, "errors": {}, "loaded": {}}
names = ["pyramidnet200_a240", "pyramidnet20_a48", "resnet101", "resnet152", "resnet50", "resnext101_32x4d"]
for arch in names:
    model = torch.hub.load(REPO, arch, False, source="local")
    out["built"][arch] = [model.pretrained_cfg["source"], sum(p.numel() for p in model.parameters())]
for fn in ["resnet50", "pyramidnet20_a48_cutmix_shapes", "pyramidnet20_a48"]:
    try:
        model = torch.hub.load(REPO, fn, source="local")
    except ModuleNotFoundError as e:
        out["errors"][fn] = str(e)
    else:
        with torch.no_grad():
            logits = model(torch.zeros(1, 3, 32, 32))
        out["loaded"][fn] = [model.pretrained_cfg["source"], logits.double().sum().item()]
out["blocked_imported"] = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps(out))
"""


def _run_as_hub_user(tmp_path: Path, missing: tuple[str, ...]) -> dict:
    """Run torch.hub.load on this checkout in a Python that has torch and torchvision but not ``missing``."""
    site = _without(missing, tmp_path / "site-packages")
    env = dict(os.environ, PYTHONPATH=str(site), PYTHONNOUSERSITE="1")
    proc = subprocess.run([sys.executable, "-S", "-c", _HUB_USER, str(REPO), ",".join(missing)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _one_sentence_naming(message: str, package: str) -> bool:
    return message.endswith(f"pip install {package}.") and message.count(". ") == 0 and "\n" not in message


@pytest.mark.slow
def test_hub_user_without_pip_packages_builds_every_architecture(tmp_path):
    out = _run_as_hub_user(tmp_path, NOT_INSTALLED)
    assert out["absent"] == list(NOT_INSTALLED), "the packages were not made unimportable"
    assert out["blocked_imported"] == []
    expected = {a: [None, cutmix_zoo.count_parameters(a)] for a in cutmix_zoo.list_models(architectures=True)}
    assert out["built"] == expected
    # a pretrained load names, in one sentence, the package it needs
    assert out["loaded"] == {}
    assert _one_sentence_naming(out["errors"]["resnet50"], "huggingface_hub"), out["errors"]["resnet50"]
    for fn in ("pyramidnet20_a48_cutmix_shapes", "pyramidnet20_a48"):
        assert _one_sentence_naming(out["errors"][fn], "safetensors"), out["errors"][fn]
        assert "pyramidnet20_a48.cutmix_shapes" in out["errors"][fn]


@pytest.mark.slow
def test_hub_user_with_safetensors_loads_the_embedded_models(tmp_path):
    missing = tuple(p for p in NOT_INSTALLED if p != "safetensors")
    out = _run_as_hub_user(tmp_path, missing)
    assert out["absent"] == list(missing) and out["blocked_imported"] == []
    embedded = cutmix_zoo.load("pyramidnet20_a48.cutmix_shapes")
    with torch.no_grad():
        expected = embedded(torch.zeros(1, 3, 32, 32)).double().sum().item()
    for fn in ("pyramidnet20_a48_cutmix_shapes", "pyramidnet20_a48"):
        source, total = out["loaded"][fn]
        assert source == embedded.pretrained_cfg["source"] and total == pytest.approx(expected, rel=1e-6)
    assert set(out["errors"]) == {"resnet50"}
    assert _one_sentence_naming(out["errors"]["resnet50"], "huggingface_hub"), out["errors"]["resnet50"]
