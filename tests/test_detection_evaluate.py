"""mAP through COCOeval: our path equals pycocotools run directly on the COCO file for hand-made predictions, the COCO
and VOC readers score the same, and VOC's difficult objects stay out of the score."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cutmix_zoo.detection.data import DetectionSplit, read_split
from cutmix_zoo.detection.evaluate import coco_results, evaluate_detections, format_metrics
from cutmix_zoo.detection.scenes import make_scenes, write_coco, write_voc


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval")
    drawn = make_scenes(12, 11, size=64, hard_fraction=0.2)
    write_coco(root / "coco", "val", drawn)
    write_voc(root / "voc", "val", drawn)
    return root


def _prediction(boxes, labels, scores) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels, dtype=torch.int64),
            "scores": torch.tensor(scores, dtype=torch.float32)}


def hand_made(split: DetectionSplit, kind: str) -> dict[int, dict[str, torch.Tensor]]:
    """Predictions built from the truth: perfect, shifted, missing, duplicated, wrong-class, or also covering crowd regions."""
    g = torch.Generator().manual_seed(sum(map(ord, kind)))
    out = {}
    for record in split.records:
        boxes, labels, scores = [], [], []
        for k, (box, label, ignored) in enumerate(zip(record.boxes.tolist(), record.labels.tolist(), record.ignored.tolist())):
            score = 0.3 + 0.7 * float(torch.rand((), generator=g))
            if ignored and kind != "crowd":
                continue
            if kind == "shifted":
                box = [v + d for v, d in zip(box, (torch.rand(4, generator=g) * 6 - 3).tolist())]
            if kind == "missing" and k % 2:
                continue
            if kind == "wrong-class" and k % 2 == 0:
                label = label % len(split.classes) + 1
            boxes.append(box), labels.append(label), scores.append(score)
            if kind == "duplicated" or (kind == "crowd" and ignored):  # a second, lower-scored copy (and a small box inside a crowd)
                inner = box if kind == "duplicated" else [box[0], box[1], (box[0] + box[2]) / 2, (box[1] + box[3]) / 2]
                boxes.append(inner), labels.append(label), scores.append(score / 2)
        boxes.append([1.0, 1.0, 9.0, 9.0]), labels.append(1), scores.append(0.05)  # a low-scored false positive everywhere
        out[record.image_id] = _prediction(boxes, labels, scores)
    return out


def direct_pycocotools(annotation_file: Path, predictions) -> tuple[list[float], np.ndarray]:
    """COCOeval on the COCO file itself, as pycocotools' README runs it: stats and the precision array."""
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(annotation_file))
        scorer = COCOeval(truth, truth.loadRes(coco_results(predictions)), "bbox")
        scorer.evaluate(), scorer.accumulate(), scorer.summarize()
    return list(scorer.stats), scorer.eval["precision"]


KINDS = ["perfect", "shifted", "missing", "duplicated", "wrong-class", "crowd"]


@pytest.mark.parametrize("kind", KINDS)
def test_our_map_equals_pycocotools_on_the_coco_file(scenes, kind):
    split = read_split(scenes / "coco", "val")
    predictions = hand_made(split, kind)
    ours = evaluate_detections(split, predictions)
    stats, precision = direct_pycocotools(scenes / "coco/annotations/instances_val.json", predictions)
    assert [ours.map, ours.map50, ours.map75] == pytest.approx(stats[:3], abs=1e-6)
    for k, name in enumerate(split.classes):
        cells = precision[:, :, k, 0, -1]
        expected = float(cells[cells > -1].mean()) if (cells > -1).any() else math.nan
        assert ours.per_class[name] == pytest.approx(expected, abs=1e-6, nan_ok=True)
    if kind in ("perfect", "crowd"):
        assert ours.map == pytest.approx(1.0) and ours.map50 == pytest.approx(1.0)
    else:
        assert 0 < ours.map < 1


@pytest.mark.parametrize("kind", KINDS)
def test_coco_and_voc_readers_score_the_same(scenes, kind):
    coco, voc = read_split(scenes / "coco", "val"), read_split(scenes / "voc", "val")
    to_voc = {label: voc.classes.index(name) + 1 for label, name in enumerate(coco.classes, 1)}
    predictions = hand_made(coco, kind)
    renamed = {i: dict(p, labels=torch.tensor([to_voc[int(v)] for v in p["labels"]])) for i, p in predictions.items()}
    a, b = evaluate_detections(coco, predictions), evaluate_detections(voc, renamed)
    assert (a.map, a.map50, a.map75) == pytest.approx((b.map, b.map50, b.map75), abs=1e-9)
    assert {n: a.per_class[n] for n in voc.classes} == pytest.approx(b.per_class, nan_ok=True)


def test_difficult_objects_count_neither_as_hits_nor_as_misses(scenes):
    voc = read_split(scenes / "voc", "val")
    assert any(r.difficult.any() for r in voc.records)
    perfect, crowd = hand_made(voc, "perfect"), hand_made(voc, "crowd")
    # found, found twice, found by a box half its size, or missed: a difficult object changes nothing
    assert evaluate_detections(voc, perfect).map == pytest.approx(1.0) == evaluate_detections(voc, crowd).map
    # the same objects scored as normal ones: the misses and the half-size boxes now cost
    plain = DetectionSplit([type(r)(r.image, r.image_id, r.width, r.height, r.boxes, r.labels, r.iscrowd, r.difficult & False)
                            for r in voc.records], voc.classes, voc.layout)
    assert evaluate_detections(plain, perfect).map50 < 1 and evaluate_detections(plain, crowd).map < 1


def test_no_detections_scores_zero_and_prints(scenes):
    split = read_split(scenes / "coco", "val")
    metrics = evaluate_detections(split, {})
    assert (metrics.map, metrics.map50, metrics.map75) == (0.0, 0.0, 0.0)
    text = format_metrics(evaluate_detections(split, hand_made(split, "shifted")))
    assert text.startswith("mAP@[.5:.95] ") and "star" in text and len(text.splitlines()) == 1 + len(split.classes)
    assert set(metrics.as_dict()) == {"map", "map50", "map75", "per_class", "per_class50"}
