"""``cutmix-zoo robustness``: the CutMix paper's robustness analysis (section 4.3), a thin shell over
:mod:`cutmix_zoo.reports.robustness`; it writes ``DIR/report.json`` and its pictures and prints its tables."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidArgumentError
from .common import Subparsers, UsageError, positive, print_table
from .reporting import SHAPES, command_line, model_names, output_folder, shapes_benchmark, write_report

if TYPE_CHECKING:
    from ..reports.robustness import RobustnessReport

NAME = "robustness"
HELP = "occlusion, in-between samples, FGSM and OOD detection on your validation images"


def _epsilon(text: str) -> float:
    from fractions import Fraction

    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or a fraction such as 8/255") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a pixel step from 0 to 1")
    return value


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``robustness --data FOLDER|shapes --models A,B,... -o DIR [...]`` to the ``cutmix-zoo`` parser."""
    p = subparsers.add_parser(
        NAME, help=HELP,
        description="The CutMix paper's robustness analysis (section 4.3) of one or more models on your validation images "
                    "(FOLDER/val/<class>/<image>): centre and boundary occlusion across hole sizes, Mixup and CutMix "
                    "in-between class samples across the mixing ratio, FGSM, and out-of-distribution detection with the "
                    "maximum softmax score against Gaussian and uniform noise (and --ood images). Writes DIR/report.json, "
                    "occlusion.png, in_between.png and summary.png, and prints the tables.",
    )
    p.add_argument("--data", required=True, help="a folder with val/<class>/<image> (an ImageFolder tree), or 'shapes' "
                   "(the generated Shapes-10 test split)")
    p.add_argument("--models", required=True, help="comma-separated registry names or exported folders, e.g. "
                   "resnet50,resnet50.baseline_in1k")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for report.json and the pictures (created if needed)")
    p.add_argument("--limit", type=positive, help="evaluate a seeded random subset of this many images (Shapes-10: the first N)")
    p.add_argument("--measures", default="occlusion,in_between,fgsm,ood", help="comma-separated subset of "
                   "occlusion,in_between,fgsm,ood (default: all)")
    p.add_argument("--hole-steps", type=positive, default=8, help="hole sizes from 0 to the full input in this many steps (default: 8)")
    p.add_argument("--ratios", type=int, default=11, help="mixing ratios from 0 to 1 (default: 11: 0, 0.1, ..., 1)")
    p.add_argument("--epsilon", type=_epsilon, default=_epsilon("8/255"), help="FGSM step in pixel values, a number or a "
                   "fraction (default: 8/255, the paper's)")
    p.add_argument("--ood", metavar="FOLDER", help="a folder of out-of-distribution images, scored beside the generated noise")
    p.add_argument("--noise-images", type=positive, help="generated noise images of each kind (default: as many as validation "
                   "images, at most 10,000)")
    p.add_argument("--batch-size", type=positive, default=64, help="images per batch (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image order, the pairs, the CutMix patches and the noise (default: 0)")
    p.add_argument("--device", help="torch device to run on, e.g. cuda (default: cpu)")
    p.add_argument("--no-plots", action="store_true", help="write report.json only (no matplotlib needed)")
    return p


def run(args: argparse.Namespace) -> int:
    """Evaluate the models on the images, write the report and its pictures, and print the tables."""
    if args.ratios < 2:
        raise UsageError("--ratios must be at least 2")
    if args.batch_size < 2:
        raise UsageError("--batch-size must be at least 2 (in-between samples pair images within a batch)")
    measures = [m.strip() for m in args.measures.split(",") if m.strip()]
    if not measures:
        raise InvalidArgumentError(f"--measures {args.measures!r} names no measure: give one or more of occlusion,in_between,fgsm,ood.")
    from ..reports.predict import resolve_model
    from ..reports.robustness import evaluate, read_image_folder, read_validation_folder

    if not args.no_plots:
        from ..reports.plots import require_matplotlib

        require_matplotlib()
    names = model_names(args.models)
    if args.data == SHAPES and not os.path.exists(SHAPES):
        images, labels, classes, _ = shapes_benchmark(args.limit or 0)
    else:
        images, labels, classes = read_validation_folder(args.data, args.limit, args.seed)
    ood_images = read_image_folder(args.ood) if args.ood else []
    out = output_folder(args.output)
    models = {name: resolve_model(name, device=args.device) for name in names}
    progress = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        def progress(batches):
            return tqdm(batches, desc="robustness", unit="batch", leave=False)
    result = evaluate(models, images, labels, classes, measures=measures, hole_steps=args.hole_steps, ratios=args.ratios,
                      epsilon=args.epsilon, ood_images=ood_images, noise_count=args.noise_images, batch_size=args.batch_size,
                      seed=args.seed, progress=progress)
    pictures = [] if args.no_plots else _robustness_pictures(result, args.data, out)
    report = {"command": command_line("robustness", args.argv), "data": args.data, "ood_folder": args.ood, **result.to_dict(),
              "pictures": pictures}
    write_report(out / "report.json", report)
    _print_robustness(result)
    print(f"wrote {out / 'report.json'}" + (f" and {', '.join(Path(p).name for p in pictures)}" if pictures else ""))
    return 0


def _robustness_pictures(result: RobustnessReport, data: str, out: Path) -> list[str]:
    from ..reports.plots import curves, table
    from ..reports.robustness import summary_rows

    written = []
    title = f"{'Shapes-10 test split' if data == SHAPES else data}: {result.images} validation images"
    occlusion = {n: r.occlusion for n, r in result.models.items() if r.occlusion is not None}
    if len(occlusion) == len(result.models):
        panels = [{"title": f"{kind.capitalize()} occlusion", "xlabel": "hole size (pixels of the input)", "ylabel": "top-1 error (%)",
                   "ylim": (0, 100), "lines": {n: (o.hole_sizes, o.top1_err(kind)) for n, o in occlusion.items()}}
                  for kind in ("centre", "boundary")]
        written.append(curves(out / "occlusion.png", panels, title))
    in_between = {n: r.in_between for n, r in result.models.items() if r.in_between is not None}
    if len(in_between) == len(result.models):
        panels = [{"title": f"{label} in-between class samples", "xlabel": "mixing ratio λ (weight of the first image)",
                   "ylabel": "predicts neither class (%)", "ylim": (0, 100),
                   "lines": {n: (b.ratios, b.err(kind)) for n, b in in_between.items()}}
                  for kind, label in (("mixup", "Mixup"), ("cutmix", "CutMix"))]
        written.append(curves(out / "in_between.png", panels, title))
    header, rows = summary_rows(result)
    written.append(table(out / "summary.png", header, rows, title))
    return written


def _print_robustness(result: RobustnessReport) -> None:
    from ..reports.robustness import summary_rows

    occlusion = {n: r.occlusion for n, r in result.models.items() if r.occlusion is not None}
    if occlusion:
        print("Top-1 error (%) under occlusion (hole size in pixels of the input)")
        header = ["hole"] + [f"{n} {kind}" for n in occlusion for kind in ("centre", "boundary")]
        sizes = next(iter(occlusion.values())).hole_sizes
        rows = [[str(s)] + [f"{o.top1_err(kind)[k]:.2f}" for o in occlusion.values() for kind in ("centre", "boundary")]
                for k, s in enumerate(sizes)]
        if all(o.hole_sizes == sizes for o in occlusion.values()):
            print_table(rows, header)
            print()
    in_between = {n: r.in_between for n, r in result.models.items() if r.in_between is not None}
    if in_between:
        print("In-between class samples: top-1 predicts neither source class (%)")
        header = ["λ"] + [f"{n} {kind}" for n in in_between for kind in ("mixup", "cutmix")]
        rows = [[f"{lam:g}"] + [f"{b.err(kind)[k]:.2f}" for b in in_between.values() for kind in ("mixup", "cutmix")]
                for k, lam in enumerate(next(iter(in_between.values())).ratios)]
        print_table(rows, header)
        print()
    header, rows = summary_rows(result)
    settings = result.settings
    print(f"{result.images} images, FGSM epsilon {settings.epsilon:.5f}, OOD against "
          f"{', '.join(settings.ood) or 'nothing'} (maximum softmax score)")
    print_table(rows, header)
