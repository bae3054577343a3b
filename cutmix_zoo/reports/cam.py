"""Class activation maps (Zhou et al., CVPR 2016): where in an image a model finds a class.

The maps are those of :func:`cutmix_zoo.reports.inference.class_activation_maps` (the classifier-weighted last
feature map), upsampled to the image. The ``cam`` command draws the image beside the map laid over it, alone or
beside a second model's (the CutMix paper's baseline-versus-CutMix figure).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn

from ..errors import InvalidArgumentError
from ..model_config import pretrained_cfg_of
from .inference import class_activation_maps, heatmap, resize_maps, whole_image_transform
from .predict import open_image, resolve_model

if TYPE_CHECKING:
    from PIL import Image

    from .predict import ImageLike

MIN_DISPLAY_SIDE = 320  # smaller images (CIFAR's 32x32) are enlarged by an integer factor for the picture
PANEL_GAP = 8  # white pixels between the panels of a side-by-side picture


class ClassActivation(NamedTuple):
    """A class activation map in [0, 1] at the image's resolution, the class it shows and its probability."""

    map: torch.Tensor
    class_index: int
    probability: float


def _as_batch(model: nn.Module, image: ImageLike | torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """The network input for ``image`` and the (height, width) the map is returned at."""
    if isinstance(image, torch.Tensor):
        batch = image.unsqueeze(0) if image.dim() == 3 else image
        if batch.dim() != 4 or batch.shape[:2] != (1, 3):
            raise InvalidArgumentError(f"A preprocessed image must be a (3, H, W) or (1, 3, H, W) tensor, not one of shape {tuple(image.shape)}.")
        return batch, (batch.shape[-2], batch.shape[-1])
    pil = open_image(image)
    return whole_image_transform(model)(pil).unsqueeze(0), (pil.height, pil.width)


def class_activation(
    model: str | os.PathLike | nn.Module,
    image: ImageLike | torch.Tensor,
    class_index: int | None = None,
    weights: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
) -> ClassActivation:
    """The class activation map of ``image`` for ``class_index`` (the top class when None), with that class and its probability.

    A path or PIL image goes through the model's eval transform without the centre crop (so the
    whole image is seen) and the map comes back at the original image's size; a tensor is taken
    as already preprocessed and the map has its height and width. The map is min-max normalised.
    """
    net = resolve_model(model, weights, device)
    cfg = pretrained_cfg_of(net)
    x, size = _as_batch(net, image)
    if class_index is not None and (not isinstance(class_index, int) or not 0 <= class_index < cfg["num_classes"]):
        raise InvalidArgumentError(f"Class {class_index!r} does not exist: {cfg['name']} has classes 0 to {cfg['num_classes'] - 1}.")
    maps = class_activation_maps(net, x, None if class_index is None else torch.tensor([class_index]))
    index = int(maps.classes[0])
    return ClassActivation(heatmap(maps.raw[0], size).cpu(), index, float(maps.probabilities[0, index]))


def cam(
    model: str | os.PathLike | nn.Module,
    image: ImageLike | torch.Tensor,
    class_index: int | None = None,
    weights: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The class activation map (H x W, values in [0, 1]) of ``image`` for ``class_index``, the top class when None.

    ``model`` is a module made by ``cutmix_zoo.load`` or a model name; ``image`` a path or PIL image
    (map at its original size) or a preprocessed tensor. See ``class_activation`` for the details.
    """
    return class_activation(model, image, class_index, weights, device).map


def jet(values: torch.Tensor) -> torch.Tensor:
    """The jet colormap (blue, cyan, yellow, red) of values in [0, 1], as an (..., 3) uint8 tensor."""
    v = values.clamp(0, 1).unsqueeze(-1)
    centres = torch.tensor([3.0, 2.0, 1.0])  # red, green, blue peak at 3/4, 1/2 and 1/4
    rgb = (1.5 - (4 * v - centres).abs()).clamp(0, 1)
    return (rgb * 255).round().to(torch.uint8)


Box = tuple[int, int, int, int]  # left, top, right, bottom in image pixels; right and bottom exclusive, as PIL's crop


def render(image: ImageLike, heatmap: torch.Tensor, title: str, alpha: float = 0.5,
           boxes: Sequence[tuple[Box, str]] = ()) -> Image.Image:
    """The image as it is, beside the image with ``heatmap`` (H x W in [0, 1]) blended over it, and ``title`` (one line
    or more) in a bar above both.

    The input is always shown untouched on the left, so the object being classified can be seen however
    opaque the map (``alpha``) is. ``boxes`` are ``(box, colour)`` pairs in the image's pixels, outlined on
    both halves. Images whose shorter side is under 320 pixels are enlarged by an integer factor first, so
    that a CIFAR picture stays legible. The font is a 24th of the image's width (14 to 40 px), a line is
    1.25 fonts high, and the bar holds the lines plus half a line of margin; lines too long are cut with
    an ellipsis. The picture is ``2 * width + PANEL_GAP`` wide.
    """
    from PIL import Image, ImageDraw, ImageFont

    pil = open_image(image)
    scale = max(1, math.ceil(MIN_DISPLAY_SIDE / min(pil.width, pil.height)))
    width, height = pil.width * scale, pil.height * scale
    pil = pil.resize((width, height), Image.NEAREST)  # type: ignore[attr-defined]  # Pillow sets its constants in a loop
    pixels = torch.frombuffer(bytearray(pil.tobytes()), dtype=torch.uint8).view(height, width, 3).float()
    heat = jet(resize_maps(heatmap.float(), (height, width))).float()
    blended = ((1 - alpha) * pixels + alpha * heat).round().clamp(0, 255).to(torch.uint8)

    font_size = min(40, max(14, width // 24))
    line_height = round(1.25 * font_size)
    lines = title.split("\n")
    bar = len(lines) * line_height + line_height // 2
    total = 2 * width + PANEL_GAP
    panel = Image.new("RGB", (total, height + bar), "white")
    panel.paste(pil, (0, bar))
    panel.paste(Image.frombytes("RGB", (width, height), blended.numpy().tobytes()), (width + PANEL_GAP, bar))
    draw = ImageDraw.Draw(panel)
    line_width = max(2, scale // 3)
    for (box_left, box_top, box_right, box_bottom), colour in boxes:
        for x0 in (0, width + PANEL_GAP):
            draw.rectangle((x0 + box_left * scale, bar + box_top * scale, x0 + box_right * scale - 1, bar + box_bottom * scale - 1),
                           outline=colour, width=line_width)
    try:
        font = ImageFont.load_default(size=font_size)
    except TypeError:  # Pillow before 10.1 has only a small bitmap font
        font = ImageFont.load_default()
    for index, line in enumerate(lines):
        while len(line) > 1 and draw.textlength(line, font=font) > total - font_size:
            line = line[:-2] + "…"
        left, top, right, bottom = draw.textbbox((0, 0), line, font=font)
        draw.text(((total - left - right) / 2, (index + 0.75) * line_height - (top + bottom) / 2), line, fill="black", font=font)
    return panel


def side_by_side(panels: list[Image.Image]) -> Image.Image:
    """Panels of equal height in a row, ``PANEL_GAP`` white pixels apart."""
    from PIL import Image

    width = sum(p.width for p in panels) + PANEL_GAP * (len(panels) - 1)
    row = Image.new("RGB", (width, max(p.height for p in panels)), "white")
    x = 0
    for p in panels:
        row.paste(p, (x, 0))
        x += p.width + PANEL_GAP
    return row
