"""Tiny registry entries for tests: the real loading code on a PyramidNet of a few hundred kilobytes.

The released models are 100-230 MB each; tests register these small stand-ins (same family,
same code path) and build checkpoints from them in each original layout.
"""

from __future__ import annotations

import contextlib
import io
import zipfile
from pathlib import Path

import torch

from cutmix_zoo import registry

ARCH = "tinypyramid20_a12"
FOLDER_ENTRY = f"{ARCH}.cutmix_c10"  # served as a Dropbox folder zip holding a train.py checkpoint
FILE_ENTRY = f"{ARCH}.baseline_c10"  # served as a single bare state dict
FOLDER_PATH = "sh/tinyfolder/AAAtinyfolder"
FILE_PATH = "s/tinyfile/tiny_baseline.pth"


def items() -> list:
    """The tiny architecture and its two entries, for ``registry.registered`` (the ``tiny_registry`` fixture)."""
    arch = registry.Architecture(name=ARCH, family="pyramidnet", args={"depth": 20, "alpha": 12, "bottleneck": False},
                                 description="PyramidNet-20, alpha 12, for tests")
    return [
        arch,
        registry.Entry(name=FOLDER_ENTRY, arch=ARCH, dataset="cifar-10", method="cutmix", top1_err=10.0, top5_err=1.0,
                       err_source="test", original_path=FOLDER_PATH, layout="trainpy"),
        registry.Entry(name=FILE_ENTRY, arch=ARCH, dataset="cifar-10", method="baseline", top1_err=12.0, top5_err=1.5,
                       err_source="test", original_path=FILE_PATH, layout="bare"),
    ]


_KEPT = contextlib.ExitStack()


def register() -> None:
    """Register the tiny models for the rest of this process (a subprocess of a test)."""
    _KEPT.enter_context(registry.registered(*items()))  # kept open: closing the block would unregister them


def state_dict(seed: int) -> dict[str, torch.Tensor]:
    """A randomly initialised tiny model's weights, different for each seed."""
    from cutmix_zoo.models import build_model

    torch.manual_seed(seed)
    model = build_model("pyramidnet", {"depth": 20, "alpha": 12, "bottleneck": False}, 10)
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf.normal_(0, 0.1)
    return model.state_dict()


def logits(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """What a model with ``state`` outputs for ``x`` (the reference every load path must match)."""
    from cutmix_zoo.models import build_model

    model = build_model("pyramidnet", {"depth": 20, "alpha": 12, "bottleneck": False}, 10)
    model.load_state_dict(state)
    with torch.no_grad():
        return model.eval()(x)


def trainpy_bytes(state: dict[str, torch.Tensor], legacy: bool = False) -> bytes:
    """train.py's checkpoint dict (DataParallel ``module.`` keys, optimizer state) as torch.save bytes."""
    params = [torch.nn.Parameter(v.clone()) for k, v in state.items() if v.is_floating_point()][:3]
    optimizer = torch.optim.SGD(params, lr=0.25, momentum=0.9, nesterov=True, weight_decay=1e-4)
    checkpoint = {
        "epoch": 300,
        "arch": "pyramidnet",
        "state_dict": {f"module.{k}": v for k, v in state.items()},
        "best_err1": 14.23,
        "best_err5": 2.97,
        "optimizer": optimizer.state_dict(),
    }
    return save_bytes(checkpoint, legacy)


def save_bytes(obj, legacy: bool = False) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def folder_zip(files: dict[str, bytes]) -> bytes:
    """A zip as Dropbox serves a shared folder with ``?dl=1``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


class _Boom:
    """Unpickling this runs a shell command that creates ``marker``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def malicious_bytes(marker: Path) -> bytes:
    """A checkpoint whose unpickling would run a command; ``marker`` appears only if it ran."""
    return save_bytes({"state_dict": {"conv1.weight": torch.zeros(1)}, "payload": _Boom(marker)})
