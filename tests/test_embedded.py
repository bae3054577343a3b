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


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[list[str], dict, Path]:
    """One ``cutmix-zoo demo --output DIR`` run, offline, with every cache and the home folder empty and private to it:
    its printed lines, its ``demo.json`` and DIR."""
    root = tmp_path_factory.mktemp("demo")
    home, out, cwd = root / "home", root / "out", root / "cwd"
    cwd.mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE="1", HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), HF_HOME=str(home / "hf"),
               CUTMIX_ZOO_CACHE=str(home / "zoo"), TORCH_HOME=str(home / "torch"), MPLCONFIGDIR=str(home / "mpl"),
               HF_ENDPOINT="http://127.0.0.1:9", CUTMIX_ZOO_ORIGINAL_URL="http://127.0.0.1:9/")
    run = subprocess.run([sys.executable, "-m", "cutmix_zoo", "demo", "--output", str(out)], capture_output=True, text=True,
                         env=env, timeout=600, cwd=cwd)
    assert run.returncode == 0, run.stderr
    assert not any(cwd.iterdir()) and not (home / "zoo" / "features").exists()  # everything went to --output or a temporary folder
    return run.stdout.splitlines(), json.loads((out / "demo.json").read_text()), out


@pytest.mark.slow
def test_demo_shows_the_feature_levels(demo):
    lines, result, _ = demo
    assert result["features"]["shapes"] == [[1, 16, 32, 32], [1, 32, 32, 32], [1, 48, 16, 16], [1, 64, 8, 8]]
    assert lines[0].startswith("1. features: cutmix_zoo.load('pyramidnet20_a48.cutmix_shapes', features_only=True)")
    assert "channels [16, 32, 48, 64], reductions [1, 1, 2, 4]" in lines[0]


@pytest.mark.slow
def test_demo_compares_the_cutmix_backbone_with_its_baseline(demo):
    lines, result, out = demo
    transfer = result["transfer"]
    assert transfer["data"]["train_images"] == transfer["data"]["val_images"] == 200
    assert (out / "novel-shapes" / "val" / "star").is_dir()  # classes the models never saw
    for name in EMBEDDED:
        row = next(line.split() for line in lines if line.split()[:1] == [name])
        assert float(row[1]) == pytest.approx(transfer["probe_top1_err"][name], abs=0.005)  # the table prints what was measured
        assert 0 < transfer["probe_top1_err"][name] < 50  # far better than chance (90%) with 20 images a class
    assert (out / "transfer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and transfer["picture"] == str(out / "transfer.png")


@pytest.mark.slow
def test_demo_fine_tunes_with_a_falling_error_and_predicts_with_its_reloaded_export(demo):
    lines, result, out = demo
    tuned = result["finetune"]
    errors = tuned["val_top1_err"]
    assert len(errors) >= 3 and tuned["end_top1_err"] == errors[-1] < errors[0] - 10  # a fall that shows (measured: 23.0 -> 8.5)
    assert (out / "glyphs" / "val").is_dir() and str(out / "glyphs") in next(line for line in lines if line.startswith("3. "))
    said = next(line for line in lines if "validation top-1 error by epoch" in line)
    assert f"from {errors[0]:.1f}% after the first epoch to {errors[-1]:.1f}% after the last" in said
    assert tuned["export"] == str(out / "finetune" / "export") and (out / "finetune" / "export" / "config.json").is_file()
    names = json.loads((out / "finetune" / "export" / "config.json").read_text())["label_names"]
    top = tuned["predictions"]
    assert len(top) == 3 and all(p["label"] in names for p in top) and tuned["label"] in names
    assert 1 >= top[0]["probability"] >= top[1]["probability"] >= top[2]["probability"] > 0
    assert f"{top[0]['label']} {top[0]['probability']:.1%}" in next(line for line in lines if "predict " in line)


@pytest.mark.slow
def test_demo_detects_and_ends_with_where_everything_is(demo):
    lines, result, out = demo
    detection = result["detection"]
    assert 0 < detection["map"] <= detection["map50"] <= 1 and detection["val_images"] > 0  # a detector that found shapes
    assert lines[-1].startswith(f"5. done in {result['seconds']:.1f} s; everything is in {out}")
    assert "Next: `cutmix-zoo transfer --data" in lines[-1] and f"--model {out / 'finetune' / 'export'}" in lines[-1]
    assert [line[:2] for line in lines if line[:1].isdigit()] == ["1.", "2.", "3.", "4.", "5."]  # one line a step, in order


def test_demo_without_the_detection_extra_says_how_to_get_it(monkeypatch):
    import importlib.util

    from cutmix_zoo.cli.demo import detection_step

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pycocotools" else real(name, *a))
    said: list[str] = []
    assert "cutmix-zoo[detection]" in detection_step(said.append)["left_out"]
    assert len(said) == 1 and said[0].startswith("4. detect: left out") and "pip install 'cutmix-zoo[detection]'" in said[0]


@pytest.mark.slow
def test_demo_without_matplotlib_says_so_and_still_prints_the_table(monkeypatch, tmp_path):
    import importlib.util

    from cutmix_zoo.cli.demo import transfer_step

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    said: list[str] = []
    _, found = transfer_step(tmp_path, said.append)
    assert found["picture"] is None and not (tmp_path / "transfer.png").exists()
    left_out = [line for line in said if "picture" in line]
    assert len(left_out) == 1 and 'pip install "cutmix-zoo[plots]"' in left_out[0]
    assert sum(line.split()[:1] == [name] for line in said for name in EMBEDDED) == 2  # the table, both models


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
