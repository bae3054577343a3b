"""cutmix-zoo transfer: the feature cache, the linear probe and its L2 choice, the command's outputs and its one-line errors,
on generated Novel-Shapes images (classes the embedded models never saw)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

import cutmix_zoo
from cutmix_zoo.cli import main
from cutmix_zoo.recipes import finetune_recipe
from cutmix_zoo.reports import transfer
from cutmix_zoo.shapes import write_folder

CUTMIX, BASELINE = "pyramidnet20_a48.cutmix_shapes", "pyramidnet20_a48.baseline_shapes"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def novel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Novel-Shapes as train/ (20 images a class) and val/ (30 images a class)."""
    return write_folder(tmp_path_factory.mktemp("novel") / "data", 20, 30, novel=True, seed=0)


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("features")


@pytest.fixture(scope="module")
def cutmix_features(novel: Path, feature_cache: Path) -> tuple[transfer.TransferData, torch.Tensor]:
    """The embedded CutMix model's features of every Novel-Shapes image, cached in the module's feature cache."""
    data = transfer.read_transfer_folder(novel)
    model = cutmix_zoo.load(CUTMIX, num_classes=0)
    return data, transfer.extract_features({CUTMIX: model}, data.paths, data.root, feature_cache)[CUTMIX].features


class Counter:
    """Counts a model's forward passes through a forward hook."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls = 0
        model.register_forward_hook(self.count)

    def count(self, *_: object) -> None:
        self.calls += 1


def test_the_probe_on_the_cutmix_backbone_beats_chance_by_far(cutmix_features):
    data, x = cutmix_features
    assert x.shape == (len(data.paths), 64) and len(data.train) == 200 and len(data.val) == 300
    result = transfer.linear_probe(x[data.train], data.labels[data.train], x[data.val], data.labels[data.val], len(data.classes))
    assert result.top1_err < 35, result  # chance is 90 %
    assert result.top5_err is not None and result.top5_err < result.top1_err
    assert result.l2 in transfer.DEFAULT_GRID and len(result.holdout_top1_err) == len(transfer.DEFAULT_GRID)
    assert result.holdout_images == 40 and result.train_images == 200 and result.val_images == 300
    again = transfer.linear_probe(x[data.train], data.labels[data.train], x[data.val], data.labels[data.val], len(data.classes))
    assert (again.top1_err, again.top5_err, again.l2, again.holdout_loss) == (result.top1_err, result.top5_err, result.l2, result.holdout_loss)


def test_the_l2_strength_is_chosen_without_the_validation_images(cutmix_features):
    data, x = cutmix_features
    train_x, train_y, val_y = x[data.train], data.labels[data.train], data.labels[data.val]
    honest = transfer.linear_probe(train_x, train_y, x[data.val], val_y, len(data.classes))
    shuffled = val_y[torch.randperm(len(val_y), generator=torch.Generator().manual_seed(1))]
    noise = torch.randn(len(data.val), x.shape[1], generator=torch.Generator().manual_seed(2))
    blind = transfer.linear_probe(train_x, train_y, noise, shuffled, len(data.classes))
    assert (blind.l2, blind.holdout_top1_err, blind.holdout_loss) == (honest.l2, honest.holdout_top1_err, honest.holdout_loss)
    assert blind.top1_err > 70 > honest.top1_err  # the validation images do count for the error reported
    other_split = transfer.linear_probe(train_x, train_y, x[data.val], val_y, len(data.classes), seed=1)
    assert other_split.holdout_loss != honest.holdout_loss  # the held-out part is drawn from the seed


def test_five_classes_or_fewer_report_no_top5_error():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0], [0.0, 1.0, 2.0, 3.0, 4.0]])
    assert transfer.top_errors(logits, torch.tensor([0, 0])) == (50.0, None)
    wide = torch.cat([logits, torch.full((2, 1), -9.0)], dim=1)
    assert transfer.top_errors(wide, torch.tensor([5, 4])) == (50.0, 50.0)


def test_a_second_extraction_reads_the_cache_and_a_changed_image_invalidates_it(novel, tmp_path):
    data = shutil.copytree(novel, tmp_path / "data")
    paths = transfer.read_transfer_folder(data).paths[::25]
    model = cutmix_zoo.load(CUTMIX, num_classes=0)
    counter = Counter(model)
    first = transfer.extract_features({CUTMIX: model}, paths, data, tmp_path / "cache", batch_size=4)[CUTMIX]
    assert not first.cached and counter.calls == -(-len(paths) // 4) and first.file.is_file()
    written = first.file.stat().st_mtime_ns

    counter.calls = 0
    second = transfer.extract_features({CUTMIX: model}, paths, data, tmp_path / "cache", batch_size=4)[CUTMIX]
    assert second.cached and counter.calls == 0
    assert second.file == first.file and first.file.stat().st_mtime_ns == written and torch.equal(second.features, first.features)

    with Image.open(paths[3]) as image:
        image.transpose(Image.FLIP_TOP_BOTTOM).save(paths[3])
    third = transfer.extract_features({CUTMIX: model}, paths, data, tmp_path / "cache", batch_size=4)[CUTMIX]
    assert not third.cached and counter.calls > 0 and third.file != first.file
    changed = (third.features != first.features).any(dim=1)
    assert changed[3] and changed.sum() == 1  # only the modified image's features moved

    counter.calls = 0
    os.utime(paths[0], ns=(written, written + 10**9))  # the same bytes, touched
    fourth = transfer.extract_features({CUTMIX: model}, paths, data, tmp_path / "cache", batch_size=4)[CUTMIX]
    assert not fourth.cached and counter.calls > 0 and torch.equal(fourth.features, third.features)


def test_the_cache_key_holds_the_weights_and_the_transform(novel):
    cutmix, baseline = cutmix_zoo.load(CUTMIX, num_classes=0), cutmix_zoo.load(BASELINE, num_classes=0)
    assert transfer.model_identity(cutmix) == transfer.model_identity(cutmix_zoo.load(CUTMIX, num_classes=0))
    assert transfer.model_identity(cutmix)["weights_sha256"] != transfer.model_identity(baseline)["weights_sha256"]
    data = transfer.data_identity(novel, transfer.read_transfer_folder(novel).paths)
    assert transfer.cache_key(cutmix, data)["transform"] == {"input_size": [3, 32, 32], "resize": 32, "interpolation": "bilinear",
                                                             "mean": [0.5] * 3, "std": [0.295] * 3}
    with torch.no_grad():
        next(cutmix.parameters()).add_(1e-3)
    assert transfer.model_identity(cutmix)["weights_sha256"] != transfer.model_identity(baseline)["weights_sha256"]
    assert transfer.model_identity(cutmix) != transfer.model_identity(cutmix_zoo.load(CUTMIX, num_classes=0))


def test_val_split_holds_out_a_seeded_fraction_of_each_class(novel):
    data = transfer.read_transfer_folder(novel / "val", val_split=0.2, seed=3)
    assert len(data.train) == 240 and len(data.val) == 60
    assert data.labels[data.val].bincount().tolist() == [6] * 10
    assert not set(data.train.tolist()) & set(data.val.tolist())
    assert torch.equal(transfer.read_transfer_folder(novel / "val", val_split=0.2, seed=3).val, data.val)
    assert not torch.equal(transfer.read_transfer_folder(novel / "val", val_split=0.2, seed=4).val, data.val)


def test_the_command_prints_the_table_and_writes_the_report_and_the_picture(novel, feature_cache, cutmix_features, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["transfer", "--data", str(novel), "--models", f"{CUTMIX},{BASELINE}", "-o", str(out), "--cache", str(feature_cache),
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "probe top-1 err %" in printed and CUTMIX in printed and BASELINE in printed and "(cached)" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["command"].startswith("cutmix-zoo transfer --data ")
    assert report["data"]["train_images"] == 200 and report["data"]["val_images"] == 300 and len(report["data"]["classes"]) == 10
    cutmix = report["models"][CUTMIX]
    assert cutmix["features_cached"] and not report["models"][BASELINE]["features_cached"]
    assert cutmix["feature_dim"] == 64 and cutmix["probe"]["top1_err"] < 35 and cutmix["probe"]["l2"] in cutmix["probe"]["grid"]
    assert f"{cutmix['probe']['top1_err']:.2f}" in printed
    assert report["pictures"] == [str(out / "transfer.png")]
    with Image.open(out / "transfer.png") as picture:
        assert picture.format == "PNG" and picture.width > 300


def test_without_models_small_images_add_the_embedded_models_to_the_resnets(novel, tmp_path, capsys):
    assert transfer.small_images(transfer.read_transfer_folder(novel))
    code = main(["transfer", "--data", str(novel), "-o", str(tmp_path / "out"), "--no-plots", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "resnet50.cutmix_in1k" in err  # offline: its download fails


def _bad_folder(root: Path, kind: str, novel: Path) -> Path:
    """A small data folder with one thing wrong of the given kind."""
    for split in ("train", "val"):
        for name in ("star", "crescent"):
            (root / split / name).mkdir(parents=True)
            for image in sorted((novel / split / name).iterdir())[:3]:
                shutil.copy(image, root / split / name)
    if kind == "no_val":
        shutil.rmtree(root / "val")
    elif kind == "one_class":
        for split in ("train", "val"):
            shutil.rmtree(root / split / "crescent")
    elif kind == "unreadable":
        (root / "val" / "star" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    elif kind == "mismatch":
        (root / "val" / "crescent").rename(root / "val" / "moon")
    elif kind == "empty":
        for image in (root / "train" / "crescent").iterdir():
            image.unlink()
    return root


@pytest.mark.parametrize("kind, extra, code, words", [
    ("no_val", [], 2, "--val-split"),
    ("one_class", [], 2, "1 class folder"),
    ("unreadable", [], 2, "broken.png"),
    ("mismatch", [], 2, "only in val/: moon"),
    ("empty", [], 2, "crescent holds no images"),
    ("fine", ["--models", "pyramidnet20_a48.nosuch_shapes"], 2, "pyramidnet20_a48.nosuch_shapes"),
    ("fine", ["--val-split", "1.5"], 2, "between 0 and 1"),
    ("fine", ["--val-split", "0"], 2, "between 0 and 1"),
])
def test_bad_input_is_one_line_and_its_exit_code(novel, tmp_path, capsys, kind, extra, code, words):
    data = _bad_folder(tmp_path / "data", kind, novel)
    if "--val-split" in extra:
        shutil.rmtree(data / "val")
        data = data / "train"
    argv = ["transfer", "--data", str(data), "--models", CUTMIX, "-o", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"),
            "--no-plots", "--quiet", *extra]
    assert main(argv) == code
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1, captured.err
    assert captured.err.startswith("cutmix-zoo: error: ") and words in captured.err


@pytest.mark.slow
def test_finetune_runs_the_trainer_beside_the_probe(tmp_path, capsys):
    data = write_folder(tmp_path / "data", 8, 2, novel=True, seed=1)  # 80 training images: more than one batch of the recipe
    out = tmp_path / "out"
    assert main(["transfer", "--data", str(data), "--models", CUTMIX, "-o", str(out), "--cache", str(tmp_path / "cache"), "--quiet",
                 "--finetune", "1"]) == 0
    assert "fine-tune top-1 err %" in capsys.readouterr().out
    run = out / "finetune" / CUTMIX
    end = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    tuned = json.loads((out / "report.json").read_text())["models"][CUTMIX]["finetune"]
    assert tuned == {"top1_err": end["best_top1_err"], "top5_err": end["best_top5_err"], "best_epoch": end["best_epoch"], "epochs": 1,
                     "output": str(run)}
    assert cutmix_zoo.load(run / "export").pretrained_cfg["num_classes"] == 10  # the trainer's export of the fine-tuned model
    start = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert start["recipe"] == json.loads(json.dumps(dataclasses.asdict(finetune_recipe("folder", 1, 32))))  # train --init's recipe
