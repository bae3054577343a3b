"""cutmix_zoo: the CutMix-pretrained ResNet, ResNeXt and PyramidNet weights as a model zoo.

    import cutmix_zoo
    backbone = cutmix_zoo.load("resnet50", features_only=True)
    model = cutmix_zoo.load("resnet50.cutmix_in1k", num_classes=10)
"""

from .api import count_parameters, load, reset_classifier, transforms
from .cam import cam
from .detection import detection_backbone
from .errors import DownloadError, InvalidArgumentError, UnknownModelError, WeightsError, ZooError
from .export import save_pretrained
from .predict import predict
from .registry import get_entry, list_models, model_info

__version__ = "0.1.0"
__all__ = [
    "load", "list_models", "model_info", "get_entry", "transforms", "count_parameters", "reset_classifier",
    "predict", "cam", "detection_backbone", "save_pretrained",
    "ZooError", "UnknownModelError", "InvalidArgumentError", "WeightsError", "DownloadError",
]
