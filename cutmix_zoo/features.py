"""Multi-scale feature extraction: one generic wrapper for every family, like timm's FeatureListNet.

The wrapper keeps the backbone's top-level children under their own names (so state-dict keys
stay those of the full model) and runs them in order, returning the outputs at the requested
levels. It drops everything after the last requested level, the classifier included. Its
``feature_info`` answers as timm's ``FeatureInfo`` does, and ``torch.jit.script`` compiles it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, List  # noqa: UP035  (TorchScript: see FeatureListNet.__init__)

import torch
from torch import nn

from .errors import InvalidArgumentError

# Which levels an accessor answers for: None (the returned ones), one absolute index, or a list (or tuple) of them.
LevelIndex = int | list[int] | tuple[int, ...] | None


class FeatureInfo:
    """Channels, reduction and module name of every feature level, with timm's ``FeatureInfo`` interface.

    As timm's: ``info`` holds one dict per level of the network (``num_chs``, ``reduction``,
    ``module``, ``index``), ``out_indices`` the levels the extractor returns. Without ``idx`` the
    accessors answer for the returned levels, in order; an integer ``idx`` (or a list of them) names
    levels of the network by their absolute index, whatever ``out_indices`` selects; ``len()`` and
    ``[i]`` count and index all levels too. The dicts handed out are copies.
    """

    def __init__(self, points: Sequence[tuple[str, int, int]], out_indices: Sequence[int]):
        self.info: list[dict[str, Any]] = [{"num_chs": c, "reduction": r, "module": m, "index": i} for i, (m, c, r) in enumerate(points)]
        self.out_indices = tuple(out_indices)

    def from_other(self, out_indices: Sequence[int]) -> FeatureInfo:
        """The same levels with other returned ones (``out_indices`` as ``check_out_indices`` normalises them)."""
        points = [(d["module"], d["num_chs"], d["reduction"]) for d in self.info]
        return FeatureInfo(points, check_out_indices(out_indices, len(points)))

    def get(self, key: str, idx: LevelIndex = None) -> Any:
        """``key``'s value at each returned level (idx None), at level ``idx``, or at each level of a list ``idx``."""
        if idx is None:
            return [self.info[i][key] for i in self.out_indices]
        if isinstance(idx, (tuple, list)):
            return [self.info[i][key] for i in idx]
        return self.info[idx][key]

    def get_dicts(self, keys: Sequence[str] | None = None, idx: LevelIndex = None) -> Any:
        """The info dicts (only ``keys`` when given) of the returned levels, of level ``idx``, or of each level of a list ``idx``."""
        def pick(i: int) -> dict[str, Any]:
            return dict(self.info[i]) if keys is None else {k: self.info[i][k] for k in keys}

        if idx is None:
            return [pick(i) for i in self.out_indices]
        if isinstance(idx, (tuple, list)):
            return [pick(i) for i in idx]
        return pick(idx)

    def channels(self, idx: LevelIndex = None) -> Any:
        return self.get("num_chs", idx)

    def reduction(self, idx: LevelIndex = None) -> Any:
        return self.get("reduction", idx)

    def module_name(self, idx: LevelIndex = None) -> Any:
        return self.get("module", idx)

    def __len__(self) -> int:
        return len(self.info)

    def __getitem__(self, item: int) -> dict[str, Any]:
        return dict(self.info[item])

    def __repr__(self) -> str:
        return f"FeatureInfo(channels={self.channels()}, reduction={self.reduction()})"


def check_out_indices(out_indices: Sequence[int] | int | None, num_levels: int) -> tuple[int, ...]:
    """Normalise ``out_indices`` (negatives count from the end); every level when None. A single integer ``n`` means the
    last ``n`` levels, as in timm (``out_indices=2`` on a ResNet: levels 3 and 4)."""
    if out_indices is None:
        return tuple(range(num_levels))
    if isinstance(out_indices, int) and not isinstance(out_indices, bool):
        if not 0 < out_indices <= num_levels:
            raise InvalidArgumentError(f"out_indices={out_indices} asks for the last {out_indices} feature levels, but this model "
                                       f"has {num_levels}: give 1 to {num_levels}, or a tuple of levels such as (1, 2, 3).")
        return tuple(range(num_levels - out_indices, num_levels))
    if isinstance(out_indices, (str, bytes)) or not isinstance(out_indices, Sequence) or not out_indices:
        raise InvalidArgumentError(f"out_indices must name at least one feature level (e.g. (1, 2, 3, 4)), not {out_indices!r}.")
    indices = []
    for i in out_indices:
        if isinstance(i, bool) or not isinstance(i, int) or not -num_levels <= i < num_levels:
            raise InvalidArgumentError(
                f"out_indices {tuple(out_indices)} is out of range: this model has {num_levels} feature levels, "
                f"so each index must be between {-num_levels} and {num_levels - 1}."
            )
        indices.append(i % num_levels)
    if len(set(indices)) != len(indices):
        raise InvalidArgumentError(f"out_indices {tuple(out_indices)} names a feature level twice.")
    return tuple(sorted(indices))


def feature_take_indices(num_levels: int, indices: int | Sequence[int] | None = None) -> tuple[list[int], int]:
    """The absolute levels ``forward_intermediates`` takes, and the last of them, as timm's ``feature_take_indices``: every
    level when None, the last ``n`` for an integer ``n``, else each index of a list (negatives count from the end)."""
    if indices is None:
        indices = num_levels
    if isinstance(indices, int) and not isinstance(indices, bool):
        if not 0 < indices <= num_levels:
            raise InvalidArgumentError(f"indices={indices} asks for the last {indices} feature levels, but this model has "
                                       f"{num_levels}: give 1 to {num_levels}, or a list of levels such as [1, 2, 3].")
        taken = list(range(num_levels - indices, num_levels))
    elif isinstance(indices, Sequence) and not isinstance(indices, (str, bytes)) and len(indices) > 0:
        if any(isinstance(i, bool) or not isinstance(i, int) or not -num_levels <= i < num_levels for i in indices):
            raise InvalidArgumentError(f"indices {list(indices)} is out of range: this model has {num_levels} feature "
                                       f"levels, so each index must be between {-num_levels} and {num_levels - 1}.")
        taken = [i % num_levels for i in indices]
    else:
        raise InvalidArgumentError(f"indices must be None, a number of last levels or a list of levels, not {indices!r}.")
    return taken, max(taken)


class FeatureListNet(nn.ModuleDict):
    """A backbone's children up to its last requested level; ``forward`` returns a list of maps."""

    def __init__(self, model: nn.Module, points: Sequence[tuple[str, int, int]], out_indices: Sequence[int] | int | None = None):
        indices = check_out_indices(out_indices, len(points))
        last = points[indices[-1]][0]
        children = {}
        for name, module in model.named_children():
            children[name] = module
            if name == last:
                break
        super().__init__(children)
        self.feature_info = FeatureInfo(points, indices)
        # A list of names, not a set: TorchScript types it as List[str] (the forward is scriptable, as timm's); it reads
        # an annotation in __init__ only when it is typing's List, not the builtin list[str].
        self.return_layers: List[str] = [points[i][0] for i in indices]  # noqa: UP006
        self.pretrained_cfg = getattr(model, "pretrained_cfg", None)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features: list[torch.Tensor] = []
        for name, module in self.items():
            x = module(x)
            if name in self.return_layers:
                features.append(x)
        return features
