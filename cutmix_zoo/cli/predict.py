"""``cutmix-zoo predict``: the most probable classes of images, a thin shell over :func:`cutmix_zoo.predict`."""

from __future__ import annotations

import argparse
import json

from .common import Subparsers

NAME = "predict"
HELP = "top-k classes of images, with class names"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``predict IMAGE... --model NAME [--weights FILE] [--top 5] [--json]`` to the ``cutmix-zoo`` parser."""
    p = subparsers.add_parser(NAME, help=HELP,
                              description="Print the most probable classes of each image, with their names and probabilities, "
                                          "using the model's own eval transform.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (anything Pillow reads)")
    p.add_argument("--model", default="resnet50", help="registry name or exported folder (default: resnet50)")
    p.add_argument("--weights", help="a local weights file to use instead of the model's download")
    p.add_argument("--top", type=int, default=5, help="how many classes to show per image (default: 5)")
    p.add_argument("--device", help="torch device to run on, e.g. cuda (default: cpu)")
    p.add_argument("--json", action="store_true", help="print the predictions as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    """Print each image's top classes, as text or JSON."""
    from ..reports.predict import predict

    results = predict(args.images, args.model, top=args.top, weights=args.weights, device=args.device)
    if args.json:
        print(json.dumps([{"image": image, "predictions": preds} for image, preds in zip(args.images, results)], indent=2))
        return 0
    for image, preds in zip(args.images, results):
        print(image)
        for rank, p in enumerate(preds, 1):
            print(f"  {rank}. {p['probability']:7.2%}  {p['label']} ({p['index']})")
    return 0
