"""CAM boxes: components, thresholds, IoU, cutmix_zoo.localize, and the localize command on Shapes-10 and on files with --boxes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import cutmix_zoo
from cutmix_zoo.cli import main
from cutmix_zoo.cli.reporting import shapes_benchmark
from cutmix_zoo.errors import InvalidArgumentError
from cutmix_zoo.reports.localize import Localization, box_iou, largest_component, read_boxes, resolve_label, scale_box, threshold_boxes

import tiny

CUTMIX, BASELINE = "pyramidnet20_a48.cutmix_shapes", "pyramidnet20_a48.baseline_shapes"


def test_largest_component_is_8_connected_and_the_box_covers_it():
    mask = torch.zeros(1, 8, 10, dtype=torch.bool)
    mask[0, 0, 0] = mask[0, 1, 1] = mask[0, 2, 2] = True  # a diagonal of 3: one component under 8-connectivity
    mask[0, 5:7, 5:7] = True  # a 2 x 2 block: 4 pixels, the largest
    mask[0, 0, 9] = True
    component = largest_component(mask)
    assert component.sum() == 4 and component[0, 5:7, 5:7].all()
    mask[0, 3, 3] = True  # now the diagonal has 4: a tie, the first in raster order wins
    assert largest_component(mask)[0, 0, 0] and largest_component(mask).sum() == 4
    assert not largest_component(torch.zeros(2, 3, 3, dtype=torch.bool)).any()


def test_threshold_boxes_keep_the_largest_region_above_the_fraction_of_the_maximum():
    maps = torch.zeros(2, 20, 30)
    maps[0, 2:6, 3:9] = 1.0  # the peak
    maps[0, 10:19, 10:28] = 0.4  # larger but dimmer
    maps[1] = -1.0
    maps[1, 4, 7] = -0.5  # a map whose maximum is negative keeps its maximum
    assert threshold_boxes(maps, 0.5).tolist() == [[3, 2, 9, 6], [7, 4, 8, 5]]
    assert threshold_boxes(maps, 0.2).tolist()[0] == [10, 10, 28, 19]
    with pytest.raises(InvalidArgumentError, match="from 0 to 1"):
        threshold_boxes(maps, 1.5)


def test_iou_and_scaling():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 2, 2), (3, 3, 4, 4)) == 0.0
    assert scale_box((1, 2, 3, 4), (10, 10), (20, 30)) == (3, 4, 9, 8)  # (height, width): x by 3, y by 2
    assert scale_box((0, 0, 7, 7), (7, 7), (10, 10)) == (0, 0, 10, 10)


def test_localize_boxes_the_bright_square_in_image_pixels(tiny_registry, tmp_path):
    from safetensors.torch import save_file
    from test_cam import BRIGHT_CLASS, SQUARE, brightness_state  # a model whose map is, by construction, the brightness

    weights = tmp_path / "bright.safetensors"
    save_file(brightness_state(), weights)
    image = Image.new("RGB", (96, 64), (20, 20, 20))
    image.paste((255, 255, 255), SQUARE)
    model = cutmix_zoo.load(tiny.FILE_ENTRY, weights=weights)
    result = cutmix_zoo.localize(model, image, threshold=0.5)
    assert isinstance(result, Localization) and result.class_index == BRIGHT_CLASS and result.label == "cat"
    assert result.map.shape == (64, 96) and result.map.max() == 1
    assert box_iou(result.box, SQUARE) >= 0.7, result.box
    assert cutmix_zoo.localize(model, image, threshold=0.5, class_index=BRIGHT_CLASS).box == result.box
    with pytest.raises(InvalidArgumentError, match="Class 10 does not exist"):
        cutmix_zoo.localize(model, image, class_index=10)


def test_the_replayed_shape_boxes_are_where_the_generator_drew_the_shapes():
    images, labels, classes, boxes = shapes_benchmark(200)
    assert len(images) == len(boxes) == 200 and classes[0] == "circle"
    contrasts = []
    for image, (left, top, right, bottom) in zip(images, boxes):
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(32, 32, 3).float()
        inside = torch.zeros(32, 32, dtype=torch.bool)
        inside[top:bottom, left:right] = True
        background = pixels[~inside].median(dim=0).values
        distance = (pixels - background).abs().sum(dim=-1)
        contrasts.append(float(distance[inside].mean() / distance[~inside].mean()))
        assert 0 <= left < right <= 32 and 0 <= top < bottom <= 32 and (right - left) * (bottom - top) >= 16
    assert sorted(contrasts)[10] > 2  # the shape's colour is in the box, the background's around it


@pytest.fixture(scope="module")
def shapes_report(tmp_path_factory, one_thread) -> dict:
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("loc")
    assert main(["localize", CUTMIX, "shapes", "--limit", "200", "--threshold", "0.5", "-o", str(out), "--examples", "4"]) == 0
    report = json.loads((out / "report.json").read_text())
    report["out"] = out
    return report


def test_the_cutmix_model_localizes_most_shapes(shapes_report):
    s = shapes_report["localization"]
    assert shapes_report["model"] == CUTMIX and shapes_report["data"] == "shapes" and shapes_report["threshold"] == 0.5
    assert s["images"] == 200 and s["threshold"] == 0.5 and s["iou_needed"] == 0.5
    ious = [p["iou"] for p in shapes_report["predictions"]]
    assert sum(i >= 0.5 for i in ious) > 100  # IoU >= 0.5 on most images
    assert s["top1_loc_acc"] > 50 and s["top1_loc_err"] == pytest.approx(100 - s["top1_loc_acc"])
    assert s["top1_loc_acc"] <= s["gt_known_loc_acc"] + 1 and s["top1_err"] < 5
    localized = sum(p["iou"] >= 0.5 and p["label"] == p["true_label"] for p in shapes_report["predictions"])
    assert s["top1_loc_acc"] == pytest.approx(100 * localized / 200)
    sweep = s["by_threshold"]
    assert 0.2 in sweep["thresholds"] and 0.5 in sweep["thresholds"] and len(sweep["top1_loc_acc"]) == len(sweep["thresholds"])
    assert sweep["top1_loc_acc"][sweep["thresholds"].index(0.5)] == s["top1_loc_acc"]
    assert s["best_threshold"]["top1_loc_acc"] == max(sweep["top1_loc_acc"])
    first = shapes_report["predictions"][0]
    assert set(first) >= {"index", "class_index", "label", "probability", "box", "true_label", "true_box", "iou"}
    for picture in ("examples.png", "thresholds.png"):
        with Image.open(shapes_report["out"] / picture) as image:
            assert image.format == "PNG" and image.width > 400


@pytest.fixture(scope="module")
def shape_files(tmp_path_factory) -> tuple[list[str], list[tuple], list[str], list[str]]:
    """40 Shapes-10 test images as PNG files, their true boxes, and their class names."""
    root = tmp_path_factory.mktemp("files")
    images, labels, classes, boxes = shapes_benchmark(40)
    paths = []
    for i, image in enumerate(images):
        path = root / f"shape{i:02d}.png"
        image.save(path)
        paths.append(str(path))
    return paths, boxes, [classes[c] for c in labels], labels


def test_boxes_files_give_the_accuracy_the_generator_gives(shape_files, tmp_path, capsys, one_thread):
    pytest.importorskip("matplotlib")
    paths, boxes, names, labels = shape_files
    with open(tmp_path / "boxes.csv", "w", newline="") as f:  # columns in another order, labels by name
        writer = csv.writer(f)
        writer.writerow(["label", "image", "left", "top", "right", "bottom"])
        for path, box, name in zip(paths, boxes, names):
            writer.writerow([name, Path(path).name, *box])
    (tmp_path / "boxes.json").write_text(json.dumps({p: {"box": list(b), "label": c} for p, b, c in zip(paths, boxes, labels)}))
    reports = []
    for boxes_file in ("boxes.csv", "boxes.json"):
        out = tmp_path / boxes_file.replace(".", "_")
        assert main(["localize", CUTMIX, *paths, "--boxes", str(tmp_path / boxes_file), "--threshold", "0.5", "-o", str(out)]) == 0
        reports.append(json.loads((out / "report.json").read_text()))
        printed = capsys.readouterr().out
        assert "top-1 loc. acc %" in printed and "shape00.png" in printed
        assert len(list(out.glob("0*_shape*.png"))) == 40 and (out / "thresholds.png").is_file()
    assert reports[0]["localization"] == reports[1]["localization"]
    assert main(["localize", CUTMIX, "shapes", "--limit", "40", "--threshold", "0.5", "-o", str(tmp_path / "gen"), "--no-plots"]) == 0
    generated = json.loads((tmp_path / "gen" / "report.json").read_text())
    assert reports[0]["localization"] == generated["localization"]  # PNG files and boxes file = the generator's own images and boxes
    for row, truth in zip(reports[0]["predictions"], generated["predictions"]):
        assert row["box"] == truth["box"] and row["true_box"] == truth["true_box"] and row["iou"] == truth["iou"]
        assert row["correct"] == (row["label"] == row["true_label"] and row["iou"] >= 0.5)


def test_the_box_picture_shows_the_input_untouched(shape_files, tmp_path, capsys):
    paths, boxes, names, _ = shape_files
    out = tmp_path / "out"
    assert main(["localize", CUTMIX, paths[0], "-o", str(out), "--alpha", "1"]) == 0
    report = json.loads((out / "report.json").read_text())
    [row] = report["predictions"]
    assert "localization" not in report and row["label"] == names[0] and len(row["box"]) == 4
    picture = Image.open(row["picture"])
    scale = 10  # 32 px enlarged to 320
    bar = picture.height - 32 * scale
    assert picture.size == (2 * 32 * scale + 8, 32 * scale + bar)
    shown = picture.crop((0, bar, 32 * scale, bar + 32 * scale))
    original = Image.open(paths[0]).resize((32 * scale, 32 * scale), Image.NEAREST)
    left, top, right, bottom = row["box"]
    inside = shown.crop((left * scale + 3, top * scale + 3, right * scale - 3, bottom * scale - 3))
    assert inside.tobytes() == original.crop((left * scale + 3, top * scale + 3, right * scale - 3, bottom * scale - 3)).tobytes()
    assert picture.getpixel((left * scale + 1, bar + top * scale + 1)) == (255, 0, 0)  # the predicted box, in red
    assert "class" not in capsys.readouterr().err


def test_read_boxes_formats_and_mistakes(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"image": "x/a.jpg", "box": [1, 2, 3, 4], "label": "cat"}]))
    assert read_boxes(tmp_path / "a.json") == {"x/a.jpg": ((1, 2, 3, 4), "cat")}
    (tmp_path / "b.csv").write_text("image,left,top,right,bottom,label\na.jpg,1,2,3,4,7\n\n")
    assert read_boxes(tmp_path / "b.csv") == {"a.jpg": ((1, 2, 3, 4), 7)}
    bad = {
        "c.csv": ("image,left,top,right\na.jpg,1,2,3\n", "needs a header row"),
        "d.csv": ("image,left,top,right,bottom,label\na.jpg,5,2,3,4,cat\n", "empty or negative"),
        "e.csv": ("image,left,top,right,bottom,label\na.jpg,1,2,3,4,cat\na.jpg,1,2,3,4,cat\n", "second box"),
        "f.json": ("{", "not valid JSON"),
        "g.json": (json.dumps([{"image": "a", "box": [1, 2, 3, 4]}]), "needs a label"),
        "h.txt": ("", "must be a .csv or .json"),
        "i.csv": ("image,left,top,right,bottom,label\na.jpg,1,x,3,4,cat\n", "four numbers"),
    }
    for name, (text, message) in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(InvalidArgumentError, match=message):
            read_boxes(tmp_path / name)


def test_labels_by_name_need_a_model_with_class_names(tmp_path):
    shapes_model = cutmix_zoo.load(CUTMIX)
    assert resolve_label(shapes_model, "Horizontal_Bar") == 7 and resolve_label(shapes_model, 3) == 3
    with pytest.raises(InvalidArgumentError, match="'dog' is not a class of"):
        resolve_label(shapes_model, "dog")
    reheaded = cutmix_zoo.load(CUTMIX, num_classes=4)
    with pytest.raises(InvalidArgumentError, match="has no class names .* give class indices 0 to 3 instead"):
        resolve_label(reheaded, "circle")
    assert resolve_label(reheaded, 2) == 2


def test_bad_input_is_one_line(shape_files, tmp_path, capsys):
    paths, boxes, names, _ = shape_files
    out = str(tmp_path / "out")
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "one.csv").write_text(f"image,left,top,right,bottom,label\n{paths[0]},1,1,5,5,circle\n")
    (tmp_path / "names.csv").write_text(f"image,left,top,right,bottom,label\n{paths[0]},1,1,5,5,{names[0]}\n")
    reheaded = tmp_path / "reheaded"
    cutmix_zoo.save_pretrained(cutmix_zoo.load(CUTMIX, num_classes=4), reheaded)
    cases = [
        ([CUTMIX, str(tmp_path / "notes.png")], "is not an image file"),
        ([CUTMIX, str(tmp_path / "missing.png")], "does not exist"),
        ([CUTMIX, paths[0], paths[1], "--boxes", str(tmp_path / "one.csv")], "has no box for"),
        ([str(reheaded), paths[0], "--boxes", str(tmp_path / "names.csv"), "--no-plots"], "has no class names"),
        ([CUTMIX, "shapes", "--boxes", str(tmp_path / "one.csv")], "brings its own boxes"),
        ([CUTMIX, paths[0], "--class", "12"], "Class 12 does not exist"),
        (["resnet5", paths[0]], "Unknown model 'resnet5'"),
    ]
    for argv, message in cases:
        code = main(["localize", *argv, "-o", out])
        err = capsys.readouterr().err
        assert code == 2, argv
        assert err.startswith("cutmix-zoo: error: ") and message in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(SystemExit) as exit_info:
        main(["localize", CUTMIX, paths[0], "-o", out, "--threshold", "2"])
    assert exit_info.value.code == 2 and "not between 0 and 1" in capsys.readouterr().err
