"""cutmix_zoo: the CutMix-pretrained ResNet, ResNeXt and PyramidNet weights as a model zoo.

    import cutmix_zoo
    backbone = cutmix_zoo.load("resnet50", features_only=True)
    model = cutmix_zoo.load("resnet50.cutmix_in1k", num_classes=10)

Importing the package loads only the registry and the error classes; the functions that need
torch load on first use (PEP 562), so ``cutmix-zoo list`` and ``--help`` answer without torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from .errors import DownloadError, InvalidArgumentError, UnknownModelError, WeightsError, ZooError
from .registry import get_entry, list_models, model_info

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "load": "api", "count_parameters": "api", "reset_classifier": "api", "transforms": "api",
    "cam": "cam", "predict": "predict", "detection_backbone": "detection", "save_pretrained": "export",
    "localize": "localize",
}
__all__ = [
    "load", "list_models", "model_info", "get_entry", "transforms", "count_parameters", "reset_classifier",
    "predict", "cam", "detection_backbone", "save_pretrained",
    "ZooError", "UnknownModelError", "InvalidArgumentError", "WeightsError", "DownloadError",
]

if TYPE_CHECKING:
    from .api import count_parameters, load, reset_classifier, transforms
    from .cam import cam
    from .detection import detection_backbone
    from .export import save_pretrained
    from .predict import predict


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'cutmix_zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Keeps ``cutmix_zoo.cam`` and ``cutmix_zoo.predict`` the functions when their same-named modules are imported
    (the import system would otherwise bind the module over the function)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
