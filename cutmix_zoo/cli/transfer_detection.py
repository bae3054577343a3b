"""``cutmix-zoo transfer --task detection``: a detector fine-tuned from each backbone with one recipe, budget and set of
seeds, scored by COCO's mAP on the val split, and the table, ``report.json`` and ``transfer.png`` of
:mod:`cutmix_zoo.reports.detection`.

Every run is ``cutmix-zoo detect train --init MODEL`` with the same settings (written to ``OUT/detection/<model>/seed<k>/``
with its metrics, checkpoint and export); seeds are ``--seed``, ``--seed + 1``, ... so every model sees the same draws.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidArgumentError
from .common import print_table
from .reporting import command_line, file_safe, model_names, output_folder, write_report

if TYPE_CHECKING:
    from ..detection.data import DetectionSplit
    from ..reports.detection import DetectionScore, DetectionTransfer

DETECTION_ONLY = ("epochs", "seeds", "detector", "lr", "min_size", "max_size", "freeze_stages", "fpn_channels", "detector_arg",
                  "train_split", "val_split_name")
CLASSIFICATION_ONLY = ("finetune", "val_split", "cache")
REFERENCE_LR, REFERENCE_BATCH = 0.02, 16  # torchvision's COCO Faster R-CNN reference: lr 0.02 for 16 images


def add_detection_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``--task detection`` (each left unset by a classification run)."""
    from ..detection.models import DETECTORS

    group = p.add_argument_group("--task detection", "a detector fine-tuned from each model, scored by COCO's mAP")
    group.add_argument("--epochs", type=int, help="epochs of each fine-tune (required with --task detection)")
    group.add_argument("--seeds", type=int, help="runs per model, seeds --seed, --seed + 1, ...; the table gives mean ± spread (default: 1)")
    group.add_argument("--detector", choices=DETECTORS, help="the torchvision detector on each backbone (default: faster_rcnn)")
    group.add_argument("--lr", type=float, help="SGD learning rate (default: 0.02 x batch size / 16, torchvision's reference rule)")
    group.add_argument("--min-size", type=int, help="the detector's shorter image side (default: 800)")
    group.add_argument("--max-size", type=int, help="the detector's longest image side (default: 1333)")
    group.add_argument("--freeze-stages", type=int, help="feature levels frozen from the stem (default: 2)")
    group.add_argument("--fpn-channels", type=int, help="the FPN's width (default: 256, torchvision's; fewer for small images on a CPU)")
    group.add_argument("--detector-arg", action="append", metavar="KEY=VALUE", help="a keyword of the torchvision detector's "
                       "constructor, e.g. box_batch_size_per_image=32 (repeat for more; the value is read as a number if it is one)")
    group.add_argument("--train-split", help="default: train2017 / trainval / train, as the folder ships")
    group.add_argument("--val-split-name", help="default: val2017 / test / val, as the folder ships")


def check_task_options(args: argparse.Namespace) -> None:
    """Refuse, in one sentence, an option the chosen ``--task`` does not use."""
    if args.task == "detection":
        given = [name for name in CLASSIFICATION_ONLY if getattr(args, name) is not None]
        if given:
            raise InvalidArgumentError(f"--{given[0].replace('_', '-')} is an option of --task classification; a detection "
                                       "transfer fine-tunes for --epochs N.")
        return
    given = [name for name in DETECTION_ONLY if getattr(args, name) is not None]
    if given:
        raise InvalidArgumentError(f"--{given[0].replace('_', '-')} is an option of --task detection; a classification transfer "
                                   "fine-tunes with --finetune EPOCHS.")
    if len(args.data) > 1:
        raise InvalidArgumentError("--data names one folder for --task classification (several roots are for detection, "
                                   "e.g. VOC 07+12).")


def _check_numbers(args: argparse.Namespace) -> None:
    if args.epochs is None or args.epochs < 1:
        raise InvalidArgumentError(f"--task detection needs --epochs N, a positive number of epochs per fine-tune, not {args.epochs}.")
    if args.seeds < 1:
        raise InvalidArgumentError(f"--seeds counts the runs per model, at least 1, not {args.seeds}.")
    if args.batch_size < 1 or args.workers < 0:
        raise InvalidArgumentError(f"--batch-size must be at least 1 and --workers at least 0, not {args.batch_size} and {args.workers}.")
    if args.fpn_channels < 1:
        raise InvalidArgumentError(f"--fpn-channels must be at least 1, not {args.fpn_channels}.")
    if args.lr is not None and not args.lr > 0:
        raise InvalidArgumentError(f"--lr must be positive, not {args.lr}.")


def detector_kwargs(pairs: list[str] | None) -> dict[str, int | float | str]:
    """The ``--detector-arg KEY=VALUE`` pairs as keywords (a value that reads as an int or a float is one)."""
    found: dict[str, int | float | str] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key.isidentifier():
            raise InvalidArgumentError(f"--detector-arg takes KEY=VALUE with KEY a keyword of the detector, not {pair!r}.")
        value: int | float | str = text
        for kind in (int, float):
            try:
                value = kind(text)
                break
            except ValueError:
                continue
        found[key] = value
    return found


def _check_detector_keys(detector: str, kwargs: dict[str, int | float | str]) -> None:
    """Refuse a ``--detector-arg`` key that the torchvision detector's constructor does not take."""
    import inspect

    from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet

    cls = {"faster_rcnn": FasterRCNN, "retinanet": RetinaNet, "fcos": FCOS}[detector]
    set_here = {"self", "backbone", "num_classes", "kwargs", "min_size", "max_size", "image_mean", "image_std", "rpn_anchor_generator",
                "box_roi_pool", "anchor_generator"}  # build_detector sets these from the zoo model and the options
    taken = set(inspect.signature(cls).parameters) - set_here
    unknown = sorted(set(kwargs) - taken)
    if unknown:
        raise InvalidArgumentError(f"--detector-arg {unknown[0]} is no keyword of torchvision's {cls.__name__}; it takes "
                                   f"{', '.join(sorted(taken))}.")


def _defaults(args: argparse.Namespace) -> None:
    """Fill in the detection defaults left unset (the batch size first: the learning rate follows it)."""
    for name, value in (("seeds", 1), ("detector", "faster_rcnn"), ("min_size", 800), ("max_size", 1333), ("freeze_stages", 2),
                        ("fpn_channels", 256), ("batch_size", 2), ("workers", 0)):
        if getattr(args, name) is None:
            setattr(args, name, value)
    _check_numbers(args)
    _check_detector_keys(args.detector, detector_kwargs(args.detector_arg))  # refused before any training
    if args.lr is None:
        args.lr = REFERENCE_LR * args.batch_size / REFERENCE_BATCH


def _run_folders(names: list[str], seeds: list[int], out: Path) -> dict[tuple[str, int], Path]:
    """Each run's folder, refused when it holds an earlier run (a fine-tune would mix its metrics with that one's)."""
    if len({file_safe(n) for n in names}) != len(names):
        raise InvalidArgumentError(f"--models names two models whose run folders would be the same: {', '.join(names)}.")
    folders = {(name, seed): out / "detection" / file_safe(name) / f"seed{seed}" for name in names for seed in seeds}
    for folder in folders.values():
        if folder.is_dir() and any(folder.iterdir()):
            raise InvalidArgumentError(f"{folder} holds an earlier run: choose a new --output, or remove that folder.")
    return folders


def _fine_tune(name: str, seed: int, folder: Path, args: argparse.Namespace) -> DetectionScore:
    """One ``detect train`` run of ``name`` with the shared settings, and what it measured on the val split."""
    from ..reports.detection import DetectionScore
    from ..train.detection import DetectionRun, train_detector

    run = DetectionRun(init=name, data=list(args.data), output=str(folder), detector=args.detector, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, seed=seed, device=args.device or "cpu", workers=args.workers,
                       freeze_stages=args.freeze_stages, out_channels=args.fpn_channels, min_size=args.min_size,
                       max_size=args.max_size, warmup_steps=args.warmup_steps, detector_kwargs=detector_kwargs(args.detector_arg),
                       train_split=args.train_split, val_split=args.val_split_name)
    start = time.perf_counter()
    _, metrics = train_detector(run)
    seconds = time.perf_counter() - start
    found = metrics.as_dict()
    if not args.quiet:
        print(f"{name} seed {seed}: mAP {100 * metrics.map:.2f}, mAP@0.5 {100 * metrics.map50:.2f} ({seconds:.1f} s)", file=sys.stderr)
    return DetectionScore(seed, metrics.map, metrics.map50, metrics.map75, seconds, found["per_class"], found["per_class50"], str(folder))


def _splits(args: argparse.Namespace) -> tuple[DetectionSplit, DetectionSplit, str, str]:
    """The train and val splits (read, and so checked, before any training) and their names."""
    from ..detection.data import default_splits, read_split

    defaults = default_splits(args.data[0])
    train_name, val_name = args.train_split or defaults[0], args.val_split_name or defaults[1]
    train = read_split(args.data, train_name)
    return train, read_split(args.data, val_name, classes=train.classes), train_name, val_name


def run_detection(args: argparse.Namespace, default_models: tuple[str, ...]) -> int:
    """Fine-tune a detector from every model over the seeds, write the report and its picture, and print the tables."""
    from ..reports.detection import DetectionTransfer

    _defaults(args)
    if not args.no_plots:
        from ..reports.plots import require_matplotlib

        require_matplotlib()
    names = model_names(args.models) if args.models else list(default_models)
    train, val, train_name, val_name = _splits(args)
    steps = -(-len(train.records) // args.batch_size)
    args.warmup_steps = max(1, min(1000, steps - 1))  # torchvision's reference: warm-up within the first epoch
    out = output_folder(args.output)
    seeds = list(range(args.seed, args.seed + args.seeds))
    folders = _run_folders(names, seeds, out)
    results = {name: DetectionTransfer(name, [_fine_tune(name, s, folders[name, s], args) for s in seeds]) for name in names}
    data = {"folders": [str(Path(d)) for d in args.data], "layout": train.layout, "classes": list(train.classes),
            "train_split": train_name, "val_split": val_name, "train_images": len(train.records), "val_images": len(val.records)}
    title = f"{Path(args.data[0]).name}: {args.detector}, {args.epochs} epoch(s), {len(seeds)} seed(s)"
    pictures = [] if args.no_plots else [_picture(out / "transfer.png", results, title)]
    settings = {"detector": args.detector, "epochs": args.epochs, "seeds": seeds, "batch_size": args.batch_size, "lr": args.lr,
                "lr_rule": "0.02 x batch size / 16 unless --lr (torchvision's COCO Faster R-CNN reference)",
                "warmup_steps": args.warmup_steps, "warmup_rule": "linear from lr/1000 over min(1000, steps per epoch - 1) steps",
                "min_size": args.min_size, "max_size": args.max_size, "freeze_stages": args.freeze_stages,
                "fpn_channels": args.fpn_channels, "detector_kwargs": detector_kwargs(args.detector_arg),
                "device": args.device or "cpu", "spread": "sample standard deviation over the seeds (0 for one seed)"}
    write_report(out / "report.json", {"command": command_line("transfer", args.argv), "task": "detection", "data": data,
                                       "settings": settings, "models": {n: r.to_dict() for n, r in results.items()},
                                       "pictures": pictures})
    _print(data, results, args)
    print(f"wrote {out / 'report.json'}" + (f" and {Path(pictures[0]).name}" if pictures else ""))
    return 0


def _picture(path: Path, results: dict[str, DetectionTransfer], title: str) -> str:
    from ..reports.detection import detection_picture

    return detection_picture(path, results, title)


def _print(data: dict, results: dict[str, DetectionTransfer], args: argparse.Namespace) -> None:
    from ..reports.detection import class_rows, summary_rows

    print(f"{', '.join(data['folders'])}: {len(data['classes'])} classes, {data['train_images']} training ({data['train_split']}) and "
          f"{data['val_images']} validation ({data['val_split']}) images ({data['layout']}); {args.detector}, {args.epochs} "
          f"epoch(s) per run, mean ± spread over {args.seeds} seed(s)")
    for k, (header, rows) in enumerate((summary_rows(results), class_rows(results))):
        print("\n" if k else "", end="")
        print_table(rows, header)
