"""Zoo ResNets as detection backbones: torchvision's BackboneWithFPN with frozen batch norm, in one call.

This is torchvision's ``resnet_fpn_backbone`` with the zoo's weights: the batch norms become
``FrozenBatchNorm2d`` holding the checkpoint's statistics (detectors train with a few images per
GPU, too few for batch statistics), the stem and the first stages are frozen, and an FPN is put on
the chosen stages. The result plugs into FasterRCNN, RetinaNet or MaskRCNN as it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import cast

from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

from ..errors import InvalidArgumentError

# Backbone children from the deepest up, in the order trainable_layers unfreezes them.
_TRAINABLE_ORDER = ("layer4", "layer3", "layer2", "layer1", "conv1")


def replace_batch_norm(module: nn.Module, norm_layer: Callable[[int], nn.Module] = FrozenBatchNorm2d) -> nn.Module:
    """Swap every BatchNorm2d in ``module`` for ``norm_layer(num_features)`` holding the same affine weights and statistics."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = norm_layer(child.num_features)
            if hasattr(frozen, "eps"):
                frozen.eps = child.eps  # type: ignore[assignment]  # nn.Module.__setattr__ is typed for Tensor | Module only
            try:
                frozen.load_state_dict(child.state_dict())
            except RuntimeError:
                raise InvalidArgumentError(f"norm_layer {norm_layer!r} cannot hold a BatchNorm2d's weights and statistics; "
                                           "use FrozenBatchNorm2d or nn.BatchNorm2d.") from None
            setattr(module, name, frozen.to(device=child.weight.device, dtype=child.weight.dtype))
        else:
            replace_batch_norm(child, norm_layer)
    return module


def detection_backbone(
    name: str | os.PathLike,
    fpn: bool = True,
    trainable_layers: int = 3,
    out_channels: int = 256,
    weights: str | os.PathLike | None = None,
    pretrained: bool = True,
    norm_layer: Callable[[int], nn.Module] | None = FrozenBatchNorm2d,
    returned_layers: Sequence[int] | None = None,
    extra_blocks: ExtraFPNBlock | None = None,
) -> nn.Module:
    """A detection backbone made from a zoo ResNet or ResNeXt with its (pretrained) weights.

    With ``fpn=True`` a torchvision ``BackboneWithFPN`` over ``returned_layers`` (default stages
    1-4) with ``out_channels`` channels and, by default, a max-pooled extra level (pass
    ``LastLevelP6P7`` as ``extra_blocks`` for RetinaNet); with ``fpn=False`` the body alone, an
    ``IntermediateLayerGetter`` returning layer4 as ``"0"``. Either has an ``out_channels``
    attribute, and comes in eval mode like ``load``'s models. ``trainable_layers`` (0-5) counts the stages left trainable from layer4 down, as in
    torchvision; batch norms become ``norm_layer`` (``None`` or ``nn.BatchNorm2d`` keeps them).
    """
    from ..api import load, resolve_config
    from ..models.resnet import resnet_feature_points

    cfg = resolve_config(name)
    if cfg.family != "resnet":
        raise InvalidArgumentError(
            f"{cfg.name} is a {cfg.family} model; detection backbones are made from the ResNet and ResNeXt entries only "
            f"(`cutmix-zoo list 'res*'` shows them)."
        )
    if not isinstance(trainable_layers, int) or not 0 <= trainable_layers <= 5:
        raise InvalidArgumentError("trainable_layers must be an integer from 0 to 5 (stages left trainable from layer4 down), "
                                   f"not {trainable_layers!r}.")
    if fpn:
        returned_layers = [1, 2, 3, 4] if returned_layers is None else list(returned_layers)
        if (not returned_layers or any(not isinstance(k, int) or not 1 <= k <= 4 for k in returned_layers)
                or returned_layers != sorted(set(returned_layers))):
            raise InvalidArgumentError(f"returned_layers must name stages 1 to 4 in increasing order, each once, not {returned_layers!r}.")
    elif returned_layers is not None or extra_blocks is not None:
        raise InvalidArgumentError("returned_layers and extra_blocks configure the FPN, so they need fpn=True.")

    model = load(name, pretrained=pretrained, weights=weights)
    channels = {f"layer{i}": c for i, (_, c, _) in enumerate(resnet_feature_points(model)[1:], 1)}
    if norm_layer not in (None, nn.BatchNorm2d):
        replace_batch_norm(model, norm_layer)
    layers_to_train = list(_TRAINABLE_ORDER[:trainable_layers]) + (["bn1"] if trainable_layers == 5 else [])
    for param_name, parameter in model.named_parameters():
        parameter.requires_grad_(any(param_name.startswith(f"{layer}.") for layer in layers_to_train))

    if not fpn:
        body = IntermediateLayerGetter(model, return_layers={"layer4": "0"})
        body.out_channels = channels["layer4"]
        return body.eval()
    stages = cast("list[int]", returned_layers)  # made a list and checked above, as fpn is set
    return BackboneWithFPN(
        model,
        return_layers={f"layer{k}": str(i) for i, k in enumerate(stages)},
        in_channels_list=[channels[f"layer{k}"] for k in stages],
        out_channels=out_channels,
        extra_blocks=extra_blocks,
    ).eval()
