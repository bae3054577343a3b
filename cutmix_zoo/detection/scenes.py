"""Novel-Shapes scenes: a generated detection set that the embedded models never saw, written as COCO or Pascal VOC.

Each canvas holds a few of the ten Novel-Shapes (star, crescent, ellipse, ...; classes the embedded
Shapes-10 models were not trained on) drawn as the classification sets draw them (low contrast on a
noisy background, dots of clutter), at random sizes and places that do not overlap, each with the
tight box of its pixels. The same seed gives the same bytes everywhere (torch's CPU generator), and
:func:`write_coco` and :func:`write_voc` write the same scenes in the two layouts detection data ships in.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..categories import NOVEL_SHAPES
from ..errors import InvalidArgumentError
from ..files import write_text_atomic
from ..shapes import novel_shape_masks

DISTRACTORS = 3
MIN_RADIUS, MAX_RADIUS = 5.0, 14.0


@dataclass(frozen=True)
class Scene:
    """One generated canvas: a uint8 image (3, H, W), its boxes (K, 4) as integer xyxy pixels (x1, y1 exclusive), the
    class index of each object (0-9 into ``NOVEL_SHAPES``) and which objects are marked hard (COCO ``iscrowd``, VOC ``difficult``)."""

    image: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    hard: torch.Tensor


def _place(g: torch.Generator, size: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres (K, 2) and radii (K,) of up to ``count`` shapes inside a ``size`` canvas whose circles do not overlap."""
    centres: list[torch.Tensor] = []
    radii: list[float] = []
    for _ in range(20 * count):
        if len(radii) == count:
            break
        r = MIN_RADIUS + (min(MAX_RADIUS, size / 4) - MIN_RADIUS) * float(torch.rand((), generator=g))
        centre = r + (size - 2 * r) * torch.rand(2, generator=g)
        if all(float((centre - c).norm()) > r + rc + 1 for c, rc in zip(centres, radii)):
            centres.append(centre)
            radii.append(r)
    return torch.stack(centres), torch.tensor(radii)


def _tight_boxes(masks: torch.Tensor) -> torch.Tensor:
    """The xyxy box of each mask's pixels (x1, y1 one past the last pixel)."""
    cols, rows = masks.any(dim=1), masks.any(dim=2)
    index = torch.arange(masks.shape[-1])
    boxes = [[index[c].min(), index[rw].min(), index[c].max() + 1, index[rw].max() + 1] for c, rw in zip(cols, rows)]
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


def make_scene(g: torch.Generator, size: int = 80, max_objects: int = 4, hard_fraction: float = 0.0) -> Scene:
    """One ``size`` x ``size`` scene of 1 to ``max_objects`` Novel-Shapes drawn from ``g``; each object is marked hard
    with probability ``hard_fraction`` (the readers' ``iscrowd`` / ``difficult``, kept out of the score)."""
    count = 1 + int(torch.randint(max_objects, (), generator=g))
    centres, radii = _place(g, size, count)
    labels = torch.randint(len(NOVEL_SHAPES), (len(radii),), generator=g)
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    dx = coords.view(1, 1, size) - centres[:, 0].view(-1, 1, 1)
    dy = coords.view(1, size, 1) - centres[:, 1].view(-1, 1, 1)
    masks = novel_shape_masks(dx, dy, radii.view(-1, 1, 1), labels)
    background = torch.rand(3, 1, 1, generator=g)
    image = background.expand(3, size, size).clone()
    for mask in masks:
        shift = 0.3 + 0.25 * torch.rand(3, 1, 1, generator=g)
        image = torch.where(mask, (background + torch.where(background > 0.5, -shift, shift)).clamp(0, 1), image)
    for _ in range(DISTRACTORS):  # small dots of random colour: clutter that no class is about
        spot = 1 + float(torch.rand((), generator=g))
        at = size * torch.rand(2, generator=g)
        near = (coords.view(1, size) - at[0]) ** 2 + (coords.view(size, 1) - at[1]) ** 2 < spot**2
        image = torch.where(near, torch.rand(3, 1, 1, generator=g), image)
    image = image + 0.1 * torch.randn(3, size, size, generator=g)
    hard = torch.rand(len(labels), generator=g) < hard_fraction
    return Scene((image.clamp(0, 1) * 255).round().to(torch.uint8), _tight_boxes(masks), labels, hard)


def make_scenes(num_images: int, seed: int, size: int = 80, max_objects: int = 4, hard_fraction: float = 0.0) -> list[Scene]:
    """``num_images`` scenes from one seeded generator (see :func:`make_scene`)."""
    g = torch.Generator().manual_seed(seed)
    return [make_scene(g, size, max_objects, hard_fraction) for _ in range(num_images)]


def _save_png(image: torch.Tensor, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)


def write_coco(root: str | os.PathLike, split: str, scenes: list[Scene]) -> Path:
    """Write ``scenes`` as COCO does: ``root/<split>/NNNNN.png`` and ``root/annotations/instances_<split>.json``
    (xywh boxes, category ids 1-10 in ``NOVEL_SHAPES`` order, hard objects as ``iscrowd: 1``). Returns the json's path."""
    root = Path(root)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for i, scene in enumerate(scenes, 1):
        name = f"{i:05d}.png"
        _save_png(scene.image, root / split / name)
        images.append({"id": i, "file_name": name, "width": scene.image.shape[2], "height": scene.image.shape[1]})
        for box, label, hard in zip(scene.boxes.tolist(), scene.labels.tolist(), scene.hard.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": label + 1, "bbox": [box[0], box[1], w, h],
                                "area": w * h, "iscrowd": int(hard)})
    categories = [{"id": k, "name": name, "supercategory": "shape"} for k, name in enumerate(NOVEL_SHAPES, 1)]
    path = root / "annotations" / f"instances_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, json.dumps({"images": images, "annotations": annotations, "categories": categories}))


def _voc_xml(name: str, scene: Scene) -> str:
    """A VOC annotation: 1-based inclusive pixel coordinates, as the devkit's (xmin = x0 + 1, xmax = x1)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC"
    ET.SubElement(root, "filename").text = name
    size = ET.SubElement(root, "size")
    for tag, value in (("width", scene.image.shape[2]), ("height", scene.image.shape[1]), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    for box, label, hard in zip(scene.boxes.tolist(), scene.labels.tolist(), scene.hard.tolist()):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = NOVEL_SHAPES[label]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = str(int(hard))
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), (box[0] + 1, box[1] + 1, box[2], box[3])):
            ET.SubElement(bndbox, tag).text = str(int(value))
    return ET.tostring(root, encoding="unicode")


def write_voc(root: str | os.PathLike, split: str, scenes: list[Scene]) -> Path:
    """Write ``scenes`` in the Pascal VOC devkit layout: ``JPEGImages/<id>.png`` (lossless, so both layouts hold the same
    pixels; each XML names its file), ``Annotations/<id>.xml`` (hard objects ``difficult``), ``ImageSets/Main/<split>.txt``.

    Ids carry the split's name, so several splits can share one root as VOC's ``train`` and ``val`` do. Returns ``root``.
    """
    root = Path(root)
    ids = [f"{split}_{i:05d}" for i in range(1, len(scenes) + 1)]
    for image_id, scene in zip(ids, scenes):
        _save_png(scene.image, root / "JPEGImages" / f"{image_id}.png")
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        write_text_atomic(root / "Annotations" / f"{image_id}.xml", _voc_xml(f"{image_id}.png", scene))
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    write_text_atomic(root / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{i}\n" for i in ids))
    return root


def write_scenes(root: str | os.PathLike, train_images: int = 64, val_images: int = 32, size: int = 80, seed: int = 0,
                 layout: str = "coco") -> Path:
    """Write a train and a val split of Novel-Shapes scenes under ``root`` in the ``coco`` or ``voc`` layout (train and val
    never share a draw; ``seed`` picks it). Returns ``root``."""
    if layout not in ("coco", "voc"):
        raise InvalidArgumentError(f"layout must be 'coco' or 'voc', not {layout!r}.")
    writer = write_coco if layout == "coco" else write_voc
    for split, count, split_seed in (("train", train_images, 2000 + 2 * seed), ("val", val_images, 2001 + 2 * seed)):
        writer(root, split, make_scenes(count, split_seed, size))
    return Path(root)

