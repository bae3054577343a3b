"""cutmix_zoo: the CutMix-pretrained ResNet, ResNeXt and PyramidNet weights as a model zoo.

    import cutmix_zoo
    backbone = cutmix_zoo.load("resnet50", features_only=True)
    model = cutmix_zoo.load("resnet50.cutmix_in1k", num_classes=10)

Importing the package loads only the registry and the error classes; the functions that need
torch load on first use (PEP 562), so ``cutmix-zoo list`` and ``--help`` answer without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import DownloadError, InvalidArgumentError, OutputError, UnknownModelError, WeightsError, ZooError
from .registry import get_entry, list_models, model_info

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "load": "api", "count_parameters": "api", "reset_classifier": "api", "transforms": "api",
    "cam": "reports.cam", "predict": "reports.predict", "localize": "reports.localize",
    "detection_backbone": "detection.backbone", "load_detector": "detection.export", "save_pretrained": "hub.export",
}
__all__ = [
    "load", "list_models", "model_info", "get_entry", "transforms", "count_parameters", "reset_classifier",
    "predict", "cam", "localize", "detection_backbone", "load_detector", "save_pretrained",
    "ZooError", "UnknownModelError", "InvalidArgumentError", "WeightsError", "DownloadError", "OutputError",
]

if TYPE_CHECKING:
    from .api import count_parameters, load, reset_classifier, transforms
    from .detection.backbone import detection_backbone
    from .detection.export import load_detector
    from .hub.export import save_pretrained
    from .reports.cam import cam
    from .reports.localize import localize
    from .reports.predict import predict


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'cutmix_zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

