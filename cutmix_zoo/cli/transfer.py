"""``cutmix-zoo transfer``: what a pretrained backbone buys on your own data, a thin shell over :mod:`cutmix_zoo.reports.transfer`
(and, with ``--task detection``, over :mod:`cutmix_zoo.cli.transfer_detection`).

For each model: pooled features of the training and validation images (cached), a linear probe with its L2 strength
chosen on held-out training images, and with ``--finetune EPOCHS`` a short fine-tune with the bundled trainer
(``cutmix-zoo train --init MODEL --recipe finetune``) beside it. Writes ``DIR/report.json`` and ``DIR/transfer.png``
and prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidArgumentError, ZooError
from ..registry import format_err
from .common import Subparsers, print_table
from .reporting import command_line, file_safe, model_names, output_folder, write_report
from .transfer_detection import add_detection_arguments, check_task_options, run_detection

if TYPE_CHECKING:
    import torch

    from ..reports.transfer import FinetuneResult, ModelTransfer, TransferData

NAME = "transfer"
HELP = "linear probe (and fine-tune) of pretrained backbones on your own images"
DEFAULT_MODELS = ("resnet50.cutmix_in1k", "resnet50.baseline_in1k")
SMALL_DATA_MODELS = ("pyramidnet20_a48.cutmix_shapes", "pyramidnet20_a48.baseline_shapes")


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``transfer --data FOLDER [--models A,B,...] -o DIR [--finetune EPOCHS]`` to the ``cutmix-zoo`` parser."""
    from ..reports.transfer import SMALL_IMAGE_SIDE

    p = subparsers.add_parser(
        NAME, help=HELP,
        description="What a pretrained backbone buys on your own images: for each model, its pooled features of the training "
                    "and validation images (extracted once, cached), and a linear probe on them (multinomial logistic "
                    "regression, L-BFGS, with its L2 strength chosen from log-spaced values on a held-out part of the "
                    "training images, as Kornblith et al., CVPR 2019); --finetune adds a short fine-tune with the bundled "
                    "trainer. Writes DIR/report.json and DIR/transfer.png, and prints the table of validation errors.",
        epilog="Errors are percentages of the validation images; top-5 error is '-' with five classes or fewer (it would be 0). "
               "Features are cached by the model's weights, the images' paths, sizes and modification times, and the "
               "transform, so a second run reads them back without running the model.",
    )
    p.add_argument("--task", choices=("classification", "detection"), default="classification",
                   help="classification (default): linear probe and --finetune on an ImageFolder tree; detection: a detector "
                   "fine-tuned from each model on a COCO or Pascal VOC folder, scored by mAP (see the options below)")
    p.add_argument("--data", required=True, action="append", metavar="FOLDER", help="an ImageFolder tree with train/<class>/ and "
                   "val/<class>/, or with --val-split one folder of class folders; with --task detection a COCO or VOC folder "
                   "(repeat for VOC 07+12)")
    p.add_argument("--models", help="comma-separated registry names or exported folders (default: "
                   f"{','.join(DEFAULT_MODELS)}, and {','.join(SMALL_DATA_MODELS)} too when the images are small: the "
                   f"first training image of each class at most {SMALL_IMAGE_SIDE} pixels on its longer side)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for report.json and transfer.png (created if needed)")
    p.add_argument("--val-split", type=float, metavar="F", help="--data is one folder of class folders: hold out this fraction of "
                   "each class's images (drawn with --seed) for validation, as `cutmix-zoo train --val-split` does")
    p.add_argument("--holdout", type=float, default=0.2, metavar="F", help="fraction of each class's training images held out to "
                   "choose the L2 strength (default: 0.2); the validation images are never used for it")
    p.add_argument("--finetune", type=int, metavar="EPOCHS", help="also fine-tune each model for this many epochs "
                   "(cutmix-zoo train --init MODEL --recipe finetune) into DIR/finetune/<model>/")
    p.add_argument("--cache", metavar="DIR", help="feature cache folder (default: features/ in the zoo's cache, CUTMIX_ZOO_CACHE "
                   "or ~/.cache/cutmix_zoo)")
    p.add_argument("--batch-size", type=int, help="images per batch of feature extraction (default: 128); with --task detection "
                   "images per training step (default: 2)")
    p.add_argument("--workers", type=int, help="threads decoding images ahead of the model (default: 2); with --task detection "
                   "data loader processes (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of --val-split, the held-out split and the fine-tunes (default: 0)")
    p.add_argument("--device", help="torch device to run on, e.g. cuda (default: cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-plots", action="store_true", help="write report.json only (no matplotlib needed)")
    add_detection_arguments(p)
    return p


def _model_names(args: argparse.Namespace, small: bool) -> list[str]:
    if args.models is None:
        return list(DEFAULT_MODELS + (SMALL_DATA_MODELS if small else ()))
    return model_names(args.models)


def finetune(model: str, args: argparse.Namespace, out: Path) -> FinetuneResult:
    """Fine-tune ``model`` on the data with the trainer's finetune recipe for ``args.finetune`` epochs into ``out``, and
    return the run's end record (best top-1 and top-5 error and epoch) with the folder it wrote."""
    from ..reports.transfer import FinetuneResult
    from ..train import train_main
    from ..train.metrics_log import read_metrics

    argv = ["--init", model, "--data", args.data, "--recipe", "finetune", "--epochs", str(args.finetune), "--output", str(out),
            "--seed", str(args.seed), "--quiet", "--force"]  # the report's own run folder: a rerun replaces it
    argv += ["--device", args.device] if args.device else []
    argv += ["--val-split", str(args.val_split)] if args.val_split is not None else []
    code = train_main(argv)
    if code != 0:
        raise ZooError(f"Fine-tuning {model} stopped with exit status {code}; its run is in {out}.")
    try:
        end = read_metrics(out / "metrics.jsonl")[-1]
    except (OSError, IndexError, ValueError):
        raise ZooError(f"Fine-tuning {model} left no readable {out / 'metrics.jsonl'}.") from None
    if end.get("event") != "end":
        raise ZooError(f"Fine-tuning {model} did not finish: the last line of {out / 'metrics.jsonl'} is no end record.")
    return FinetuneResult(end["best_top1_err"], end["best_top5_err"], end["best_epoch"], args.finetune, str(out))


def _progress(batches: Iterable[torch.Tensor]) -> Iterable[torch.Tensor]:
    from tqdm import tqdm

    return tqdm(batches, desc="features", unit="batch", leave=False)


def _check_numbers(args: argparse.Namespace) -> None:
    """Refuse the numbers that cannot work before anything is loaded, each in one sentence."""
    if args.batch_size < 1 or args.workers < 1:
        raise InvalidArgumentError(f"--batch-size and --workers must be at least 1, not {args.batch_size} and {args.workers}.")
    if not 0 < args.holdout < 1:
        raise InvalidArgumentError(f"--holdout is a fraction of the training images, between 0 and 1 (exclusive), not {args.holdout}.")
    if args.finetune is not None and args.finetune < 1:
        raise InvalidArgumentError(f"--finetune is a number of epochs, at least 1, not {args.finetune}.")


def run(args: argparse.Namespace) -> int:
    """Probe (and fine-tune) every model on the folder's images, or with ``--task detection`` fine-tune a detector from each,
    write the report and its picture, and print the table."""
    check_task_options(args)
    if args.task == "detection":
        return run_detection(args, DEFAULT_MODELS)
    args.data = args.data[0]
    args.batch_size = 128 if args.batch_size is None else args.batch_size
    args.workers = 2 if args.workers is None else args.workers
    return _classification(args)


def _classification(args: argparse.Namespace) -> int:
    from ..api import load
    from ..reports import transfer

    _check_numbers(args)
    if not args.no_plots:
        from ..reports.plots import require_matplotlib

        require_matplotlib()
    data = transfer.read_transfer_folder(args.data, args.val_split, args.seed)
    names = _model_names(args, args.models is None and transfer.small_images(data))
    if len({file_safe(n) for n in names}) != len(names):
        raise InvalidArgumentError(f"--models names two models whose fine-tune folders would be the same: {', '.join(names)}.")
    models = {name: load(name, num_classes=0, device=args.device, progress=not args.quiet) for name in names}
    out = output_folder(args.output)
    extracted = transfer.extract_features(models, data.paths, data.root, args.cache, args.batch_size, args.workers,
                                          _progress if sys.stderr.isatty() and not args.quiet else None)
    results = transfer.probe_models(data, extracted, models, holdout=args.holdout, seed=args.seed, device=args.device)
    for name in names if args.finetune else []:
        results[name] = dataclasses.replace(results[name], finetune=finetune(name, args, out / "finetune" / file_safe(name)))
    pictures = [] if args.no_plots else [transfer_picture(data, results, args.finetune, out / "transfer.png")]
    report = {"command": command_line("transfer", args.argv), "data": data.to_dict(),
              "settings": {"seed": args.seed, "holdout": args.holdout,
                           "loss": "mean cross-entropy + l2 / 2 * ||W||^2, features standardised with the fitting set's statistics",
                           "top5": "None with five classes or fewer", "batch_size": args.batch_size, "device": args.device or "cpu",
                           "feature_cache": str(Path(args.cache) if args.cache else transfer.feature_cache_dir()),
                           "finetune_epochs": args.finetune},
              "models": {name: r.to_dict() for name, r in results.items()}, "pictures": pictures}
    write_report(out / "report.json", report)
    print_transfer_table(data, results, args.holdout)
    print(f"wrote {out / 'report.json'}" + (f" and {Path(pictures[0]).name}" if pictures else ""))
    return 0


def print_transfer_table(data: TransferData, results: dict[str, ModelTransfer], holdout: float) -> None:
    """Print the data's line and the table of each model's probe (and fine-tune) errors, as ``transfer`` and ``demo`` show them."""
    print(f"{data.root}: {len(data.classes)} classes, {len(data.train)} training and {len(data.val)} validation "
          f"images ({data.layout}); linear probe with L2 chosen on {holdout:g} of the training images")
    tuned = any(r.finetune for r in results.values())
    header = ["model", "probe top-1 err %", "top-5 err %", "L2", "dim", "extract s", "fit s"]
    header += ["fine-tune top-1 err %", "top-5 err %"] if tuned else []
    rows = []
    for name, r in results.items():
        probe = r.probe
        row = [name, format_err(probe.top1_err), format_err(probe.top5_err), f"{probe.l2:.0e}", str(r.feature_dim),
               f"{r.extraction_seconds:.2f}" + (" (cached)" if r.features_cached else ""), f"{probe.fit_seconds:.2f}"]
        if r.finetune:
            row += [format_err(r.finetune.top1_err), format_err(r.finetune.top5_err)]
        rows.append(row)
    print_table(rows, header)


def transfer_picture(data: TransferData, results: dict[str, ModelTransfer], epochs: int | None, path: Path) -> str:
    """Draw each model's validation top-1 error (probe, and fine-tune after ``epochs``) as bars into ``path`` (matplotlib)."""
    from ..reports.plots import bars

    series: dict[str, list[float | None]] = {"linear probe": [r.probe.top1_err for r in results.values()]}
    if epochs:
        series[f"fine-tune ({epochs} epoch{'' if epochs == 1 else 's'})"] = [r.finetune.top1_err if r.finetune else None
                                                                             for r in results.values()]
    title = (f"{data.root.name}: {len(data.classes)} classes, {len(data.train)} training and {len(data.val)} validation images")
    return bars(path, list(results), series, "validation top-1 error (%)", title)
