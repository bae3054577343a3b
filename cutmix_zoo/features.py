"""Multi-scale feature extraction: one generic wrapper for every family, like timm's FeatureListNet.

The wrapper keeps the backbone's top-level children under their own names (so state-dict keys
stay those of the full model) and runs them in order, returning the outputs at the requested
levels. It drops everything after the last requested level, the classifier included.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .errors import InvalidArgumentError


class FeatureInfo:
    """Channels, reduction and module name of each returned level, as timm's ``feature_info``."""

    def __init__(self, points: Sequence[tuple[str, int, int]], out_indices: Sequence[int]):
        self.info = [{"module": m, "num_chs": c, "reduction": r, "index": i} for i, (m, c, r) in enumerate(points)]
        self.out_indices = tuple(out_indices)

    def _get(self, key: str, idx: int | None) -> list | int | str:
        if idx is not None:
            return self.info[self.out_indices[idx]][key]
        return [self.info[i][key] for i in self.out_indices]

    def channels(self, idx: int | None = None) -> list[int] | int:
        return self._get("num_chs", idx)

    def reduction(self, idx: int | None = None) -> list[int] | int:
        return self._get("reduction", idx)

    def module_name(self, idx: int | None = None) -> list[str] | str:
        return self._get("module", idx)

    def get_dicts(self) -> list[dict]:
        return [dict(self.info[i]) for i in self.out_indices]

    def __len__(self) -> int:
        return len(self.out_indices)

    def __getitem__(self, idx: int) -> dict:
        return dict(self.info[self.out_indices[idx]])

    def __repr__(self) -> str:
        return f"FeatureInfo(channels={self.channels()}, reduction={self.reduction()})"


def check_out_indices(out_indices: Sequence[int] | None, num_levels: int) -> tuple[int, ...]:
    """Normalise ``out_indices`` (negatives count from the end); every level when None."""
    if out_indices is None:
        return tuple(range(num_levels))
    if isinstance(out_indices, int):
        out_indices = [out_indices]
    indices = []
    for i in out_indices:
        if not isinstance(i, int) or not -num_levels <= i < num_levels:
            raise InvalidArgumentError(
                f"out_indices {tuple(out_indices)} is out of range: this model has {num_levels} feature levels, "
                f"so each index must be between {-num_levels} and {num_levels - 1}."
            )
        indices.append(i % num_levels)
    if len(set(indices)) != len(indices):
        raise InvalidArgumentError(f"out_indices {tuple(out_indices)} names a feature level twice.")
    return tuple(sorted(indices))


class FeatureListNet(nn.ModuleDict):
    """A backbone's children up to its last requested level; ``forward`` returns a list of maps."""

    def __init__(self, model: nn.Module, points: Sequence[tuple[str, int, int]], out_indices: Sequence[int] | None = None):
        indices = check_out_indices(out_indices, len(points))
        last = points[indices[-1]][0]
        children = {}
        for name, module in model.named_children():
            children[name] = module
            if name == last:
                break
        super().__init__(children)
        self.feature_info = FeatureInfo(points, indices)
        self._return = {points[i][0] for i in indices}
        self.pretrained_cfg = getattr(model, "pretrained_cfg", None)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for name, module in self.items():
            x = module(x)
            if name in self._return:
                features.append(x)
        return features
