"""Starting a run from a zoo model (``--init NAME|FOLDER|FILE``): which weights, the fresh head, frozen levels, and the
backbone's learning rate.

``--init`` takes a registry name (``pyramidnet20_a48.cutmix_shapes``), an exported folder, or a weights file (with
``--model ARCH`` naming the architecture it holds). The network is the init's own; its classifier is always replaced
by a freshly initialised one sized to the data's classes (even when the count matches: new data, new classes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, cast

from torch import nn

from ..builder import is_exported_folder, resolve_config
from ..errors import InvalidArgumentError
from ..model_config import ModelConfig
from ..models import FAMILIES, level_children
from ..models.classifier import ClassifierMixin, base_model_of
from ..registry import is_registry_name


@dataclass(frozen=True)
class Init:
    """The weights a run starts from: what ``--init`` named, its kind (``name``, ``folder`` or ``file``), the config of
    the network it holds, and the base model an export names (None for a file, which has no name on the Hub)."""

    source: str
    kind: str
    config: ModelConfig
    base_model: str | None

    @property
    def tag(self) -> str | None:
        """The tag of the init's name (``cutmix_shapes``), the start of a fine-tuned run's tag; None for a file."""
        return None if self.kind == "file" else self.config.name.partition(".")[2] or None


def resolve_init(init: str, model: str | None) -> Init:
    """What ``--init`` names, in one sentence when it names nothing usable. A registry name wins over a folder of the
    same name (as in ``cutmix_zoo.load``); a file needs ``--model`` for its architecture."""
    if is_registry_name(init) or is_exported_folder(init):
        kind = "name" if is_registry_name(init) else "folder"
        cfg = resolve_config(init)
        return Init(init, kind, cfg, base_model_of(cfg.to_dict()))
    if os.path.isfile(init):
        if model is None:
            raise InvalidArgumentError(f"--init {init} is a weights file: pass --model ARCH to say which architecture it holds "
                                       "(e.g. --model resnet50).")
        if not is_registry_name(model):
            raise InvalidArgumentError(f"--model {model} with a weights file in --init must be a registry architecture or name "
                                       "(`cutmix-zoo list` shows them).")
        return Init(init, "file", resolve_config(model), None)
    if os.path.isdir(init):
        raise InvalidArgumentError(f"--init {init} is a folder without config.json: pass a folder written by `cutmix-zoo export` "
                                   "or a training run's export/.")
    raise InvalidArgumentError(f"--init {init} is neither a registry name, an exported folder nor a weights file.")


def load_init(init: Init, num_classes: int) -> nn.Module:
    """The init's network with its weights and a freshly initialised ``num_classes``-way classifier (drawn from torch's
    global generator, so every rank seeded alike builds the same head)."""
    from ..api import load

    net = load(init.config.name, weights=init.source, num_classes=0) if init.kind == "file" else load(init.source, num_classes=0)
    cast(ClassifierMixin, net).reset_classifier(num_classes)
    return net.train()


def freeze_levels(model: nn.Module, family: str, count: int) -> list[nn.Module]:
    """Freeze the first ``count`` feature levels of ``model`` (the stem is the first): no gradients, and returned so the
    loop keeps them in eval mode (their BatchNorm statistics stay the pretrained ones, as detection backbones do)."""
    children = dict(model.named_children())
    frozen = [children[name] for level in level_children(model, family)[:count] for name in level]
    for module in frozen:
        module.requires_grad_(False)
    return frozen


def param_groups(model: nn.Module, family: str, lr: float, backbone_lr_mult: float) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: the trainable backbone at ``lr * backbone_lr_mult``, the classifier at ``lr``.

    Each group keeps its ``lr_scale``, which the loop multiplies into every epoch's learning rate. With a multiplier of
    1 it is one group, as the original's optimizer (and the checkpoints written before fine-tuning existed) had.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    if backbone_lr_mult == 1:
        return [{"params": trainable, "lr": lr, "lr_scale": 1.0}]
    head = {id(p) for p in getattr(model, FAMILIES[family].classifier).parameters()}
    return [{"params": [p for p in trainable if id(p) not in head], "lr": lr * backbone_lr_mult, "lr_scale": backbone_lr_mult},
            {"params": [p for p in trainable if id(p) in head], "lr": lr, "lr_scale": 1.0}]
