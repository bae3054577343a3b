"""The one generic build path below every loader: a name or folder to its config, a weights file to
tensors, and config + tensors to a ready module.

``hub`` (which decides where weights come from and fetches them) and ``api`` (which users call) both sit on this
module, and it imports neither: imports run registry/models -> builder -> hub -> api -> commands.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from torch import nn

from .errors import WeightsError
from .fastload import assign_tensors, build_on_meta, check_state_dict, tensor_slots
from .files import CONFIG_NAME
from .model_config import ModelConfig, pretrained_cfg_of, set_pretrained_cfg
from .models import FAMILIES, build_model
from .registry import Entry, get_entry, is_registry_name


def is_exported_folder(name: str | os.PathLike) -> bool:
    """Whether ``name`` is a folder holding a config.json (an export, like ``from_pretrained("./dir")``).

    A registry name always means the registry's model, even where the working directory holds a folder
    of that name: such a folder is loaded when written as a path (``./resnet50``) or given as a ``Path``.
    """
    if isinstance(name, str) and is_registry_name(name):
        return False
    return os.path.isfile(os.path.join(name, CONFIG_NAME))


def resolve_name(name: str | os.PathLike) -> tuple[Entry | None, ModelConfig]:
    """The registry entry (None for an exported folder) and the config of a registry name or exported folder."""
    if is_exported_folder(name):
        return None, read_config(os.path.join(name, CONFIG_NAME))
    entry = get_entry(str(name))
    return entry, ModelConfig.from_entry(entry)


def read_config(path: str | os.PathLike) -> ModelConfig:
    """The config an export's ``config.json`` at ``path`` states (an exported folder's, or a Hub repo's)."""
    try:
        with open(path) as f:
            values = json.load(f)
    except (OSError, ValueError) as e:
        raise WeightsError(f"{path} is not a readable JSON config ({e}); export the folder again.") from e
    if not isinstance(values, dict):
        raise WeightsError(f"{path} is not a JSON object, so it describes no cutmix_zoo model.")
    return ModelConfig.from_dict(values, where=str(path))


def resolve_config(name: str | os.PathLike) -> ModelConfig:
    """The config of a registry name, or of an exported folder (its config.json)."""
    return resolve_name(name)[1]


def meta_model(cfg: ModelConfig, num_classes: int | None = None) -> nn.Module:
    """The config's network on the meta device (no memory, no initialisers): for shapes, keys and counts."""
    return build_on_meta(cfg.family, cfg.arch_args, cfg.num_classes if num_classes is None else num_classes)


def expected_state(cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """The state dict (meta tensors) a checkpoint of ``cfg`` must match, key for key and shape for shape."""
    return meta_model(cfg).state_dict()


def count_parameters(cfg: ModelConfig, num_classes: int | None = None) -> int:
    """Number of parameters of the config's network, counted on the meta device."""
    return sum(p.numel() for p in meta_model(cfg, num_classes).parameters())


def build_with_weights(cfg: ModelConfig, state: dict[str, torch.Tensor], source: str, head_kept: bool,
                       device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> nn.Module:
    """Build the network on the meta device and put the checkpoint's tensors in it.

    Keys and shapes are checked first (one sentence naming what differs); the classifier may be
    absent or of another size when ``head_kept`` is False (it is dropped or replaced afterwards).
    """
    classifier = FAMILIES[cfg.family].classifier
    headless = f"{classifier}.weight" not in state and cfg.num_classes == 0  # an export of a num_classes=0 model
    ckpt_classes = state[f"{classifier}.weight"].shape[0] if f"{classifier}.weight" in state else cfg.num_classes
    model = meta_model(cfg, ckpt_classes)
    slots, non_persistent = tensor_slots(model)
    optional = () if head_kept and not headless else (f"{classifier}.",)
    expected = {key: tensor for key, (_, _, tensor) in slots.items()}
    check_state_dict(state, expected, f"{cfg.name} ({cfg.architecture or cfg.family})", source, optional)
    not_float = [k for k, v in state.items() if k in expected and expected[k].is_floating_point() and not v.is_floating_point()]
    if not_float:
        raise WeightsError(f"The weights in {source} hold {state[not_float[0]].dtype} tensors ({not_float[0]}, ...) where "
                           f"{cfg.name} has floating parameters: quantised checkpoints are not supported; give float weights.")
    # Half-precision files load as the model's float32 unless a dtype is asked for (as load_state_dict would copy them).
    target = dtype or torch.float32
    state = {k: v.to(target) if v.is_floating_point() and v.dtype != target else v for k, v in state.items()}
    if non_persistent:  # such buffers are not in a checkpoint, so the model needs an ordinary build
        model = build_model(cfg.family, cfg.arch_args, ckpt_classes).to(device=device, dtype=dtype)
        model.load_state_dict(state, strict=head_kept)
    else:
        assign_tensors(model, state)
    if headless:
        model.num_features = getattr(model, classifier).in_features
        setattr(model, classifier, nn.Identity())
    set_pretrained_cfg(model, dict(cfg.to_dict(), num_classes=ckpt_classes, source=source))
    return model


def build_random(cfg: ModelConfig, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> nn.Module:
    """The config's network with its own random initialisation (``pretrained=False``)."""
    model = build_model(cfg.family, cfg.arch_args, cfg.num_classes).to(device=device, dtype=dtype)
    set_pretrained_cfg(model, dict(cfg.unmeasured().to_dict(), source=None))  # the release's results are not these weights
    return model


def config_of(model_or_cfg: Any) -> ModelConfig:
    """The typed config of a loaded model (its ``pretrained_cfg``), a config dict, or a config."""
    if isinstance(model_or_cfg, ModelConfig):
        return model_or_cfg
    values = pretrained_cfg_of(model_or_cfg) if isinstance(model_or_cfg, nn.Module) else model_or_cfg
    return ModelConfig.from_dict({k: v for k, v in values.items() if k not in ("source", "features_only")}, where="pretrained_cfg")
