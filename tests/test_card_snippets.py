"""Every card's code runs as written where the card is read: registry cards and export cards, whole python blocks
executed against the olah hub on loopback, torch.hub from the root of this clone, timm from the published repo."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import save

import cutmix_zoo
from cutmix_zoo import registry
from cutmix_zoo.hub.cards import render_card
from cutmix_zoo.hub.export import save_pretrained
from cutmix_zoo.model_config import ModelConfig

import tiny
from servers import make_hub_repo

REPO = Path(__file__).resolve().parents[1]
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
BUNDLED = [n for n in registry.list_models() if registry.get_entry(n).bundled]


def _python(card: str) -> str:
    """The card's python code: its python blocks, in order."""
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)
    assert blocks, "the card shows no python"
    return "\n".join(blocks)


def _run(card: str, monkeypatch, cwd: Path = REPO) -> dict:
    """Execute the card's python as written, from ``cwd``; what it defined."""
    monkeypatch.chdir(cwd)
    scope: dict = {"__name__": "card"}
    with torch.no_grad():
        exec(compile(_python(card), "<card>", "exec"), scope)  # noqa: S102 - the card's own code
    return scope


def _form(name: str) -> str:
    """A registry card's python with its entry's own names and numbers taken out: the template every card shares."""
    entry = registry.get_entry(name)
    code = _python(render_card(name)).replace(entry.hub_repo, "<repo>").replace(entry.name.replace(".", "_"), "<hubconf>")
    return re.sub(r"\s+", " ", re.sub(r"\d+", "<n>", code.replace(entry.name, "<name>")))


@pytest.mark.slow
def test_every_registry_card_shows_the_code_the_executed_cards_show():
    forms = {name: _form(name) for name in registry.list_models()}
    assert len(set(forms.values())) == 1, forms
    assert all("<owner>" not in render_card(name) for name in forms)


@pytest.mark.parametrize("name", BUNDLED)
def test_a_bundled_registry_card_runs_as_written(name, monkeypatch):
    scope = _run(render_card(name), monkeypatch)
    assert len(scope["backbone"](X)) == 4 and scope["embedder"](X).shape == (2, 64)
    assert len(scope["model"](X)) == 4  # the card's last line: torch.hub's feature extractor from this clone
    assert scope["preprocess"](torch.zeros(3, 40, 40, dtype=torch.uint8)).shape == (3, 32, 32)


@pytest.mark.slow
def test_a_hub_served_registry_card_runs_as_written_against_the_hub(env, hub, monkeypatch):
    state = tiny.state_dict(41)
    make_hub_repo(hub.mirrors, f"{env}/{tiny.FILE_ENTRY}", {"model.safetensors": save(state)})
    card = render_card(tiny.FILE_ENTRY)
    assert f'cutmix_zoo.load("{env}/{tiny.FILE_ENTRY}")' in card
    scope = _run(card, monkeypatch)
    with torch.no_grad():
        assert torch.equal(scope["backbone"](X)[-1].mean((2, 3)), scope["embedder"](X))
        assert torch.equal(scope["model"](X)[-1], scope["backbone"](X)[-1])
    assert scope["embedder"](X).shape == (2, 28) and "hf-home" in scope["embedder"].pretrained_cfg["source"]  # via the Hub


def _publish(hub, tmp_path: Path, model: torch.nn.Module, cfg: ModelConfig | None = None) -> tuple[str, Path]:
    """``model`` exported for a fresh user repo and committed there, as `cutmix-zoo publish --repo-id` does."""
    repo_id = f"someone{uuid.uuid4().hex[:8]}/finetune"
    folder = save_pretrained(model, tmp_path / "export", cfg=cfg, repo_id=repo_id)
    make_hub_repo(hub.mirrors, repo_id, {p.name: p for p in folder.iterdir()})
    return repo_id, folder


def test_a_published_export_card_runs_as_written_against_the_hub(tiny_registry, hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(save(tiny.state_dict(42)))
    repo_id, folder = _publish(hub, tmp_path, cutmix_zoo.load(tiny.FILE_ENTRY, weights=weights))
    card = (folder / "README.md").read_text()
    assert f'cutmix_zoo.load("{repo_id}")' in card and "path/to" not in card
    scope = _run(card, monkeypatch)
    with torch.no_grad():
        assert torch.equal(scope["backbone"](X)[-1].mean((2, 3)), scope["embedder"](X))
        assert scope["model"](X).shape == (2, 5)


def test_an_export_card_before_publishing_loads_the_folder_as_written(tiny_registry, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_pretrained(cutmix_zoo.load(tiny.FILE_ENTRY, pretrained=False), "exports/tiny")
    card = (tmp_path / "exports" / "tiny" / "README.md").read_text()
    assert 'cutmix_zoo.load("exports/tiny")' in card
    assert _run(card, monkeypatch, tmp_path)["embedder"](X).shape == (2, 28)


@pytest.mark.slow
def test_a_resnet_export_card_runs_timm_from_the_hub_as_written(hub, tmp_path):
    """In a fresh process, as a reader runs it: huggingface_hub (which timm calls) reads HF_ENDPOINT once, at import."""
    cfg = ModelConfig.for_data("cifar-10", name="resnet18.demo_c10", family="resnet",
                               arch_args={"layers": [2, 2, 2, 2], "bottleneck": False}, num_classes=10)
    torch.manual_seed(0)
    model = cutmix_zoo.builder.build_random(cfg).eval()
    repo_id, folder = _publish(hub, tmp_path, model, cfg)
    card = (folder / "README.md").read_text()
    assert f'timm.create_model("hf-hub:{repo_id}", pretrained=True)' in card
    torch.save(X, tmp_path / "x.pt")
    check = "\nimport sys\ntorch.save(model.eval()(torch.load(sys.argv[1])).detach(), sys.argv[2])\n"
    env = dict(os.environ, HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", _python(card) + check, str(tmp_path / "x.pt"), str(tmp_path / "out.pt")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    with torch.no_grad():  # timm's network, last in the card, with the published weights
        assert torch.allclose(torch.load(tmp_path / "out.pt", weights_only=True), model(X), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("headless", [{"num_classes": 0}, {"features_only": True}], ids=["num_classes=0", "features_only"])
def test_headless_exports_are_tagged_image_feature_extraction(tmp_path, headless):
    folder = save_pretrained(cutmix_zoo.load("pyramidnet20_a48.cutmix_shapes", **headless), tmp_path / "headless")
    data = ModelCard((folder / "README.md").read_text()).data
    assert data.pipeline_tag == "image-feature-extraction" and "image-classification" not in data.tags
    classifier = save_pretrained(cutmix_zoo.load("pyramidnet20_a48.cutmix_shapes"), tmp_path / "classifier")
    assert ModelCard((classifier / "README.md").read_text()).data.pipeline_tag == "image-classification"
