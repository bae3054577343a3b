"""The fast load path: build a model without initialising it, then put checkpoint tensors in its slots.

Random initialisation is thrown away by a load, and ``load_state_dict``'s per-module hooks cost a
third of a ResNet-50 load, so a load builds on the meta device with ``torch.nn.init`` skipped and
assigns each tensor to its slot directly; a test shows that this gives the same model as
``load_state_dict(assign=True)``.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from .errors import WeightsError
from .models import build_model

_init_lock = threading.Lock()
_SHOWN_KEYS = 5


@contextlib.contextmanager
def skip_init() -> Iterator[None]:
    """Make ``torch.nn.init``'s in-place initialisers no-ops in this thread while a meta-device model is built.

    Their values would be thrown away by the weights about to be assigned; skipping them makes a
    ResNet-50 build about four times faster. Other threads keep initialising normally (the stand-ins
    check the calling thread), and a lock keeps two of our builds from patching at once.
    """
    init = torch.nn.init
    names = [n for n in dir(init) if n.endswith("_") and not n.startswith("_") and callable(getattr(init, n))]
    builder = threading.get_ident()

    def skipping(original: Any) -> Any:
        def initialiser(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            if threading.get_ident() == builder:
                return tensor
            return original(tensor, *args, **kwargs)

        return initialiser

    with _init_lock:
        saved = {n: getattr(init, n) for n in names}
        try:
            for n in names:
                setattr(init, n, skipping(saved[n]))
            yield
        finally:
            for n, fn in saved.items():
                setattr(init, n, fn)


def build_on_meta(family: str, args: Mapping[str, Any], num_classes: int) -> nn.Module:
    """A model of ``family`` on the meta device, built without running its initialisers (no memory, no time)."""
    with torch.device("meta"), skip_init():
        return build_model(family, dict(args), num_classes)


def tensor_slots(model: nn.Module) -> tuple[dict[str, tuple[nn.Module, str, torch.Tensor]], bool]:
    """Every state-dict slot of ``model`` (key -> owning module, attribute, tensor), and whether it has non-persistent buffers."""
    slots: dict[str, tuple[nn.Module, str, torch.Tensor]] = {}
    non_persistent = False
    for prefix, module in model.named_modules():
        dot = prefix + "." if prefix else ""
        for attr, tensor in module._parameters.items():
            if tensor is not None:
                slots[dot + attr] = (module, attr, tensor)
        for attr, buffer in module._buffers.items():
            if buffer is None:
                continue
            if attr in module._non_persistent_buffers_set:
                non_persistent = True
            else:
                slots[dot + attr] = (module, attr, buffer)
    return slots, non_persistent


def assign_tensors(model: nn.Module, state: Mapping[str, torch.Tensor], direct: bool = True) -> None:
    """Put ``state``'s tensors into ``model``'s slots; keys and shapes were checked before, and a slot ``state`` lacks keeps its tensor.

    ``direct=True`` assigns slot by slot, which is what ``load_state_dict(assign=True)`` does without
    its per-module hook machinery; ``direct=False`` calls ``load_state_dict(assign=True)`` itself
    (the reference the fast path is tested against). A model with non-persistent buffers cannot be
    filled from the meta device (a checkpoint does not hold them): build it normally and load into it.
    """
    if not direct:
        model.load_state_dict(dict(state), strict=False, assign=True)
        return
    for key, (module, attr, old) in tensor_slots(model)[0].items():
        if key not in state:
            continue  # an optional key (a classifier that is dropped or replaced)
        if attr in module._parameters:
            module._parameters[attr] = nn.Parameter(state[key], requires_grad=old.requires_grad)
        else:
            module._buffers[attr] = state[key]


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f" and {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else "")


def check_state_dict(
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    what: str,
    source: str,
    optional_prefixes: tuple[str, ...] = (),
) -> None:
    """Raise one sentence naming the missing, unexpected and mismatched keys if ``state`` does not fit."""
    missing = [k for k in expected if k not in state and not k.startswith(optional_prefixes)]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if k in state and state[k].shape != v.shape
    ]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({_listed(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({_listed(unexpected)})")
    if mismatched:
        parts.append(f"{len(mismatched)} keys of another shape ({_listed(mismatched)})")
    raise WeightsError(f"The weights in {source} do not fit {what}: {'; '.join(parts)}.")


_FLOATS = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def nonfinite_in_safetensors(path: str | os.PathLike) -> list[str]:
    """The floating tensors of a safetensors file that hold a NaN or an infinity, in file order, read with plain reads.

    A load memory-maps the file and touches none of its pages; summing the mapped tensors would fault each page in (about
    350 ms for a ResNet-50), while reading the bytes through the page cache costs a copy (tens of milliseconds).
    """
    bad = []
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        tensors = sorted((v["data_offsets"], k, v["dtype"]) for k, v in header.items() if k != "__metadata__")
        for (start, end), name, dtype in tensors:
            if dtype not in _FLOATS or end <= start:
                continue
            f.seek(8 + size + start)
            data = bytearray(end - start)
            f.readinto(data)
            values = torch.frombuffer(data, dtype=_FLOATS[dtype])
            if not bool(torch.isfinite(values.sum(dtype=torch.float32))) and not bool(torch.isfinite(values).all()):
                bad.append(name)
    return bad


def refuse_nonfinite(bad: list[str], source: str, outcome: str) -> None:
    """Raise one sentence naming the first of ``bad``, the tensors found holding a NaN or an infinity (none: nothing)."""
    if bad:
        more = f" and {len(bad) - 1} other tensors" if len(bad) > 1 else ""
        raise WeightsError(f"The weights in {source} hold non-finite values (NaN or infinity) in {bad[0]}{more}; "
                           f"a network trained to these numbers is broken, {outcome}.")


def check_finite(state: Mapping[str, torch.Tensor], source: str, outcome: str = "so they were not converted") -> None:
    """Raise one sentence naming the first tensor of ``state`` that holds a NaN or an infinity, ending with ``outcome``.

    Each tensor's sum is checked first (one pass, about 20 ms for a ResNet-50 on two cores): a NaN or an infinity
    anywhere makes it non-finite; only then is every element looked at, so that huge finite values are no false alarm.
    """
    floats = [(k, v) for k, v in state.items() if v.is_floating_point()]
    if not floats or bool(torch.isfinite(torch.stack([v.sum(dtype=torch.float32) for _, v in floats])).all()):
        return
    refuse_nonfinite([k for k, v in floats if not bool(torch.isfinite(v).all())], source, outcome)
