"""A trained detector as a folder (``model.safetensors``, ``config.json``, ``README.md``) and :func:`load_detector`,
which builds it again from the config and its weights, in eval mode, carrying its class names."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from torch import nn

from ..errors import WeightsError
from ..files import CONFIG_NAME, WEIGHTS_NAME, write_text_atomic
from ..hub.convert import save_safetensors
from .models import build_detector


def export_detector(model: nn.Module, classes: tuple[str, ...], folder: str | os.PathLike, init: str,
                    metrics: Mapping[str, Any] | None = None, split: str = "val") -> Path:
    """Write ``model`` (built by :func:`~cutmix_zoo.detection.models.build_detector`) to ``folder``: its weights, its
    ``detector_config`` with the class names, and a card naming ``init`` as ``base_model`` and stating only ``metrics``
    (what the run measured on ``split``)."""
    folder = Path(folder)
    config = {**cast(dict, model.detector_config), "classes": list(classes), "init": init}
    save_safetensors(model.state_dict(), folder / WEIGHTS_NAME)
    write_text_atomic(folder / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    write_text_atomic(folder / "README.md", detector_card(config, metrics, split))
    return folder


def detector_card(config: Mapping[str, Any], metrics: Mapping[str, Any] | None, split: str) -> str:
    """The model card: the init as ``base_model``, the detector and its classes, and the measured mAP, nothing else."""
    lines = ["---", f"base_model: {config['init']}", "library_name: cutmix-zoo", "pipeline_tag: object-detection", "tags:",
             "- object-detection", f"- {config['detector']}", "---", "",
             f"# {config['detector']} on {config['backbone']}", "",
             f"A torchvision {config['detector']} with an FPN on the zoo backbone `{config['backbone']}` (initialised from "
             f"`{config['init']}`), fine-tuned for {len(config['classes'])} classes: {', '.join(config['classes'])}.", ""]
    if metrics:
        lines += [f"Measured by this run on its `{split}` split (COCO's evaluation through pycocotools):", "",
                  "| mAP@[.5:.95] | mAP@0.5 | mAP@0.75 |", "|---|---|---|",
                  f"| {100 * metrics['map']:.2f} | {100 * metrics['map50']:.2f} | {100 * metrics['map75']:.2f} |", ""]
    else:
        lines += ["No evaluation was run, so no accuracy is stated.", ""]
    lines += ["```python", "from cutmix_zoo.detection.export import load_detector", "", "model = load_detector(FOLDER)",
              "detections = model([image])  # image: a float CHW tensor in [0, 1]", "```", ""]
    return "\n".join(lines)


def load_detector(folder: str | os.PathLike) -> nn.Module:
    """The detector exported to ``folder``, in eval mode and callable on a list of CHW float tensors in [0, 1] as
    torchvision's detectors are, with its class names as ``classes`` (label k is ``classes[k - 1]``)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
        known = ("backbone", "num_classes", "detector", "freeze_stages", "out_channels", "min_size", "max_size", "levels")
        args = {key: config[key] for key in known}
        classes = tuple(config["classes"])
    except (OSError, ValueError, KeyError) as e:
        raise WeightsError(f"{folder} holds no readable detector config.json ({e!r}); export the detector again.") from None
    model = build_detector(**args, pretrained=False, **config.get("detector_kwargs", {}))
    try:
        model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
    except (OSError, RuntimeError) as e:
        raise WeightsError(f"{folder / WEIGHTS_NAME} does not hold this detector's weights ({str(e).splitlines()[0]}).") from None
    model.classes = classes  # type: ignore[assignment]  # nn.Module.__setattr__ is typed for Tensor | Module only
    return model.eval()
