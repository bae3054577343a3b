"""``cutmix-zoo detect train|eval|predict``: fine-tune a detector on a zoo backbone, score it (mAP), draw its detections."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import cast

from ..errors import InvalidArgumentError
from .common import Subparsers

NAME = "detect"
HELP = "fine-tune, evaluate (mAP) and run a detector on a zoo backbone"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--workers", type=int, default=0, help="data loader processes (default 0)")
    parser.add_argument("--batch-size", type=int, default=2, help="images per step (default 2)")


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """The ``detect`` command and its ``train``, ``eval`` and ``predict`` subcommands."""
    parser = subparsers.add_parser(NAME, help=HELP, description="Fine-tune a torchvision detector on a zoo backbone, score it "
                                                                "with COCO's mAP, and draw its detections.")
    actions = parser.add_subparsers(dest="detect_command", required=True)
    train = actions.add_parser("train", help="fine-tune a detector on a COCO or Pascal VOC folder")
    train.add_argument("--init", required=True, help="the backbone: a zoo name, an exported folder or a weights file")
    train.add_argument("--data", required=True, action="append", help="a COCO or VOC folder (repeat for VOC 07+12)")
    train.add_argument("--output", required=True, help="the run's folder (metrics.jsonl, checkpoint.pt, export/)")
    train.add_argument("--detector", default="faster_rcnn", choices=["faster_rcnn", "retinanet", "fcos"])
    train.add_argument("--epochs", type=int, default=1)
    train.add_argument("--lr", type=float, default=0.0025)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--freeze-stages", type=int, default=2, help="feature levels frozen from the stem (default 2)")
    train.add_argument("--min-size", type=int, default=800, help="the detector's shorter image side (default 800)")
    train.add_argument("--max-size", type=int, default=1333, help="the detector's longest image side (default 1333)")
    train.add_argument("--train-split", help="default: train2017 / trainval / train, as the folder ships")
    train.add_argument("--val-split-name", help="default: val2017 / test / val, as the folder ships")
    train.add_argument("--from-scratch", action="store_true", help="a randomly initialised backbone (the baseline)")
    _common(train)
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
    predict.add_argument("--device", default="cpu")
    return parser


def _train(args: argparse.Namespace) -> int:
    from ..train.detection import DetectionRun, train_detector

    run = DetectionRun(init=args.init, data=args.data, output=args.output, detector=args.detector, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device, workers=args.workers,
                       freeze_stages=args.freeze_stages, min_size=args.min_size, max_size=args.max_size,
                       pretrained=not args.from_scratch, train_split=args.train_split, val_split=args.val_split_name)
    _, metrics = train_detector(run)
    print(f"val mAP@[.5:.95] {100 * metrics.map:.2f}  mAP@0.5 {100 * metrics.map50:.2f}; exported to {Path(args.output) / 'export'}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ..detection.data import default_splits, read_split
    from ..detection.evaluate import evaluate_model, format_metrics
    from ..detection.export import load_detector

    model = load_detector(args.model).to(args.device)
    classes = cast("tuple[str, ...]", model.classes)  # set by load_detector
    split = read_split(args.data, args.split or default_splits(args.data[0])[1], classes=classes)
    metrics = evaluate_model(model, split, args.batch_size, args.device, args.workers)
    print(json.dumps(metrics.as_dict(), indent=2) if args.json else format_metrics(metrics))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from PIL import Image, ImageDraw

    from ..detection.dataset import read_image
    from ..detection.export import load_detector

    if not 0 <= args.threshold <= 1:
        raise InvalidArgumentError(f"--threshold is a score from 0 to 1, not {args.threshold}.")
    model = load_detector(args.model).to(args.device)
    classes = cast("tuple[str, ...]", model.classes)  # set by load_detector
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    report = {}
    for path in map(Path, args.images):
        image = read_image(path)
        [detections] = model([image.to(args.device)])
        keep = detections["scores"] >= args.threshold
        boxes, scores, labels = (detections[k][keep].cpu().tolist() for k in ("boxes", "scores", "labels"))
        picture = Image.open(path).convert("RGB")
        draw = ImageDraw.Draw(picture)
        for box, score, label in zip(boxes, scores, labels):
            draw.rectangle(box, outline=(255, 40, 40), width=2)
            draw.text((box[0] + 2, box[1] + 1), f"{classes[label - 1]} {score:.2f}", fill=(255, 40, 40))
        picture.save(out / f"{path.stem}.png")
        report[str(path)] = [{"box": b, "score": s, "label": classes[k - 1]} for b, s, k in zip(boxes, scores, labels)]
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``detect train|eval|predict`` (the dispatcher turns a bad input into one error line and its exit code)."""
    commands = {"train": _train, "eval": _eval, "predict": _predict}
    return commands[args.detect_command](args)
