"""``cutmix-zoo predict`` and ``cutmix-zoo cam``: the image commands, thin shells over the library's
:func:`cutmix_zoo.predict` and :func:`cutmix_zoo.cam` functions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InvalidArgumentError
from ..model_config import pretrained_cfg_of
from ..reports.cam import class_activation, render, side_by_side
from ..reports.predict import class_names, open_image, predict, resolve_model
from .common import run_command


def _predict_command(args: argparse.Namespace) -> int:
    results = predict(args.images, args.model, top=args.top, weights=args.weights, device=args.device)
    if args.json:
        print(json.dumps([{"image": image, "predictions": preds} for image, preds in zip(args.images, results)], indent=2))
        return 0
    for image, preds in zip(args.images, results):
        print(image)
        for rank, p in enumerate(preds, 1):
            print(f"  {rank}. {p['probability']:7.2%}  {p['label']} ({p['index']})")
    return 0


def predict_main(argv: list[str]) -> int:
    """``cutmix-zoo predict IMAGE... --model NAME [--weights FILE] [--top 5] [--json]``."""
    parser = argparse.ArgumentParser(
        prog="cutmix-zoo predict",
        description="Print the most probable classes of each image, with their names and probabilities, "
                    "using the model's own eval transform.",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (anything Pillow reads)")
    parser.add_argument("--model", default="resnet50", help="registry name or exported folder (default: resnet50)")
    parser.add_argument("--weights", help="a local weights file to use instead of the model's download")
    parser.add_argument("--top", type=int, default=5, help="how many classes to show per image (default: 5)")
    parser.add_argument("--device", help="torch device to run on, e.g. cuda (default: cpu)")
    parser.add_argument("--json", action="store_true", help="print the predictions as JSON")
    return run_command(_predict_command, parser.parse_args(argv))


def _check_output(path: str) -> None:
    from PIL import Image

    extension = Path(path).suffix.lower()
    if Image.registered_extensions().get(extension) not in Image.SAVE:
        raise InvalidArgumentError(f"Cannot tell an image format from {path!r}: give the output a name ending in .png or .jpg.")
    if not Path(path).resolve().parent.is_dir():
        raise InvalidArgumentError(f"The folder of the output {path} does not exist.")


def _cam_command(args: argparse.Namespace) -> int:
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


def cam_main(argv: list[str]) -> int:
    """``cutmix-zoo cam IMAGE --model NAME [--weights FILE] [--class K] -o OUT.png [--compare NAME2 [--weights2 FILE]]``."""
    parser = argparse.ArgumentParser(
        prog="cutmix-zoo cam",
        description="Draw a model's class activation map (Zhou et al., 2016) over an image and write it as a picture, "
                    "titled with the class; --compare puts a second model's map beside it.",
    )
    parser.add_argument("image", metavar="IMAGE", help="image file (anything Pillow reads)")
    parser.add_argument("--model", default="resnet50", help="registry name or exported folder (default: resnet50)")
    parser.add_argument("--weights", help="a local weights file for --model instead of its download")
    parser.add_argument("--class", dest="class_index", type=int, metavar="K", help="class index to map (default: the top prediction of each model)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.png", help="picture to write (.png, .jpg, ...)")
    parser.add_argument("--compare", metavar="NAME2", help="a second model whose map is drawn beside the first, e.g. resnet50.baseline_in1k")
    parser.add_argument("--weights2", metavar="FILE", help="a local weights file for --compare")
    parser.add_argument("--alpha", type=float, default=0.5, help="opacity of the heatmap, 0 to 1 (default: 0.5)")
    parser.add_argument("--device", help="torch device to run on, e.g. cuda (default: cpu)")
    args = parser.parse_args(argv)
    if args.weights2 and not args.compare:
        parser.error("--weights2 needs --compare NAME2")
    if not 0 <= args.alpha <= 1:
        parser.error("--alpha must be between 0 and 1")
    return run_command(_cam_command, args)
