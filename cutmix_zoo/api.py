"""``load()``: the one straight path from a name to a ready module.

name -> registry entry (or an exported folder's config.json) -> weights file -> build on the meta
device with initialisers skipped -> checked tensors assigned to their slots -> adapt the head
(features_only / num_classes) -> module carrying its ``pretrained_cfg``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .convert import check_state_dict
from .errors import InvalidArgumentError, WeightsError
from .fastload import assign_tensors, build_on_meta, tensor_slots
from .features import FeatureListNet
from .models import FAMILIES, build_model
from .registry import get_entry

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_CFG_KEYS = ("name", "architecture", "family", "arch_args", "num_classes", "dataset", "input_size", "mean", "std",
             "interpolation", "crop_pct", "resize", "hub_repo", "license")


def _is_folder(name: str | os.PathLike) -> bool:
    return os.path.isfile(os.path.join(name, CONFIG_NAME))


def resolve_config(name: str | os.PathLike) -> dict[str, Any]:
    """The pretrained_cfg of a registry name, or of an exported folder (its config.json)."""
    if _is_folder(name):
        with open(os.path.join(name, CONFIG_NAME)) as f:
            cfg = json.load(f)
        missing = [k for k in ("family", "arch_args", "num_classes") if k not in cfg]
        if missing or cfg["family"] not in FAMILIES:
            raise WeightsError(f"{os.path.join(name, CONFIG_NAME)} does not describe a cutmix_zoo model (it needs family, arch_args and num_classes).")
        return cfg
    info = get_entry(str(name)).as_dict()
    return {k: info[k] for k in _CFG_KEYS}


def read_state_dict(path: str | os.PathLike, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a weights file: safetensors, an exported folder, or an original .pth/.pth.tar."""
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise WeightsError(f"The weights file {path} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path, device=str(device) if device is not None else "cpu")
        except SafetensorError as e:
            raise WeightsError(f"Could not read {path} as a safetensors file: {e}.") from None
    from .convert import load_original

    state, _ = load_original(path)
    return state if device is None else {k: v.to(device) for k, v in state.items()}


def _build_on_meta(cfg: dict[str, Any], num_classes: int) -> nn.Module:
    return build_on_meta(cfg["family"], cfg["arch_args"], num_classes)


def _load_weights(cfg: dict[str, Any], state: dict[str, torch.Tensor], source: str, head_kept: bool,
                  device: torch.device | str | None, dtype: torch.dtype | None) -> nn.Module:
    """Build the model on the meta device and assign the checkpoint's tensors to it.

    Keys and shapes are checked first (one sentence naming what differs); then each tensor is put
    in its slot directly, which is what ``load_state_dict(assign=True)`` does, without its
    per-module hook machinery (a third of a ResNet-50 load).
    """
    classifier = FAMILIES[cfg["family"]].classifier
    ckpt_classes = state[f"{classifier}.weight"].shape[0] if f"{classifier}.weight" in state else cfg["num_classes"]
    model = _build_on_meta(cfg, ckpt_classes)
    slots, non_persistent = tensor_slots(model)
    optional = () if head_kept else (f"{classifier}.",)
    expected = {key: tensor for key, (_, _, tensor) in slots.items()}
    check_state_dict(state, expected, f"{cfg['name']} ({cfg['architecture'] or cfg['family']})", source, optional)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    if non_persistent:  # such buffers are not in a checkpoint, so the model needs an ordinary build
        model = build_model(cfg["family"], cfg["arch_args"], ckpt_classes).to(device=device, dtype=dtype)
        model.load_state_dict(state, strict=head_kept)
    else:
        assign_tensors(model, state)
    model.pretrained_cfg = dict(cfg, num_classes=ckpt_classes, source=source)
    return model


def load(
    name: str | os.PathLike,
    pretrained: bool = True,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    num_classes: int | None = None,
    weights: str | os.PathLike | None = None,
    revision: str | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
) -> nn.Module:
    """A zoo model by registry name (``"resnet50"``, ``"resnet50.mixup_in1k"``) or exported folder.

    ``features_only=True`` returns a multi-scale feature extractor (``out_indices`` picks levels);
    ``num_classes=0`` a pooled-embedding model; ``num_classes=N`` a fresh N-way head on the
    pretrained backbone. Weights come from ``weights`` (a local file) when given, else from the
    Hugging Face Hub or the original release (``revision`` pins a Hub commit, branch or tag).
    The model is returned in eval mode on ``device`` (CPU by default) in ``dtype``.
    """
    cfg = resolve_config(name)
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 0):
        raise InvalidArgumentError(f"num_classes must be a non-negative integer (0 for pooled embeddings), not {num_classes!r}.")
    if features_only and num_classes is not None:
        raise InvalidArgumentError("num_classes has no meaning with features_only=True, which removes the classifier.")
    if out_indices is not None and not features_only:
        raise InvalidArgumentError("out_indices selects feature levels, so it needs features_only=True.")
    family = FAMILIES[cfg["family"]]
    if _is_folder(name) and weights is None and pretrained:
        weights = name
    head_kept = not features_only and num_classes in (None, cfg["num_classes"])

    if weights is not None:
        model = _load_weights(cfg, read_state_dict(weights, device), str(weights), head_kept, device, dtype)
    elif pretrained:
        from .weights import fetch_weights

        path = fetch_weights(get_entry(str(name)), revision=revision, progress=progress)
        model = _load_weights(cfg, read_state_dict(path, device), str(path), head_kept, device, dtype)
    else:
        model = build_model(cfg["family"], cfg["arch_args"], cfg["num_classes"]).to(device=device, dtype=dtype)
        model.pretrained_cfg = dict(cfg, source=None)

    cfg = model.pretrained_cfg
    if features_only:
        model = FeatureListNet(model, family.feature_points(model), out_indices)
        model.pretrained_cfg = dict(cfg, num_classes=0, features_only=True)
    elif num_classes is not None and num_classes != cfg["num_classes"]:
        reset_classifier(model, num_classes, device=device, dtype=dtype)
    return model.eval()


def reset_classifier(model: nn.Module, num_classes: int, device: torch.device | str | None = None,
                     dtype: torch.dtype | None = None) -> None:
    """Replace the classifier with a freshly initialised ``num_classes``-way one (0: no head)."""
    family = FAMILIES[model.pretrained_cfg["family"]]
    old = getattr(model, family.classifier)
    in_features = old.in_features if isinstance(old, nn.Linear) else model.num_features
    head = nn.Identity() if num_classes == 0 else nn.Linear(in_features, num_classes, device=device, dtype=dtype)
    setattr(model, family.classifier, head)
    model.num_features = in_features
    model.pretrained_cfg = dict(model.pretrained_cfg, num_classes=num_classes)


def transforms(name_or_model: str | os.PathLike | nn.Module | dict[str, Any]) -> Any:
    """The eval transform of a model: resize, centre crop, to tensor, normalise (like torchvision's ``weights.transforms()``)."""
    from torchvision import transforms as T

    if isinstance(name_or_model, nn.Module):
        cfg = name_or_model.pretrained_cfg
    elif isinstance(name_or_model, dict):
        cfg = name_or_model
    else:
        cfg = resolve_config(name_or_model)
    size = cfg["input_size"][-1]
    interpolation = T.InterpolationMode(cfg["interpolation"])
    return T.Compose([
        T.Resize(round(size / cfg["crop_pct"]), interpolation=interpolation),
        T.CenterCrop(size),
        T.ToTensor(),
        T.Normalize(cfg["mean"], cfg["std"]),
    ])


def count_parameters(name: str | os.PathLike, num_classes: int | None = None) -> int:
    """Number of parameters of a model, counted on the meta device (no memory, no weights)."""
    cfg = resolve_config(name)
    model = _build_on_meta(cfg, cfg["num_classes"] if num_classes is None else num_classes)
    return sum(p.numel() for p in model.parameters())
