"""Exports claim only what was measured, reload whatever head they have, and every card snippet runs as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

import cutmix_zoo
from cutmix_zoo import registry
from cutmix_zoo.hub.cards import render_card

X = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kwargs", [{"pretrained": False}, {"num_classes": 3}, {"num_classes": 0}])
def test_exports_of_unmeasured_weights_carry_no_results(tmp_path, kwargs):
    model = cutmix_zoo.load("pyramidnet20_a48.cutmix_shapes", **kwargs)
    folder = cutmix_zoo.save_pretrained(model, tmp_path / "e")
    config = json.loads((folder / "config.json").read_text())
    assert config["top1_err"] is None and config["eval_dataset"] is None
    card = ModelCard((folder / "README.md").read_text())
    assert not card.data.eval_results and "0.35" not in card.text and "No result was measured" in card.text
    reloaded = cutmix_zoo.load(folder)  # a num_classes=0 export reloads too
    with torch.no_grad():
        assert torch.allclose(reloaded(X), model(X), atol=1e-5, rtol=1e-4)  # the same weights; kernels may differ by layout


def test_the_registry_model_exported_as_it_is_keeps_its_release_numbers(tmp_path):
    folder = cutmix_zoo.save_pretrained(cutmix_zoo.load("pyramidnet20_a48.cutmix_shapes"), tmp_path / "e")
    config = json.loads((folder / "config.json").read_text())
    assert config["top1_err"] == 0.35 and config["eval_dataset"] == "shapes-10"


def test_features_only_models_have_no_results_in_their_config():
    cfg = cutmix_zoo.load("pyramidnet20_a48.cutmix_shapes", features_only=True).pretrained_cfg
    assert cfg["top1_err"] is None and cfg["num_classes"] == 0


def test_meta_device_loads_give_meta_models_without_reading_weights():
    model = cutmix_zoo.load("resnet50", device="meta")  # not cached here: nothing is fetched
    assert all(p.is_meta for p in model.parameters()) and model.pretrained_cfg["architecture"] == "resnet50"
    features = cutmix_zoo.load("resnet50", device="meta", features_only=True)
    assert features.feature_info.channels() == [64, 256, 512, 1024, 2048]


def _snippets(card: str) -> list[str]:
    return [line.split("#")[0].strip() for block in re.findall(r"```python\n(.*?)```", card, re.S) for line in block.splitlines()
            if line.startswith(("model =", "backbone =", "embedder =", "preprocess ="))]


def test_every_python_line_of_a_registry_card_runs_as_written(monkeypatch):
    name = "pyramidnet20_a48.cutmix_shapes"  # embedded: runs offline
    lines = _snippets(render_card(name))
    assert len(lines) >= 5
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # torch.hub's line runs from the root of a clone
    for line in lines:
        scope = {"cutmix_zoo": cutmix_zoo, "torch": torch}
        exec(line, scope)  # noqa: S102 - the card's own code
    fresh = cutmix_zoo.load(name, num_classes=5)
    assert "num_classes=5" in render_card(name) and fresh.fc.out_features == 5  # a new head, not the pretrained one


def test_every_python_line_of_an_export_card_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cutmix_zoo.save_pretrained(cutmix_zoo.load("pyramidnet20_a48.baseline_shapes"), "path/to/this/folder")
    lines = _snippets((tmp_path / "path/to/this/folder/README.md").read_text())
    assert lines and all("path/to/this/folder" in line for line in lines)
    for line in lines:
        exec(line, {"cutmix_zoo": cutmix_zoo, "torch": torch})  # noqa: S102


def _spelled(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def test_hub_dataset_ids_name_the_dataset_each_card_was_measured_on():
    """Each Hub dataset id is a repo id naming its own dataset (a swapped or mistyped id fails), with as many classes as
    that dataset's class names; every card cites the id of the data its entry's tag says, and the generated Shapes-10 none."""
    from cutmix_zoo.categories import categories

    hub_ids = {d.name: d.hf_id for d in registry.DATASETS.values() if d.hf_id}
    assert hub_ids and set(hub_ids) < set(registry.DATASETS)
    for data in registry.DATASETS.values():
        assert data.num_classes == len(categories(data.name)), data.name
        if data.hf_id:
            assert re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", data.hf_id), data.hf_id
            assert _spelled(data.hf_id.split("/")[1]) == _spelled(data.name), (data.name, data.hf_id)
    for name in registry.list_models():
        tag_suffix = name.rsplit("_", 1)[1]  # c100, in1k, shapes: the tag says which data the weights were measured on
        [data] = [d for d in registry.DATASETS.values() if d.suffix == tag_suffix]
        card = ModelCard(render_card(name)).data
        if data.hf_id is None:
            assert card.datasets is None and not any(r.dataset_type for r in card.eval_results or []), name
        else:
            assert card.datasets == [data.hf_id], name
            assert {r.dataset_type for r in card.eval_results} == {data.hf_id}, name
    assert ModelCard(render_card("pyramidnet20_a48.cutmix_shapes")).data.datasets is None


@pytest.mark.slow
def test_a_run_on_synthetic_data_claims_no_dataset_result(tmp_path):
    from cutmix_zoo.train import train_main

    assert train_main(["--model", "pyramidnet", "--depth", "8", "--alpha", "12", "--no-bottleneck", "--dataset", "cifar10",
                       "--data", "synthetic", "--synthetic-size", "64", "--batch-size", "32", "--epochs", "1", "--workers", "0",
                       "--device", "cpu", "--quiet", "--output", str(tmp_path)]) == 0
    folder = tmp_path / "export"
    config = json.loads((folder / "config.json").read_text())
    assert config["eval_dataset"] is None and "synthetic" in config["err_source"] and config["top1_err"] is not None
    card = ModelCard((folder / "README.md").read_text())
    assert not card.data.eval_results  # no "cifar-10 test top-1" model-index for a run that never saw CIFAR-10
    assert "synthetic" in card.text and "Trained with `python -m cutmix_zoo.train`" in card.text
    assert card.data.library_name == "cutmix-zoo"


def test_a_fine_tuned_export_names_its_base_model(tmp_path):
    model = cutmix_zoo.load("pyramidnet20_a48.cutmix_shapes", num_classes=3)  # a new head on the pretrained backbone
    folder = cutmix_zoo.save_pretrained(model, tmp_path / "ft")
    card = ModelCard((folder / "README.md").read_text())
    assert card.data.base_model == registry.get_entry("pyramidnet20_a48.cutmix_shapes").hub_repo
    scratch = cutmix_zoo.save_pretrained(cutmix_zoo.load("pyramidnet20_a48.cutmix_shapes", pretrained=False, num_classes=3),
                                         tmp_path / "scratch")
    assert ModelCard((scratch / "README.md").read_text()).data.base_model is None  # nothing pretrained to name
