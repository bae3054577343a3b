"""ResNet and ResNeXt as torchvision builds them, so state dicts match torchvision's key for key.

Returning torchvision's own ``ResNet`` class keeps every torchvision helper (BackboneWithFPN,
FasterRCNN, IntermediateLayerGetter) working on zoo models as they are.
"""

from __future__ import annotations

from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet


def build_resnet(
    layers: list[int],
    num_classes: int = 1000,
    bottleneck: bool = True,
    groups: int = 1,
    width_per_group: int = 64,
) -> ResNet:
    """A torchvision ResNet with the given stage depths (ResNeXt through ``groups``/``width_per_group``)."""
    block = Bottleneck if bottleneck else BasicBlock
    return ResNet(block, layers, num_classes=num_classes, groups=groups, width_per_group=width_per_group)


def resnet_feature_points(model: ResNet) -> list[tuple[str, int, int]]:
    """(child name, channels, reduction) of the five feature levels: stem ReLU, then layer1..4."""
    points = [("relu", model.bn1.num_features, 2)]
    for i in range(1, 5):
        last_block = getattr(model, f"layer{i}")[-1]
        last_bn = last_block.bn3 if hasattr(last_block, "bn3") else last_block.bn2
        points.append((f"layer{i}", last_bn.num_features, 2 ** (i + 1)))
    return points
