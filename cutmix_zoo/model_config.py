"""One typed model config: what a set of weights needs to be built, fed and described.

Like timm's ``PretrainedCfg`` and torchvision's ``Weights.meta``, it is data: the registry makes one
per entry (:meth:`ModelConfig.from_entry`), an exported folder stores one as ``config.json``
(:meth:`to_dict` / :meth:`from_dict`), the trainer writes one for its export, and load, export
and the model cards read it. A loaded model carries ``to_dict()`` as its ``pretrained_cfg``
(a plain dict, as timm's models do), plus the ``source`` its weights came from.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from .errors import WeightsError
from .models import FAMILIES
from .models.classifier import MEASURED_KEYS
from .registry import DATASETS, FOLDER, LICENSE, Entry

if TYPE_CHECKING:
    from torch import nn


def _floats(value: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in value)


def _builder_arguments(family: str) -> set[str]:
    """The keyword arguments the ``family`` builder takes besides ``num_classes``: what ``arch_args`` may hold."""
    parameters = inspect.signature(FAMILIES[family].build).parameters
    return set(parameters) - {"self", "num_classes"}


@dataclass(frozen=True)
class ModelConfig:
    """The architecture (``family`` + ``arch_args``), the head size, the input it expects, and what is known of its results."""

    name: str
    family: str
    arch_args: dict[str, Any]
    num_classes: int
    dataset: str
    input_size: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    architecture: str | None = None
    method: str | None = None
    hub_repo: str | None = None
    license: str = LICENSE
    top1_err: float | None = None
    top5_err: float | None = None
    err_source: str | None = None
    eval_dataset: str | None = None
    training: str | None = None
    train_recipe: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        problems = []
        if self.family not in FAMILIES:
            problems.append(f"family {self.family!r} is not one of {', '.join(FAMILIES)}")
        if not isinstance(self.arch_args, dict):
            problems.append("arch_args is not a mapping")
        elif self.family in FAMILIES:
            unknown = sorted(set(self.arch_args) - _builder_arguments(self.family))
            if unknown:
                problems.append(f"arch_args {', '.join(map(repr, unknown))} {'is' if len(unknown) == 1 else 'are'} not an argument "
                                f"of the {self.family} builder")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 0:
            problems.append(f"num_classes {self.num_classes!r} is not a non-negative integer")
        if len(self.input_size) != 3 or len(self.mean) != 3 or len(self.std) != 3:
            problems.append("input_size, mean and std need three values each")
        elif min(self.input_size) < 1:
            problems.append(f"input_size {list(self.input_size)} has a side of no pixels")
        if not 0 < self.crop_pct <= 1:
            problems.append(f"crop_pct {self.crop_pct!r} is not in (0, 1]")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def resize(self) -> int:
        """Shorter-side resize before the centre crop (256 for a 224 crop at 0.875)."""
        return round(self.input_size[-1] / self.crop_pct)

    @classmethod
    def from_entry(cls, entry: Entry) -> ModelConfig:
        """The config of a registry entry."""
        data = entry.data
        return cls(name=entry.name, family=entry.architecture.family, arch_args=dict(entry.architecture.args),
                   num_classes=data.num_classes, dataset=data.name, input_size=data.input_size, mean=data.mean, std=data.std,
                   interpolation=data.interpolation, crop_pct=data.crop_pct, architecture=entry.arch, method=entry.method,
                   hub_repo=entry.hub_repo, top1_err=entry.top1_err, top5_err=entry.top5_err, err_source=entry.err_source,
                   eval_dataset=data.name)

    @classmethod
    def for_data(cls, dataset: str, **fields: Any) -> ModelConfig:
        """A config whose input settings are those of a registry dataset (a trainer ``folder`` run: ImageNet's)."""
        data = DATASETS.get(dataset, DATASETS["imagenet-1k"])
        inputs = {"input_size": data.input_size, "mean": data.mean, "std": data.std, "interpolation": data.interpolation,
                  "crop_pct": data.crop_pct}
        return cls(dataset=dataset, **{**inputs, **fields})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "the config") -> ModelConfig:
        """Read a config.json (or a ``pretrained_cfg``): unknown keys are kept in ``extra``; a missing or bad value is one sentence."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        required = ("name", "family", "arch_args", "num_classes")
        missing = [k for k in required if k not in values]
        if missing:
            raise WeightsError(f"{where} does not describe a cutmix_zoo model: it has no {', '.join(missing)}.")
        known = {k: v for k, v in values.items() if k in names}
        data = DATASETS.get(str(values.get("dataset")), DATASETS["imagenet-1k"])
        known.setdefault("dataset", FOLDER)
        known.setdefault("input_size", data.input_size)
        known.setdefault("mean", data.mean)
        known.setdefault("std", data.std)
        try:
            known["input_size"] = tuple(int(v) for v in known["input_size"])
            known["mean"], known["std"] = _floats(known["mean"]), _floats(known["std"])
            known["crop_pct"] = float(known.get("crop_pct", 1.0))
            return cls(**known, extra={k: v for k, v in values.items() if k not in names and k != "resize"})
        except (TypeError, ValueError) as e:
            raise WeightsError(f"{where} does not describe a cutmix_zoo model: {e}.") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (what config.json holds and what ``model.pretrained_cfg`` shows), ``resize`` included."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        values.update(input_size=list(self.input_size), mean=list(self.mean), std=list(self.std), resize=self.resize)
        return {**self.extra, **values}

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def unmeasured(self, **changes: Any) -> ModelConfig:
        """The config of weights no result was measured for (random, re-headed, features only): the errors go."""
        return self.replace(**dict.fromkeys(MEASURED_KEYS), **changes)


def pretrained_cfg_of(model: nn.Module) -> dict[str, Any]:
    """A loaded model's ``pretrained_cfg``, the plain dict ``load`` sets (nn.Module's attribute typing knows only tensors and modules)."""
    return cast("dict[str, Any]", model.pretrained_cfg)


def set_pretrained_cfg(model: nn.Module, cfg: dict[str, Any]) -> None:
    """Give ``model`` its ``pretrained_cfg`` (nn.Module takes any attribute value at run time; its stubs type only tensors and modules)."""
    model.pretrained_cfg = cfg  # type: ignore[assignment]  # nn.Module.__setattr__ is typed for Tensor | Module only
