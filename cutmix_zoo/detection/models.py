"""torchvision detectors on zoo backbones with an FPN: Faster R-CNN (the CutMix paper's detector), RetinaNet and FCOS.

The ResNets and ResNeXts come through :func:`~cutmix_zoo.detection.backbone.detection_backbone` (torchvision's own
``BackboneWithFPN``); every other family (the PyramidNets, the embedded Shapes models included) through one generic
:class:`FeaturePyramidBackbone` over ``load(name, features_only=True)`` and its ``feature_info``. Either way the batch
norms are frozen with the checkpoint's statistics, the first ``freeze_stages`` feature levels (the stem is the first)
get no gradients, and each pyramid level's anchors follow its stride with the ratio torchvision's COCO models use at
that stride: Faster R-CNN 8 x stride (32-512 px at strides 4-64), RetinaNet 4 x stride at three octave scales
(32-512 at strides 8-128), FCOS 1 x stride (its anchors are the points, sized as the stride).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FeaturePyramidNetwork, FrozenBatchNorm2d, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7

from ..errors import InvalidArgumentError
from ..features import FeatureListNet
from .backbone import detection_backbone, replace_batch_norm

DETECTORS = ("faster_rcnn", "retinanet", "fcos")
# Anchor size per unit of stride, octave scales and aspect ratios: torchvision's COCO models' anchors over their strides.
ANCHORS = {
    "faster_rcnn": (8, (1.0,), (0.5, 1.0, 2.0)),
    "retinanet": (4, (1.0, 2 ** (1 / 3), 2 ** (2 / 3)), (0.5, 1.0, 2.0)),
    "fcos": (1, (1.0,), (1.0,)),
}


class FeaturePyramidBackbone(nn.Module):
    """A zoo feature extractor (``load(..., features_only=True)``) with an FPN on its returned levels: the detection
    backbone of every family, as ``BackboneWithFPN`` is for torchvision's ResNets. ``forward`` returns an OrderedDict
    ``"0"``, ``"1"``, ... (one per returned level) plus the extra block's levels; ``out_channels`` is the FPN's width."""

    def __init__(self, body: FeatureListNet, out_channels: int = 256, extra_blocks: ExtraFPNBlock | None = None) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(body.feature_info.channels(), out_channels, extra_blocks=extra_blocks or LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))


def _freeze_levels(body: FeatureListNet, count: int) -> None:
    """No gradients for the children that compute the first ``count`` feature levels of a FeatureListNet (level 0 is the
    stem: every child up to its feature point; level i the children after level i-1's point up to its own)."""
    names = list(dict(body.named_children()))
    start = 0
    for level in body.feature_info.info[:count]:
        end = names.index(level["module"]) + 1 if level["module"] in names else len(names)
        for name in names[start:end]:
            getattr(body, name).requires_grad_(False)
        start = end


def pyramid_backbone(name: str | os.PathLike, levels: Sequence[int], freeze_stages: int = 2, out_channels: int = 256,
                     extra_blocks: ExtraFPNBlock | None = None, weights: str | os.PathLike | None = None,
                     pretrained: bool = True) -> FeaturePyramidBackbone:
    """The generic FPN backbone of any zoo model: its feature ``levels`` (indices into ``feature_info``, the stem being 0)
    under an FPN, batch norms frozen, the first ``freeze_stages`` levels without gradients."""
    from ..api import load

    body = cast(FeatureListNet, load(name, features_only=True, out_indices=list(levels), weights=weights, pretrained=pretrained))
    replace_batch_norm(body, FrozenBatchNorm2d)
    _freeze_levels(body, freeze_stages)
    return FeaturePyramidBackbone(body, out_channels, extra_blocks).eval()


def _check(detector: str, num_classes: int, freeze_stages: int, num_levels: int, levels: Sequence[int] | None) -> list[int]:
    """The levels an FPN takes (checked), by default every level but the stem; RetinaNet and FCOS also leave the
    shallowest out, as torchvision's do (C3-C5 under P3-P7)."""
    if detector not in DETECTORS:
        raise InvalidArgumentError(f"detector must be one of {', '.join(DETECTORS)}, not {detector!r}.")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise InvalidArgumentError(f"num_classes counts the object classes (the background excluded), at least 1, not {num_classes!r}.")
    if not isinstance(freeze_stages, int) or not 0 <= freeze_stages <= num_levels:
        raise InvalidArgumentError(f"freeze_stages counts the feature levels frozen from the stem, 0 to {num_levels}, not {freeze_stages!r}.")
    if levels is None:
        return list(range(1 if detector == "faster_rcnn" else 2, num_levels)) or [num_levels - 1]
    chosen = list(levels)
    if not chosen or chosen != sorted(set(chosen)) or any(not isinstance(k, int) or not 0 <= k < num_levels for k in chosen):
        raise InvalidArgumentError(f"levels must name feature levels 0 to {num_levels - 1} in increasing order, each once, not {chosen!r}.")
    return chosen


def anchor_generator(detector: str, strides: Sequence[int]) -> AnchorGenerator:
    """Anchors for pyramid levels of the given strides, sized as torchvision's COCO models size theirs per stride."""
    unit, scales, ratios = ANCHORS[detector]
    sizes = tuple(tuple(int(unit * stride * s) for s in scales) for stride in strides)  # int(): torchvision rounds down too
    return AnchorGenerator(sizes, (ratios,) * len(strides))


def _backbone(name: str | os.PathLike, detector: str, levels: list[int], freeze_stages: int, out_channels: int,
              family: str, weights: str | os.PathLike | None, pretrained: bool) -> nn.Module:
    """The FPN backbone and the strides of its outputs (returned levels, then the extra block's)."""
    extra: ExtraFPNBlock = LastLevelMaxPool() if detector == "faster_rcnn" else LastLevelP6P7(out_channels, out_channels)
    if family == "resnet":
        if 0 in levels:
            raise InvalidArgumentError("A ResNet's FPN takes stages 1 to 4 (levels 1-4), not the stem (level 0).")
        backbone = detection_backbone(name, trainable_layers=5 - freeze_stages, out_channels=out_channels, weights=weights,
                                      pretrained=pretrained, returned_layers=levels, extra_blocks=extra)
    else:
        backbone = pyramid_backbone(name, levels, freeze_stages, out_channels, extra, weights, pretrained)
    return backbone


def build_detector(backbone: str | os.PathLike, num_classes: int, detector: str = "faster_rcnn", freeze_stages: int = 2,
                   out_channels: int = 256, min_size: int | Sequence[int] = 800, max_size: int = 1333,
                   levels: Sequence[int] | None = None, weights: str | os.PathLike | None = None, pretrained: bool = True,
                   **detector_kwargs: Any) -> nn.Module:
    """A torchvision ``detector`` (``faster_rcnn``, ``retinanet`` or ``fcos``) for ``num_classes`` object classes on the
    zoo model ``backbone`` (a name or exported folder; ``weights`` a file of its weights; ``pretrained=False`` for a
    from-scratch baseline), in eval mode, with the zoo model's normalisation.

    ``min_size``/``max_size`` are the detector's resize (a tuple of sizes draws one per batch in training, torchvision's
    multi-scale training); ``detector_kwargs`` go to the torchvision constructor. The returned model carries
    ``detector_config``: everything needed to build it again (detector, backbone, levels, strides, anchor sizes, sizes).
    """
    from ..api import resolve_config

    cfg = resolve_config(backbone)
    level_strides = _level_strides(backbone)
    chosen = _check(detector, num_classes, freeze_stages, len(level_strides), levels)
    body = _backbone(backbone, detector, chosen, freeze_stages, out_channels, cfg.family, weights, pretrained)
    strides = [level_strides[k] for k in chosen]
    strides += [strides[-1] * 2 ** (i + 1) for i in range(1 if detector == "faster_rcnn" else 2)]  # the extra block's levels
    anchors = anchor_generator(detector, strides)
    common = dict(min_size=min_size, max_size=max_size, image_mean=list(cfg.mean), image_std=list(cfg.std), **detector_kwargs)
    if detector == "faster_rcnn":
        pool = MultiScaleRoIAlign([str(i) for i in range(len(chosen))], output_size=7, sampling_ratio=2)
        model: nn.Module = FasterRCNN(body, num_classes + 1, rpn_anchor_generator=anchors, box_roi_pool=pool, **common)
    elif detector == "retinanet":
        model = RetinaNet(body, num_classes + 1, anchor_generator=anchors, **common)
    else:
        model = FCOS(body, num_classes + 1, anchor_generator=anchors, **common)
    model.detector_config = {  # type: ignore[assignment]  # nn.Module.__setattr__ is typed for Tensor | Module only
        "detector": detector, "backbone": cfg.name, "family": cfg.family, "num_classes": num_classes, "levels": chosen,
        "strides": strides, "anchor_sizes": [list(s) for s in anchors.sizes], "aspect_ratios": list(ANCHORS[detector][2]),
        "freeze_stages": freeze_stages, "out_channels": out_channels,
        "min_size": list(min_size) if isinstance(min_size, Sequence) else min_size, "max_size": max_size,
        "detector_kwargs": dict(detector_kwargs),
    }
    return model.eval()


def _level_strides(name: str | os.PathLike) -> list[int]:
    """The stride (reduction) of each feature level of a zoo model, from a meta-device build (no weights read)."""
    from ..api import resolve_config
    from ..models import FAMILIES, build_model

    cfg = resolve_config(name)
    with torch.device("meta"):
        net = build_model(cfg.family, cfg.arch_args, 1)
    return [reduction for _, _, reduction in FAMILIES[cfg.family].feature_points(net)]
