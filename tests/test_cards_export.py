"""Model cards from the registry, the Hub folder export, load(FOLDER), and publishing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

import cutmix_zoo
from cutmix_zoo import registry
from cutmix_zoo.cli import main as cli_main
from cutmix_zoo.hub.cards import render_card
from cutmix_zoo.hub.export import save_pretrained

import tiny
from servers import make_hub_repo

REPO = Path(__file__).resolve().parents[1]
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", registry.list_models())
def test_committed_card_matches_the_registry(name):
    committed = REPO / "model_cards" / f"{name}.md"
    assert committed.is_file(), f"missing card {committed}: run `cutmix-zoo cards`"
    assert committed.read_text() == render_card(name), f"{committed} is stale: run `cutmix-zoo cards`"


def test_card_front_matter_as_the_hub_reads_it():
    card = ModelCard(render_card("resnet50.mixup_in1k"))
    data = card.data
    assert data.license == "mit" and data.pipeline_tag == "image-classification"
    assert data.datasets == ["ILSVRC/imagenet-1k"]  # a Hub dataset id that exists
    assert "cutmix" in data.tags and data.library_name == "cutmix-zoo"
    values = {r.metric_name: r.metric_value for r in data.eval_results}
    assert values == {"top-1 accuracy": pytest.approx(77.42), "top-5 accuracy": pytest.approx(93.60)}
    assert all(r.source_name == "paper, Table 3" for r in data.eval_results)
    body = card.text
    assert "resnet50.baseline_in1k (baseline, same table) | 23.68" in body
    assert "--recipe resnet50.mixup_in1k" in body and "torchrun --nproc-per-node 4" in body
    assert "sh/g64c8bda61n12if/AACyaTZnku_Sgibc9UvOSblNa" in body and "@inproceedings{yun2019cutmix" in body
    assert "channels [64, 256, 512, 1024, 2048]" in body


def test_card_without_top5_or_baseline():
    data = ModelCard(render_card("resnet152")).data
    assert [r.metric_name for r in data.eval_results] == ["top-1 accuracy"]
    assert "no baseline file" in render_card("resnet152")


def test_cards_check_command(tmp_path, capsys):
    assert cli_main(["cards", "-o", str(tmp_path)]) == 0
    assert len(list(tmp_path.glob("*.md"))) == len(registry.list_models())
    assert cli_main(["cards", "--check", "-o", str(tmp_path)]) == 0
    (tmp_path / "resnet50.cutmix_in1k.md").write_text("edited by hand")
    assert cli_main(["cards", "--check", "-o", str(tmp_path)]) == 1
    assert "resnet50.cutmix_in1k" in capsys.readouterr().err


def test_exported_folder_loads_as_it_is(tiny_registry, tmp_path, monkeypatch):
    state = tiny.state_dict(11)
    weights = tmp_path / "w.safetensors"
    from safetensors.torch import save_file

    save_file(state, weights)
    model = cutmix_zoo.load(tiny.FILE_ENTRY, weights=weights)
    folder = save_pretrained(model, tmp_path / "export")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["family"] == "pyramidnet" and config["arch_args"] == {"depth": 20, "alpha": 12, "bottleneck": False}
    assert config["library_name"] == "cutmix-zoo" and "source" not in config
    with torch.no_grad():
        assert torch.equal(cutmix_zoo.load(folder)(X), tiny.logits(state, X))
        assert torch.equal(cutmix_zoo.load(tiny.FOLDER_ENTRY, weights=folder)(X), tiny.logits(state, X))
        assert len(cutmix_zoo.load(str(folder), features_only=True)(X)) == 4
    assert ModelCard((folder / "README.md").read_text()).data.license == "mit"


def test_export_command_then_the_hub_serves_the_folder(dropbox, hub, env, tmp_path, monkeypatch):
    out = tmp_path / "hub-folder"
    assert cli_main(["export", tiny.FOLDER_ENTRY, "-o", str(out), "--quiet"]) == 0
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(files) == {"README.md", "config.json", "model.safetensors"}
    monkeypatch.setenv("CUTMIX_ZOO_HUB_ORG", env + "pub")
    monkeypatch.setenv("CUTMIX_ZOO_CACHE", str(tmp_path / "empty-cache"))
    make_hub_repo(hub.mirrors, f"{env}pub/{tiny.FOLDER_ENTRY}", files)
    model = cutmix_zoo.load(tiny.FOLDER_ENTRY, progress=False)
    assert "hf-home" in model.pretrained_cfg["source"]
    with torch.no_grad():
        assert torch.equal(model(X), tiny.logits(dropbox.states["folder"], X))


def test_publish_dry_run_lists_the_upload(tiny_registry, tmp_path, monkeypatch, capsys):
    folder = save_pretrained(cutmix_zoo.load(tiny.FILE_ENTRY, pretrained=False), tmp_path / "f")
    assert cli_main(["publish", str(folder), "--repo-id", "someone/tiny", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "someone/tiny" in out and all(n in out for n in ("README.md", "config.json", "model.safetensors"))


def test_publish_failure_is_one_line(tiny_registry, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_invalid")
    folder = save_pretrained(cutmix_zoo.load(tiny.FILE_ENTRY, pretrained=False), tmp_path / "f")
    assert cli_main(["publish", str(folder), "--repo-id", "someone/tiny"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cutmix-zoo: error: Publishing to someone/tiny failed") and len(err.strip().splitlines()) == 1
