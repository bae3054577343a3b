"""Training recipes as data, derived from registry entries: the dataset gives the base hyperparameters,
the method gives the mixing. The trainer runs them and the model cards describe them.

Nothing here is per model: ``recipe_for("pyramidnet200_a240.mixup_c100")`` combines the
CIFAR-100 base recipe of the original ``train.py`` with the mixup settings, so every registry
entry (and every future one) gets its recipe from these two small tables.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .errors import InvalidArgumentError
from .registry import data_config, get_entry

FEATURE_MIX_MODES = ("feature_cutmix", "manifold_mixup")
CROPS = ("none", "pad", "resized")  # the training crops of an image folder or CIFAR (``--crop``)


@dataclass(frozen=True)
class Recipe:
    """Every hyperparameter of one training run, as plain values (what ``--help`` overrides).

    ``input_size`` 0 trains at the model's (or dataset's) own size; ``backbone_lr_mult`` scales the learning rate of
    every layer but the classifier; ``freeze_stages`` K freezes the first K feature levels (the stem is the first).
    ``lr_schedule`` is ``step`` (the original's per-epoch drops) or ``cosine`` (per step, to zero at the run's end), after a
    linear warm-up over ``warmup`` of the run's steps. ``hflip`` and ``crop`` choose the training
    augmentation (``crop`` ``""``: the transform set's own; ``none``, ``pad`` or ``resized``); ``head_init`` ``probe``
    starts an ``--init`` run's new head from a linear probe on the training images, ``random`` from torch's init.
    """

    dataset: str = "cifar100"
    epochs: int = 300
    batch_size: int = 64
    lr: float = 0.25
    lr_milestones: tuple[float, ...] = (0.5, 0.75)
    lr_step: int = 0
    lr_gamma: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    mix: str = "cutmix"
    beta: float = 1.0
    mix_prob: float = 0.5
    mix_layers: str = "input"
    cutout_size: int = 16
    label_smoothing: float = 0.0
    dropblock: float = 0.0
    dropblock_size: int = 0
    transforms: str = "cifar"
    input_size: int = 0
    backbone_lr_mult: float = 1.0
    freeze_stages: int = 0
    lr_schedule: str = "step"
    warmup: float = 0.0
    hflip: bool = True
    crop: str = ""
    head_init: str = "random"

    def lr_at(self, epoch: int) -> float:
        """The learning rate of ``epoch``, stepped per epoch exactly as the original's ``adjust_learning_rate``.

        With ``lr_step`` the rate drops every ``lr_step`` epochs (ImageNet); otherwise it drops at
        each fraction in ``lr_milestones`` of the run (CIFAR: 50% and 75%). A ``cosine`` schedule gives the rate of the
        epoch's first step as if an epoch had many steps (what ``--dry-run`` shows); the loop asks :meth:`lr_at_step`.
        """
        if self.lr_schedule == "cosine":
            return self.lr_at_step(epoch * 1000, 1000)
        if self.lr_step:
            drops = epoch // self.lr_step
        else:
            drops = sum(int(epoch // (self.epochs * m)) for m in self.lr_milestones)
        return self.lr * self.lr_gamma**drops

    def lr_at_step(self, step: int, steps_per_epoch: int) -> float:
        """The learning rate of the run's ``step``-th optimisation step (from 0), with ``steps_per_epoch`` steps an epoch.

        It rises linearly to the schedule's rate over the first ``warmup`` of the run's steps; after that, ``cosine`` is
        half a cosine that reaches zero after the last step, so a run of one or two epochs spends its steps at a useful
        rate, and ``step`` gives each step its epoch's rate (:meth:`lr_at`).
        """
        total = self.epochs * steps_per_epoch
        warm = min(round(self.warmup * total), total - 1)
        if self.lr_schedule == "cosine":
            rate = self.lr * 0.5 * (1 + math.cos(math.pi * max(0, step - warm) / (total - warm)))
        else:
            rate = self.lr_at(step // steps_per_epoch)
        return rate * (step + 1) / (warm + 1) if step < warm else rate

    def replace(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


# Base recipes of the original train.py with the flags its README gives, per dataset.
_BASE: dict[str, Recipe] = {
    "imagenet": Recipe(dataset="imagenet", epochs=300, batch_size=256, lr=0.1, lr_milestones=(), lr_step=75,
                       mix_prob=1.0, cutout_size=112, transforms="imagenet", dropblock_size=7),
    "cifar100": Recipe(dataset="cifar100", epochs=300, batch_size=64, lr=0.25, mix_prob=0.5, cutout_size=16,
                       transforms="cifar", dropblock_size=4),
    "cifar10": Recipe(dataset="cifar10", epochs=300, batch_size=64, lr=0.25, mix_prob=0.5, cutout_size=16,
                      transforms="cifar", dropblock_size=4),
    # The embedded model's data (not in the paper): the CIFAR recipe, shortened to train on a CPU in minutes.
    "shapes": Recipe(dataset="shapes", epochs=30, batch_size=64, lr=0.1, mix_prob=0.5, cutout_size=16,
                     transforms="tensor", dropblock_size=4),
}

# Method -> how the batch is mixed or regularised. Settings the paper states are used as stated
# (section 4.1 and Table 5: CutMix beta 1; Mixup and Manifold Mixup alpha 1.0; label smoothing 0.1;
# Cutout 16x16 on CIFAR and 112x112 on ImageNet; DropBlock keep probability 0.9 with block size 4 on
# CIFAR). Where it is silent (which layers Feature CutMix / Manifold Mixup choose from, where
# DropBlock sits) the choice is written down in ``mix_layers`` and ``mixing.DropBlock``.
_METHODS: dict[str, dict[str, Any]] = {
    "baseline": {"mix": "none"},
    "cutmix": {"mix": "cutmix", "beta": 1.0},
    "mixup": {"mix": "mixup", "beta": 1.0, "mix_prob": 1.0},
    "cutout": {"mix": "cutout", "mix_prob": 1.0},
    "feature_cutmix": {"mix": "cutmix", "beta": 1.0, "mix_layers": "random"},
    "manifold_mixup": {"mix": "mixup", "beta": 1.0, "mix_prob": 1.0, "mix_layers": "random"},
    "dropblock": {"mix": "none", "dropblock": 0.1},
    "cutout_ls": {"mix": "cutout", "mix_prob": 1.0, "label_smoothing": 0.1},
    "dropblock_ls": {"mix": "none", "dropblock": 0.1, "label_smoothing": 0.1},
    "cutout_mixup": {"mix": "cutout+mixup", "beta": 1.0, "mix_prob": 1.0},
}


FINETUNE = "finetune"
# Fine-tuning a pretrained backbone on new data (``--recipe finetune``). Where each value comes from (the measurements:
# benchmarks/finetune_recipe.py, on Novel-Shapes and the mirror-image Glyphs, 1, 2 and 6 epochs; docs/finetuning.md):
# - the new head starts from a linear probe on the training images (LP-FT, Kumar et al., ICLR 2022): with a random head
#   the first steps' large gradients wreck the pretrained features, and 1-2 epoch runs end 46-64 points worse.
# - learning rate 0.1 for the head, the original train.py's ImageNet rate; x0.1 (0.01) for the pretrained layers, the
#   Caffe fine-tuning example's ratio ("Fine-tuning CaffeNet for Style Recognition on Flickr Style"); measured against
#   0.03 and 0.3, x1 and x0.01: 0.03, 0.3 and x0.01 each win on one kind of data and lose on the other; x1 loses on both.
# - per step, a linear warm-up over 10% of the steps, then a cosine to zero: a run of one or two epochs keeps its steps
#   at useful rates (the original's x0.1 at 50% spent half of a short run at a tenth); measured within the seeds'
#   spread of the step schedule once the head is probed, and kept because it needs no milestones placed.
# - no mixing, no horizontal flip, no crop: on small data CutMix on half the batches, a flip (a mirrored glyph is
#   another class) and a pad-and-crop each cost points; each is a flag away (--mix, --hflip, --crop).
# - SGD with Nesterov momentum 0.9 and weight decay 1e-4: the original train.py, which trained the backbones.
# - 30 epochs and batch 64: this package's choice for small datasets (a tenth of the original's 300 epochs); set
#   --epochs and --batch-size for yours.
_FINETUNE = Recipe(epochs=30, batch_size=64, lr=0.1, lr_milestones=(), lr_step=0, lr_schedule="cosine", warmup=0.1, mix="none",
                   beta=1.0, mix_prob=0.5, backbone_lr_mult=0.1, dropblock_size=4, hflip=False, crop="none", head_init="probe")


def finetune_recipe(dataset: str, epochs: int | None = None, input_size: int = 0) -> Recipe:
    """The fine-tuning recipe on a trainer dataset; ``input_size`` (the model's) picks the transform set: CIFAR's for
    inputs of at most 64 pixels, the ImageNet recipe's (with its colour jitter and lighting) above; either way without a
    flip or a random crop unless ``--hflip`` and ``--crop`` ask for them."""
    transforms = "tensor" if dataset == "shapes" else "cifar" if 0 < input_size <= 64 else "imagenet"
    return _FINETUNE.replace(dataset=dataset, epochs=epochs, transforms=transforms)


def imagenet_lr_step(epochs: int) -> int:
    """The original train.py's ImageNet schedule: x0.1 every 75 epochs in a 300-epoch run, else every 30 epochs."""
    return 75 if epochs == 300 else 30


def base_recipe(dataset: str, epochs: int | None = None) -> Recipe:
    """The original's base hyperparameters for a trainer dataset name and a run of ``epochs`` (default: the recipe's).

    ``folder`` trains like ImageNet. The ImageNet step follows the run's length as the original's does.
    """
    base = _BASE[data_config(dataset).key]
    epochs = epochs or base.epochs
    return base.replace(dataset=dataset, epochs=epochs, lr_step=imagenet_lr_step(epochs) if base.lr_step else 0)


def method_settings(method: str) -> dict[str, Any]:
    """The mixing / regularisation settings of a registry method (the same on every dataset)."""
    if method not in _METHODS:
        raise InvalidArgumentError(f"The trainer has no recipe for the method {method!r}; it knows {', '.join(sorted(_METHODS))}.")
    return dict(_METHODS[method])


def recipe_for(name: str, epochs: int | None = None) -> tuple[Recipe, str]:
    """The recipe of a registry entry and the architecture it trains, e.g. ``recipe_for("resnet50.cutmix_in1k")``."""
    entry = get_entry(name)
    return base_recipe(entry.data.key, epochs).replace(**method_settings(entry.method)), entry.arch


def recipe_text(recipe: Recipe, where: str) -> str:
    """The recipe in one sentence, for model cards of registry entries and of trainer exports alike.

    ``where`` says what it ran on ("global batch 64 on 2 GPUs", "on 1 rank(s), seed 0").
    """
    schedule = ("a cosine to zero over the run" if recipe.lr_schedule == "cosine" else f"x{recipe.lr_gamma} every {recipe.lr_step} epochs"
                if recipe.lr_step else f"x{recipe.lr_gamma} at {', '.join(f'{m:.0%}' for m in recipe.lr_milestones)} of training")
    if recipe.warmup:
        schedule += f", after a linear warm-up over {recipe.warmup:.0%} of the steps"
    if recipe.mix == "none":
        mixing = "none"
    elif recipe.mix == "cutout":
        mixing = f"cutout (a {recipe.cutout_size}-pixel square, probability {recipe.mix_prob})"
    else:
        mixing = f"{recipe.mix} (beta {recipe.beta}, probability {recipe.mix_prob}, applied at: {recipe.mix_layers})"
    extra = []
    if recipe.backbone_lr_mult != 1:
        extra.append(f"learning rate x{recipe.backbone_lr_mult:g} for every layer but the classifier")
    if recipe.freeze_stages:
        extra.append(f"the first {recipe.freeze_stages} feature level(s) frozen")
    if recipe.input_size:
        extra.append(f"{recipe.input_size}-pixel inputs")
    if recipe.head_init == "probe":
        extra.append("the new head started from a linear probe")
    if not recipe.hflip:
        extra.append("no horizontal flips")
    if recipe.crop:
        extra.append(f"crop: {recipe.crop}")
    if recipe.label_smoothing:
        extra.append(f"label smoothing {recipe.label_smoothing}")
    if recipe.dropblock:
        extra.append(f"DropBlock {recipe.dropblock} (block {recipe.dropblock_size})")
    return (f"{recipe.epochs} epochs, global batch {recipe.batch_size} {where}, SGD with Nesterov momentum {recipe.momentum}, "
            f"weight decay {recipe.weight_decay}, learning rate {recipe.lr} ({schedule}); mixing: {mixing}"
            + (f"; {', '.join(extra)}" if extra else "") + f"; {recipe.transforms} transforms.")
