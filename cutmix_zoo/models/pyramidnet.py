"""PyramidNet (Han et al., CVPR 2017) laid out exactly as in the CutMix release.

Module and attribute names follow the CutMix repository's ``pyramidnet.py`` so its
checkpoints load with ``strict=True``; the zero-padded shortcut is built on the input's
device and dtype, so the network also runs on CPU and in bf16. The number of channels a
shortcut is padded with is fixed when the block is built (an int attribute, no parameter),
so ``torch.jit.script``, ``torch.fx.symbolic_trace`` and torchvision's
``create_feature_extractor`` see no data-dependent branch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .classifier import ClassifierMixin, init_like_the_original

# ImageNet depths with a fixed stage layout in the original: depth -> (bottleneck, blocks per stage).
_IMAGENET_LAYOUTS: dict[int, tuple[bool, list[int]]] = {
    18: (False, [2, 2, 2, 2]),
    34: (False, [3, 4, 6, 3]),
    50: (True, [3, 4, 6, 3]),
    101: (True, [3, 4, 23, 3]),
    152: (True, [3, 8, 36, 3]),
    200: (True, [3, 24, 36, 3]),
}


class PyramidBlock(nn.Module):
    """What both block types share: the shortcut, which pools where the block strides and zero-pads the new channels.

    ``downsample`` (an average pool or None) and ``pad_channels`` (an int) are set by the block's
    constructor; no ``Optional[nn.Module]`` annotation is declared, which TorchScript cannot read.
    """

    if TYPE_CHECKING:  # for the type checker only: never executed, so TorchScript sees no annotation
        downsample: nn.Module | None
        pad_channels: int

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """The block input, average-pooled where the block strides, zero-padded to the block's width."""
        if self.downsample is not None:
            x = self.downsample(x)
        if self.pad_channels != 0:
            x = F.pad(x, (0, 0, 0, 0, 0, self.pad_channels))
        return x


class BasicBlock(PyramidBlock):
    """Pre-activation PyramidNet basic block: BN, 3x3 conv, BN, ReLU, 3x3 conv, BN."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.out_channels = planes * self.expansion
        self.pad_channels = self.out_channels - in_channels  # the shortcut's zero channels (0 where the width stays)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(out)))
        return self.bn3(out) + self.shortcut(x)


class Bottleneck(PyramidBlock):
    """Pre-activation PyramidNet bottleneck: BN, 1x1, BN, ReLU, 3x3, BN, ReLU, 1x1 (x4), BN."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn4 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.out_channels = planes * self.expansion
        self.pad_channels = self.out_channels - in_channels  # the shortcut's zero channels (0 where the width stays)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return self.bn4(out) + self.shortcut(x)


class PyramidNet(ClassifierMixin, nn.Module):
    """PyramidNet whose width grows by ``alpha`` spread evenly over all its blocks.

    ``imagenet=False`` builds the three-stage CIFAR network (3x3 stem, 32x32 input);
    ``imagenet=True`` builds the four-stage ImageNet network (7x7 stem and max pool), where,
    as in the original, depths 18, 34, 50, 101, 152 and 200 take their block type and stage
    sizes from a fixed table and other depths get equal stages of the requested block type.
    The head pools adaptively, which equals the original's fixed 8x8 (CIFAR) or 7x7 (ImageNet)
    pool at its native input size and also serves other sizes. The forward pass calls the
    top-level children in registration order, so feature extractors can run them one by one;
    it is written out call by call (``forward_features``, then ``forward_head``), which
    TorchScript and ``torch.fx`` follow. ``num_classes`` and ``num_features`` are timm's.
    """

    if TYPE_CHECKING:  # the stages, added by add_module (layer4 only on ImageNet); for the type checker only
        layer1: nn.Sequential
        layer2: nn.Sequential
        layer3: nn.Sequential
        layer4: nn.Sequential

    def __init__(self, depth: int, alpha: int, num_classes: int, bottleneck: bool = True, imagenet: bool = False) -> None:
        super().__init__()
        bottleneck, stage_sizes = _stage_sizes(depth, bottleneck, imagenet)
        block = Bottleneck if bottleneck else BasicBlock
        stem_channels = 64 if imagenet else 16

        if imagenet:
            self.conv1 = nn.Conv2d(3, stem_channels, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(stem_channels)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(3, stem_channels, kernel_size=3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(stem_channels)

        addrate = alpha / sum(stage_sizes)
        width = float(stem_channels)
        in_channels = stem_channels
        for index, num_blocks in enumerate(stage_sizes):
            stride = 1 if index == 0 else 2
            blocks = []
            for position in range(num_blocks):
                width += addrate
                first = position == 0
                downsample = nn.AvgPool2d((2, 2), stride=(2, 2), ceil_mode=True) if first and stride != 1 else None
                blocks.append(block(in_channels, round(width), stride if first else 1, downsample))
                in_channels = blocks[-1].out_channels
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))

        self.bn_final = nn.BatchNorm2d(in_channels)
        self.relu_final = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(in_channels, num_classes)
        self.num_features = in_channels
        self.num_classes = num_classes
        self.imagenet = imagenet
        self.grad_checkpointing = False

        init_like_the_original(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The stem, the stages and the final BN-ReLU: the last feature map, before pooling."""
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return self.checkpointed_features(x)
        x = self.conv1(x)
        x = self.bn1(x)
        if hasattr(self, "maxpool"):  # the ImageNet stem; a fixed answer per model, so TorchScript and fx resolve it once
            x = self.relu(x)
            x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        if hasattr(self, "layer4"):  # the ImageNet network's fourth stage
            x = self.layer4(x)
        x = self.bn_final(x)
        return self.relu_final(x)

    def feature_points(self) -> list[tuple[str, int, int]]:
        """Return (top-level child the feature follows, channels, reduction) per feature level."""
        stages = [name for name, _ in self.named_children() if name.startswith("layer")]
        first_reduction = 4 if self.imagenet else 1
        points = [("relu", self.bn1.num_features, 2)] if self.imagenet else [("bn1", self.bn1.num_features, 1)]
        for index, name in enumerate(stages[:-1]):
            points.append((name, getattr(self, name)[-1].out_channels, first_reduction * 2**index))
        points.append(("relu_final", self.bn_final.num_features, first_reduction * 2 ** (len(stages) - 1)))
        return points


def _stage_sizes(depth: int, bottleneck: bool, imagenet: bool) -> tuple[bool, list[int]]:
    """Return the block type (bottleneck or not) and the number of blocks in each stage."""
    if imagenet and depth in _IMAGENET_LAYOUTS:
        return _IMAGENET_LAYOUTS[depth]
    layers_per_block = (3 if bottleneck else 2) * (4 if imagenet else 3)
    num_stages = 4 if imagenet else 3
    if depth < 2 + layers_per_block or (depth - 2) % layers_per_block:
        raise ValueError(f"depth {depth} must be 2 + a positive multiple of {layers_per_block} for this PyramidNet.")
    return bottleneck, [(depth - 2) // layers_per_block] * num_stages
