"""Detection fine-tuning on generated scenes: an epoch trains and is scored (metrics.jsonl), the checkpoint is written,
and the exported detector reloads to identical outputs with its class names."""

from __future__ import annotations

import json

import pytest
import torch

from cutmix_zoo.categories import NOVEL_SHAPES
from cutmix_zoo.cli import main
from cutmix_zoo.detection.export import load_detector
from cutmix_zoo.detection.scenes import write_scenes
from cutmix_zoo.train.detection import DetectionRun, train_detector

LIGHT = dict(rpn_pre_nms_top_n_train=200, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_train=100, rpn_post_nms_top_n_test=50,
             box_batch_size_per_image=32, box_detections_per_img=20,
             box_score_thresh=0.0)  # every box kept, so that the reload comparison compares detections


@pytest.mark.slow
def test_a_short_run_scores_checkpoints_exports_and_reloads(tmp_path, capsys):
    data = write_scenes(tmp_path / "scenes", train_images=4, val_images=2, size=64)
    run = DetectionRun(init="pyramidnet20_a48.cutmix_shapes", data=[str(data)], output=str(tmp_path / "out"), epochs=2, batch_size=4,
                       lr=0.01, warmup_steps=2, out_channels=32, min_size=64, max_size=64, detector_kwargs=LIGHT)
    trained, metrics = train_detector(run)
    records = [json.loads(line) for line in (tmp_path / "out/metrics.jsonl").read_text().splitlines()]
    lines = [r for r in records if r["event"] == "epoch"]
    assert [line["epoch"] for line in lines] == [0, 1] and lines[-1]["val_map"] == metrics.map  # 0-based, as the classifier's log
    assert all(0 <= line["val_map"] <= line["val_map50"] <= 1 and line["train_loss"] > 0 for line in lines)
    checkpoint = torch.load(tmp_path / "out/checkpoint.pt", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["step"]) == (2, 0) and checkpoint["run"]["init"] == run.init  # 2 epochs done
    export = tmp_path / "out/export"
    config = json.loads((export / "config.json").read_text())
    assert config["classes"] == list(NOVEL_SHAPES) and config["anchor_sizes"] == [[8], [16], [32], [64]]
    card = (export / "README.md").read_text()
    assert "base_model: pyramidnet20_a48.cutmix_shapes" in card and f"{100 * metrics.map:.2f}" in card

    model = load_detector(export)
    assert model.classes == NOVEL_SHAPES and not model.training
    images = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    with torch.no_grad():
        for a, b in zip(model(images), trained(images)):
            assert len(a["boxes"]) > 0 and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    assert main(["detect", "eval", str(export), "--data", str(data), "--json", "--workers", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["map"] == pytest.approx(metrics.map, abs=1e-9)
    image = data / "val/00001.png"
    args = ["detect", "predict", str(export), str(image), "--workers", "0", "--output", str(tmp_path / "drawn"), "--threshold", "0", "--json"]
    assert main(args) == 0
    [found] = json.loads(capsys.readouterr().out).values()
    assert found and {d["label"] for d in found} <= set(NOVEL_SHAPES) and (tmp_path / "drawn/00001.png").is_file()
    assert main([*args[:-3], "--threshold", "2"]) == 2
    assert "--threshold is a score from 0 to 1" in capsys.readouterr().err
