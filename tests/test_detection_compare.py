"""Detection transfer: fine-tuning from the embedded CutMix model beats training the same detector from scratch over
seeds, and ``cutmix-zoo transfer --task detection`` writes its table, report.json and picture, refusing bad input in one line."""

from __future__ import annotations

import json

import pytest
import torch

from cutmix_zoo.cli import main
from cutmix_zoo.detection.scenes import write_scenes
from cutmix_zoo.train.detection import DetectionRun, train_detector

EMBEDDED = "pyramidnet20_a48.cutmix_shapes"
BASELINE = "pyramidnet20_a48.baseline_shapes"
LIGHT = dict(rpn_pre_nms_top_n_train=200, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_train=100, rpn_post_nms_top_n_test=50,
             box_batch_size_per_image=32, box_detections_per_img=20)


@pytest.mark.slow
def test_fine_tuning_the_embedded_model_beats_training_the_detector_from_scratch_over_seeds(tmp_path):
    """The same Faster R-CNN (32-channel FPN, 64-pixel scenes, 10 epochs of 32 images, batch 4, two frozen levels), three
    seeds of data and run: from the embedded CutMix model at lr 0.01 against from random weights at lr 0.001 (a random
    PyramidNet under frozen batch norm has features ~20x the pretrained one's: at 0.0025 one seed's loss became NaN in
    its third epoch, at 0.005 and above every seed's within two). The mAP@0.5 gap must clear twice its spread over the
    seeds by 15 points (measured: fine-tuned 43.9 / 64.4 / 43.2%, gaps 43.9 / 64.4 / 39.0 points, mean minus twice the
    spread 22.2)."""
    gaps, tuned = [], []
    for seed in range(3):
        data = write_scenes(tmp_path / f"scenes{seed}", train_images=32, val_images=16, size=64, seed=seed)
        scores = {}
        for pretrained, lr in ((True, 0.01), (False, 0.001)):
            run = DetectionRun(init=EMBEDDED, data=[str(data)], output=str(tmp_path / f"run{seed}{pretrained}"), epochs=10,
                               batch_size=4, lr=lr, warmup_steps=10, seed=seed, out_channels=32, min_size=64, max_size=64,
                               pretrained=pretrained, detector_kwargs=LIGHT)
            scores[pretrained] = 100 * train_detector(run)[1].map50
        tuned.append(scores[True])
        gaps.append(scores[True] - scores[False])
    spread = torch.tensor(gaps).std().item()
    assert sum(gaps) / len(gaps) - 2 * spread > 15, (gaps, tuned)
    assert min(tuned) > 30, tuned


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("scenes"), train_images=4, val_images=2, size=64)


def test_transfer_detection_writes_the_table_the_report_and_the_picture(scenes, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["transfer", "--task", "detection", "--data", str(scenes), "--models", f"{EMBEDDED},{BASELINE}", "--epochs", "1",
            "--seeds", "2", "--min-size", "64", "--max-size", "64", "--batch-size", "4", "-o", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "mAP@0.5 %" in printed and "class AP %" in printed and printed.count(" ± ") >= 6 and "hourglass" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "detection" and report["settings"]["seeds"] == [0, 1] and report["settings"]["lr"] == 0.005
    assert report["data"]["train_images"] == 4 and report["data"]["layout"] == "coco" and len(report["data"]["classes"]) == 10
    for name in (EMBEDDED, BASELINE):
        entry = report["models"][name]
        assert [run["seed"] for run in entry["runs"]] == [0, 1] and set(entry["mean"]) == {"map", "map50", "map75", "seconds"}
        assert entry["spread"]["map"] >= 0 and set(entry["per_class_mean"]) == set(report["data"]["classes"])
        assert all((out / "detection" / name / f"seed{s}" / "export" / "model.safetensors").is_file() for s in (0, 1))
    assert report["pictures"] == [str(out / "transfer.png")] and (out / "transfer.png").stat().st_size > 10_000
    assert main(args) == 2  # the run folders hold the first runs now
    assert capsys.readouterr().err.strip().endswith("holds an earlier run: choose a new --output, or remove that folder.")


@pytest.mark.parametrize("extra, message", [
    ([], "--task detection needs --epochs N, a positive number of epochs per fine-tune, not None."),
    (["--epochs", "1", "--seeds", "0"], "--seeds counts the runs per model, at least 1, not 0."),
    (["--epochs", "1", "--finetune", "2"], "--finetune is an option of --task classification; a detection transfer fine-tunes for --epochs N."),
    (["--epochs", "1", "--detector-arg", "nope"], "--detector-arg takes KEY=VALUE with KEY a keyword of the detector, not 'nope'."),
])
def test_transfer_detection_refuses_bad_numbers_in_one_line(scenes, tmp_path, capsys, extra, message):
    assert main(["transfer", "--task", "detection", "--data", str(scenes), "-o", str(tmp_path / "o"), *extra]) == 2
    assert capsys.readouterr().err.strip() == f"cutmix-zoo: error: {message}"
    assert not (tmp_path / "o").exists()


def test_transfer_detection_refuses_a_keyword_the_detector_does_not_take(scenes, tmp_path, capsys):
    args = ["transfer", "--task", "detection", "--data", str(scenes), "--epochs", "1", "-o", str(tmp_path / "o")]
    assert main([*args, "--detector-arg", "box_batch_size=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cutmix-zoo: error: --detector-arg box_batch_size is no keyword of torchvision's FasterRCNN; it takes ")
    assert "box_batch_size_per_image" in err and "min_size" not in err and "\n" not in err


def test_the_classification_transfer_refuses_detection_options_and_two_folders(scenes, tmp_path, capsys):
    assert main(["transfer", "--data", str(scenes), "-o", str(tmp_path / "o"), "--epochs", "2"]) == 2
    assert capsys.readouterr().err.strip() == ("cutmix-zoo: error: --epochs is an option of --task detection; a classification "
                                               "transfer fine-tunes with --finetune EPOCHS.")
    assert main(["transfer", "--data", str(scenes), "--data", str(scenes), "-o", str(tmp_path / "o")]) == 2
    assert "--data names one folder for --task classification" in capsys.readouterr().err


def test_transfer_detection_names_a_folder_that_is_no_detection_data(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    args = ["transfer", "--task", "detection", "--data", str(tmp_path / "empty"), "--epochs", "1", "-o", str(tmp_path / "o")]
    assert main(args) == 1  # a file failure, as in detect train
    err = capsys.readouterr().err.strip()
    assert err.startswith("cutmix-zoo: error: ") and str(tmp_path / "empty") in err and err.count("\n") == 0
    assert not (tmp_path / "o").exists()  # refused before any folder or run


def test_the_demos_detection_step_fine_tunes_and_scores_a_detector_in_seconds():
    from cutmix_zoo.cli.demo import DETECT_EPOCHS, detection_step

    said: list[str] = []
    found = detection_step(say=said.append)
    assert found["epochs"] == DETECT_EPOCHS and 0 <= found["map"] <= found["map50"] <= 1 and found["seconds"] < 60
    assert said[0].startswith("4. detect: Faster R-CNN on pyramidnet20_a48.cutmix_shapes") and f"{100 * found['map']:.2f}" in said[1]
