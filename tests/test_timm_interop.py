"""timm and the Hub read the zoo's exports: config.json in timm's format, checked by real timm against the olah hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

import cutmix_zoo
from cutmix_zoo import registry
from cutmix_zoo.builder import meta_model
from cutmix_zoo.categories import CIFAR10
from cutmix_zoo.hub.timm_names import timm_architecture
from cutmix_zoo.model_config import ModelConfig

from servers import make_hub_repo

RESNET_ENTRIES = [n for n in registry.list_models() if registry.get_entry(n).architecture.family == "resnet"]


@pytest.mark.parametrize("name", RESNET_ENTRIES)
def test_every_resnet_entry_maps_to_a_timm_model_with_the_same_state_dict(name):
    cfg = ModelConfig.from_entry(registry.get_entry(name))
    timm_name = timm_architecture(cfg)
    assert timm_name == cfg.architecture and timm_name in timm.list_models()
    with torch.device("meta"):
        theirs = timm.create_model(timm_name, pretrained=False, num_classes=cfg.num_classes).state_dict()
    ours = meta_model(cfg).state_dict()
    assert {k: tuple(v.shape) for k, v in theirs.items()} == {k: tuple(v.shape) for k, v in ours.items()}


def test_pyramidnet_exports_stay_cutmix_zoo_only(tmp_path):
    folder = cutmix_zoo.save_pretrained(cutmix_zoo.load("pyramidnet20_a48.cutmix_shapes"), tmp_path / "p")
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "pyramidnet20_a48" and config["architecture"] not in timm.list_models()
    assert "load it with `cutmix_zoo.load`; timm has no builder for it" in (folder / "README.md").read_text()
    assert config["label_names"][:2] == ["circle", "square"]


def _resnet18_export(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    cfg = ModelConfig.for_data("cifar-10", name="resnet18.demo_c10", family="resnet",
                               arch_args={"layers": [2, 2, 2, 2], "bottleneck": False}, num_classes=10)
    torch.manual_seed(0)
    model = cutmix_zoo.builder.build_random(cfg).eval()
    for module in model.modules():  # non-trivial statistics, so a wrong layout would show in the logits
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return cutmix_zoo.save_pretrained(model, tmp_path / "export", cfg=cfg), model


@pytest.mark.slow
def test_timm_loads_an_exported_resnet_from_the_hub_with_identical_logits(hub, tmp_path):
    folder, model = _resnet18_export(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert (config["architecture"], config["num_classes"], config["num_features"]) == ("resnet18", 10, 512)
    assert config["pretrained_cfg"]["classifier"] == "fc" and config["pretrained_cfg"]["first_conv"] == "conv1"
    assert config["label_names"] == list(CIFAR10)
    assert cutmix_zoo.load(folder).pretrained_cfg["family"] == "resnet"  # our keys still read from the same file
    repo = "timmuser/resnet18-demo"
    make_hub_repo(hub.mirrors, repo, {p.name: p for p in folder.iterdir()})
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.save(x, tmp_path / "x.pt")
    script = ("import sys, torch, timm; m = timm.create_model('hf-hub:' + sys.argv[1], pretrained=True).eval(); "
              "x = torch.load(sys.argv[2]); torch.save({'logits': m(x).detach(), 'labels': m.pretrained_cfg.get('label_names'), "
              "'type': type(m).__module__}, sys.argv[3])")
    env = dict(os.environ, HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
    done = subprocess.run([sys.executable, "-c", script, repo, str(tmp_path / "x.pt"), str(tmp_path / "out.pt")],
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    out = torch.load(tmp_path / "out.pt", weights_only=True)
    with torch.no_grad():
        assert torch.allclose(out["logits"], model(x), atol=1e-5, rtol=1e-5)
    assert out["type"].startswith("timm.") and out["labels"] == list(CIFAR10)


def test_a_hub_config_for_another_architecture_is_refused_before_the_weights(tiny_registry, env, hub, isolated_env, tmp_path):
    from tiny import FILE_ENTRY

    other = ModelConfig.for_data("cifar-10", name="x", family="resnet", arch_args={"layers": [1, 1, 1, 1]}, num_classes=10)
    make_hub_repo(hub.mirrors, f"{env}/{FILE_ENTRY}", {"config.json": json.dumps(other.to_dict()).encode(), "model.safetensors": b"unused"})
    with pytest.raises(cutmix_zoo.WeightsError,
                       match="describes family 'resnet', arch_args .* not tinypyramid20_a12.baseline_c10's family 'pyramidnet'"):
        cutmix_zoo.load(FILE_ENTRY, progress=False)
