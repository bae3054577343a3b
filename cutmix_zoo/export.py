"""Write a model as a Hugging Face Hub folder: model.safetensors, config.json and a README.md card.

The same folder is what ``load(FOLDER)`` reads (like ``from_pretrained("./dir")``), what
``load(name, weights=FOLDER)`` accepts, and what ``cutmix-zoo publish`` uploads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from .builder import CONFIG_NAME, WEIGHTS_NAME, config_of
from .convert import save_safetensors, write_text_atomic
from .model_config import ModelConfig
from .registry import LIBRARY_NAME


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return model


def save_pretrained(model: nn.Module, out_dir: str | os.PathLike, cfg: ModelConfig | dict[str, Any] | None = None,
                    card: str | None = None, metadata: dict[str, str] | None = None) -> Path:
    """Export ``model`` (its ``pretrained_cfg`` unless ``cfg`` is given) as a Hub-ready folder."""
    model = unwrap(model)
    config = config_of(cfg if cfg is not None else model)
    values = dict(config.to_dict(), library_name=LIBRARY_NAME)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_safetensors(state, out / WEIGHTS_NAME, {"format": "pt", "name": config.name, **(metadata or {})})
    write_text_atomic(out / CONFIG_NAME, json.dumps(values, indent=2) + "\n")
    if card is None:
        from .cards import render_card

        card = render_card(config)
    write_text_atomic(out / "README.md", card)
    return out
