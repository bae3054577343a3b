"""torch.hub entrypoints made from the registry: one per architecture and one per registry name.

``hubconf.py`` re-exports them, so ``torch.hub.list/help/load`` see a documented function per
model without any of them being written out by hand.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from . import registry

_USAGE = """
Keyword arguments are those of ``cutmix_zoo.load``: pretrained=True, features_only=False,
out_indices=None, num_classes=None, weights=None, revision=None, device=None, dtype=None,
progress=True. Example: ``torch.hub.load(REPO, "{fn}", features_only=True)``.
"""


def _doc(entry: registry.Entry, fn: str) -> str:
    err = "" if entry.top1_err is None else f" Top-1 error {entry.top1_err:.2f}% ({entry.err_source})."
    return (
        f"{entry.architecture.description}, trained on {entry.data.name} with {entry.method} "
        f"(registry name {entry.name!r}).{err}\n" + _USAGE.format(fn=fn)
    )


def _entrypoint(name: str, fn: str) -> Callable[..., nn.Module]:
    def entrypoint(**kwargs: Any) -> nn.Module:
        from .api import load

        return load(name, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = fn
    entrypoint.__doc__ = _doc(registry.get_entry(name), fn)
    return entrypoint


def hub_entrypoints() -> dict[str, Callable[..., nn.Module]]:
    """``{"resnet50": ..., "resnet50_mixup_in1k": ..., ...}``: bare architectures and full names, ``.`` as ``_``."""
    names = registry.list_models(architectures=True) + registry.list_models()
    return {n.replace(".", "_"): _entrypoint(n, n.replace(".", "_")) for n in names}
