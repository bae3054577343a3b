"""The builder families: one generic way to make, describe and re-head every architecture.

A family is a constructor plus the two facts the generic code needs about its modules:
where its feature levels are and what its classifier is called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from torch import nn

from .pyramidnet import PyramidNet
from .resnet import CifarResNet, build_resnet, cifar_resnet_feature_points, resnet_feature_points

M = TypeVar("M", bound=nn.Module)


@dataclass(frozen=True)
class Family(Generic[M]):
    """How to build one kind of network and where its feature levels are (``feature_points`` takes the built network)."""

    build: Callable[..., M]
    feature_points: Callable[[M], list[tuple[str, int, int]]]
    classifier: str = "fc"


FAMILIES: dict[str, Family[Any]] = {
    "resnet": Family(build_resnet, resnet_feature_points),
    "pyramidnet": Family(PyramidNet, PyramidNet.feature_points),
    "cifar_resnet": Family(CifarResNet, cifar_resnet_feature_points),
}


def level_children(model: nn.Module, family: str) -> list[list[str]]:
    """The names of the top-level children that compute each feature level of a ``family`` network, in forward order.

    Level 0 (the stem) is every child up to the family's first feature point; each later level is the children after
    the previous point up to its own (a ResNet's level 1 is ``maxpool`` and ``layer1``). The trainer freezes levels
    and hooks stages by these lists, so both follow the one ``feature_points`` of each family.
    """
    names = [name for name, _ in model.named_children()]
    levels, start = [], 0
    for point, _, _ in FAMILIES[family].feature_points(model):
        end = names.index(point) + 1
        levels.append(names[start:end])
        start = end
    return levels


def build_model(family: str, args: dict[str, Any], num_classes: int) -> nn.Module:
    """Build a network of ``family`` with its arguments and a ``num_classes``-way classifier."""
    return FAMILIES[family].build(num_classes=num_classes, **args)
