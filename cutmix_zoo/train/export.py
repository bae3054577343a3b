"""The typed config a finished run exports beside its weights: what ``cutmix_zoo.load(FOLDER)`` reads,
and what the export's model card shows (the card itself is ``cutmix_zoo.hub.cards``', the same for every export).

A plain function of the run's recipe, model and results, with no training state, so the loop calls
it once at the end.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..model_config import ModelConfig
from ..recipes import Recipe, recipe_text
from .config import ModelSpec
from .dataspec import Inputs
from .finetune import Init


def export_config(recipe: Recipe, spec: ModelSpec, name: str, method: str, num_classes: int, registry_dataset: str,
                  best: dict[str, Any], seed: int, world_size: int, measured_on: str | None, inputs: Inputs | None = None,
                  init: Init | None = None, classes: list[str] | None = None) -> ModelConfig:
    """The exported folder's config: the network, its input settings, the run's recipe and its best epoch's errors.

    ``measured_on`` is the registry dataset the errors were measured on, or None for generated stand-in data
    (``--data synthetic``), whose numbers say nothing about the real dataset: the card then shows no model-index.
    ``inputs`` are the crop and normalisation the run used (default: the dataset's); ``init`` the weights it started
    from, which the card names as its ``base_model``; ``classes`` a folder's class names (config.json's ``label_names``).
    """
    where = f"on {world_size} rank(s), seed {seed}"
    source = f"cutmix_zoo.train, best of {recipe.epochs} epochs (epoch {best['epoch']})"
    start = ""
    if init is not None:
        start = f" It started from the weights of {init.base_model or init.source} ({init.kind}) with a fresh {num_classes}-way classifier."
    fields: dict[str, Any] = {}
    if inputs is not None:
        fields.update(input_size=(3, inputs.size, inputs.size), mean=tuple(inputs.mean), std=tuple(inputs.std),
                      interpolation=inputs.interpolation, crop_pct=inputs.crop_pct)
    extra = {key: value for key, value in (("base_model", init and init.base_model), ("init", init and init.source),
                                           ("label_names", classes)) if value}
    return ModelConfig.for_data(
        registry_dataset, name=name, family=spec.family, arch_args=dict(spec.args), num_classes=num_classes,
        architecture=spec.architecture, method=method,
        top1_err=best["top1_err"], top5_err=best["top5_err"], eval_dataset=measured_on,
        err_source=source if measured_on else source + ", on generated synthetic data, not the dataset itself",
        training=(f"Trained with `python -m cutmix_zoo.train`: {recipe_text(recipe, where)}{start} The exported weights are those "
                  "of the best validation epoch; the full recipe is `train_recipe` in config.json.\n"),
        train_recipe={**dataclasses.asdict(recipe), "seed": seed, "world_size": world_size}, extra=extra, **fields,
    )
