"""Class names of the datasets the zoo's models were trained on, in the order of their logits.

ImageNet-1k's names come from torchvision's weights metadata (already installed, nothing to
download); CIFAR's are the datasets' own label names, written out here; Shapes-10's (the embedded
models' generated data) are written here and drawn in this order by its generator.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import InvalidArgumentError

# Shapes-10, the embedded models' generated data (cutmix_zoo.shapes draws them in this order).
# Novel-Shapes, the generated transfer task: ten shapes that are not in Shapes-10 (cutmix_zoo.shapes).
NOVEL_SHAPES = ("star", "crescent", "ellipse", "l-shape", "t-shape", "arrow", "hexagon", "dome", "hourglass", "dot pair")

SHAPES10 = ("circle", "square", "triangle", "ring", "plus", "cross", "diamond", "horizontal bar", "vertical bar", "hollow square")

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

CIFAR100 = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)


def _imagenet() -> list[str]:
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


_SOURCES: dict[str, Callable[[], list[str]]] = {
    "imagenet-1k": _imagenet,
    "cifar-100": lambda: list(CIFAR100),
    "cifar-10": lambda: list(CIFAR10),
    "shapes-10": lambda: list(SHAPES10),
}


def categories(dataset: str) -> list[str]:
    """The class names of ``dataset`` (a registry dataset name such as "imagenet-1k" or "cifar-100"), in logit order."""
    if dataset not in _SOURCES:
        raise InvalidArgumentError(f"No class names are known for the dataset {dataset!r}; the known ones are {', '.join(_SOURCES)}.")
    return _SOURCES[dataset]()
