"""torch.hub entrypoints made from the registry: one per architecture and one per registry name.

``hubconf.py`` re-exports them, so ``torch.hub.list/help/load`` see a documented function per
model without any of them being written out by hand. torch.hub users may never have run pip, so
the entrypoints need only torch and torchvision: every architecture builds with
``pretrained=False``, and a pretrained load that needs a package the environment lacks says in one
sentence which one to install.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from . import registry

# The packages a pretrained load may import on demand (the Hub client, the weights format, the
# original-release download), mapped to the name pip installs them under.
OPTIONAL_PACKAGES = {
    "huggingface_hub": "huggingface_hub",
    "safetensors": "safetensors",
    "requests": "requests",
    "tqdm": "tqdm",
    "filelock": "filelock",
}

_USAGE = """
``pretrained`` may be given positionally, as in torchvision (``torch.hub.load(REPO, "{fn}", False)``).
Keyword arguments are those of ``cutmix_zoo.load``: pretrained=True, features_only=False,
out_indices=None, num_classes=None, weights=None, revision=None, device=None, dtype=None,
progress=True. Example: ``torch.hub.load(REPO, "{fn}", features_only=True)``.
Needs only torch and torchvision with ``pretrained=False``; pretrained weights need safetensors
(and huggingface_hub, requests and tqdm for the downloaded ones).
"""


def _doc(entry: registry.Entry, fn: str) -> str:
    err = "" if entry.top1_err is None else f" Top-1 error {entry.top1_err:.2f}% ({entry.err_source})."
    return (
        f"{entry.architecture.description}, trained on {entry.data.name} with {entry.method} "
        f"(registry name {entry.name!r}).{err}\n" + _USAGE.format(fn=fn)
    )


def missing_package(error: ImportError) -> str | None:
    """The pip name of the optional package whose absence raised ``error``, or None for any other import error."""
    name = getattr(error, "name", None) or ""
    return OPTIONAL_PACKAGES.get(name.split(".")[0]) if isinstance(error, ModuleNotFoundError) else None


def _entrypoint(name: str, fn: str) -> Callable[..., nn.Module]:
    entry = registry.get_entry(name)

    def entrypoint(pretrained: bool = True, **kwargs: Any) -> nn.Module:
        from .api import load

        try:
            return load(name, pretrained, **kwargs)
        except ModuleNotFoundError as e:
            package = missing_package(e)
            if package is None:
                raise
            raise ModuleNotFoundError(
                f"Loading the weights of {entry.name} needs the {package} package, which is not installed: pip install {package}.",
                name=e.name,
            ) from None

    entrypoint.__name__ = entrypoint.__qualname__ = fn
    entrypoint.__doc__ = _doc(entry, fn)
    return entrypoint


def hub_entrypoints() -> dict[str, Callable[..., nn.Module]]:
    """``{"resnet50": ..., "resnet50_mixup_in1k": ..., ...}``: bare architectures and full names, ``.`` as ``_``."""
    names = registry.list_models(architectures=True) + registry.list_models()
    return {n.replace(".", "_"): _entrypoint(n, n.replace(".", "_")) for n in names}
