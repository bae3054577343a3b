"""Detection data: the COCO and VOC readers agree on the same scenes, every bad input is one sentence naming its file and
record, COCO's degenerate boxes are dropped with a count, VOC 07+12 reads as two roots, and the train-time flip moves the boxes."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import torch

from cutmix_zoo.categories import NOVEL_SHAPES
from cutmix_zoo.detection.data import DetectionDataError, default_splits, detect_layout, read_split
from cutmix_zoo.detection.dataset import DetectionDataset, collate, hflip, resize_shortest
from cutmix_zoo.detection.scenes import make_scenes, write_coco, write_voc


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same eight scenes (some objects marked hard) written as COCO and as VOC."""
    root = tmp_path_factory.mktemp("scenes")
    scenes = make_scenes(8, 5, size=64, hard_fraction=0.25)
    write_coco(root / "coco", "val", scenes)
    write_voc(root / "voc", "val", scenes)
    return root / "coco", root / "voc"


def named(split) -> list[list[tuple[str, tuple[float, ...], bool]]]:
    """Each image's objects as (class name, box, ignored), sorted: what two readers must agree on whatever their label order."""
    return [sorted((split.classes[label - 1], tuple(box), bool(ign)) for box, label, ign in
                   zip(r.boxes.tolist(), r.labels.tolist(), r.ignored.tolist())) for r in split.records]


def test_coco_and_voc_readers_give_the_same_boxes(both):
    coco, voc = read_split(both[0], "val"), read_split(both[1], "val")
    assert (coco.layout, voc.layout) == ("coco", "voc") and coco.classes == NOVEL_SHAPES
    assert voc.classes == tuple(sorted({c for image in named(coco) for c, _, _ in image}))
    assert named(coco) == named(voc)
    assert sum(int(r.iscrowd.sum()) for r in coco.records) == sum(int(r.difficult.sum()) for r in voc.records) > 0
    assert [(r.width, r.height) for r in coco.records] == [(r.width, r.height) for r in voc.records] == [(64, 64)] * 8
    assert torch.equal(read_split(both[1], "val", classes=NOVEL_SHAPES).records[0].labels, coco.records[0].labels)


def test_layouts_and_their_default_splits(both, tmp_path):
    assert detect_layout(both[0]) == "coco" and default_splits(both[0]) == ("train", "val")
    assert detect_layout(both[1]) == "voc" and default_splits(both[1]) == ("train", "val")
    write_voc(tmp_path, "trainval", make_scenes(1, 0, size=32))
    write_voc(tmp_path, "test", make_scenes(1, 1, size=32))
    assert default_splits(tmp_path) == ("trainval", "test")
    with pytest.raises(DetectionDataError, match=r"is neither a COCO folder .* nor a Pascal VOC devkit folder"):
        detect_layout(tmp_path / "JPEGImages")


def test_voc_07_plus_12_reads_as_two_roots(tmp_path):
    write_voc(tmp_path / "VOC2007", "trainval", make_scenes(3, 0, size=32))
    write_voc(tmp_path / "VOC2012", "trainval", make_scenes(2, 1, size=32))
    split = read_split([tmp_path / "VOC2007", tmp_path / "VOC2012"], "trainval", classes=NOVEL_SHAPES)
    assert len(split.records) == 5 and [r.image_id for r in split.records] == [1, 2, 3, 4, 5]
    assert split.records[3].image == tmp_path / "VOC2012/JPEGImages/trainval_00001.png"


def coco_case(root: Path, change) -> Path:
    """A one-image COCO split (64x64, one box) after ``change`` edits its json."""
    write_coco(root, "val", make_scenes(1, 0, size=64))
    path = root / "annotations/instances_val.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["bbox"] = [10, 10, 20, 20]
    change(data)
    path.write_text(json.dumps(data))
    return path


COCO_CASES = {
    "outside": (lambda d: d["annotations"][0].update(bbox=[50, 10, 20, 20]), r"annotation 1 \(image 1\): the box .* lies outside its 64x64 image"),
    "negative": (lambda d: d["annotations"][0].update(bbox=[10, 10, -3, 20]), r"annotation 1 \(image 1\): the box .* negative width or height"),
    "category": (lambda d: d["annotations"][0].update(category_id=99), r"annotation 1 \(image 1\) has the category id 99, which is not in"),
    "unlisted": (lambda d: d["annotations"][0].update(image_id=7), r"annotation 1 \(image 7\) is of an image that the file does not list"),
    "no bbox": (lambda d: d["annotations"][0].pop("bbox"), r"annotation 1 \(image 1\) has no 'bbox' of four numbers"),
    "empty": (lambda d: (d["images"].clear(), d["annotations"].clear()), r"lists no images: the split 'val' is empty"),
    "no lists": (lambda d: d.pop("categories"), r"is no COCO annotation file"),
}


@pytest.mark.parametrize("case", sorted(COCO_CASES))
def test_bad_coco_input_is_one_sentence_naming_file_and_record(tmp_path, case):
    change, message = COCO_CASES[case]
    path = coco_case(tmp_path, change)
    with pytest.raises(DetectionDataError, match=message) as info:
        read_split(tmp_path, "val")
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value) and str(info.value).endswith(".")


def test_bad_files_are_one_sentence(tmp_path):
    path = coco_case(tmp_path, lambda d: None)
    image = tmp_path / "val/00001.png"
    image.write_bytes(b"not a png")
    with pytest.raises(DetectionDataError, match=rf"^The image {re.escape(str(image))} \(image id 1\) cannot be read"):
        read_split(tmp_path, "val")
    image.unlink()
    with pytest.raises(DetectionDataError, match=r"\(image id 1\) is listed but does not exist\.$"):
        read_split(tmp_path, "val")
    path.write_text('{"images": [')
    with pytest.raises(DetectionDataError, match=rf"^{re.escape(str(path))} is not valid JSON \(.*\)\.$"):
        read_split(tmp_path, "val")


def voc_case(root: Path, edit: str, replacement: str) -> Path:
    write_voc(root, "val", make_scenes(1, 0, size=64))
    path = root / "Annotations/val_00001.xml"
    text = path.read_text()
    path.write_text(re.sub(edit, replacement, text, count=1))
    return path


VOC_CASES = {
    "outside": (r"<xmax>\d+</xmax>", "<xmax>90</xmax>", r"object 1: the box .*xmax=90.* lies outside its 64x64 image"),
    "non-positive": (r"<xmax>\d+</xmax>", "<xmax>1</xmax>", r"object 1: the box .* has a non-positive width or height"),
    "not a number": (r"<ymin>\d+</ymin>", "<ymin>ten</ymin>", r"object 1: <ymin> is 'ten', not a number"),
    "unknown class": (r"<name>[^<]+</name>", "<name>unicorn</name>", r"object 1 is a 'unicorn', which is not one of the classes"),
    "malformed": (r"</annotation>", "", r"is not valid XML \("),
}


@pytest.mark.parametrize("case", sorted(VOC_CASES))
def test_bad_voc_input_is_one_sentence_naming_file_and_record(tmp_path, case):
    pattern, replacement, message = VOC_CASES[case]
    path = voc_case(tmp_path, pattern, replacement)
    with pytest.raises(DetectionDataError, match=message) as info:
        read_split(tmp_path, "val", classes=NOVEL_SHAPES)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value) and str(info.value).endswith(".")


def test_voc_missing_listing_annotation_and_empty_split(tmp_path):
    voc_case(tmp_path, "x", "x")
    with pytest.raises(DetectionDataError, match=r"ImageSets/Main/test.txt does not exist: .* has the splits \['val'\]"):
        read_split(tmp_path, "test")
    (tmp_path / "Annotations/val_00001.xml").unlink()
    with pytest.raises(DetectionDataError, match=r"val_00001.xml does not exist, but its image is listed in the split"):
        read_split(tmp_path, "val")
    (tmp_path / "ImageSets/Main/val.txt").write_text("\n")
    with pytest.raises(DetectionDataError, match=r"val.txt lists no images: the split 'val' is empty"):
        read_split(tmp_path, "val")


def test_degenerate_coco_boxes_are_clamped_or_dropped_with_a_count(tmp_path, caplog):
    def degenerate(data):
        first = data["annotations"][0]
        data["annotations"] += [dict(first, id=2, bbox=[30, 30, 0, 8]), dict(first, id=3, bbox=[64.0, 5, 0.5, 8]),
                                dict(first, id=4, bbox=[40, 50, 24.4, 14.3])]
    coco_case(tmp_path, degenerate)
    with caplog.at_level(logging.WARNING, logger="cutmix_zoo.detection.data"):
        split = read_split(tmp_path, "val")
    assert split.dropped == 2 and "Dropped 2 degenerate box(es)" in caplog.text
    assert split.records[0].boxes.tolist() == [[10, 10, 30, 30], [40, 50, 64, 64]]  # overshoot of < 1 px clamped


def test_dataset_flips_boxes_with_the_image_and_leaves_ignored_objects_out(both):
    split = read_split(both[0], "val")
    image = torch.rand(3, 8, 10)
    flipped, boxes = hflip(image, torch.tensor([[1.0, 2.0, 4.0, 6.0]]))
    assert torch.equal(flipped[..., 0], image[..., -1]) and boxes.tolist() == [[6.0, 2.0, 9.0, 6.0]]
    big, scaled = resize_shortest(image, torch.tensor([[1.0, 2.0, 4.0, 6.0]]), 16, 1000)
    assert big.shape == (3, 16, 20) and scaled.tolist() == [[2.0, 4.0, 8.0, 12.0]]
    plain, train = DetectionDataset(split), DetectionDataset(split, train=True, flip=1.0, scales=[32])
    for index, record in enumerate(split.records):
        x, target = plain[index]
        assert x.shape == (3, 64, 64) and 0 <= x.min() and x.max() <= 1
        assert torch.equal(target["boxes"], record.boxes[~record.ignored]) and int(target["image_id"]) == record.image_id
        y, flipped_target = train[index]
        assert y.shape == (3, 32, 32)
        torch.testing.assert_close(flipped_target["boxes"], hflip(x, target["boxes"])[1] / 2)
    images, targets = collate([plain[0], plain[1]])
    assert len(images) == len(targets) == 2
    again = DetectionDataset(split, train=True, seed=3)
    draws = [torch.equal(again[i][0], plain[i][0]) for i in range(8)]
    assert draws == [torch.equal(DetectionDataset(split, train=True, seed=3)[i][0], plain[i][0]) for i in range(8)]
    assert not all(draws) and any(draws)  # flip 0.5: some flipped, some not, the same ones each time
