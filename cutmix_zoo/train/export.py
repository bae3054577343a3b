"""What a finished run exports beside its weights: the ``config.json`` that ``cutmix_zoo.load(FOLDER)``
reads, and a model card where the zoo has none (an ImageFolder run).

Plain functions of the run's recipe, model and results, with no training state, so the loop calls
them once at the end and they can change shape without touching it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from ..recipes import Recipe
from ..registry import DATASETS, LICENSE
from .config import ModelSpec


def export_config(recipe: Recipe, spec: ModelSpec, name: str, method: str, num_classes: int, registry_dataset: str,
                  best: dict[str, Any], seed: int, world_size: int) -> dict[str, Any]:
    """config.json of the exported folder: what ``load(FOLDER)`` needs plus the run's results and recipe."""
    data = DATASETS.get(registry_dataset, DATASETS["imagenet-1k"])
    return {
        "name": name,
        "architecture": spec.architecture,
        "family": spec.family,
        "arch_args": spec.args,
        "num_classes": num_classes,
        "dataset": registry_dataset,
        "method": method,
        "input_size": list(data.input_size),
        "mean": list(data.mean),
        "std": list(data.std),
        "interpolation": data.interpolation,
        "crop_pct": data.crop_pct,
        "resize": data.resize,
        "hub_repo": None,
        "license": LICENSE,
        "top1_err": best["top1_err"],
        "top5_err": best["top5_err"],
        "err_source": f"cutmix_zoo.train, best of {recipe.epochs} epochs (epoch {best['epoch']})",
        "training": _training_text(recipe, seed, world_size),
        "train_recipe": {**dataclasses.asdict(recipe), "seed": seed, "world_size": world_size},
    }


def _training_text(recipe: Recipe, seed: int, world_size: int) -> str:
    """The recipe in a sentence or two, for the model card."""
    schedule = (f"x{recipe.lr_gamma} every {recipe.lr_step} epochs" if recipe.lr_step
                else f"x{recipe.lr_gamma} at {', '.join(f'{m:.0%}' for m in recipe.lr_milestones)} of training")
    mixing = "no mixing" if recipe.mix == "none" else (
        f"{recipe.mix} (beta {recipe.beta}, probability {recipe.mix_prob}, {'input' if recipe.mix_layers == 'input' else 'input or a random stage'})")
    extras = "".join([f", label smoothing {recipe.label_smoothing}" if recipe.label_smoothing else "",
                      f", DropBlock {recipe.dropblock} (block {recipe.dropblock_size})" if recipe.dropblock else ""])
    return (f"Trained with `python -m cutmix_zoo.train`: {recipe.epochs} epochs, global batch {recipe.batch_size} on {world_size} "
            f"rank(s), SGD (momentum {recipe.momentum}, Nesterov {recipe.nesterov}, weight decay {recipe.weight_decay}), "
            f"lr {recipe.lr} {schedule}, {mixing}{extras}, {recipe.transforms} transforms, seed {seed}. "
            "The exported weights are those of the best validation epoch; the full recipe is `train_recipe` in config.json.\n")


def export_card(cfg: dict[str, Any]) -> Optional[str]:
    """None (the zoo's model card) for a registry dataset; a short card for an ImageFolder run, which the zoo's cards do not describe."""
    if cfg["dataset"] in DATASETS:
        return None
    return (f"---\nlicense: {cfg['license']}\nlibrary_name: cutmix_zoo\n---\n# {cfg['name']}\n\n"
            f"{cfg['family']} {cfg['arch_args']} trained with `cutmix_zoo.train` on an ImageFolder dataset of {cfg['num_classes']} "
            f"classes: best top-1/top-5 error {cfg['top1_err']:.2f}/{cfg['top5_err']:.2f}. {cfg['training']}\n")
