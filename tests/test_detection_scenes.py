"""Novel-Shapes scenes: seeded, boxes tight around each shape and inside the canvas, written in the COCO and VOC layouts."""

from __future__ import annotations

import json

import torch

from cutmix_zoo.categories import NOVEL_SHAPES
from cutmix_zoo.detection.scenes import make_scenes, write_scenes


def test_scenes_are_seeded_with_tight_boxes_inside_the_canvas():
    first, again, other = make_scenes(6, 3, size=64), make_scenes(6, 3, size=64), make_scenes(6, 4, size=64)
    assert all(torch.equal(a.image, b.image) and torch.equal(a.boxes, b.boxes) for a, b in zip(first, again))
    assert not all(torch.equal(a.image, b.image) for a, b in zip(first, other))
    for scene in first:
        assert scene.image.shape == (3, 64, 64) and scene.image.dtype == torch.uint8
        assert 1 <= len(scene.labels) <= 4 and scene.boxes.shape == (len(scene.labels), 4)
        assert (scene.boxes[:, :2] >= 0).all() and (scene.boxes[:, 2:] <= 64).all()
        assert (scene.boxes[:, 2:] - scene.boxes[:, :2] >= 4).all()  # radius >= 5: no shape shrinks to a speck
        assert ((scene.labels >= 0) & (scene.labels < len(NOVEL_SHAPES))).all()


def test_scenes_are_written_in_both_layouts(tmp_path):
    write_scenes(tmp_path / "coco", train_images=3, val_images=2, size=64)
    write_scenes(tmp_path / "voc", train_images=3, val_images=2, size=64, layout="voc")
    coco = json.loads((tmp_path / "coco/annotations/instances_val.json").read_text())
    assert [c["name"] for c in coco["categories"]] == list(NOVEL_SHAPES) and len(coco["images"]) == 2
    assert all((tmp_path / "coco/val" / image["file_name"]).is_file() for image in coco["images"])
    ids = (tmp_path / "voc/ImageSets/Main/train.txt").read_text().split()
    assert len(ids) == 3 and all((tmp_path / f"voc/Annotations/{i}.xml").is_file() for i in ids)
    assert all((tmp_path / f"voc/JPEGImages/{i}.png").is_file() for i in ids)
