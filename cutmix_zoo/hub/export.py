"""Write a model as a Hugging Face Hub folder: model.safetensors, config.json and a README.md card.

The same folder is what ``load(FOLDER)`` reads (like ``from_pretrained("./dir")``), what
``load(name, weights=FOLDER)`` accepts, and what ``cutmix-zoo publish`` uploads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, cast

from torch import nn

from ..builder import config_of, meta_model
from ..categories import categories
from ..files import CONFIG_NAME, WEIGHTS_NAME, unwritable, write_text_atomic
from ..model_config import ModelConfig
from ..models import FAMILIES
from ..registry import CODE_URL, DATASETS, LIBRARY_NAME
from .convert import save_safetensors
from .timm_names import timm_architecture


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = cast(nn.Module, model._orig_mod)
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return model


def hub_config(cfg: ModelConfig) -> dict[str, Any]:
    """config.json of an export: cutmix_zoo's own keys, and timm's (``architecture``, ``num_classes``, ``num_features``,
    ``pretrained_cfg``, ``label_names``) so that ``timm.create_model("hf-hub:ORG/REPO", pretrained=True)`` loads ResNets."""
    values = dict(cfg.to_dict(), library_name=LIBRARY_NAME)
    timm_name = timm_architecture(cfg)
    model = meta_model(cfg, max(cfg.num_classes, 1))
    head = getattr(model, FAMILIES[cfg.family].classifier)
    values.update(
        architecture=timm_name or cfg.architecture,
        num_features=head.in_features,
        global_pool="avg",
        pretrained_cfg={
            "tag": cfg.name.partition(".")[2] or None, "input_size": list(cfg.input_size), "interpolation": cfg.interpolation,
            "crop_pct": cfg.crop_pct, "crop_mode": "center", "mean": list(cfg.mean), "std": list(cfg.std),
            "num_classes": cfg.num_classes, "first_conv": "conv1", "classifier": FAMILIES[cfg.family].classifier,
            "license": cfg.license, "origin_url": CODE_URL, "paper_ids": "arXiv:1905.04899",
        },
    )
    names = values.pop("label_names", None)
    if cfg.num_classes and cfg.dataset in DATASETS and DATASETS[cfg.dataset].num_classes == cfg.num_classes:
        values["label_names"] = categories(cfg.dataset)
    elif isinstance(names, list) and cfg.num_classes and len(names) == cfg.num_classes:  # a folder run's class folders
        values["label_names"] = [str(n) for n in names]
    return values


def save_pretrained(model: nn.Module, out_dir: str | os.PathLike, cfg: ModelConfig | dict[str, Any] | None = None,
                    card: str | None = None, metadata: dict[str, str] | None = None, repo_id: str | None = None) -> Path:
    """Export ``model`` (its ``pretrained_cfg`` unless ``cfg`` is given) as a Hub-ready folder. The card's snippets load
    ``repo_id`` (the Hub repo it will be published to) where given, else ``out_dir`` as written."""
    model = unwrap(model)
    config = config_of(cfg if cfg is not None else model)
    values = hub_config(config)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise unwritable(out, e) from None
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_safetensors(state, out / WEIGHTS_NAME, {"format": "pt", "name": config.name, **(metadata or {})})
    write_text_atomic(out / CONFIG_NAME, json.dumps(values, indent=2) + "\n")
    if card is None:
        from .cards import render_card

        card = render_card(config, target=os.fspath(out_dir), repo_id=repo_id)
    write_text_atomic(out / "README.md", card)
    return out
