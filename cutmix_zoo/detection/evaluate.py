"""mAP as COCO scores it, through pycocotools' ``COCOeval``: COCO's mAP@[.5:.95], mAP@0.5 (VOC's metric), mAP@0.75
and the AP of each class, for any :class:`~cutmix_zoo.detection.data.DetectionSplit`, COCO or VOC.

The ground truth handed to ``COCOeval`` is built from the split's records (labels 1..C as category ids, box area as
``area``). Objects kept out of the score are COCO ``iscrowd`` regions, as COCO's evaluation holds them, and VOC's
``difficult`` objects, which become ``iscrowd`` regions too: ``COCOeval`` overwrites any other ``ignore`` flag with
``iscrowd``, so a crowd region is its only way to ignore an object. As VOC's protocol does, a detection matched to a
difficult object then counts neither as a hit nor as a false positive, however many there are, and a missed difficult
object lowers no recall. Two things differ from VOC's own code, and the tests pin them: a detection is matched to a
crowd region by the share of the detection inside it (intersection over the detection's area, COCO's crowd rule), not by
IoU, and a detection that overlaps a normal object as well is matched to the normal one first. The area ranges (small,
medium, large) are those of box areas, not of COCO's segmentation areas; the ``all`` range, which every number here
uses, is the same either way.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .data import DetectionSplit
from .pycoco import coco_api

Prediction = Mapping[str, torch.Tensor]  # a torchvision detector's output for one image: boxes (xyxy), scores, labels


@dataclass(frozen=True)
class DetectionMetrics:
    """COCOeval's numbers at 100 detections per image over all areas: ``map`` (mAP@[.5:.95]), ``map50``, ``map75``, and
    each class's AP@[.5:.95] and AP@0.5 (NaN for a class with no object to find)."""

    map: float
    map50: float
    map75: float
    per_class: dict[str, float] = field(default_factory=dict)
    per_class50: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The metrics as JSON-ready values (a NaN AP becomes None)."""
        clean = {name: (None if math.isnan(v) else v) for name, v in self.per_class.items()}
        clean50 = {name: (None if math.isnan(v) else v) for name, v in self.per_class50.items()}
        return {"map": self.map, "map50": self.map50, "map75": self.map75, "per_class": clean, "per_class50": clean50}


def coco_ground_truth(split: DetectionSplit) -> dict[str, Any]:
    """The split as a COCO annotation dict for ``COCOeval``: xywh boxes, box areas, crowd and difficult objects as ``iscrowd``."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for record in split.records:
        images.append({"id": record.image_id, "width": record.width, "height": record.height, "file_name": record.image.name})
        for box, label, ignored in zip(record.boxes.tolist(), record.labels.tolist(), record.ignored.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": record.image_id, "category_id": label,
                                "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": int(ignored)})
    categories = [{"id": label, "name": name} for label, name in enumerate(split.classes, 1)]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_results(predictions: Mapping[int, Prediction]) -> list[dict[str, Any]]:
    """Detections in COCO's results format (image id, category id, xywh box, score), the input of ``COCO.loadRes``."""
    results = []
    for image_id, prediction in predictions.items():
        for box, score, label in zip(prediction["boxes"].tolist(), prediction["scores"].tolist(), prediction["labels"].tolist()):
            results.append({"image_id": int(image_id), "category_id": int(label),
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "score": float(score)})
    return results


def _index(coco_cls: Any, dataset: dict[str, Any]) -> Any:
    coco = coco_cls()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco


def _class_ap(precision: Any, k: int, iou: int | None) -> float:
    """The mean precision of class ``k`` over recall (and every IoU threshold when ``iou`` is None), -1 cells left out."""
    cells = precision[:, :, k, 0, -1] if iou is None else precision[iou, :, k, 0, -1]
    valid = cells[cells > -1]
    return float(valid.mean()) if valid.size else math.nan


def evaluate_detections(split: DetectionSplit, predictions: Mapping[int, Prediction]) -> DetectionMetrics:
    """Score ``predictions`` (image id -> boxes, scores, labels 1..C) on ``split`` with ``COCOeval`` (iouType ``bbox``)."""
    coco_cls, coco_eval_cls = coco_api()
    truth = _index(coco_cls, coco_ground_truth(split))
    results = coco_results(predictions)
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            detections = truth.loadRes(results)
    else:  # loadRes cannot take an empty list; no detections is an index of none
        detections = _index(coco_cls, {"images": truth.dataset["images"], "annotations": [], "categories": truth.dataset["categories"]})
    scorer = coco_eval_cls(truth, detections, "bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        scorer.evaluate()
        scorer.accumulate()
        scorer.summarize()
    precision = scorer.eval["precision"]
    per_class = {name: _class_ap(precision, k, None) for k, name in enumerate(split.classes)}
    per_class50 = {name: _class_ap(precision, k, 0) for k, name in enumerate(split.classes)}
    stats = [max(float(s), 0.0) for s in scorer.stats[:3]]  # -1 (nothing to score) reads as 0
    return DetectionMetrics(stats[0], stats[1], stats[2], per_class, per_class50)


@torch.no_grad()
def predict_split(model: nn.Module, split: DetectionSplit, batch_size: int = 4, device: torch.device | str = "cpu",
                  workers: int = 0, rank: int = 0, world_size: int = 1) -> dict[int, dict[str, torch.Tensor]]:
    """Run a torchvision detector (in eval mode) over every image of ``split`` (every ``world_size``-th from ``rank``: one
    process's share): image id -> its detections on the CPU, boxes and scores in float32 (as autocast may leave them in
    bf16). The loader has its own generator, so predicting never moves the global RNG a training run resumes from."""
    from torch.utils.data import DataLoader

    from .dataset import DetectionDataset, collate

    model.eval()
    shard = list(range(rank, len(split.records), world_size))
    loader = DataLoader(DetectionDataset(split), batch_size=batch_size, sampler=shard, num_workers=workers, collate_fn=collate,
                        generator=torch.Generator().manual_seed(0))
    predictions: dict[int, dict[str, torch.Tensor]] = {}
    for images, targets in loader:
        outputs = model([image.to(device) for image in images])
        for target, output in zip(targets, outputs):
            predictions[int(target["image_id"])] = {k: (v.float() if v.is_floating_point() else v).cpu() for k, v in output.items()}
    return predictions


def evaluate_model(model: nn.Module, split: DetectionSplit, batch_size: int = 4, device: torch.device | str = "cpu",
                   workers: int = 0) -> DetectionMetrics:
    """A detector's mAP on ``split``: :func:`predict_split`, then :func:`evaluate_detections`."""
    return evaluate_detections(split, predict_split(model, split, batch_size, device, workers))


def format_metrics(metrics: DetectionMetrics, classes: Sequence[str] | None = None) -> str:
    """The metrics as a few printable lines: mAP, mAP@0.5, mAP@0.75, then one AP line per class."""
    lines = [f"mAP@[.5:.95] {100 * metrics.map:.2f}   mAP@0.5 {100 * metrics.map50:.2f}   mAP@0.75 {100 * metrics.map75:.2f}"]
    def cell(ap: float) -> str:
        return "-" if math.isnan(ap) else f"{100 * ap:.2f}"

    for name in classes or metrics.per_class:
        lines.append(f"  {name:<20} AP {cell(metrics.per_class[name]):>6}   AP50 {cell(metrics.per_class50[name]):>6}")
    return "\n".join(lines)
