"""The embedded default models: shipped files, offline loading, regeneration, the demo, and the README."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import cutmix_zoo
from cutmix_zoo import registry
from cutmix_zoo.files import sha256_file
from cutmix_zoo.hub.cards import model_table
from cutmix_zoo.train import train_main
from cutmix_zoo.train.evaluation import evaluate_model

REPO = Path(__file__).resolve().parents[1]
EMBEDDED = [n for n in registry.list_models() if registry.get_entry(n).bundled]


def test_two_embedded_models_are_registered():
    assert EMBEDDED == ["pyramidnet20_a48.baseline_shapes", "pyramidnet20_a48.cutmix_shapes"]
    assert cutmix_zoo.get_entry("pyramidnet20_a48").name == "pyramidnet20_a48.cutmix_shapes"


@pytest.mark.parametrize("name", EMBEDDED)
def test_shipped_file_is_small_and_matches_the_registry(name):
    entry = registry.get_entry(name)
    assert entry.bundled_file.is_file()
    assert entry.bundled_file.stat().st_size <= 5 * 2**20
    assert sha256_file(entry.bundled_file) == entry.sha256


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> dict[str, tuple[str, dict]]:
    """Each embedded model loaded offline, with an empty cache, and scored once on the 2,000 Shapes-10 test images:
    ``{name: (the source it was loaded from, evaluate_model's figures)}``."""
    root = tmp_path_factory.mktemp("offline")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        for var, value in {"HF_HUB_OFFLINE": "1", "CUTMIX_ZOO_CACHE": str(root / "cache"), "HF_HOME": str(root / "hf"),
                           "HF_ENDPOINT": "http://127.0.0.1:9", "CUTMIX_ZOO_ORIGINAL_URL": "http://127.0.0.1:9/"}.items():
            mp.setenv(var, value)
        for name in EMBEDDED:
            model = cutmix_zoo.load(name)
            out[name] = (model.pretrained_cfg["source"], evaluate_model(model, "shapes", batch_size=500))
    return out


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_model_loads_offline_and_scores_what_the_registry_says(name, measured):
    source, errors = measured[name]
    assert source == str(registry.get_entry(name).bundled_file)
    entry = registry.get_entry(name)
    assert errors["images"] == 2000
    assert errors["top1_err"] == pytest.approx(entry.top1_err, abs=0.026)
    assert errors["top5_err"] == pytest.approx(entry.top5_err, abs=0.026)


@pytest.mark.parametrize("name", EMBEDDED)
def test_shipped_file_holds_its_architectures_finite_tensors(name):
    """The file's keys, shapes and dtypes are those of the registry architecture built on the meta device, and every value
    is finite, so a file of another network, or a half-written or diverged one, fails here and not at a user's load."""
    entry = registry.get_entry(name)
    shipped = load_file(entry.bundled_file)
    expected = cutmix_zoo.load(name, pretrained=False, device="meta").state_dict()
    assert {k: (tuple(v.shape), v.dtype) for k, v in shipped.items()} == {k: (tuple(v.shape), v.dtype) for k, v in expected.items()}
    assert all(torch.isfinite(v).all() for v in shipped.values() if v.is_floating_point())


def test_cutmix_beats_its_baseline_as_measured(measured):
    """Measured on the shipped files, not read from the registry: the CutMix model errs less than its baseline, by the
    margin the registry records (one of the 2,000 test images is worth 0.05 points)."""
    cutmix, baseline = (measured[f"pyramidnet20_a48.{m}_shapes"][1]["top1_err"] for m in ("cutmix", "baseline"))
    assert cutmix < baseline
    recorded = registry.get_entry("pyramidnet20_a48.baseline_shapes").top1_err - registry.get_entry("pyramidnet20_a48.cutmix_shapes").top1_err
    assert baseline - cutmix == pytest.approx(recorded, abs=0.051)


def _short_run(out: Path, seed: int) -> dict:
    code = train_main(["--recipe", "pyramidnet20_a48.cutmix_shapes", "--epochs", "1", "--synthetic-size", "128",
                       "--batch-size", "32", "--device", "cpu", "--workers", "0", "--seed", str(seed),
                       "--output", str(out), "--quiet"])
    assert code == 0
    return load_file(out / "export" / "model.safetensors")


def _bits(state: dict) -> dict:
    """Every tensor as its raw bytes: equal only when bit-identical (torch.equal calls -0.0 and 0.0 equal)."""
    return {k: v.reshape(-1).view(torch.uint8).numpy().tobytes() for k, v in state.items()}


@pytest.mark.slow
def test_regenerating_a_shortened_run_is_bit_identical(tmp_path, monkeypatch):
    # safetensors writes its metadata in hash-map order, so files are compared tensor by tensor.
    from cutmix_zoo import shapes

    monkeypatch.setattr(shapes, "TEST_SIZE", 200)  # the end-of-epoch evaluation reads the weights, never changes them
    first = _bits(_short_run(tmp_path / "a", seed=0))
    assert _bits(_short_run(tmp_path / "b", seed=0)) == first
    assert _bits(_short_run(tmp_path / "c", seed=1)) != first


@pytest.mark.slow
def test_demo_runs_the_whole_path_offline(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", CUTMIX_ZOO_CACHE=str(tmp_path / "cache"), HF_HOME=str(tmp_path / "hf"))
    out = subprocess.run([sys.executable, "-m", "cutmix_zoo", "demo", "--json", "--train-images", "256"],
                         capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["feature_shapes"] == [[1, 16, 32, 32], [1, 32, 32, 32], [1, 48, 16, 16], [1, 64, 8, 8]]
    assert 0 <= result["trained_top1_err"] <= 100
    for name in EMBEDDED:
        assert result[name]["top1_acc"] == pytest.approx(100 - registry.get_entry(name).top1_err, abs=0.026)
    detection = result["detection"]
    assert 0 < detection["map"] <= detection["map50"] <= 1 and detection["val_images"] > 0  # a detector that found shapes
    assert not (tmp_path / "runs").exists()  # the demo's training run lives in a temporary folder


def test_demo_without_the_detection_extra_says_how_to_get_it(monkeypatch):
    import importlib.util

    from cutmix_zoo.cli.demo import detection_step

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pycocotools" else real(name, *a))
    said: list[str] = []
    assert "cutmix-zoo[detection]" in detection_step(said.append)["left_out"]
    assert len(said) == 1 and said[0].startswith("6. detect: left out") and "pip install 'cutmix-zoo[detection]'" in said[0]


@pytest.mark.slow
def test_demo_prints_each_step(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cutmix_zoo", "demo", "--skip-train"], capture_output=True, text=True,
                         env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=600)
    assert out.returncode == 0, out.stderr
    assert "features:" in out.stdout and "top-1 accuracy" in out.stdout and out.stdout.count("_shapes") >= 2


def test_readme_model_table_is_current():
    assert model_table() in (REPO / "README.md").read_text(), "README's model table is stale: paste `cutmix-zoo list --markdown`"


def test_readme_quickstart_has_exactly_two_commands():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2
    assert commands[0].endswith("cutmix-zoo demo") and commands[1].endswith("python -m pytest -q")
    ci = (REPO / ".ci" / "run").read_text()
    assert "python -m pytest -q" in ci and '".[test]"' in ci
