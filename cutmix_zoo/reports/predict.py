"""What a zoo model sees in an image: top-k classes with their names, and the ``predict`` command.

Images go through the entry's own eval transform (``cutmix_zoo.transforms``), so a prediction here
is the one the model's reported error was measured with.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..api import load, transforms
from ..categories import categories
from ..errors import InvalidArgumentError
from ..model_config import pretrained_cfg_of
from ..models import FAMILIES
from .inference import eval_mode

if TYPE_CHECKING:
    from PIL import Image

    ImageLike = str | os.PathLike | Image.Image


def open_image(image: ImageLike) -> Image.Image:
    """An RGB PIL image from a path or a PIL image; a missing or non-image file, or one past Pillow's decompression-bomb
    limit (``Image.MAX_IMAGE_PIXELS`` twice over: a few bytes that would decode to gigabytes), is an InvalidArgumentError."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if not isinstance(image, (str, os.PathLike)):
        raise InvalidArgumentError(f"An image must be a file path or a PIL image, not {type(image).__name__}.")
    if not os.path.isfile(image):
        raise InvalidArgumentError(f"The image {os.fspath(image)} does not exist or is not a file.")
    try:
        with Image.open(image) as img:
            return img.convert("RGB")
    except UnidentifiedImageError:
        raise InvalidArgumentError(f"{os.fspath(image)} is not an image file that Pillow can read.") from None
    except Image.DecompressionBombError as e:
        raise InvalidArgumentError(f"The image {os.fspath(image)} is too large to decode safely ({str(e).split(',')[0]}).") from None
    except OSError as e:
        raise InvalidArgumentError(f"The image {os.fspath(image)} could not be read ({e}).") from None


def resolve_model(model: str | os.PathLike | nn.Module, weights: str | os.PathLike | None = None,
                  device: torch.device | str | None = None) -> nn.Module:
    """A classifier ready for inference: ``model`` itself (moved to ``device`` when given), or the zoo model of that name."""
    if isinstance(model, nn.Module):
        if weights is not None:
            raise InvalidArgumentError("weights= picks the file for a model name; pass a name, or load the weights into the module yourself.")
        if device is not None:
            model.to(device)
    else:
        model = load(model, weights=weights, device=device)
    cfg = getattr(model, "pretrained_cfg", None)
    if not isinstance(cfg, dict) or cfg.get("family") not in FAMILIES:
        raise InvalidArgumentError("The model has no pretrained_cfg: pass a model made by cutmix_zoo.load, or a model name.")
    if not isinstance(getattr(model, FAMILIES[cfg["family"]].classifier, None), nn.Linear):
        raise InvalidArgumentError(f"{cfg['name']} was loaded without its classifier (features_only or num_classes=0), "
                                   "so it has no classes to predict.")
    return model


def class_names(model: nn.Module) -> list[str]:
    """Names of the model's output classes: its config's ``label_names`` (a folder run's class folders), its dataset's,
    or ``"class K"`` when its head was replaced."""
    cfg = pretrained_cfg_of(model)
    num_classes = cfg["num_classes"]
    names = cfg.get("label_names")
    if isinstance(names, list) and len(names) == num_classes:
        return [str(n) for n in names]
    try:
        names = categories(cfg.get("dataset", ""))
    except InvalidArgumentError:
        names = []
    return names if len(names) == num_classes else [f"class {k}" for k in range(num_classes)]


def normal_class_name(name: str) -> str:
    """A class name as names are compared: lower case, ``_`` and ``-`` as spaces, runs of spaces as one."""
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def predict(
    images: ImageLike | Sequence[ImageLike],
    model: str | os.PathLike | nn.Module = "resnet50",
    top: int = 5,
    weights: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    batch_size: int = 32,
) -> list[list[dict[str, Any]]]:
    """The ``top`` most probable classes of each image, as ``{"index", "label", "probability"}`` dicts.

    ``images`` is one path or PIL image, or a list of them; ``model`` a registry name, an exported
    folder, or a module made by ``cutmix_zoo.load`` (its train/eval mode is restored afterwards).
    One list of predictions is returned per image, most probable first.
    """
    from PIL import Image

    if isinstance(images, (str, os.PathLike, Image.Image)):
        images = [images]
    if not isinstance(top, int) or top < 1:
        raise InvalidArgumentError(f"top must be a positive integer, not {top!r}.")
    pil_images = [open_image(image) for image in images]
    net = resolve_model(model, weights, device)
    names = class_names(net)
    transform = transforms(net)
    param = next(net.parameters())
    k = min(top, len(names))

    results = []
    with eval_mode(net), torch.inference_mode():
        for start in range(0, len(pil_images), batch_size):
            batch = torch.stack([transform(img) for img in pil_images[start:start + batch_size]])
            probs = net(batch.to(device=param.device, dtype=param.dtype)).float().softmax(dim=1)
            values, indices = probs.topk(k, dim=1)
            for row_values, row_indices in zip(values.tolist(), indices.tolist()):
                results.append([{"index": i, "label": names[i], "probability": p} for i, p in zip(row_indices, row_values)])
    return results
