"""Detection data as it ships: COCO (``annotations/instances_<split>.json`` beside ``<split>/``) and the Pascal VOC devkit
(``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``), found by their files and read into one form.

Every reader returns a :class:`DetectionSplit`: one :class:`DetectionRecord` per image (its path, size, boxes as xyxy
pixels, labels 1..C with 0 left to the background as torchvision's detectors count, COCO's ``iscrowd`` and VOC's
``difficult`` flags) and the class names. Bad input is one sentence naming the file and the record, raised before any
model sees the data: a malformed JSON or XML file, a box outside its image or with a negative (COCO) or non-positive
(VOC) size, an unknown category, an annotation of an unlisted image, a listed image that is missing or unreadable, an
empty split.

Degenerate boxes COCO itself ships are dropped, not refused, with their count logged: a box that lies within
``TOLERANCE`` pixels of its image is clamped to it (COCO's float boxes overshoot by rounding), and one whose clamped
width or height is zero is dropped. That is the rule of torchvision's detection references (``ConvertCocoPolysToMask``
clamps and keeps ``x1 > x0 and y1 > y0``), chosen so that a COCO folder trains as it does there; a box further outside
or with a negative size is no rounding, and is an error.
"""

from __future__ import annotations

import json
import logging
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ZooError

logger = logging.getLogger(__name__)

TOLERANCE = 1.0  # pixels a box may overshoot its image by and be clamped (COCO's rounding); more is an error


class DetectionDataError(ZooError, OSError):
    """A detection folder that cannot be read as COCO or Pascal VOC: a missing or malformed file, or a bad record in one."""


@dataclass(frozen=True)
class DetectionRecord:
    """One image and its objects: ``boxes`` (K, 4) float32 xyxy pixels, ``labels`` (K,) int64 in 1..C, and the ``iscrowd``
    (COCO) and ``difficult`` (VOC) flags (K,) bool of the objects kept out of the score."""

    image: Path
    image_id: int
    width: int
    height: int
    boxes: torch.Tensor
    labels: torch.Tensor
    iscrowd: torch.Tensor
    difficult: torch.Tensor

    @property
    def ignored(self) -> torch.Tensor:
        """The objects that neither count as misses nor as hits when scored (crowd regions and difficult objects)."""
        return self.iscrowd | self.difficult


@dataclass(frozen=True)
class DetectionSplit:
    """The records of one split (of one root or several, concatenated) and the class names of labels 1..C."""

    records: list[DetectionRecord]
    classes: tuple[str, ...]
    layout: str
    dropped: int = 0


def detect_layout(root: str | os.PathLike) -> str:
    """``"coco"`` when ``root`` holds ``annotations/instances_*.json``, ``"voc"`` when it holds ``Annotations/`` and
    ``ImageSets/Main/``; anything else is one sentence saying what was looked for."""
    root = Path(root)
    if not root.is_dir():
        raise DetectionDataError(f"The detection data folder {root} does not exist or is not a folder.")
    if any((root / "annotations").glob("instances_*.json")):
        return "coco"
    if (root / "Annotations").is_dir() and (root / "ImageSets" / "Main").is_dir():
        return "voc"
    raise DetectionDataError(f"{root} is neither a COCO folder (annotations/instances_<split>.json beside <split>/) nor a "
                             "Pascal VOC devkit folder (Annotations/, JPEGImages/, ImageSets/Main/<split>.txt).")


def default_splits(root: str | os.PathLike) -> tuple[str, str]:
    """The (train, val) split names a folder ships: COCO's ``train2017``/``val2017`` or ``train``/``val``; VOC's
    ``trainval``/``test`` or ``train``/``val``."""
    root = Path(root)
    if detect_layout(root) == "coco":
        pairs, exists = [("train2017", "val2017"), ("train", "val")], lambda s: (root / "annotations" / f"instances_{s}.json").is_file()
    else:
        pairs, exists = [("trainval", "test"), ("train", "val")], lambda s: (root / "ImageSets" / "Main" / f"{s}.txt").is_file()
    return next((pair for pair in pairs if all(map(exists, pair))), pairs[-1])


def read_split(roots: str | os.PathLike | Sequence[str | os.PathLike], split: str, classes: Sequence[str] | None = None,
               check_images: bool = True) -> DetectionSplit:
    """Read ``split`` of one root or of several (VOC 07+12 as two roots), each COCO or VOC as its files say.

    ``classes`` fixes the class names (a val split read with its train split's); without it they are COCO's categories
    in id order, or the sorted object names of the VOC annotations (VOC's own order). Several roots must agree on
    their classes. ``check_images`` opens every listed image's header (a missing or unreadable file is an error here,
    not in the middle of an epoch).
    """
    roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
    parts: list[DetectionSplit] = []
    for root in roots:
        layout = detect_layout(root)
        part = read_coco(root, split, classes) if layout == "coco" else read_voc(root, split, classes)
        if parts and part.classes != parts[0].classes:
            raise DetectionDataError(f"{root} has the classes {list(part.classes)}, but {roots[0]} has {list(parts[0].classes)}; "
                                     "roots read together must share their classes.")
        parts.append(part)
    records = [r for part in parts for r in part.records]
    if len(parts) > 1:  # image ids are per root: number them afresh so that scoring never merges two images
        records = [DetectionRecord(r.image, i, r.width, r.height, r.boxes, r.labels, r.iscrowd, r.difficult) for i, r in enumerate(records, 1)]
    merged = DetectionSplit(records, parts[0].classes, "+".join(p.layout for p in parts), sum(p.dropped for p in parts))
    if check_images:
        check_image_files(merged)
    if merged.dropped:
        logger.warning("Dropped %d degenerate box(es) (zero width or height once clamped to the image) from split %r.", merged.dropped, split)
    return merged


def check_image_files(split: DetectionSplit) -> None:
    """Open each record's image header: a missing or unreadable file, or one whose size is not the listed one, is one sentence."""
    from PIL import Image

    for record in split.records:
        if not record.image.is_file():
            raise DetectionDataError(f"The image {record.image} (image id {record.image_id}) is listed but does not exist.")
        try:
            with Image.open(record.image) as image:
                size = image.size
        except (OSError, SyntaxError, ValueError) as e:
            raise DetectionDataError(f"The image {record.image} (image id {record.image_id}) cannot be read ({e}).") from None
        if size != (record.width, record.height):
            raise DetectionDataError(f"The image {record.image} (image id {record.image_id}) is {size[0]}x{size[1]} pixels, but its "
                                     f"annotations say {record.width}x{record.height}.")


def _check_box(box: list[float], width: int, height: int, where: str, what: str) -> list[float] | None:
    """The box clamped to its image, None when it is degenerate once clamped, or one sentence when it is outside it."""
    if not all(math.isfinite(v) for v in box):
        raise DetectionDataError(f"{where}: the box {box} is not four finite numbers.")
    x0, y0, x1, y1 = box
    if x1 < x0 or y1 < y0:
        raise DetectionDataError(f"{where}: the box {what} has a negative width or height.")
    if x0 < -TOLERANCE or y0 < -TOLERANCE or x1 > width + TOLERANCE or y1 > height + TOLERANCE:
        raise DetectionDataError(f"{where}: the box {what} lies outside its {width}x{height} image.")
    clamped = [min(max(x0, 0.0), width), min(max(y0, 0.0), height), min(max(x1, 0.0), width), min(max(y1, 0.0), height)]
    return clamped if clamped[2] > clamped[0] and clamped[3] > clamped[1] else None


def _record(image: Path, image_id: int, width: int, height: int, objects: list[tuple[list[float], int, bool, bool]]) -> DetectionRecord:
    return DetectionRecord(
        image, image_id, width, height,
        torch.tensor([o[0] for o in objects], dtype=torch.float32).reshape(-1, 4),
        torch.tensor([o[1] for o in objects], dtype=torch.int64),
        torch.tensor([o[2] for o in objects], dtype=torch.bool),
        torch.tensor([o[3] for o in objects], dtype=torch.bool),
    )


def _load_coco_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DetectionDataError(f"{path} does not exist: a COCO split needs annotations/instances_<split>.json.")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DetectionDataError(f"{path} is not valid JSON ({e}).") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise DetectionDataError(f"{path} is no COCO annotation file: it needs the lists 'images', 'annotations' and 'categories'.")
    return data


def _coco_index(path: Path, data: dict[str, Any], classes: Sequence[str] | None) -> tuple[dict[int, int], tuple[str, ...]]:
    """COCO category id -> label 1..C, and the class names, from the file's categories (checked against ``classes``)."""
    try:
        categories = sorted((int(c["id"]), str(c["name"])) for c in data["categories"])
    except (KeyError, TypeError, ValueError):
        raise DetectionDataError(f"{path}: every category needs an integer 'id' and a 'name'.") from None
    names = tuple(name for _, name in categories)
    if classes is not None and tuple(classes) != names:
        raise DetectionDataError(f"{path} has the categories {list(names)}, not the {list(classes)} it is read with.")
    return {cid: label for label, (cid, _) in enumerate(categories, 1)}, names


def read_coco(root: str | os.PathLike, split: str, classes: Sequence[str] | None = None) -> DetectionSplit:
    """Read ``root/annotations/instances_<split>.json`` (COCO's fields, as pycocotools reads them), images from ``root/<split>/``."""
    root = Path(root)
    path = root / "annotations" / f"instances_{split}.json"
    data = _load_coco_json(path)
    labels, names = _coco_index(path, data, classes)
    try:
        images = {int(i["id"]): (str(i["file_name"]), int(i["width"]), int(i["height"])) for i in data["images"]}
    except (KeyError, TypeError, ValueError) as e:
        raise DetectionDataError(f"{path}: every image needs an integer 'id', a 'file_name', a 'width' and a 'height' ({e!r}).") from None
    objects: dict[int, list[tuple[list[float], int, bool, bool]]] = {i: [] for i in images}
    dropped = 0
    for ann in data["annotations"]:
        where = f"{path}: annotation {ann.get('id')!r} (image {ann.get('image_id')!r})"
        if not isinstance(ann.get("image_id"), int) or ann["image_id"] not in images:
            raise DetectionDataError(f"{where} is of an image that the file does not list.")
        if not isinstance(ann.get("category_id"), int) or ann["category_id"] not in labels:
            raise DetectionDataError(f"{where} has the category id {ann.get('category_id')!r}, which is not in the file's categories.")
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
            raise DetectionDataError(f"{where} has no 'bbox' of four numbers [x, y, width, height].")
        _, width, height = images[ann["image_id"]]
        x, y, w, h = (float(v) for v in bbox)
        box = _check_box([x, y, x + w, y + h], width, height, where, f"[x, y, w, h] = {bbox}")
        if box is None:
            dropped += 1
            continue
        objects[ann["image_id"]].append((box, labels[ann["category_id"]], bool(ann.get("iscrowd", 0)), False))
    if not images:
        raise DetectionDataError(f"{path} lists no images: the split {split!r} is empty.")
    records = [_record(root / split / name, i, w, h, objects[i]) for i, (name, w, h) in images.items()]
    return DetectionSplit(records, names, "coco", dropped)


def _voc_text(node: ET.Element, tag: str, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise DetectionDataError(f"{where} has no <{tag}>.")
    return child.text.strip()


def _voc_number(node: ET.Element, tag: str, where: str) -> float:
    text = _voc_text(node, tag, where)
    try:
        return float(text)
    except ValueError:
        raise DetectionDataError(f"{where}: <{tag}> is {text!r}, not a number.") from None


def _parse_voc_xml(path: Path) -> ET.Element:
    if not path.is_file():
        raise DetectionDataError(f"{path} does not exist, but its image is listed in the split.")
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DetectionDataError(f"{path} is not valid XML ({e}).") from None


def _voc_objects(path: Path, tree: ET.Element, width: int, height: int, label_of: dict[str, int] | None
                 ) -> list[tuple[list[float], str, bool]]:
    """(box, class name, difficult) of each <object>: VOC's 1-based inclusive pixel indices become xyxy pixels as
    Detectron2 reads them (x0 = xmin - 1, x1 = xmax), so that a box of the whole image is [0, 0, W, H]."""
    objects = []
    for k, obj in enumerate(tree.findall("object"), 1):
        where = f"{path}: object {k}"
        name = _voc_text(obj, "name", where)
        if label_of is not None and name not in label_of:
            raise DetectionDataError(f"{where} is a {name!r}, which is not one of the classes {list(label_of)}.")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise DetectionDataError(f"{where} has no <bndbox>.")
        xmin, ymin, xmax, ymax = (_voc_number(bndbox, t, where) for t in ("xmin", "ymin", "xmax", "ymax"))
        what = f"xmin={xmin:g} ymin={ymin:g} xmax={xmax:g} ymax={ymax:g}"
        if xmax < xmin or ymax < ymin:
            raise DetectionDataError(f"{where}: the box {what} has a non-positive width or height.")
        difficult = obj.find("difficult")
        box = _check_box([xmin - 1, ymin - 1, xmax, ymax], width, height, where, what)
        if box is None:  # inside the tolerance but wholly off the image
            raise DetectionDataError(f"{where}: the box {what} lies outside its {width}x{height} image.")
        objects.append((box, name, difficult is not None and (difficult.text or "0").strip() == "1"))
    return objects


def read_voc(root: str | os.PathLike, split: str, classes: Sequence[str] | None = None) -> DetectionSplit:
    """Read the ids of ``root/ImageSets/Main/<split>.txt``, each ``Annotations/<id>.xml`` and its image in
    ``JPEGImages/`` (the file its XML names, else ``<id>.jpg``)."""
    root = Path(root)
    listing = root / "ImageSets" / "Main" / f"{split}.txt"
    if not listing.is_file():
        found = sorted(p.stem for p in (root / "ImageSets" / "Main").glob("*.txt") if "_" not in p.stem)
        raise DetectionDataError(f"{listing} does not exist: {root} has the splits {found}.")
    ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    if not ids:
        raise DetectionDataError(f"{listing} lists no images: the split {split!r} is empty.")
    label_of = None if classes is None else {name: label for label, name in enumerate(classes, 1)}
    parsed = []
    for image_id in ids:
        path = root / "Annotations" / f"{image_id}.xml"
        tree = _parse_voc_xml(path)
        size = tree.find("size")
        if size is None:
            raise DetectionDataError(f"{path} has no <size>.")
        width, height = int(_voc_number(size, "width", str(path))), int(_voc_number(size, "height", str(path)))
        filename = tree.findtext("filename") or f"{image_id}.jpg"
        parsed.append((root / "JPEGImages" / filename.strip(), width, height, _voc_objects(path, tree, width, height, label_of)))
    names = tuple(classes) if classes is not None else tuple(sorted({o[1] for *_, objs in parsed for o in objs}))
    label_of = {name: label for label, name in enumerate(names, 1)}
    records = [_record(image, i, w, h, [(box, label_of[name], False, difficult) for box, name, difficult in objs])
               for i, (image, w, h, objs) in enumerate(parsed, 1)]
    return DetectionSplit(records, names, "voc")
