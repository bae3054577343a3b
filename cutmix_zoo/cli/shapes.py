"""``cutmix-zoo shapes``: generated images as an ImageFolder tree, data to try ``train --init`` and ``transfer`` on."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InvalidArgumentError, ZooError
from .common import Subparsers

NAME = "shapes"
HELP = "write generated images as an ImageFolder tree (data to try train --init and transfer on)"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``shapes`` to the ``cutmix-zoo`` parser."""
    p = subparsers.add_parser(NAME, help=HELP,
                              description="Write Novel-Shapes (ten shapes the embedded models never saw; --shapes10: Shapes-10) as "
                                          "DIR/train/<class>/*.png and DIR/val/<class>/*.png, generated from a seed, offline.")
    p.add_argument("output", type=Path, metavar="DIR", help="folder to create (must be new or empty)")
    p.add_argument("--train-per-class", type=int, default=20, help="training images per class (default 20: a small-data task)")
    p.add_argument("--val-per-class", type=int, default=50, help="validation images per class (default 50)")
    p.add_argument("--shapes10", action="store_true", help="Shapes-10 (the embedded models' own classes) instead of Novel-Shapes")
    p.add_argument("--seed", type=int, default=0, help="which draw (default 0)")
    return p


def run(args: argparse.Namespace) -> int:
    """Write the images into the new (or empty) folder ``args.output``."""
    from ..shapes import write_folder

    if args.train_per_class < 1 or args.val_per_class < 1:
        raise InvalidArgumentError("--train-per-class and --val-per-class must be at least 1.")
    if args.output.exists() and any(args.output.iterdir()):
        raise InvalidArgumentError(f"{args.output} is not empty: choose a new folder for the generated images.")
    try:
        root = write_folder(args.output, args.train_per_class, args.val_per_class, novel=not args.shapes10, seed=args.seed)
    except OSError as e:
        raise ZooError(f"Could not write the images into {args.output} ({e.strerror or e}).") from None
    classes = sorted(p.name for p in (root / "train").iterdir())
    print(f"wrote {root}/train and {root}/val: {len(classes)} classes, {args.train_per_class} training and "
          f"{args.val_per_class} validation images each")
    return 0
