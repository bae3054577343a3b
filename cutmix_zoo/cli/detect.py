"""``cutmix-zoo detect train|eval|predict``: fine-tune a detector on a zoo backbone, score it (mAP), draw its detections."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, cast

from ..errors import InvalidArgumentError
from .common import Subparsers

NAME = "detect"
HELP = "fine-tune, evaluate (mAP) and run a detector on a zoo backbone"


def _common(parser: argparse.ArgumentParser, default_device: str = "cpu") -> None:
    """The flags every detect command takes, as ``cutmix-zoo train`` takes them (train's default to its recipe's values)."""
    parser.add_argument("--device", default=default_device, help=f"auto (cuda when available), cpu, cuda or cuda:N (default {default_device})")
    parser.add_argument("--workers", type=int, help="data loading processes per rank (default: 4, or the CPU count if smaller; 0 loads "
                                                    "in this process)")
    parser.add_argument("--batch-size", type=int, help="images per step, the global batch split over the ranks (train: the recipe's; "
                                                       "eval and predict: 2)")
    parser.add_argument("--seed", type=int, help="seed of every random draw (default 0)")


def _sizes(text: str) -> int | tuple[int, ...]:
    """``800`` or ``480,512,...,800`` (one drawn per training image, the last used for evaluation)."""
    sizes = tuple(int(v) for v in text.split(",") if v.strip())
    return sizes[0] if len(sizes) == 1 else sizes


def _milestones(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _train_parser(actions: Any) -> None:
    from ..train.detection_recipes import DEFAULT_RECIPE, RECIPES, recipes_help

    train = actions.add_parser("train", help="fine-tune a detector on a COCO or Pascal VOC folder (torchrun for several processes)",
                               description="Fine-tune a torchvision detector with an FPN on a zoo backbone. Writes OUTPUT/metrics.jsonl "
                                           "(val_map, val_map50 per epoch), OUTPUT/checkpoint.pt every epoch and OUTPUT/export/. "
                                           "Every flag left unset takes the --recipe's value (below, each with its source; --dry-run "
                                           "prints them too).",
                               epilog="recipes:\n\n" + recipes_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--init", help="the backbone: a zoo name, an exported folder or a weights file")
    train.add_argument("--data", action="append", help="a COCO or VOC folder (repeat for VOC 07+12)")
    train.add_argument("--output", help="the run's folder (metrics.jsonl, checkpoint.pt, export/)")
    train.add_argument("--recipe", choices=sorted(RECIPES), help=f"the published setting whose values are the defaults (default {DEFAULT_RECIPE})")
    train.add_argument("--detector", choices=["faster_rcnn", "retinanet", "fcos"], help="default: the recipe's (faster_rcnn)")
    train.add_argument("--epochs", type=int, help="default: the recipe's")
    train.add_argument("--lr", type=float, help="default: the recipe's, scaled linearly to --batch-size")
    train.add_argument("--lr-milestones", type=_milestones, metavar="E1,E2", help="epochs where the rate drops x0.1 (default: the recipe's)")
    train.add_argument("--warmup-steps", type=int, help="linear warm-up steps, within the first epoch (default: the recipe's)")
    train.add_argument("--freeze-stages", type=int, help="feature levels frozen from the stem (default: the recipe's, 2 = torchvision's "
                                                         "trainable_layers=3)")
    train.add_argument("--out-channels", type=int, help="the FPN's width (default: the recipe's, else 256)")
    train.add_argument("--min-size", type=_sizes, metavar="S|S1,S2,...", help="the detector's shorter image side; several draw one per "
                                                                              "training image (default: the recipe's)")
    train.add_argument("--max-size", type=int, help="the detector's longest image side (default: the recipe's)")
    train.add_argument("--train-split", help="default: train2017 / trainval / train, as the folder ships")
    train.add_argument("--val-split-name", help="default: val2017 / test / val, as the folder ships")
    train.add_argument("--from-scratch", action="store_true", help="a randomly initialised backbone (the baseline)")
    train.add_argument("--precision", choices=["auto", "bf16", "fp32"], help="auto (default): bf16 autocast on cuda, fp32 on the CPU")
    train.add_argument("--resume", help="a checkpoint.pt or output folder to continue; what is trained comes from it, and --epochs, "
                                        "--output, --data, --device, --workers and --precision may change")
    train.add_argument("--dry-run", action="store_true", help="print the resolved run as JSON and exit, reading no data")
    train.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    _common(train, default_device="auto")


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """The ``detect`` command and its ``train``, ``eval`` and ``predict`` subcommands."""
    parser = subparsers.add_parser(NAME, help=HELP, description="Fine-tune a torchvision detector on a zoo backbone, score it "
                                                                "with COCO's mAP, and draw its detections.")
    actions = parser.add_subparsers(dest="detect_command", required=True)
    _train_parser(actions)
    evaluate = actions.add_parser("eval", help="mAP of an exported detector on a COCO or VOC split")
    evaluate.add_argument("model", help="an exported detector folder (OUTPUT/export)")
    evaluate.add_argument("--data", required=True, action="append")
    evaluate.add_argument("--split", help="default: the folder's val split")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON (keys map, map50, map75, per_class)")
    _common(evaluate)
    predict = actions.add_parser("predict", help="draw an exported detector's boxes on images")
    predict.add_argument("model")
    predict.add_argument("images", nargs="+")
    predict.add_argument("--output", required=True, help="folder for the drawn PNGs")
    predict.add_argument("--threshold", type=float, default=0.5, help="lowest score drawn (default 0.5)")
    predict.add_argument("--json", action="store_true", help="print the detections as JSON")
    _common(predict)
    return parser


# detect train's flags -> DetectionRun fields (the flags left unset take the recipe's or the resumed run's value)
FIELDS = {"init": "init", "data": "data", "output": "output", "recipe": "recipe", "detector": "detector", "epochs": "epochs",
          "batch_size": "batch_size", "lr": "lr", "lr_milestones": "lr_milestones", "warmup_steps": "warmup_steps",
          "freeze_stages": "freeze_stages", "out_channels": "out_channels", "min_size": "min_size", "max_size": "max_size",
          "train_split": "train_split", "val_split_name": "val_split", "device": "device", "workers": "workers", "seed": "seed",
          "precision": "precision", "resume": "resume"}


def detection_run(args: argparse.Namespace) -> Any:
    """The DetectionRun of ``detect train``'s flags: the recipe's values (or, with --resume, the checkpoint's run) with
    every flag given on top; a run without --resume needs --init, --data and --output."""
    from ..train.checkpoint import load_checkpoint
    from ..train.config import default_workers
    from ..train.detection import DetectionRun
    from ..train.detection_recipes import DEFAULT_RECIPE, detection_recipe

    given = {field: getattr(args, flag) for flag, field in FIELDS.items() if getattr(args, flag) is not None}
    given.update({"pretrained": False} if args.from_scratch else {}, quiet=args.quiet)
    if args.resume:
        saved = load_checkpoint(args.resume, settings="run").get("run") or {}
        known = {f.name for f in dataclasses.fields(DetectionRun)}
        folder = Path(args.resume) if Path(args.resume).is_dir() else Path(args.resume).parent
        return DetectionRun(**{**{k: v for k, v in saved.items() if k in known}, "output": str(folder), **given})
    missing = [f"--{name}" for name in ("init", "data", "output") if name not in given]
    if missing:
        raise InvalidArgumentError(f"detect train needs {' and '.join(missing)} (or --resume OUTPUT to continue a run).")
    recipe = detection_recipe(args.recipe or DEFAULT_RECIPE)
    defaults = {"device": "auto", "workers": default_workers(), "seed": 0}
    return DetectionRun(**{**recipe.run_fields(given.get("batch_size")), **defaults, **given})


def _train(args: argparse.Namespace) -> int:
    from ..train.config import EXIT_INTERRUPTED
    from ..train.detection import DetectionInterrupted, describe_detection_run, train_detector

    run = detection_run(args)
    if args.dry_run:
        print(json.dumps(describe_detection_run(run), indent=2))
        return 0
    try:
        _, metrics = train_detector(run)
    except DetectionInterrupted as stopped:
        print(f"cutmix-zoo: {stopped}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"val mAP@[.5:.95] {100 * metrics.map:.2f}  mAP@0.5 {100 * metrics.map50:.2f}; exported to {Path(run.output) / 'export'}")
    return 0


def _settle(args: argparse.Namespace) -> str:
    """Fill eval's and predict's unset run flags (batch 2, the trainer's worker count, seed 0), seed torch, and return the
    device (auto: cuda when there is one)."""
    import torch

    from ..train.config import default_workers

    args.batch_size = 2 if args.batch_size is None else args.batch_size
    args.workers = default_workers() if args.workers is None else args.workers
    if args.batch_size < 1 or args.workers < 0:
        raise InvalidArgumentError(f"--batch-size must be at least 1 and --workers 0 or more, not {args.batch_size} and {args.workers}.")
    torch.manual_seed(0 if args.seed is None else args.seed)
    return ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device


def _eval(args: argparse.Namespace) -> int:
    from ..detection.data import default_splits, read_split
    from ..detection.evaluate import evaluate_model, format_metrics
    from ..detection.export import load_detector

    device = _settle(args)
    model = load_detector(args.model).to(device)
    classes = cast("tuple[str, ...]", model.classes)  # set by load_detector
    split = read_split(args.data, args.split or default_splits(args.data[0])[1], classes=classes)
    metrics = evaluate_model(model, split, args.batch_size, device, args.workers)
    print(json.dumps(metrics.as_dict(), indent=2) if args.json else format_metrics(metrics))
    return 0


def _draw(path: Path, detections: list[tuple[list[float], float, str]], out: Path) -> None:
    """Save the image at ``path`` with its (box, score, class name) detections drawn, as ``out/<stem>.png``."""
    from PIL import Image, ImageDraw

    picture = Image.open(path).convert("RGB")
    draw = ImageDraw.Draw(picture)
    for box, score, name in detections:
        draw.rectangle(box, outline=(255, 40, 40), width=2)
        draw.text((box[0] + 2, box[1] + 1), f"{name} {score:.2f}", fill=(255, 40, 40))
    picture.save(out / f"{path.stem}.png")


def _predict(args: argparse.Namespace) -> int:
    import torch

    from ..detection.dataset import read_image
    from ..detection.export import load_detector

    if not 0 <= args.threshold <= 1:
        raise InvalidArgumentError(f"--threshold is a score from 0 to 1, not {args.threshold}.")
    device = _settle(args)
    model = load_detector(args.model).to(device)
    classes = cast("tuple[str, ...]", model.classes)  # set by load_detector
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    paths = [Path(p) for p in args.images]
    report = {}
    for first in range(0, len(paths), args.batch_size):
        chunk = paths[first:first + args.batch_size]
        with torch.no_grad():
            outputs = model([read_image(path).to(device) for path in chunk])
        for path, detections in zip(chunk, outputs):
            keep = detections["scores"] >= args.threshold
            boxes, scores, labels = (detections[k][keep].cpu().tolist() for k in ("boxes", "scores", "labels"))
            found = [(b, s, classes[k - 1]) for b, s, k in zip(boxes, scores, labels)]
            _draw(path, found, out)
            report[str(path)] = [{"box": b, "score": s, "label": name} for b, s, name in found]
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``detect train|eval|predict`` (the dispatcher turns a bad input into one error line and its exit code)."""
    commands = {"train": _train, "eval": _eval, "predict": _predict}
    return commands[args.detect_command](args)
