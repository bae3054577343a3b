"""Read the original release's checkpoints safely and turn them into checked safetensors files.

The original files are ``torch.save`` pickles in three layouts (train.py's dict whose weights sit
under ``state_dict`` with DataParallel's ``module.`` prefix; a flat ``module.`` state dict; a bare
torchvision state dict). They are only ever opened with ``torch.load(weights_only=True)``, so a
crafted pickle is refused before any of its code can run.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..builder import expected_state
from ..errors import WeightsError
from ..fastload import check_finite, check_state_dict
from ..files import WEIGHTS_NAME, atomic_path, not_a_checkpoint, unwritable
from ..model_config import ModelConfig

_MODULE_PREFIX = "module."


def _numpy_safe_globals() -> list[Any]:
    """numpy scalar reconstructors, which some 2019 checkpoints use for ``best_err1``; they run no code."""
    try:
        import numpy as np
    except ImportError:
        return []
    core = getattr(np, "_core", None) or np.core
    allowed = [core.multiarray.scalar, np.dtype]
    allowed += [type(np.dtype(t)) for t in ("float64", "float32", "int64")]
    return allowed


def _torch_load(path: Path, label: str | None = None) -> Any:
    """``torch.load(weights_only=True)``; a failure is one sentence that says what the file is, naming ``label`` (a URL,
    say) instead of a temporary path."""
    name = label or str(path)
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError) as e:
        kind = not_a_checkpoint(path) if path.is_file() else None
        if kind is not None:
            raise WeightsError(f"The file {name} is {kind}, not a PyTorch checkpoint{_KIND_HINTS.get(kind, '')}.") from e
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        if isinstance(e, pickle.UnpicklingError):
            # torch's message starts with how to load the file anyway (weights_only=False): never repeated here
            found = [line for line in lines if "GLOBAL" in line or "nsupported" in line]
            reason = f" ({found[0][:200].rstrip('.')})" if found else ""
            raise WeightsError(f"Refused to load {name}: it holds Python objects other than tensors, "
                               f"and unpickling them could run code{reason}.") from e
        reason = lines[0][:200].rstrip(".") if lines else type(e).__name__
        raise WeightsError(f"Could not read {name} as a PyTorch checkpoint: {reason}.") from e


_KIND_HINTS = {
    "an HTML page": " (a file host answers with a page when a link was removed or is rate-limited)",
    "a safetensors file": " (a file whose name ends in .safetensors is read as one)",
}


def load_original(path: str | os.PathLike, label: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict of an original-release file, ``module.`` stripped, and the layout's metadata; errors name
    ``label`` (e.g. the URL a temporary file came from) where given, else ``path``."""
    path = Path(path)
    obj = _torch_load(path, label)
    meta: dict[str, Any] = {}
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        meta = {k: obj[k] for k in ("epoch", "arch", "best_err1", "best_err5") if k in obj and isinstance(obj[k], (int, float, str))}
        meta["layout"] = "trainpy"
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"{label or path} is not a checkpoint layout cutmix_zoo knows: expected train.py's dict with a 'state_dict' "
            "entry, or a state dict of tensors."
        )
    prefixed = all(k.startswith(_MODULE_PREFIX) for k in obj)
    meta.setdefault("layout", "module" if prefixed else "bare")
    state = {(k[len(_MODULE_PREFIX):] if k.startswith(_MODULE_PREFIX) else k): v for k, v in obj.items()}
    return state, meta


def save_safetensors(state: Mapping[str, torch.Tensor], out: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write a safetensors file atomically (see :func:`atomic_path`); a write the disk refuses is an OutputError."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    with atomic_path(out) as tmp:
        try:
            save_file({k: v.contiguous() for k, v in state.items()}, tmp, metadata=metadata or {})
        except SafetensorError as e:  # safetensors reports the file system's refusal as "I/O error: ..."
            raise unwritable(out, e) from None
    return Path(out)


def write_converted(cfg: ModelConfig, state: dict[str, torch.Tensor], out: str | os.PathLike, source_url: str | None,
                    source_sha256: str | None, label: str | None = None) -> Path:
    """Check ``state`` against the network ``cfg`` describes (a registry entry's config) and write it as safetensors
    with provenance metadata: the first download of an original and ``cutmix-zoo convert`` alike."""
    check_state_dict(state, expected_state(cfg), f"{cfg.name} ({cfg.architecture or cfg.family})", label or source_url or "the checkpoint")
    check_finite(state, label or source_url or "the checkpoint")
    metadata = {"format": "pt", "name": cfg.name, "source_url": source_url or "", "source_sha256": source_sha256 or ""}
    return save_safetensors(state, out, metadata)


def read_state_dict(path: str | os.PathLike, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a weights file: safetensors, an exported folder, or an original .pth/.pth.tar."""
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise WeightsError(f"The weights file {path} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path, device=str(device) if device is not None else "cpu")
        except SafetensorError as e:
            raise WeightsError(f"Could not read {path} as a safetensors file: {e}.") from None
    state, _ = load_original(path)
    return state if device is None else {k: v.to(device) for k, v in state.items()}
