"""``cutmix-zoo robustness`` and ``cutmix-zoo localize``: the report commands, thin shells over
:mod:`cutmix_zoo.reports.robustness` and :mod:`cutmix_zoo.reports.localize`.

Every report command takes ``--output DIR`` and writes ``report.json`` and its PNG pictures there, and
prints its table. ``shapes`` in place of data (``--data shapes``, ``localize NAME shapes``) is the
generated Shapes-10 test split, whose generator also says where each shape is: an annotated benchmark
that needs no download.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidArgumentError, ZooError
from ..files import write_text_atomic
from ..reports.cam import render
from ..reports.localize import (
    DEFAULT_THRESHOLD,
    IOU_CORRECT,
    box_iou,
    find_box,
    localize_batch,
    read_boxes,
    resolve_label,
    scale_box,
    whole_image_transform,
)
from ..reports.predict import class_names, open_image, resolve_model
from .common import print_table, run_command

SHAPES = "shapes"
PREDICTED_COLOUR, TRUE_COLOUR = "red", "lime"
SWEEP = [round(0.05 * k, 2) for k in range(1, 20)]  # thresholds of the localization sweep: 0.05 to 0.95


# --- Shapes-10 with its boxes --------------------------------------------------------------------------------

def shapes_benchmark(limit: int = 0, split: str = "test") -> tuple[list[Any], list[int], list[str], list[tuple[int, int, int, int]]]:
    """The first ``limit`` (0: all) images of a Shapes-10 split as PIL images, their labels, the class names, and the
    box of each image's shape ``(left, top, right, bottom)``, right and bottom exclusive."""
    from PIL import Image

    from ..reports.localize import mask_box
    from ..train.shapes import Shapes

    data = Shapes(split)
    masks = data.shape_masks()
    count = min(limit, len(data)) if limit else len(data)
    images = [Image.fromarray(data.images[i].permute(1, 2, 0).numpy()) for i in range(count)]
    return images, data.targets[:count].tolist(), list(data.classes), [mask_box(masks[i]) for i in range(count)]


# --- shared helpers ----------------------------------------------------------------------------------------

def output_folder(path: str) -> Path:
    """The ``--output`` folder of a report command, created if needed; one sentence when it cannot be."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InvalidArgumentError(f"The output {out} exists and is not a folder.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InvalidArgumentError(f"Could not create the output folder {out} ({e.strerror or e}).") from None
    return out


def write_report(path: Path, report: dict[str, Any]) -> None:
    """A report command's ``report.json``, written atomically; one sentence when it cannot be."""
    try:
        write_text_atomic(path, json.dumps(report, indent=2) + "\n")
    except OSError as e:
        raise ZooError(f"Could not write {path} ({e.strerror or e}).") from None


def model_names(text: str) -> list[str]:
    """The models of a comma-separated ``--models`` list: at least one, none twice."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise InvalidArgumentError("--models needs at least one model name, e.g. --models resnet50.cutmix_in1k,resnet50.baseline_in1k.")
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"--models names a model twice: {text}.")
    return names


def _epsilon(text: str) -> float:
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or a fraction such as 8/255") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a pixel step from 0 to 1")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _command_line(name: str, argv: Sequence[str]) -> str:
    return shlex.join(["cutmix-zoo", name, *argv])


# --- robustness ----------------------------------------------------------------------------------------------

def _robustness_command(args: argparse.Namespace) -> int:
    from ..reports.robustness import evaluate, read_image_folder, read_validation_folder

    if not args.no_plots:
        from ..reports.plots import require_matplotlib

        require_matplotlib()
    names = model_names(args.models)
    if args.data == SHAPES and not os.path.exists(SHAPES):
        images, labels, classes, _ = shapes_benchmark(args.limit or 0)
    else:
        images, labels, classes = read_validation_folder(args.data)
        if args.limit and args.limit < len(images):
            keep = sorted(torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed))[:args.limit].tolist())
            images, labels = [images[i] for i in keep], [labels[i] for i in keep]
            if len(set(labels)) < 2:
                raise InvalidArgumentError(f"--limit {args.limit} keeps images of one class only; robustness needs at least two classes.")
    ood_images = read_image_folder(args.ood) if args.ood else []
    out = output_folder(args.output)
    models = {name: resolve_model(name, device=args.device) for name in names}
    measures = [m.strip() for m in args.measures.split(",") if m.strip()]
    progress = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        def progress(batches):
            return tqdm(batches, desc="robustness", unit="batch", leave=False)
    report = evaluate(models, images, labels, classes, measures=measures, hole_steps=args.hole_steps, ratios=args.ratios,
                      epsilon=args.epsilon, ood_images=ood_images, noise_count=args.noise_images, batch_size=args.batch_size,
                      seed=args.seed, progress=progress)
    report = {"command": _command_line("robustness", args.argv), "data": args.data,
              "ood_folder": args.ood, **report}
    pictures = [] if args.no_plots else _robustness_pictures(report, out)
    report["pictures"] = pictures
    write_report(out / "report.json", report)
    _print_robustness(report)
    print(f"wrote {out / 'report.json'}" + (f" and {', '.join(Path(p).name for p in pictures)}" if pictures else ""))
    return 0


def _robustness_pictures(report: dict[str, Any], out: Path) -> list[str]:
    from ..reports.plots import curves, table
    from ..reports.robustness import summary_rows

    models = report["models"]
    written = []
    title = f"{'Shapes-10 test split' if report['data'] == SHAPES else report['data']}: {report['images']} validation images"
    if all("occlusion" in r for r in models.values()):
        panels = [{"title": f"{kind.capitalize()} occlusion", "xlabel": "hole size (pixels of the input)", "ylabel": "top-1 error (%)",
                   "ylim": (0, 100), "lines": {n: (r["occlusion"]["hole_sizes"], r["occlusion"][f"{kind}_top1_err"]) for n, r in models.items()}}
                  for kind in ("centre", "boundary")]
        written.append(curves(out / "occlusion.png", panels, title))
    if all("in_between" in r for r in models.values()):
        panels = [{"title": f"{label} in-between class samples", "xlabel": "mixing ratio λ (weight of the first image)",
                   "ylabel": "predicts neither class (%)", "ylim": (0, 100),
                   "lines": {n: (r["in_between"]["ratios"], r["in_between"][f"{kind}_err"]) for n, r in models.items()}}
                  for kind, label in (("mixup", "Mixup"), ("cutmix", "CutMix"))]
        written.append(curves(out / "in_between.png", panels, title))
    header, rows = summary_rows(report)
    written.append(table(out / "summary.png", header, rows, title))
    return written


def _print_robustness(report: dict[str, Any]) -> None:
    from ..reports.robustness import summary_rows

    models = report["models"]
    names = list(models)
    first = models[names[0]]
    if "occlusion" in first:
        print("Top-1 error (%) under occlusion (hole size in pixels of the input)")
        header = ["hole"] + [f"{n} {kind}" for n in names for kind in ("centre", "boundary")]
        sizes = first["occlusion"]["hole_sizes"]
        rows = [[str(s)] + [f"{models[n]['occlusion'][f'{kind}_top1_err'][k]:.2f}" for n in names for kind in ("centre", "boundary")]
                for k, s in enumerate(sizes)]
        if all(models[n]["occlusion"]["hole_sizes"] == sizes for n in names):
            print_table(rows, header)
            print()
    if "in_between" in first:
        print("In-between class samples: top-1 predicts neither source class (%)")
        header = ["λ"] + [f"{n} {kind}" for n in names for kind in ("mixup", "cutmix")]
        rows = [[f"{lam:g}"] + [f"{models[n]['in_between'][f'{kind}_err'][k]:.2f}" for n in names for kind in ("mixup", "cutmix")]
                for k, lam in enumerate(first["in_between"]["ratios"])]
        print_table(rows, header)
        print()
    header, rows = summary_rows(report)
    settings = report["settings"]
    print(f"{report['images']} images, FGSM epsilon {settings['epsilon']:.5f}, OOD against "
          f"{', '.join(settings['ood']) or 'nothing'} (maximum softmax score)")
    print_table(rows, header)


def robustness_main(argv: list[str]) -> int:
    """``cutmix-zoo robustness --data FOLDER|shapes --models A,B,... -o DIR [...]``."""
    parser = argparse.ArgumentParser(
        prog="cutmix-zoo robustness",
        description="The CutMix paper's robustness analysis (section 4.3) of one or more models on your validation images "
                    "(FOLDER/val/<class>/<image>): centre and boundary occlusion across hole sizes, Mixup and CutMix "
                    "in-between class samples across the mixing ratio, FGSM, and out-of-distribution detection with the "
                    "maximum softmax score against Gaussian and uniform noise (and --ood images). Writes DIR/report.json, "
                    "occlusion.png, in_between.png and summary.png, and prints the tables.",
    )
    parser.add_argument("--data", required=True, help="a folder with val/<class>/<image> (an ImageFolder tree), or 'shapes' "
                        "(the generated Shapes-10 test split)")
    parser.add_argument("--models", required=True, help="comma-separated registry names or exported folders, e.g. "
                        "resnet50,resnet50.baseline_in1k")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for report.json and the pictures (created if needed)")
    parser.add_argument("--limit", type=_positive, help="evaluate a seeded random subset of this many images (Shapes-10: the first N)")
    parser.add_argument("--measures", default="occlusion,in_between,fgsm,ood", help="comma-separated subset of "
                        "occlusion,in_between,fgsm,ood (default: all)")
    parser.add_argument("--hole-steps", type=_positive, default=8, help="hole sizes from 0 to the full input in this many steps (default: 8)")
    parser.add_argument("--ratios", type=int, default=11, help="mixing ratios from 0 to 1 (default: 11: 0, 0.1, ..., 1)")
    parser.add_argument("--epsilon", type=_epsilon, default=_epsilon("8/255"), help="FGSM step in pixel values, a number or a "
                        "fraction (default: 8/255, the paper's)")
    parser.add_argument("--ood", metavar="FOLDER", help="a folder of out-of-distribution images, scored beside the generated noise")
    parser.add_argument("--noise-images", type=_positive, help="generated noise images of each kind (default: as many as validation "
                        "images, at most 10,000)")
    parser.add_argument("--batch-size", type=_positive, default=64, help="images per batch (default: 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image order, the pairs, the CutMix patches and the noise (default: 0)")
    parser.add_argument("--device", help="torch device to run on, e.g. cuda (default: cpu)")
    parser.add_argument("--no-plots", action="store_true", help="write report.json only (no matplotlib needed)")
    args = parser.parse_args(argv)
    if args.ratios < 2:
        parser.error("--ratios must be at least 2")
    if args.batch_size < 2:
        parser.error("--batch-size must be at least 2 (in-between samples pair images within a batch)")
    args.argv = list(argv)
    return run_command(_robustness_command, args)


# --- localize ------------------------------------------------------------------------------------------------

def _pct(count: float, total: int) -> float:
    return round(100 * count / total, 4) if total else 0.0


def _localization_summary(ious: torch.Tensor, known_ious: torch.Tensor, correct_class: torch.Tensor, thresholds: list[float],
                          threshold: float) -> dict[str, Any]:
    """Localization accuracies from (T, N) IoUs of predicted-class and true-class boxes, one row per threshold."""
    n = correct_class.numel()
    top1 = ((ious >= IOU_CORRECT) & correct_class[None]).sum(dim=1).tolist()
    known = (known_ious >= IOU_CORRECT).sum(dim=1).tolist()
    at = thresholds.index(threshold)
    best = max(range(len(thresholds)), key=lambda k: (top1[k], -abs(thresholds[k] - threshold)))
    return {
        "images": n,
        "threshold": threshold,
        "iou_needed": IOU_CORRECT,
        "top1_loc_acc": _pct(top1[at], n),
        "top1_loc_err": round(100 - _pct(top1[at], n), 4),
        "gt_known_loc_acc": _pct(known[at], n),
        "top1_err": _pct(n - int(correct_class.sum()), n),
        "mean_iou": round(float(ious[at].mean()), 4) if n else 0.0,
        "by_threshold": {"thresholds": thresholds, "top1_loc_acc": [_pct(c, n) for c in top1], "gt_known_loc_acc": [_pct(c, n) for c in known]},
        "best_threshold": {"threshold": thresholds[best], "top1_loc_acc": _pct(top1[best], n)},
    }


def _heat(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    heat = torch.nn.functional.interpolate(raw[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    low, high = heat.min(), heat.max()
    return (heat - low) / (high - low) if high > low else torch.zeros_like(heat)


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


def _threshold_picture(out: Path, name: str, summary: dict[str, Any], title: str) -> str:
    from ..reports.plots import curves

    sweep = summary["by_threshold"]
    panel = {"title": "CAM boxes: accuracy against the threshold", "xlabel": "threshold (fraction of the map's maximum)",
             "ylabel": f"images localized (%), IoU ≥ {IOU_CORRECT}", "ylim": (0, 100),
             "lines": {f"{name}: top-1 loc.": (sweep["thresholds"], sweep["top1_loc_acc"]),
                       f"{name}: GT-known loc.": (sweep["thresholds"], sweep["gt_known_loc_acc"])}}
    return curves(out / "thresholds.png", [panel], title)


def _localize_shapes(args: argparse.Namespace, net: Any, out: Path) -> dict[str, Any]:
    images, labels, classes, true_boxes = shapes_benchmark(args.limit or 0)
    names = class_names(net)
    to_model = [resolve_label(net, c, "Shapes-10") for c in classes]
    transform = whole_image_transform(net)
    thresholds = sorted(set(SWEEP) | {args.threshold})
    truth = torch.tensor(true_boxes, dtype=torch.float64)
    ious, known_ious, correct, predictions = [], [], [], []
    shown: list[tuple[Any, torch.Tensor, dict[str, Any]]] = []
    for start in range(0, len(images), 256):
        x = torch.stack([transform(p) for p in images[start:start + 256]])
        y = torch.tensor([to_model[c] for c in labels[start:start + 256]])
        result = localize_batch(net, x, thresholds)
        known = localize_batch(net, x, thresholds, class_index=y)
        boxes = result.boxes.double()
        t = truth[start:start + 256]
        ious.append(torch.tensor([[box_iou(b, g) for b, g in zip(row.tolist(), t.tolist())] for row in boxes]))
        known_ious.append(torch.tensor([[box_iou(b, g) for b, g in zip(row.tolist(), t.tolist())] for row in known.boxes.double()]))
        correct.append(result.predicted == y)
        at = thresholds.index(args.threshold)
        for i in range(len(x)):
            predictions.append({"index": start + i, "class_index": int(result.classes[i]), "label": names[int(result.classes[i])],
                                "probability": round(float(result.probabilities[i]), 6), "box": result.boxes[at, i].tolist(),
                                "true_label": names[int(y[i])], "true_box": list(true_boxes[start + i]),
                                "iou": round(float(ious[-1][at, i]), 4)})
            if len(shown) < args.examples:
                shown.append((images[start + i], result.maps[i], predictions[-1]))
    summary = _localization_summary(torch.cat(ious, dim=1), torch.cat(known_ious, dim=1), torch.cat(correct), thresholds, args.threshold)
    pictures = []
    if not args.no_plots:
        panels = [render(pil, _heat(raw, (pil.height, pil.width)),
                         _box_title(p["label"], p["probability"], f"Shapes-10 test #{p['index']}", p["iou"], p["true_label"]), args.alpha,
                         boxes=[(tuple(p["true_box"]), TRUE_COLOUR), (tuple(p["box"]), PREDICTED_COLOUR)]) for pil, raw, p in shown]
        if panels:
            path = out / "examples.png"
            _grid(panels, 2).save(path)
            pictures.append(str(path))
        pictures.append(_threshold_picture(out, net.pretrained_cfg["name"], summary, f"Shapes-10 test split, {len(images)} images"))
    return {"data": SHAPES, "localization": summary, "predictions": predictions, "pictures": pictures}


def _localize_images(args: argparse.Namespace, net: Any, out: Path) -> dict[str, Any]:
    names = class_names(net)
    truth: list[tuple[tuple[int, int, int, int], int]] | None = None
    if args.boxes:
        annotations = read_boxes(args.boxes)
        truth = []
        for image in args.images:
            found = find_box(annotations, image, f"The boxes file {args.boxes}")
            truth.append((found.box, resolve_label(net, found.label, f"The boxes file {args.boxes}")))
    transform = whole_image_transform(net)
    thresholds = sorted(set(SWEEP) | {args.threshold}) if truth else [args.threshold]
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
            render(pil, _heat(result.maps[0], size), title, args.alpha, boxes=drawn).save(path)
            row["picture"] = str(path)
            pictures.append(str(path))
        rows.append(row)
    report: dict[str, Any] = {"data": "images", "predictions": rows, "pictures": pictures}
    if truth:
        report["localization"] = _localization_summary(torch.tensor(ious).T, torch.tensor(known_ious).T, torch.tensor(correct),
                                                       thresholds, args.threshold)
        if not args.no_plots:
            pictures.append(_threshold_picture(out, net.pretrained_cfg["name"], report["localization"], f"{len(rows)} images of {args.boxes}"))
    return report


def _localize_command(args: argparse.Namespace) -> int:
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
    out = output_folder(args.output)
    body = _localize_shapes(args, net, out) if shapes else _localize_images(args, net, out)
    report = {"command": _command_line("localize", args.argv), "model": net.pretrained_cfg["name"], "threshold": args.threshold,
              "box_format": "left, top, right, bottom in image pixels; right and bottom exclusive", **body}
    write_report(out / "report.json", report)
    if not shapes:
        header = ["image", "class", "prob.", "box (l, t, r, b)"] + (["true class", "IoU", "localized"] if args.boxes else [])
        rows = [[r["image"], r["label"], f"{r['probability']:.1%}", ", ".join(map(str, r["box"]))]
                + ([r["true_label"], f"{r['iou']:.2f}", "yes" if r["correct"] else "no"] if args.boxes else [])
                for r in report["predictions"]]
        print_table(rows, header)
    if "localization" in report:
        s = report["localization"]
        if not shapes:
            print()
        print(f"{report['model']} on {s['images']} {'Shapes-10 test images' if shapes else 'images'}, CAM threshold {s['threshold']:g}:")
        print_table([[f"{s['top1_loc_acc']:.2f}", f"{s['top1_loc_err']:.2f}", f"{s['gt_known_loc_acc']:.2f}", f"{s['top1_err']:.2f}",
                       f"{s['mean_iou']:.3f}", f"{s['best_threshold']['threshold']:g} ({s['best_threshold']['top1_loc_acc']:.2f})"]],
                     ["top-1 loc. acc %", "top-1 loc. err %", "GT-known loc. acc %", "top-1 err %", "mean IoU", "best threshold (acc %)"])
    print(f"wrote {out / 'report.json'}" + (f" and {len(report['pictures'])} pictures" if report["pictures"] else ""))
    return 0


def localize_main(argv: list[str]) -> int:
    """``cutmix-zoo localize NAME IMAGE... -o DIR [--threshold 0.2] [--boxes FILE]``, or ``NAME shapes`` for the Shapes-10 benchmark."""
    parser = argparse.ArgumentParser(
        prog="cutmix-zoo localize",
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
    parser.add_argument("model", metavar="NAME", help="registry name or exported folder")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or 'shapes' (the Shapes-10 test split and its true boxes)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for report.json and the pictures (created if needed)")
    parser.add_argument("--weights", help="a local weights file for NAME instead of its download")
    parser.add_argument("--threshold", type=_fraction, default=DEFAULT_THRESHOLD, help="keep map values at or above this fraction of "
                        f"the map's maximum (default: {DEFAULT_THRESHOLD}, the CAM paper's)")
    parser.add_argument("--boxes", metavar="FILE", help="true boxes, one per image (.csv or .json): report localization accuracy")
    parser.add_argument("--class", dest="class_index", type=int, metavar="K", help="box the map of class K instead of the top class")
    parser.add_argument("--limit", type=_positive, help="Shapes-10: the first N test images (default: all 2,000)")
    parser.add_argument("--examples", type=int, default=8, help="Shapes-10: how many images examples.png shows (default: 8)")
    parser.add_argument("--alpha", type=float, default=0.5, help="opacity of the map over the image's copy, 0 to 1 (default: 0.5)")
    parser.add_argument("--device", help="torch device to run on, e.g. cuda (default: cpu)")
    parser.add_argument("--no-plots", action="store_true", help="write report.json only (no pictures, no matplotlib needed)")
    args = parser.parse_args(argv)
    if not 0 <= args.alpha <= 1:
        parser.error("--alpha must be between 0 and 1")
    args.argv = list(argv)
    return run_command(_localize_command, args)
