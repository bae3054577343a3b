"""The forward passes the reports share: eval mode for the length of a block, the whole-image transform, and the class
activation maps of a batch (Zhou et al., CVPR 2016), which ``cam`` draws and ``localize`` boxes.

For a network ending in global average pooling and a linear classifier, the logit of class c is the spatial mean of
``sum_k w_ck f_k(x, y)`` over the last feature map ``f``; that sum is the class activation map. Every zoo family ends
this way, so one function serves ResNet, ResNeXt and PyramidNet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..api import transforms
from ..errors import InvalidArgumentError
from ..features import FeatureListNet
from ..model_config import pretrained_cfg_of
from ..models import FAMILIES

if TYPE_CHECKING:
    from PIL import Image


@contextlib.contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Every model in eval mode for the block, each one's own train/eval mode restored afterwards, even on an error."""
    modes = [model.training for model in models]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for model, mode in zip(models, modes):
            model.train(mode)


MAX_ASPECT_RATIO = 10  # longer side over shorter: the whole image's shorter side is resized to the input, so work grows with it


def check_aspect_ratio(width: int, height: int, where: str) -> None:
    """Refuse an image whose sides differ more than :data:`MAX_ASPECT_RATIO` times, in one sentence: the network sees the
    whole image with its shorter side at the input size, so a 3000x1 strip would become 96000x32 pixels of work."""
    if min(width, height) < 1 or max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise InvalidArgumentError(f"{where} is {width}x{height} pixels, more than {MAX_ASPECT_RATIO} times longer than it is wide, "
                                   "and the network would see it whole at that shape: crop it nearer to a square first.")


def whole_image_transform(model: nn.Module) -> Callable[[Image.Image], torch.Tensor]:
    """The model's eval transform without its centre crop: the network sees (and a map covers) the whole image, which
    is why an image of extreme shape is refused (:func:`check_aspect_ratio`) before it is resized."""
    from torchvision import transforms as T

    resize = T.Compose([t for t in transforms(model).transforms if not isinstance(t, T.CenterCrop)])

    def transform(image: Image.Image) -> torch.Tensor:
        check_aspect_ratio(image.width, image.height, "The image")
        return resize(image)

    return transform


class ClassMaps(NamedTuple):
    """The class activation maps of a batch, on the model's device, in float32."""

    raw: torch.Tensor  # (N, h, w) the classifier-weighted last feature map of each image, at the feature map's resolution
    classes: torch.Tensor  # (N,) the class each map is of
    predicted: torch.Tensor  # (N,) the top class
    probabilities: torch.Tensor  # (N, C) the softmax of the logits


def class_activation_maps(model: nn.Module, x: torch.Tensor, class_index: torch.Tensor | None = None) -> ClassMaps:
    """The class activation maps of a batch of preprocessed images ``x`` (N, 3, H, W): of class ``class_index[i]`` when
    given, else of each image's top class. ``model`` is a module made by ``cutmix_zoo.load`` with its classifier; it runs
    in eval mode without gradients, and its own mode is restored."""
    cfg = pretrained_cfg_of(model)
    family = FAMILIES[cfg["family"]]
    points = family.feature_points(model)
    body, classifier = FeatureListNet(model, points, [len(points) - 1]), getattr(model, family.classifier)
    param = next(model.parameters())
    with eval_mode(model), torch.no_grad():
        features = body(x.to(device=param.device, dtype=param.dtype))[0].float()
        probabilities = classifier(features.mean(dim=(2, 3)).to(param.dtype)).float().softmax(dim=1)
    predicted = probabilities.argmax(dim=1)
    classes = predicted if class_index is None else class_index.to(predicted.device).long()
    if classes.numel() and not (0 <= int(classes.min()) and int(classes.max()) < probabilities.shape[1]):
        raise InvalidArgumentError(f"A class index is out of range: {cfg['name']} has classes 0 to {probabilities.shape[1] - 1}.")
    raw = torch.einsum("nc,nchw->nhw", classifier.weight.detach().float()[classes], features)
    return ClassMaps(raw, classes, predicted, probabilities)


def resize_maps(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(N, h, w) or (h, w) maps resized bilinearly to ``size`` (height, width)."""
    batch = maps if maps.dim() == 3 else maps[None]
    resized = F.interpolate(batch[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    return resized if maps.dim() == 3 else resized[0]


def heatmap(raw: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """An (h, w) map resized bilinearly to ``size`` and min-max normalised to [0, 1] (all zeros when it is flat)."""
    values = resize_maps(raw, size)
    low, high = values.min(), values.max()
    return (values - low) / (high - low) if high > low else torch.zeros_like(values)
