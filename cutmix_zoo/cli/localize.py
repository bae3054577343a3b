"""``cutmix-zoo localize``: weakly supervised localization with class activation maps, a thin shell over
:mod:`cutmix_zoo.reports.localize`; it writes ``DIR/report.json`` and its pictures and prints its table."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError
from .common import Subparsers, UsageError, positive, print_table
from .reporting import SHAPES, command_line, output_folder, shapes_benchmark, write_report

if TYPE_CHECKING:
    import torch

    from ..reports.localize import LocalizationSummary

NAME = "localize"
HELP = "CAM bounding boxes of images, and localization accuracy against true boxes"
PREDICTED_COLOUR, TRUE_COLOUR = "red", "lime"


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value



def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``localize NAME IMAGE... -o DIR [--threshold 0.2] [--boxes FILE]`` (``NAME shapes``: the Shapes-10 benchmark)."""
    from ..reports.localize import DEFAULT_THRESHOLD

    p = subparsers.add_parser(
        NAME, help=HELP,
        description="Weakly supervised localization with class activation maps (the CAM paper's boxes): the predicted class "
                    "of each image and the bounding box of the largest connected region of its map above --threshold times "
                    "its maximum, drawn on a PNG beside the image. With --boxes FILE (one true box and class per image, CSV "
                    "or JSON) it reports localization accuracy: the class right and IoU >= 0.5. IMAGE 'shapes' runs the "
                    "annotated Shapes-10 test split. Writes DIR/report.json and the pictures, and prints the table.",
        epilog="Boxes files: CSV with the header image,left,top,right,bottom,label, or JSON [{\"image\": ..., \"box\": [l, t, r, b], "
               "\"label\": ...}] or {IMAGE: {\"box\": ..., \"label\": ...}}. Boxes are in image pixels, right and bottom exclusive; "
               "a label is a class index or (for models whose dataset has names) a class name; an image is matched by the "
               "path as given, else by its file name.",
    )
    p.add_argument("model", metavar="NAME", help="registry name or exported folder")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or 'shapes' (the Shapes-10 test split and its true boxes)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for report.json and the pictures (created if needed)")
    p.add_argument("--weights", help="a local weights file for NAME instead of its download")
    p.add_argument("--threshold", type=_fraction, default=DEFAULT_THRESHOLD, help="keep map values at or above this fraction of "
                   f"the map's maximum (default: {DEFAULT_THRESHOLD}, the CAM paper's)")
    p.add_argument("--boxes", metavar="FILE", help="true boxes, one per image (.csv or .json): report localization accuracy")
    p.add_argument("--class", dest="class_index", type=int, metavar="K", help="box the map of class K instead of the top class")
    p.add_argument("--limit", type=positive, help="Shapes-10: the first N test images (default: all 2,000)")
    p.add_argument("--examples", type=int, default=8, help="Shapes-10: how many images examples.png shows (default: 8)")
    p.add_argument("--alpha", type=float, default=0.5, help="opacity of the map over the image's copy, 0 to 1 (default: 0.5)")
    p.add_argument("--device", help="torch device to run on, e.g. cuda (default: cpu)")
    p.add_argument("--no-plots", action="store_true", help="write report.json only (no pictures, no matplotlib needed)")
    return p


def _box_title(label: str, probability: float, name: str, iou: float | None, true_label: str | None) -> str:
    first = f"{label} ({probability:.1%})"
    if iou is not None:
        first += f", true: {true_label}, IoU {iou:.2f}"
    return f"{first}\n{name}"


def _grid(panels: list[Any], columns: int) -> Any:
    from PIL import Image

    from ..reports.cam import PANEL_GAP

    rows = [panels[i:i + columns] for i in range(0, len(panels), columns)]
    width = max(sum(p.width for p in row) + PANEL_GAP * 3 * (len(row) - 1) for row in rows)
    height = sum(max(p.height for p in row) for row in rows) + PANEL_GAP * 3 * (len(rows) - 1)
    grid = Image.new("RGB", (width, height), "white")
    y = 0
    for row in rows:
        x = 0
        for p in row:
            grid.paste(p, (x, y))
            x += p.width + PANEL_GAP * 3
        y += max(p.height for p in row) + PANEL_GAP * 3
    return grid


def _threshold_picture(out: Path, name: str, summary: LocalizationSummary, title: str) -> str:
    from ..reports.localize import IOU_CORRECT
    from ..reports.plots import curves

    sweep = summary.by_threshold
    panel = {"title": "CAM boxes: accuracy against the threshold", "xlabel": "threshold (fraction of the map's maximum)",
             "ylabel": f"images localized (%), IoU ≥ {IOU_CORRECT}", "ylim": (0, 100),
             "lines": {f"{name}: top-1 loc.": (sweep.thresholds, sweep.top1_loc_acc),
                       f"{name}: GT-known loc.": (sweep.thresholds, sweep.gt_known_loc_acc)}}
    return curves(out / "thresholds.png", [panel], title)


def _localize_shapes(args: argparse.Namespace, net: Any, out: Path) -> tuple[dict[str, Any], LocalizationSummary]:
    import torch

    from ..reports.cam import render
    from ..reports.inference import heatmap, whole_image_transform
    from ..reports.localize import iou_table, localization_summary, localize_batch, resolve_label, sweep_thresholds
    from ..reports.predict import class_names

    images, labels, classes, true_boxes = shapes_benchmark(args.limit or 0)
    names = class_names(net)
    to_model = [resolve_label(net, c, "Shapes-10") for c in classes]
    transform = whole_image_transform(net)
    thresholds = sweep_thresholds(args.threshold)
    at = thresholds.index(args.threshold)
    ious, known_ious, correct, predictions = [], [], [], []
    shown: list[tuple[Any, torch.Tensor, dict[str, Any]]] = []
    for start in range(0, len(images), 256):
        x = torch.stack([transform(p) for p in images[start:start + 256]])
        y = torch.tensor([to_model[c] for c in labels[start:start + 256]])
        result = localize_batch(net, x, thresholds)
        truth = true_boxes[start:start + 256]
        ious.append(iou_table(result.boxes, truth))
        known_ious.append(iou_table(localize_batch(net, x, thresholds, class_index=y).boxes, truth))
        correct.append(result.predicted == y)
        for i in range(len(x)):
            predictions.append({"index": start + i, "class_index": int(result.classes[i]), "label": names[int(result.classes[i])],
                                "probability": round(float(result.probabilities[i]), 6), "box": result.boxes[at, i].tolist(),
                                "true_label": names[int(y[i])], "true_box": list(truth[i]), "iou": round(float(ious[-1][at, i]), 4)})
            if len(shown) < args.examples:
                shown.append((images[start + i], result.maps[i], predictions[-1]))
    summary = localization_summary(torch.cat(ious, dim=1), torch.cat(known_ious, dim=1), torch.cat(correct), thresholds, args.threshold)
    pictures = []
    if not args.no_plots:
        panels = [render(pil, heatmap(raw, (pil.height, pil.width)),
                         _box_title(p["label"], p["probability"], f"Shapes-10 test #{p['index']}", p["iou"], p["true_label"]), args.alpha,
                         boxes=[(tuple(p["true_box"]), TRUE_COLOUR), (tuple(p["box"]), PREDICTED_COLOUR)]) for pil, raw, p in shown]
        if panels:
            path = out / "examples.png"
            _grid(panels, 2).save(path)
            pictures.append(str(path))
        pictures.append(_threshold_picture(out, net.pretrained_cfg["name"], summary, f"Shapes-10 test split, {len(images)} images"))
    return {"data": SHAPES, "localization": summary.to_dict(), "predictions": predictions, "pictures": pictures}, summary


def _true_boxes(args: argparse.Namespace, net: Any) -> list[tuple[tuple[int, int, int, int], int]] | None:
    """The true box and class (as the model's index) of each of ``args.images``, from ``args.boxes`` (None without it),
    after each image's shape and box are checked from its header, before anything is written."""
    from ..reports.inference import check_aspect_ratio
    from ..reports.localize import check_box_inside, find_box, read_boxes, resolve_label

    annotations = read_boxes(args.boxes) if args.boxes else None
    truth = []
    for image in args.images:
        size = _image_size(image)
        if size is not None:
            check_aspect_ratio(*size, f"The image {image}")
        if annotations is None:
            continue
        found = find_box(annotations, image, f"The boxes file {args.boxes}")
        if size is not None:
            check_box_inside(found.box, *size, f"The boxes file {args.boxes}, image {image}")
        truth.append((found.box, resolve_label(net, found.label, f"The boxes file {args.boxes}")))
    return truth if annotations is not None else None


def _image_size(image: str) -> tuple[int, int] | None:
    """The width and height in ``image``'s header (None where Pillow cannot read it: the image's own read says why)."""
    from PIL import Image

    try:
        with Image.open(image) as img:
            return img.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _localize_images(args: argparse.Namespace, net: Any, out: Path,
                     truth: list[tuple[tuple[int, int, int, int], int]] | None) -> tuple[dict[str, Any], LocalizationSummary | None]:
    import torch

    from ..reports.cam import render
    from ..reports.inference import heatmap, whole_image_transform
    from ..reports.localize import IOU_CORRECT, box_iou, localization_summary, localize_batch, scale_box, sweep_thresholds
    from ..reports.predict import class_names, open_image

    names = class_names(net)
    transform = whole_image_transform(net)
    thresholds = sweep_thresholds(args.threshold) if truth else [args.threshold]
    at = thresholds.index(args.threshold)
    rows, pictures, ious, known_ious, correct = [], [], [], [], []
    used: set[str] = set()
    for number, image in enumerate(args.images):
        pil = open_image(image)
        x = transform(pil).unsqueeze(0)
        size, input_size = (pil.height, pil.width), tuple(x.shape[-2:])
        result = localize_batch(net, x, thresholds, None if args.class_index is None else torch.tensor([args.class_index]))
        boxes = [scale_box(result.boxes[k, 0].tolist(), input_size, size) for k in range(len(thresholds))]
        index = int(result.classes[0])
        row = {"image": image, "class_index": index, "label": names[index], "probability": round(float(result.probabilities[0]), 6),
               "box": list(boxes[at])}
        drawn = [(boxes[at], PREDICTED_COLOUR)]
        iou = true_label = None
        if truth:
            true_box, true_class = truth[number]
            known = localize_batch(net, x, thresholds, torch.tensor([true_class]))
            known_boxes = [scale_box(known.boxes[k, 0].tolist(), input_size, size) for k in range(len(thresholds))]
            ious.append([box_iou(b, true_box) for b in boxes])
            known_ious.append([box_iou(b, true_box) for b in known_boxes])
            correct.append(int(result.predicted[0]) == true_class)
            iou, true_label = ious[-1][at], names[true_class]
            row.update(true_label=true_label, true_class_index=true_class, true_box=list(true_box), iou=round(iou, 4),
                       correct=bool(correct[-1] and iou >= IOU_CORRECT))
            drawn.insert(0, (true_box, TRUE_COLOUR))
        if not args.no_plots:
            stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(image).stem) or "image"
            path = out / f"{number:03d}_{stem}.png"
            if path.name in used:
                path = out / f"{number:03d}_{stem}_{len(used)}.png"
            used.add(path.name)
            shown = net.pretrained_cfg["name"] + (f" with {Path(args.weights).name}" if args.weights else "")
            title = _box_title(row["label"], row["probability"], shown, iou, true_label)
            render(pil, heatmap(result.maps[0], size), title, args.alpha, boxes=drawn).save(path)
            row["picture"] = str(path)
            pictures.append(str(path))
        rows.append(row)
    report: dict[str, Any] = {"data": "images", "predictions": rows, "pictures": pictures}
    if not truth:
        return report, None
    summary = localization_summary(torch.tensor(ious).T, torch.tensor(known_ious).T, torch.tensor(correct), thresholds, args.threshold)
    report["localization"] = summary.to_dict()
    if not args.no_plots:
        pictures.append(_threshold_picture(out, net.pretrained_cfg["name"], summary, f"{len(rows)} images of {args.boxes}"))
    return report, summary


def run(args: argparse.Namespace) -> int:
    """Box the maps of the images (or the Shapes-10 benchmark), write the report and its pictures, and print the table."""
    if not 0 <= args.alpha <= 1:
        raise UsageError("--alpha must be between 0 and 1")
    from ..reports.predict import resolve_model

    shapes = args.images == [SHAPES] and not os.path.exists(SHAPES)
    if not args.no_plots and (shapes or args.boxes):  # the threshold sweep's curve; box pictures need only Pillow
        from ..reports.plots import require_matplotlib

        require_matplotlib()
    if shapes and args.boxes:
        raise InvalidArgumentError("Shapes-10 brings its own boxes (its generator knows where each shape is): leave out --boxes.")
    if shapes and args.class_index is not None:
        raise InvalidArgumentError("--class picks the class of your own images; the Shapes-10 benchmark boxes each image's predicted "
                                   "and true classes.")
    for image in [] if shapes else args.images:
        if not os.path.isfile(image):
            raise InvalidArgumentError(f"The image {image} does not exist or is not a file.")
    net: Any = resolve_model(args.model, args.weights, args.device)  # its pretrained_cfg is a dict
    if args.class_index is not None and not 0 <= args.class_index < net.pretrained_cfg["num_classes"]:
        cfg = net.pretrained_cfg
        raise InvalidArgumentError(f"Class {args.class_index} does not exist: {cfg['name']} has classes 0 to {cfg['num_classes'] - 1}.")
    truth = None if shapes else _true_boxes(args, net)
    out = output_folder(args.output)
    body, summary = _localize_shapes(args, net, out) if shapes else _localize_images(args, net, out, truth)
    report = {"command": command_line("localize", args.argv), "model": net.pretrained_cfg["name"], "threshold": args.threshold,
              "box_format": "left, top, right, bottom in image pixels; right and bottom exclusive", **body}
    write_report(out / "report.json", report)
    if not shapes:
        header = ["image", "class", "prob.", "box (l, t, r, b)"] + (["true class", "IoU", "localized"] if args.boxes else [])
        rows = [[r["image"], r["label"], f"{r['probability']:.1%}", ", ".join(map(str, r["box"]))]
                + ([r["true_label"], f"{r['iou']:.2f}", "yes" if r["correct"] else "no"] if args.boxes else [])
                for r in report["predictions"]]
        print_table(rows, header)
    if summary is not None:
        if not shapes:
            print()
        _print_summary(report["model"], summary, shapes)
    print(f"wrote {out / 'report.json'}" + (f" and {len(report['pictures'])} pictures" if report["pictures"] else ""))
    return 0


def _print_summary(model: str, s: LocalizationSummary, shapes: bool) -> None:
    print(f"{model} on {s.images} {'Shapes-10 test images' if shapes else 'images'}, CAM threshold {s.threshold:g}:")
    print_table([[f"{s.top1_loc_acc:.2f}", f"{s.top1_loc_err:.2f}", f"{s.gt_known_loc_acc:.2f}", f"{s.top1_err:.2f}",
                  f"{s.mean_iou:.3f}", f"{s.best_threshold.threshold:g} ({s.best_threshold.top1_loc_acc:.2f})"]],
                ["top-1 loc. acc %", "top-1 loc. err %", "GT-known loc. acc %", "top-1 err %", "mean IoU", "best threshold (acc %)"])
