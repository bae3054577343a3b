"""timm's names for the zoo's networks: which timm builder makes the same network with the same state-dict keys, so
that an export's config.json and card can name it (``timm.create_model("hf-hub:ORG/REPO", pretrained=True)``)."""

from __future__ import annotations

from ..model_config import ModelConfig


def timm_architecture(cfg: ModelConfig) -> str | None:
    """timm's name for the config's network where timm builds it with the same state-dict keys (ResNets, ResNeXts)."""
    if cfg.family != "resnet":
        return None
    args = cfg.arch_args
    layers, groups, width = list(args["layers"]), args.get("groups", 1), args.get("width_per_group", 64)
    depth = (3 if args.get("bottleneck", True) else 2) * sum(layers) + 2
    names = {(18, 1, 64): "resnet18", (34, 1, 64): "resnet34", (50, 1, 64): "resnet50", (101, 1, 64): "resnet101",
             (152, 1, 64): "resnet152", (200, 1, 64): "resnet200", (50, 32, 4): "resnext50_32x4d",
             (101, 32, 4): "resnext101_32x4d", (101, 32, 8): "resnext101_32x8d", (101, 64, 4): "resnext101_64x4d"}
    return names.get((depth, groups, width))
