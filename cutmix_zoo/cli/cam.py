"""``cutmix-zoo cam``: a model's class activation map over an image, written as a picture, a thin shell over
:func:`cutmix_zoo.cam`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InvalidArgumentError
from .common import Subparsers, UsageError

NAME = "cam"
HELP = "class activation map of an image, written as a PNG"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``cam IMAGE --model NAME [--weights FILE] [--class K] -o OUT.png [--compare NAME2 [--weights2 FILE]]``."""
    p = subparsers.add_parser(NAME, help=HELP,
                              description="Draw a model's class activation map (Zhou et al., 2016) over an image and write it as a "
                                          "picture, titled with the class; --compare puts a second model's map beside it.")
    p.add_argument("image", metavar="IMAGE", help="image file (anything Pillow reads)")
    p.add_argument("--model", default="resnet50", help="registry name or exported folder (default: resnet50)")
    p.add_argument("--weights", help="a local weights file for --model instead of its download")
    p.add_argument("--class", dest="class_index", type=int, metavar="K", help="class index to map (default: the top prediction of each model)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png", help="picture to write (.png, .jpg, ...)")
    p.add_argument("--compare", metavar="NAME2", help="a second model whose map is drawn beside the first, e.g. resnet50.baseline_in1k")
    p.add_argument("--weights2", metavar="FILE", help="a local weights file for --compare")
    p.add_argument("--alpha", type=float, default=0.5, help="opacity of the heatmap, 0 to 1 (default: 0.5)")
    p.add_argument("--device", help="torch device to run on, e.g. cuda (default: cpu)")
    return p


def _check_output(path: str) -> None:
    from PIL import Image

    extension = Path(path).suffix.lower()
    if Image.registered_extensions().get(extension) not in Image.SAVE:
        raise InvalidArgumentError(f"Cannot tell an image format from {path!r}: give the output a name ending in .png or .jpg.")
    if not Path(path).resolve().parent.is_dir():
        raise InvalidArgumentError(f"The folder of the output {path} does not exist.")


def run(args: argparse.Namespace) -> int:
    """Write the map of ``args.model`` (and of ``args.compare`` beside it) over the image to ``args.output``."""
    if args.weights2 and not args.compare:
        raise UsageError("--weights2 needs --compare NAME2")
    if not 0 <= args.alpha <= 1:
        raise UsageError("--alpha must be between 0 and 1")
    from ..model_config import pretrained_cfg_of
    from ..reports.cam import class_activation, render, side_by_side
    from ..reports.predict import class_names, open_image, resolve_model

    _check_output(args.output)
    image = open_image(args.image)
    panels = []
    for name, weights in [(args.model, args.weights)] + ([(args.compare, args.weights2)] if args.compare else []):
        model = resolve_model(name, weights, args.device)
        result = class_activation(model, image, args.class_index)
        label = class_names(model)[result.class_index]
        shown = pretrained_cfg_of(model)["name"] + (f" with {Path(weights).name}" if weights else "")
        print(f"{shown}: class {result.class_index} {label} ({result.probability:.2%})")
        panels.append(render(image, result.map, f"{label} ({result.probability:.1%})\n{shown}", args.alpha))
    try:
        side_by_side(panels).save(args.output)
    except OSError as e:
        raise InvalidArgumentError(f"Could not write {args.output} ({e}).") from None
    print(f"wrote {args.output}")
    return 0
