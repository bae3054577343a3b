"""Starting a run from a zoo model (``--init NAME|FOLDER|FILE``): which weights, the fresh head and its linear-probe
start, frozen levels, and the backbone's learning rate.

``--init`` takes a registry name (``pyramidnet20_a48.cutmix_shapes``), an exported folder, or a weights file (with
``--model ARCH`` naming the architecture it holds). The network is the init's own; its classifier is always replaced
by a freshly initialised one sized to the data's classes (even when the count matches: new data, new classes).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from ..builder import is_exported_folder, resolve_config
from ..errors import InvalidArgumentError
from ..model_config import ModelConfig
from ..models import FAMILIES, level_children
from ..models.classifier import ClassifierMixin, base_model_of
from ..registry import is_registry_name

PROBE_IMAGES = 10_000  # the most training images the head's linear probe reads: enough for a stable head, seconds on a GPU
SINGLE_IMAGE_L2 = 1e-2  # the probe's strength where no class has two images to hold one out: the middle of transfer's grid


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


def probe_head(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], num_classes: int,
               limit: int = PROBE_IMAGES) -> float:
    """Start ``model``'s new head from a linear probe (``--head-init probe``) and return the probe's L2 strength.

    The pretrained network (in eval mode, its BatchNorm statistics the pretrained ones) gives the pooled features of the
    first ``limit`` images of ``batches``; a multinomial logistic regression is fitted on them as ``cutmix-zoo transfer``
    fits its probe (:func:`cutmix_zoo.reports.transfer.select_l2` chooses the strength on held-out training images) and
    written into the classifier. Fine-tuning then starts from a head that already separates the classes, so its first
    steps do not send a random head's large gradients into the pretrained layers (Kumar et al., "Fine-Tuning can Distort
    Pretrained Features and Underperform Out-of-Distribution", ICLR 2022: linear probing, then fine-tuning). With one
    image a class nothing can be held out, and the strength is ``SINGLE_IMAGE_L2``. On several ranks each fits on its own
    share of the images; DistributedDataParallel then gives every rank rank 0's head.
    """
    from ..reports.inference import eval_mode
    from ..reports.transfer import fit_logistic, select_l2, standardise

    net = cast(ClassifierMixin, model)
    features, labels, seen = [], [], 0
    with eval_mode(model), torch.no_grad():
        for x, y in batches:
            features.append(net.forward_head(net.forward_features(x), pre_logits=True).float().cpu())
            labels.append(y.cpu())
            seen += len(y)
            if seen >= limit:
                break
    x_all, y_all = torch.cat(features)[:limit], torch.cat(labels)[:limit]
    x_std, = standardise(x_all)
    if int(y_all.bincount().max()) >= 2:  # some class can lend an image to the held-out part that chooses the strength
        l2, _, _, _, start = select_l2(x_all, y_all, num_classes)
        w, b = fit_logistic(x_std, y_all, num_classes, l2, start=start)
    else:
        l2 = SINGLE_IMAGE_L2
        w, b = fit_logistic(x_std, y_all, num_classes, l2)
    mean, std = x_all.mean(dim=0), x_all.std(dim=0, correction=0)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))  # as standardise: the probe's weights on the raw features
    head = cast(nn.Linear, net.get_classifier())
    with torch.no_grad():
        head.weight.copy_((w / std[:, None]).T.to(head.weight))
        head.bias.copy_((b - (mean / std) @ w).to(head.bias))
    return l2
