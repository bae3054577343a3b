"""Predictions with class names: the entry's eval transform, softmax, top-k, and the predict command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import cutmix_zoo
from cutmix_zoo.categories import categories
from cutmix_zoo.cli import main
from cutmix_zoo.errors import InvalidArgumentError
from cutmix_zoo.registry import DATASETS
from cutmix_zoo.reports.predict import predict

import tiny


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """A small non-square JPEG with some structure in it."""
    torch.manual_seed(0)
    pixels = (torch.rand(40, 56, 3) * 255).to(torch.uint8)
    path = tmp_path / "photo.jpg"
    Image.fromarray(pixels.numpy()).save(path)
    return path


@pytest.fixture
def resnet50(resnet50_file: Path) -> torch.nn.Module:
    return cutmix_zoo.load("resnet50", weights=resnet50_file)


def test_categories_cover_every_dataset_of_the_registry():
    for name, data in DATASETS.items():
        names = categories(name)
        assert len(names) == data.num_classes and len(set(names)) == data.num_classes, name
    assert categories("imagenet-1k")[:2] == ["tench", "goldfish"] and categories("imagenet-1k")[281] == "tabby"
    assert categories("cifar-10")[3] == "cat" and categories("cifar-100")[-1] == "worm"
    assert categories("cifar-100") == sorted(categories("cifar-100"))  # CIFAR-100's label order is alphabetical
    with pytest.raises(InvalidArgumentError, match="No class names are known for the dataset 'mnist'"):
        categories("mnist")


def test_predict_matches_the_models_softmax_with_imagenet_names(resnet50, photo):
    results = predict([photo, Image.open(photo)], resnet50, top=5)
    assert len(results) == 2 and results[0] == results[1]
    with torch.no_grad():
        probs = resnet50(cutmix_zoo.transforms(resnet50)(Image.open(photo).convert("RGB"))[None]).softmax(1)[0]
    values, indices = probs.topk(5)
    names = categories("imagenet-1k")
    assert [p["index"] for p in results[0]] == indices.tolist()
    assert [p["label"] for p in results[0]] == [names[i] for i in indices.tolist()]
    assert [p["probability"] for p in results[0]] == pytest.approx(values.tolist(), abs=1e-5)


def test_predict_takes_a_single_image_and_a_model_name(resnet50_file, photo):
    results = predict(photo, "resnet50", top=2, weights=resnet50_file)
    assert len(results) == 1 and len(results[0]) == 2
    assert results[0][0]["probability"] >= results[0][1]["probability"]


def test_cifar_names_top_clamped_and_mode_restored(tiny_registry, monkeypatch, photo):
    model = cutmix_zoo.load(tiny.FILE_ENTRY, pretrained=False).train()
    [preds] = predict(photo, model, top=50)
    assert len(preds) == 10 and sorted(p["label"] for p in preds) == sorted(categories("cifar-10"))
    assert sum(p["probability"] for p in preds) == pytest.approx(1, abs=1e-5)
    assert model.training


def test_a_new_head_gets_numbered_labels(tiny_registry, monkeypatch, photo):
    model = cutmix_zoo.load(tiny.FILE_ENTRY, pretrained=False, num_classes=3)
    [preds] = predict(photo, model, top=3)
    assert sorted(p["label"] for p in preds) == ["class 0", "class 1", "class 2"]


def test_bad_inputs_are_one_sentence(tiny_registry, monkeypatch, tmp_path, photo):
    model = cutmix_zoo.load(tiny.FILE_ENTRY, pretrained=False)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "cut.jpg").write_bytes(photo.read_bytes()[:400])
    cases = [
        (lambda: predict(tmp_path / "missing.jpg", model), "does not exist"),
        (lambda: predict(tmp_path / "notes.txt", model), "is not an image file that Pillow can read"),
        (lambda: predict(tmp_path / "cut.jpg", model), "could not be read"),
        (lambda: predict(photo, model, top=0), "top must be a positive integer"),
        (lambda: predict(photo, model, weights="x.safetensors"), "weights= picks the file for a model name"),
        (lambda: predict(photo, cutmix_zoo.load(tiny.FILE_ENTRY, pretrained=False, features_only=True)), "without its classifier"),
        (lambda: predict(photo, torch.nn.Linear(2, 2)), "has no pretrained_cfg"),
    ]
    for call, message in cases:
        with pytest.raises(InvalidArgumentError, match=message):
            call()


def test_predict_command_text_and_json(resnet50_file, photo, capsys):
    assert main(["predict", str(photo), "--model", "resnet50", "--weights", str(resnet50_file), "--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(photo) and len(lines) == 4 and lines[1].lstrip().startswith("1.")
    assert main(["predict", str(photo), str(photo), "--weights", str(resnet50_file), "--top", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in rows] == [str(photo)] * 2
    assert set(rows[0]["predictions"][0]) == {"index", "label", "probability"} and len(rows[0]["predictions"]) == 2


def test_predict_command_errors(tiny_registry, monkeypatch, tmp_path, photo, capsys):
    (tmp_path / "notes.txt").write_text("not an image")
    cases = [
        ([str(tmp_path / "notes.txt"), "--model", tiny.FILE_ENTRY], 2, "is not an image file"),
        ([str(photo), "--model", "resnet5"], 2, "Unknown model 'resnet5'"),
        ([str(photo), "--model", tiny.FILE_ENTRY, "--weights", str(tmp_path / "none.safetensors")], 1, "does not exist"),
    ]
    for argv, code, message in cases:
        assert main(["predict", *argv]) == code
        err = capsys.readouterr().err
        assert err.startswith("cutmix-zoo: error: ") and message in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--help"])
    assert exit_info.value.code == 0 and "usage: cutmix-zoo predict" in capsys.readouterr().out


@pytest.mark.slow
def test_top_level_functions_stay_functions_once_their_modules_are_imported():
    """``cutmix_zoo.predict``/``cam``/``localize`` are functions; importing the modules that define them must not rebind them."""
    code = ("import importlib, json, cutmix_zoo\n"
            "names = ['predict', 'cam', 'localize', 'detection_backbone']\n"
            "for module in ('reports', 'reports.predict', 'reports.cam', 'reports.localize', 'detection', 'detection.backbone'):\n"
            "    importlib.import_module('cutmix_zoo.' + module)\n"
            "print(json.dumps({'broken': [n for n in names if not callable(getattr(cutmix_zoo, n))]}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["broken"] == []
