"""pycocotools, the optional extra ``detection``: COCO's own annotation index and evaluator, imported only when used."""

from __future__ import annotations

from typing import Any

from ..errors import ZooError

DETECTION_EXTRA = "pip install 'cutmix-zoo[detection]'"


def coco_api() -> tuple[Any, Any]:
    """pycocotools' ``COCO`` (the annotation index) and ``COCOeval`` (the scorer) classes, or one sentence naming the extra."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise ZooError(f"Detection reads COCO annotations and scores mAP with pycocotools, which is not installed: {DETECTION_EXTRA}.") from None
    return COCO, COCOeval
