"""``cutmix-zoo shapes``: generated images as an ImageFolder tree, data to try ``train --init`` and ``transfer`` on, or
(``--scenes``) generated detection scenes in the COCO layout, data to try ``detect train`` on."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InvalidArgumentError, ZooError
from ..files import output_lock
from .common import Subparsers

MAX_PER_CLASS = 10_000  # 100,000 images of a split at most, CIFAR's size twice over: minutes to write, not days
NAME = "shapes"
HELP = "write generated images as an ImageFolder tree, or detection scenes as COCO (data to try train, transfer, detect on)"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``shapes`` to the ``cutmix-zoo`` parser."""
    p = subparsers.add_parser(NAME, help=HELP,
                              description="Write Novel-Shapes (ten shapes the embedded models never saw; --shapes10: Shapes-10) as "
                                          "DIR/train/<class>/*.png and DIR/val/<class>/*.png, generated from a seed, offline.")
    p.add_argument("output", type=Path, metavar="DIR", help="folder to create (must be new or empty)")
    p.add_argument("--train-per-class", type=int, default=20, help="training images per class (default 20: a small-data task)")
    p.add_argument("--val-per-class", type=int, default=50, help="validation images per class (default 50)")
    p.add_argument("--shapes10", action="store_true", help="Shapes-10 (the embedded models' own classes) instead of Novel-Shapes")
    p.add_argument("--glyphs", action="store_true", help="Glyphs instead of Novel-Shapes: ten arrow- and letter-like classes, each "
                                                         "the mirror image of another (data on which a flip changes the class)")
    p.add_argument("--seed", type=int, default=0, help="which draw (default 0)")
    scenes = p.add_argument_group("detection scenes (--scenes)")
    scenes.add_argument("--scenes", action="store_true",
                        help="write Novel-Shapes scenes (1-4 shapes per canvas, each with its box) in the COCO layout instead: "
                             "DIR/annotations/instances_{train,val}.json beside DIR/train/ and DIR/val/, for detect train")
    scenes.add_argument("--layout", choices=["coco", "voc"], default="coco", help="the scenes' layout (default coco; voc: a Pascal "
                                                                                  "VOC devkit folder with train and val splits)")
    scenes.add_argument("--train-images", type=int, default=64, help="training scenes (default 64)")
    scenes.add_argument("--val-images", type=int, default=32, help="validation scenes (default 32)")
    scenes.add_argument("--size", type=int, default=80, help="canvas side in pixels (default 80)")
    return p


def _check_new_folder(output: Path, what: str) -> None:
    """Refuse a DIR that exists as something other than a folder (a file, a link to one), in one sentence, before its
    lock is taken."""
    if output.exists() and not output.is_dir():
        raise InvalidArgumentError(f"{output} exists and is not a folder: choose a new folder for the generated {what}.")


def _require_empty(folder: Path, what: str) -> None:
    """Refuse a folder that holds anything, checked under its lock (:func:`~cutmix_zoo.files.output_lock`), so generated
    data is never mixed with what is there, another run's draw included."""
    _check_new_folder(folder, what)
    if folder.exists() and any(folder.iterdir()):
        raise InvalidArgumentError(f"{folder} is not empty: choose a new folder for the generated {what}.")


def _scenes(args: argparse.Namespace) -> int:
    """Write the detection scenes of ``--scenes`` into ``args.output`` (checked new or empty)."""
    from ..detection.scenes import write_scenes
    from ..hub.cache import output_locks

    if args.train_images < 1 or args.val_images < 1:
        raise InvalidArgumentError("--train-images and --val-images must be at least 1.")
    if args.size < 32:
        raise InvalidArgumentError(f"--size must be at least 32 pixels (a canvas holds shapes of radius 5 to 14), not {args.size}.")
    _check_new_folder(args.output, "scenes")
    with output_lock(args.output, "cutmix-zoo shapes", output_locks()):
        _require_empty(args.output, "scenes")
        try:
            root = write_scenes(args.output, args.train_images, args.val_images, args.size, args.seed, args.layout)
        except OSError as e:
            raise ZooError(f"Could not write the scenes into {args.output} ({e.strerror or e}).") from None
    print(f"wrote {root} in the {args.layout.upper()} layout: {args.train_images} training and {args.val_images} validation "
          f"scenes of {args.size}x{args.size} pixels (train with: cutmix-zoo detect train --data {root} --recipe scenes ...)")
    return 0


def run(args: argparse.Namespace) -> int:
    """Write the images (or, with ``--scenes``, the detection scenes) into the new (or empty) folder ``args.output``."""
    from ..hub.cache import output_locks
    from ..shapes import write_folder

    if args.scenes:
        return _scenes(args)
    if args.train_per_class < 1 or args.val_per_class < 1:
        raise InvalidArgumentError("--train-per-class and --val-per-class must be at least 1.")
    if max(args.train_per_class, args.val_per_class) > MAX_PER_CLASS:
        raise InvalidArgumentError(f"--train-per-class and --val-per-class take at most {MAX_PER_CLASS:,} images a class, not "
                                   f"{max(args.train_per_class, args.val_per_class):,}.")
    if args.glyphs and args.shapes10:
        raise InvalidArgumentError("--glyphs and --shapes10 name two different datasets: pass one of them.")
    _check_new_folder(args.output, "images")
    with output_lock(args.output, "cutmix-zoo shapes", output_locks()):
        _require_empty(args.output, "images")
        try:
            root = write_folder(args.output, args.train_per_class, args.val_per_class, novel=not args.shapes10, seed=args.seed,
                                glyphs=args.glyphs)
        except OSError as e:
            raise ZooError(f"Could not write the images into {args.output} ({e.strerror or e}).") from None
    classes = sorted(p.name for p in (root / "train").iterdir())
    print(f"wrote {root}/train and {root}/val: {len(classes)} classes, {args.train_per_class} training and "
          f"{args.val_per_class} validation images each")
    return 0
