"""ResNet and ResNeXt as torchvision builds them, so state dicts match torchvision's key for key,
and the CIFAR ResNet of the CutMix release (``CifarResNet``), whose keys match its ``resnet.py``.

Returning (a subclass of) torchvision's own ``ResNet`` class keeps every torchvision helper
(BackboneWithFPN, FasterRCNN, IntermediateLayerGetter, DeepLabV3) working on zoo models as they
are; the subclass adds timm's classifier methods and an output stride, and no parameter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from ..errors import InvalidArgumentError
from .classifier import ClassifierMixin, init_like_the_original

# Output stride -> torchvision's replace_stride_with_dilation for layer2, layer3, layer4.
OUTPUT_STRIDES: dict[int, list[bool]] = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}


class ZooResNet(ClassifierMixin, ResNet):
    """torchvision's ``ResNet`` (same modules, same state-dict keys) with timm's classifier interface.

    ``output_stride`` 16 or 8 dilates layer4 (and layer3) instead of striding them, as torchvision's
    ``replace_stride_with_dilation`` does for segmentation backbones; dilation has no parameters,
    so the same weights load.
    """

    def __init__(self, block: type, layers: list[int], num_classes: int = 1000, groups: int = 1,
                 width_per_group: int = 64, output_stride: int = 32) -> None:
        super().__init__(block, layers, num_classes=num_classes, groups=groups, width_per_group=width_per_group,
                         replace_stride_with_dilation=OUTPUT_STRIDES[output_stride])
        self.num_classes = num_classes
        self.num_features = cast(nn.Linear, self.fc).in_features
        self.output_stride = output_stride
        self.grad_checkpointing = False

    def feature_points(self) -> list[tuple[str, int, int]]:
        """(child, channels, reduction) of the five feature levels (see :func:`resnet_feature_points`)."""
        return resnet_feature_points(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The stem and the four stages: layer4's feature map, before pooling."""
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return self.checkpointed_features(x)
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Average-pool and flatten as torchvision does; ``pre_logits=True`` stops before ``fc``."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)


def build_resnet(
    layers: list[int],
    num_classes: int = 1000,
    bottleneck: bool = True,
    groups: int = 1,
    width_per_group: int = 64,
    output_stride: int = 32,
) -> ZooResNet:
    """A torchvision ResNet with the given stage depths (ResNeXt through ``groups``/``width_per_group``).

    ``output_stride`` 32 (the network as trained), 16 or 8 (layer4, and layer3 for 8, dilated
    instead of strided; bottleneck blocks only, as in torchvision).
    """
    check_output_stride(output_stride, bottleneck)
    block = Bottleneck if bottleneck else BasicBlock
    return ZooResNet(block, layers, num_classes=num_classes, groups=groups, width_per_group=width_per_group,
                     output_stride=output_stride)


def check_output_stride(output_stride: object, bottleneck: bool = True) -> None:
    """Refuse, in one sentence, an output stride ``build_resnet`` cannot make."""
    if isinstance(output_stride, bool) or output_stride not in OUTPUT_STRIDES:
        raise InvalidArgumentError(f"output_stride must be 8, 16 or 32 (no dilation), not {output_stride!r}.")
    if output_stride != 32 and not bottleneck:
        raise InvalidArgumentError(f"output_stride {output_stride} needs bottleneck blocks: torchvision cannot dilate "
                                   f"the basic blocks of a ResNet-18 or -34.")


def resnet_feature_points(model: ResNet) -> list[tuple[str, int, int]]:
    """(child name, channels, reduction) of the five feature levels: stem ReLU, then layer1..4.

    A dilated network's stages stop reducing at its ``output_stride`` (16: layer4 at 16; 8: layer3 and layer4 at 8).
    """
    output_stride = getattr(model, "output_stride", 32)
    points = [("relu", model.bn1.num_features, 2)]
    for i in range(1, 5):
        last_block = getattr(model, f"layer{i}")[-1]
        last_bn = last_block.bn3 if hasattr(last_block, "bn3") else last_block.bn2
        points.append((f"layer{i}", last_bn.num_features, min(2 ** (i + 1), output_stride)))
    return points


class CifarResNet(ClassifierMixin, nn.Module):
    """The CIFAR ResNet of He et al. (2016) as the CutMix release's ``resnet.py`` builds it.

    A 3x3 stem of 16 channels, three stages of ``n`` blocks with 16, 32 and 64 planes (stride 2
    at the start of stages 2 and 3, a 1x1 convolution and BatchNorm as the projection shortcut
    wherever the shape changes), global average pooling and a linear classifier. Depth is 6n+2
    with basic blocks or 9n+2 with bottlenecks (4x expansion), so ResNet-110 is 18 basic blocks
    per stage and ResNet-164 18 bottlenecks. The blocks are torchvision's, which compute what the
    original's do and have its key names, so its checkpoints load with ``strict=True``. The head
    pools adaptively, which equals the original's fixed 8x8 pool at 32x32 input. The forward
    pass calls the top-level children in registration order, so feature extractors can run them
    one by one; it is written out call by call (``forward_features``, then ``forward_head``),
    which TorchScript and ``torch.fx`` follow. ``num_classes`` and ``num_features`` are timm's.
    """

    if TYPE_CHECKING:  # the stages, added by add_module; for the type checker only (TorchScript reads class annotations)
        layer1: nn.Sequential
        layer2: nn.Sequential
        layer3: nn.Sequential

    def __init__(self, depth: int, num_classes: int = 100, bottleneck: bool = True) -> None:
        super().__init__()
        blocks_per_stage = cifar_resnet_blocks(depth, bottleneck)
        if blocks_per_stage is None:
            unit = 9 if bottleneck else 6
            raise ValueError(f"depth {depth} must be {unit}n+2 with n >= 1 for a CIFAR ResNet with "
                             f"{'bottleneck' if bottleneck else 'basic'} blocks.")
        block = Bottleneck if bottleneck else BasicBlock
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        in_channels = 16
        for index, planes in enumerate((16, 32, 64)):
            stride = 1 if index == 0 else 2
            out_channels = planes * block.expansion
            downsample = None
            if stride != 1 or in_channels != out_channels:
                downsample = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(out_channels),
                )
            stage = [block(in_channels, planes, stride, downsample)]
            stage += [block(out_channels, planes) for _ in range(blocks_per_stage - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
            in_channels = out_channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(in_channels, num_classes)
        self.num_features = in_channels
        self.num_classes = num_classes
        self.grad_checkpointing = False

        init_like_the_original(self)

    def feature_points(self) -> list[tuple[str, int, int]]:
        """(child, channels, reduction) of the four feature levels (see :func:`cifar_resnet_feature_points`)."""
        return cifar_resnet_feature_points(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The stem and the three stages: layer3's feature map, before pooling."""
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return self.checkpointed_features(x)
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.layer1(x)
        x = self.layer2(x)
        return self.layer3(x)


def cifar_resnet_blocks(depth: int, bottleneck: bool) -> int | None:
    """Blocks per stage of a CIFAR ResNet of ``depth`` (6n+2 basic, 9n+2 bottleneck), None when no such n >= 1 exists."""
    unit = 9 if bottleneck else 6
    if depth < 2 + unit or (depth - 2) % unit:
        return None
    return (depth - 2) // unit


def cifar_resnet_feature_points(model: CifarResNet) -> list[tuple[str, int, int]]:
    """(child name, channels, reduction) of the four feature levels: stem ReLU, then layer1..3."""
    points = [("relu", model.bn1.num_features, 1)]
    for i in range(1, 4):
        last_block = getattr(model, f"layer{i}")[-1]
        last_bn = last_block.bn3 if hasattr(last_block, "bn3") else last_block.bn2
        points.append((f"layer{i}", last_bn.num_features, 2 ** (i - 1)))
    return points
