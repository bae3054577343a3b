"""Weakly supervised localization: a bounding box from a class activation map, as in the CAM paper.

Zhou et al. (CVPR 2016, section 3) turn a class activation map into a box in two steps: keep the
pixels whose map value is at least ``threshold`` times the map's maximum (they use 20%), then take
the bounding box of the largest connected component of what is kept. The CutMix paper's
localization results (its Table 6) use the same procedure. Here:

- the map is that of :mod:`cutmix_zoo.reports.cam` (classifier-weighted last feature map), computed on the
  whole image (the eval transform without its centre crop) and upsampled bilinearly to the network
  input; the threshold is applied to that raw map (a fraction of its maximum, the argmax pixel always
  kept), components are 8-connected, and the box is scaled back to the image's pixels;
- a box is ``(left, top, right, bottom)`` in image pixels, right and bottom exclusive (PIL's ``crop``
  convention): an object covering columns 10 to 19 has ``left=10, right=20``;
- localization accuracy counts an image as correct when the predicted class is the true one and the
  box's IoU with the true box is at least 0.5 (the paper's top-1 localization accuracy, reported as
  error = 100 - accuracy); "GT-known" accuracy uses the true class's map and ignores the prediction.

Boxes files (``read_boxes``) hold one box per image:

- CSV with a header row naming the columns ``image,left,top,right,bottom,label`` (any order);
- JSON, either ``[{"image": "a.jpg", "box": [l, t, r, b], "label": "cat"}, ...]`` or
  ``{"a.jpg": {"box": [l, t, r, b], "label": "cat"}, ...}``.

``label`` is a class index (a whole number) or a class name (the model's names, compared ignoring
case, ``_`` and ``-``). Names need a model whose dataset has names: a model with a replaced head (or
an exported folder without a dataset) only takes indices, and a name there is an error.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidArgumentError
from ..model_config import pretrained_cfg_of
from .cam import Box
from .inference import class_activation_maps, heatmap, resize_maps, whole_image_transform
from .predict import class_names, normal_class_name, open_image, resolve_model

if TYPE_CHECKING:
    from .predict import ImageLike

DEFAULT_THRESHOLD = 0.2  # the CAM paper's: keep the pixels at or above 20% of the map's maximum
IOU_CORRECT = 0.5  # a box is right when its IoU with the true box is at least this
SWEEP = [round(0.05 * k, 2) for k in range(1, 20)]  # thresholds of the localization sweep: 0.05 to 0.95


class Localization(NamedTuple):
    """The predicted (or requested) class of one image, its probability, its box in image pixels and its map."""

    class_index: int
    label: str
    probability: float
    box: Box
    map: torch.Tensor  # H x W at the image's size, min-max normalised to [0, 1] (as cutmix_zoo.reports.cam returns it)


class BatchLocalization(NamedTuple):
    """Boxes for a batch of preprocessed images: one row of boxes per threshold."""

    classes: torch.Tensor  # (N,) the class each map is for
    probabilities: torch.Tensor  # (N,) that class's probability
    predicted: torch.Tensor  # (N,) the top class
    boxes: torch.Tensor  # (T, N, 4) int64 boxes in the input tensor's pixels, one row per threshold
    maps: torch.Tensor  # (N, H, W) the raw class activation maps at the input's size


def largest_component(mask: torch.Tensor) -> torch.Tensor:
    """The largest 8-connected component of each (H, W) boolean mask of an (N, H, W) batch (ties: the first in raster order).

    Labels spread by 3x3 max pooling until nothing changes; an empty mask stays empty.
    """
    n, h, w = mask.shape
    dtype = torch.float32 if h * w < 2**24 else torch.float64  # labels must stay exact
    ids = torch.arange(1, h * w + 1, dtype=dtype, device=mask.device).view(1, h, w).expand(n, h, w)
    labels = torch.where(mask, ids, torch.zeros((), dtype=dtype, device=mask.device))
    while True:
        grown = torch.where(mask, F.max_pool2d(labels[:, None], 3, stride=1, padding=1)[:, 0], labels)
        if torch.equal(grown, labels):
            break
        labels = grown
    out = torch.zeros_like(mask)
    for i in range(n):
        kept = labels[i][mask[i]].long()
        if kept.numel():
            counts = torch.bincount(kept)
            best = int(counts.argmax())  # the largest; among equals, the smallest label (the first pixel in raster order)
            out[i] = labels[i] == best
    return out


def mask_box(mask: torch.Tensor) -> Box:
    """The bounding box ``(left, top, right, bottom)`` of an (H, W) boolean mask, right and bottom exclusive."""
    rows = mask.any(dim=1).nonzero()
    cols = mask.any(dim=0).nonzero()
    if not len(rows):
        raise InvalidArgumentError("An empty mask has no bounding box.")
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def threshold_boxes(maps: torch.Tensor, threshold: float) -> torch.Tensor:
    """The CAM paper's box of each (H, W) map of an (N, H, W) batch: the largest component of ``map >= threshold * max``.

    The maximum pixel is always kept, so every map has a box (a map whose maximum is not positive keeps its maxima).
    Returns an (N, 4) int64 tensor of ``(left, top, right, bottom)``.
    """
    if not 0 <= threshold <= 1:
        raise InvalidArgumentError(f"The CAM threshold is a fraction of the map's maximum, from 0 to 1, not {threshold!r}.")
    top = maps.amax(dim=(1, 2), keepdim=True)
    kept = (maps >= threshold * top) | (maps == top)
    component = largest_component(kept)
    return torch.tensor([mask_box(c) for c in component], dtype=torch.int64).view(-1, 4)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(left, top, right, bottom)`` boxes (right and bottom exclusive)."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def localize_batch(model: nn.Module, x: torch.Tensor, thresholds: Sequence[float] = (DEFAULT_THRESHOLD,),
                   class_index: torch.Tensor | None = None) -> BatchLocalization:
    """Boxes of a batch of preprocessed images ``x`` (N, 3, H, W) in the tensor's pixels, one set per threshold.

    The map of each image (:func:`cutmix_zoo.reports.inference.class_activation_maps`, upsampled to the input) is that
    of ``class_index[i]`` when given (GT-known localization), else of its top class. ``model`` is a module made by
    ``cutmix_zoo.load`` (with its classifier); its mode is restored.
    """
    net = resolve_model(model)
    maps = class_activation_maps(net, x, class_index)
    raw = resize_maps(maps.raw, tuple(x.shape[-2:]))
    boxes = torch.stack([threshold_boxes(raw, t) for t in thresholds]) if len(thresholds) else torch.zeros(0, len(x), 4, dtype=torch.int64)
    chosen = maps.probabilities.gather(1, maps.classes[:, None])[:, 0]
    return BatchLocalization(maps.classes.cpu(), chosen.cpu(), maps.predicted.cpu(), boxes.cpu(), raw.cpu())


def scale_box(box: Sequence[int], source: Sequence[int], target: Sequence[int]) -> Box:
    """A box in an image of ``source`` (height, width) pixels, in an image of ``target`` (height, width): edges scaled outward."""
    sy, sx = target[0] / source[0], target[1] / source[1]
    left, top, right, bottom = box
    return (max(0, math.floor(left * sx + 1e-6)), max(0, math.floor(top * sy + 1e-6)),
            min(target[1], math.ceil(right * sx - 1e-6)), min(target[0], math.ceil(bottom * sy - 1e-6)))


def localize(
    model: str | os.PathLike | nn.Module,
    image: ImageLike,
    threshold: float = DEFAULT_THRESHOLD,
    class_index: int | None = None,
    weights: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
) -> Localization:
    """The class of ``image`` (or ``class_index``), its probability, and the box of its class activation map.

    ``threshold`` is the fraction of the map's maximum above which pixels are kept (0.2, the CAM paper's);
    the box is the largest connected component of the kept pixels, as ``(left, top, right, bottom)`` in the
    image's pixels (right and bottom exclusive). ``model`` is a registry name, an exported folder or a
    module made by ``cutmix_zoo.load``; ``image`` a path or a PIL image.
    """
    net = resolve_model(model, weights, device)
    pil = open_image(image)
    x = whole_image_transform(net)(pil).unsqueeze(0)
    cfg = pretrained_cfg_of(net)
    if class_index is not None and (not isinstance(class_index, int) or not 0 <= class_index < cfg["num_classes"]):
        raise InvalidArgumentError(f"Class {class_index!r} does not exist: {cfg['name']} has classes 0 to {cfg['num_classes'] - 1}.")
    result = localize_batch(net, x, [threshold], None if class_index is None else torch.tensor([class_index]))
    size = (pil.height, pil.width)
    box = scale_box(result.boxes[0, 0].tolist(), tuple(x.shape[-2:]), size)
    index = int(result.classes[0])
    return Localization(index, class_names(net)[index], float(result.probabilities[0]), box, heatmap(result.maps[0], size))


# --- localization accuracy ---------------------------------------------------------------------------------

def sweep_thresholds(threshold: float) -> list[float]:
    """The thresholds a localization accuracy is measured at: the sweep's and ``threshold``, sorted."""
    return sorted(set(SWEEP) | {threshold})


def iou_table(boxes: torch.Tensor, truth: Sequence[Sequence[float]]) -> torch.Tensor:
    """(T, N) IoUs (float32) of (T, N, 4) boxes, one row per threshold, with the N true boxes."""
    rows = boxes.double().tolist()
    return torch.tensor([[box_iou(b, t) for b, t in zip(row, truth)] for row in rows], dtype=torch.float32).view(len(rows), len(truth))


@dataclass(frozen=True)
class ThresholdSweep:
    """Localization accuracies (percentages) at each threshold of the sweep."""

    thresholds: list[float]
    top1_loc_acc: list[float]
    gt_known_loc_acc: list[float]


@dataclass(frozen=True)
class BestThreshold:
    """The sweep's threshold with the highest top-1 localization accuracy (ties: the nearest the one asked for)."""

    threshold: float
    top1_loc_acc: float


@dataclass(frozen=True)
class LocalizationSummary:
    """Localization accuracy against true boxes at the threshold asked for (percentages), and across the sweep."""

    images: int
    threshold: float
    iou_needed: float
    top1_loc_acc: float
    top1_loc_err: float
    gt_known_loc_acc: float
    top1_err: float
    mean_iou: float
    by_threshold: ThresholdSweep
    best_threshold: BestThreshold

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain JSON values, as ``report.json`` holds it."""
        return dataclasses.asdict(self)


def _pct(count: float, total: int) -> float:
    return round(100 * count / total, 4) if total else 0.0


def localization_summary(ious: torch.Tensor, known_ious: torch.Tensor, correct_class: torch.Tensor, thresholds: list[float],
                         threshold: float) -> LocalizationSummary:
    """Localization accuracies from (T, N) IoUs of the predicted-class and the true-class boxes, one row per threshold of
    ``thresholds`` (``threshold`` among them), and whether each image's predicted class is its true one."""
    n = correct_class.numel()
    top1 = ((ious >= IOU_CORRECT) & correct_class[None]).sum(dim=1).tolist()
    known = (known_ious >= IOU_CORRECT).sum(dim=1).tolist()
    at = thresholds.index(threshold)
    best = max(range(len(thresholds)), key=lambda k: (top1[k], -abs(thresholds[k] - threshold)))
    return LocalizationSummary(
        images=n, threshold=threshold, iou_needed=IOU_CORRECT, top1_loc_acc=_pct(top1[at], n),
        top1_loc_err=round(100 - _pct(top1[at], n), 4), gt_known_loc_acc=_pct(known[at], n),
        top1_err=_pct(n - int(correct_class.sum()), n), mean_iou=round(float(ious[at].mean()), 4) if n else 0.0,
        by_threshold=ThresholdSweep(thresholds, [_pct(c, n) for c in top1], [_pct(c, n) for c in known]),
        best_threshold=BestThreshold(thresholds[best], _pct(top1[best], n)))


# --- boxes files -------------------------------------------------------------------------------------------

class TrueBox(NamedTuple):
    """One image's annotation: its box in image pixels and its class (index, or name still to be resolved)."""

    box: Box
    label: int | str


def _box(values: Sequence[Any], where: str) -> Box:
    try:
        if any(isinstance(v, bool) for v in values):
            raise TypeError("a truth value is no coordinate")
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{where}: a box is four numbers left, top, right, bottom, not {list(values)!r}.") from None
    if len(numbers) != 4 or not all(math.isfinite(v) for v in numbers):
        raise InvalidArgumentError(f"{where}: a box is four numbers left, top, right, bottom, not {list(values)!r}.")
    left, top, right, bottom = (round(v) for v in numbers)
    if right <= left or bottom <= top or left < 0 or top < 0:
        raise InvalidArgumentError(f"{where}: the box {list(values)!r} is empty or negative (right and bottom are exclusive, after left and top).")
    return left, top, right, bottom


def _label(value: Any, where: str) -> int | str:
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidArgumentError(f"{where}: every box needs a label (a class index or name), not {value!r}.")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() else text


def _boxes_text(path: Path) -> str:
    """The text of a boxes file, read as UTF-8 (a byte-order mark allowed); another encoding is one sentence."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidArgumentError(f"The boxes file {path} is not UTF-8 text (byte {e.start} is {e.object[e.start:e.start + 1]!r}): "
                                   "save it as UTF-8.") from None
    except OSError as e:
        raise InvalidArgumentError(f"The boxes file {path} cannot be read ({e.strerror or e}).") from None


def read_boxes(path: str | os.PathLike) -> dict[str, TrueBox]:
    """The boxes of a CSV or JSON boxes file (see the module's docstring), keyed by the image as written there."""
    path = Path(path)
    if not path.is_file():
        raise InvalidArgumentError(f"The boxes file {path} does not exist.")
    text = _boxes_text(path)
    boxes: dict[str, TrueBox] = {}

    def add(image: Any, box: Any, label: Any, where: str) -> None:
        if not isinstance(image, str) or not image:
            raise InvalidArgumentError(f"{where}: every box needs the image it belongs to, as a path or file name.")
        if image in boxes:
            raise InvalidArgumentError(f"{where}: {image} has a second box; give one box per image.")
        if not isinstance(box, (list, tuple)):
            raise InvalidArgumentError(f"{where}: the box of {image} must be a list [left, top, right, bottom].")
        boxes[image] = TrueBox(_box(box, where), _label(label, where))

    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidArgumentError(f"The boxes file {path} is not valid JSON ({e}).") from None
        except RecursionError:  # arrays or objects nested deeper than the parser recurses
            raise InvalidArgumentError(f"The boxes file {path} nests its JSON deeper than a boxes file can (a list of objects "
                                       "holding a list of four numbers).") from None
        if isinstance(data, dict):
            data = [dict(entry, image=image) if isinstance(entry, dict) else entry for image, entry in data.items()]
        if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
            raise InvalidArgumentError(f"The boxes file {path} must hold a list of {{\"image\", \"box\", \"label\"}} objects, "
                                       "or an object of them keyed by image.")
        for number, entry in enumerate(data, 1):
            add(entry.get("image"), entry.get("box"), entry.get("label"), f"{path}, entry {number}")
    elif path.suffix.lower() == ".csv":
        rows = list(csv.reader(text.splitlines()))
        header = [h.strip().lower() for h in rows[0]] if rows else []
        needed = ["image", "left", "top", "right", "bottom", "label"]
        missing = [c for c in needed if c not in header]
        if missing:
            raise InvalidArgumentError(f"The boxes file {path} needs a header row with the columns {','.join(needed)} "
                                       f"(missing: {', '.join(missing)}).")
        columns = {c: header.index(c) for c in needed}
        for number, row in enumerate(rows[1:], 2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) < len(header):
                raise InvalidArgumentError(f"{path}, line {number}: {len(row)} values where the header has {len(header)}.")
            box = [row[columns[c]] for c in ("left", "top", "right", "bottom")]
            add(row[columns["image"]].strip(), box, row[columns["label"]], f"{path}, line {number}")
    else:
        raise InvalidArgumentError(f"The boxes file {path} must be a .csv or .json file.")
    if not boxes:
        raise InvalidArgumentError(f"The boxes file {path} holds no boxes.")
    return boxes


def find_box(boxes: dict[str, TrueBox], image: str, source: str = "the boxes file") -> TrueBox:
    """The annotation of ``image``: by the path as given, the normalised path, or the file name when that is unique."""
    for key in (image, os.path.normpath(image)):
        if key in boxes:
            return boxes[key]
    name = os.path.basename(image)
    matches = [k for k in boxes if os.path.basename(k) == name]
    if len(matches) == 1:
        return boxes[matches[0]]
    if len(matches) > 1:
        raise InvalidArgumentError(f"{source} has {len(matches)} boxes for images named {name}; write {image} as it is given on the command line.")
    raise InvalidArgumentError(f"{source} has no box for {image}.")


def check_box_inside(box: Sequence[int], width: int, height: int, where: str) -> None:
    """Refuse a true box that reaches beyond its image of ``width`` x ``height`` pixels (wholly outside it, or larger than
    it), in one sentence: its IoU with any predicted box would measure nothing."""
    left, top, right, bottom = box
    if right > width or bottom > height:
        raise InvalidArgumentError(f"{where}: the box {list(box)} reaches beyond its {width}x{height} image (right and bottom "
                                   "are at most the width and height); give boxes in the image's own pixels.")


def resolve_label(model: nn.Module, label: int | str, source: str = "the boxes file") -> int:
    """A box's label as the model's class index; a name needs a model whose dataset has class names."""
    cfg = pretrained_cfg_of(model)
    num_classes = cfg["num_classes"]
    if isinstance(label, int):
        if not 0 <= label < num_classes:
            raise InvalidArgumentError(f"{source}: class {label} does not exist; {cfg['name']} has classes 0 to {num_classes - 1}.")
        return label
    names = class_names(model)
    if names == [f"class {k}" for k in range(num_classes)]:
        raise InvalidArgumentError(f"{source} names the class {label!r}, but {cfg['name']} has no class names "
                                   f"(its head or dataset is not one with names): give class indices 0 to {num_classes - 1} instead.")
    by_name = {normal_class_name(n): k for k, n in enumerate(names)}
    if normal_class_name(label) not in by_name:
        raise InvalidArgumentError(f"{source}: {label!r} is not a class of {cfg['name']} "
                                   f"(its classes are {', '.join(names[:5])}, ...).")
    return by_name[normal_class_name(label)]
