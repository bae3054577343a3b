"""What the report commands (robustness, localize, transfer) share, below them: the ``--output`` folder, its
``report.json``, the ``--models`` list and a file name for each, the command line a report records, and the Shapes-10 benchmark.

Every report command takes ``--output DIR`` and writes ``report.json`` and its PNG pictures there, and
prints its table. ``shapes`` in place of data (``--data shapes``, ``localize NAME shapes``) is the
generated Shapes-10 test split, whose generator also says where each shape is: an annotated benchmark
that needs no download.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, ZooError

SHAPES = "shapes"


def shapes_benchmark(limit: int = 0, split: str = "test") -> tuple[list[Any], list[int], list[str], list[tuple[int, int, int, int]]]:
    """The first ``limit`` (0: all) images of a Shapes-10 split as PIL images, their labels, the class names, and the
    box of each image's shape ``(left, top, right, bottom)``, right and bottom exclusive."""
    from PIL import Image

    from ..reports.localize import mask_box
    from ..shapes import Shapes

    data = Shapes(split)
    masks = data.shape_masks()
    count = min(limit, len(data)) if limit else len(data)
    images = [Image.fromarray(data.images[i].permute(1, 2, 0).numpy()) for i in range(count)]
    return images, data.targets[:count].tolist(), list(data.classes), [mask_box(masks[i]) for i in range(count)]


def output_folder(path: str) -> Path:
    """The ``--output`` folder of a report command, created if needed; one sentence when it cannot be."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InvalidArgumentError(f"The output {out} exists and is not a folder.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InvalidArgumentError(f"Could not create the output folder {out} ({e.strerror or e}).") from None
    return out


def write_report(path: Path, report: dict[str, Any]) -> None:
    """A report command's ``report.json``, written atomically; one sentence when it cannot be."""
    from ..files import write_text_atomic

    try:
        write_text_atomic(path, json.dumps(report, indent=2) + "\n")
    except OSError as e:
        raise ZooError(f"Could not write {path} ({e.strerror or e}).") from None


def model_names(text: str) -> list[str]:
    """The models of a comma-separated ``--models`` list: at least one, none twice."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise InvalidArgumentError("--models needs at least one model name, e.g. --models resnet50.cutmix_in1k,resnet50.baseline_in1k.")
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"--models names a model twice: {text}.")
    return names


def file_safe(name: str) -> str:
    """A model name or folder as one file name: anything but letters, digits, ``.``, ``-`` and ``_`` becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name.strip("/")) or "model"


def command_line(name: str, argv: Sequence[str]) -> str:
    """The ``cutmix-zoo NAME ARGS`` line a report records, quoted as a shell would need it."""
    return shlex.join(["cutmix-zoo", name, *argv])
