"""Read the original release's checkpoints safely and turn them into checked safetensors files.

The original files are ``torch.save`` pickles in three layouts (train.py's dict whose weights sit
under ``state_dict`` with DataParallel's ``module.`` prefix; a flat ``module.`` state dict; a bare
torchvision state dict). They are only ever opened with ``torch.load(weights_only=True)``, so a
crafted pickle is refused before any of its code can run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from .errors import WeightsError

_MODULE_PREFIX = "module."
_SHOWN_KEYS = 5


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def _torch_load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e).strip().splitlines()[0][:200]
        raise WeightsError(
            f"Refused to load {path}: it holds Python objects other than tensors, and unpickling them could run code ({reason})."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise WeightsError(f"Could not read {path} as a PyTorch checkpoint: {reason}.") from None


def load_original(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict of an original-release file, ``module.`` stripped, and the layout's metadata."""
    path = Path(path)
    obj = _torch_load(path)
    meta: dict[str, Any] = {}
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        meta = {k: obj[k] for k in ("epoch", "arch", "best_err1", "best_err5") if k in obj and isinstance(obj[k], (int, float, str))}
        meta["layout"] = "trainpy"
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"{path} is not a checkpoint layout cutmix_zoo knows: expected train.py's dict with a 'state_dict' entry, "
            "or a state dict of tensors."
        )
    prefixed = all(k.startswith(_MODULE_PREFIX) for k in obj)
    meta.setdefault("layout", "module" if prefixed else "bare")
    state = {(k[len(_MODULE_PREFIX):] if k.startswith(_MODULE_PREFIX) else k): v for k, v in obj.items()}
    return state, meta


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


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; renamed onto ``path`` when the block succeeds, deleted otherwise.

    The file is made readable like any other (mkstemp makes it private) and, with ``fsync``,
    flushed to disk before the rename, so a crash mid-write never leaves a torn file at ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def save_safetensors(state: Mapping[str, torch.Tensor], out: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write a safetensors file atomically (see :func:`atomic_path`)."""
    from safetensors.torch import save_file

    with atomic_path(out) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, tmp, metadata=metadata or {})
    return Path(out)
