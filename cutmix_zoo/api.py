"""``load()``: the one straight path from a name to a ready module.

name -> registry entry (or an exported folder's config.json) and where its weights come from, decided
once (``hub.source.resolve_source``) -> weights file -> build on the meta device with initialisers
skipped -> checked tensors assigned to their slots -> adapt the head (features_only / num_classes)
-> module carrying its ``pretrained_cfg``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from .builder import build_random, build_with_weights, config_of, meta_model, resolve_config
from .builder import count_parameters as _count
from .errors import InvalidArgumentError
from .features import FeatureListNet
from .hub.repo import HubOptions, is_repo_id
from .hub.source import resolve_source
from .model_config import ModelConfig, pretrained_cfg_of, set_pretrained_cfg
from .models import FAMILIES
from .models.classifier import ClassifierMixin
from .models.resnet import check_output_stride

MAX_CLASSES = 1_000_000  # a 2048-feature head of a million classes is 8 GB of float32 already


def load(
    name: str | os.PathLike,
    pretrained: bool = True,
    features_only: bool = False,
    out_indices: Sequence[int] | int | None = None,
    num_classes: int | None = None,
    weights: str | os.PathLike | None = None,
    revision: str | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
    output_stride: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> nn.Module:
    """A zoo model by registry name (``"resnet50"``, ``"resnet50.mixup_in1k"``), exported folder, or Hub repo id
    (``"cutmix-zoo/resnet50.cutmix_in1k"``, or a user's ``"org/repo"`` that ``cutmix-zoo publish`` made).

    ``features_only=True`` returns a multi-scale feature extractor (``out_indices`` picks levels: a tuple of them, or
    an integer ``n`` for the last ``n``, as in timm);
    ``num_classes=0`` a pooled-embedding model; ``num_classes=N`` a fresh N-way head on the
    pretrained backbone. Weights come from ``weights`` (a local file) when given, else from the
    Hugging Face Hub or the original release (``revision`` pins a Hub commit, branch or tag). ``pretrained=False`` with
    ``weights``, and ``revision`` for a model bundled with the package, contradict themselves and are refused.
    The model is returned in eval mode on ``device`` (CPU by default) in ``dtype``.
    ``output_stride`` 16 or 8 dilates a ResNet's last stages for dense prediction (the same
    weights; ``feature_info.reduction()`` reports the real strides); 32 is the undilated network.
    ``cache_dir``, ``force_download``, ``local_files_only`` and ``token`` mean what they mean to ``hf_hub_download``
    (and ``from_pretrained``) for every file the load takes from the Hub.
    """
    _check_load_arguments(name, num_classes, device, dtype, weights, features_only, out_indices)
    hub = HubOptions(cache_dir, bool(force_download), bool(local_files_only), token)
    source = resolve_source(name, pretrained=pretrained, weights=weights, revision=revision, device=device, hub=hub)
    cfg = _dilated(source.cfg, output_stride)
    head_kept = not features_only and num_classes in (None, cfg.num_classes)

    if source.kind == "meta":  # shapes only: no file is read or fetched
        model = meta_model(cfg).to(dtype=dtype)
        set_pretrained_cfg(model, dict(cfg.to_dict(), source=None))
    elif source.kind == "none":
        model = build_random(cfg, device, dtype)
    else:
        from .hub.fetch import read_weights

        state, where = read_weights(source, device=device, progress=progress)
        model = build_with_weights(cfg, state, where, head_kept, device, dtype)

    if cfg.arch_args.get("output_stride", 32) != 32:  # a dilated classifier no longer scores the measured errors
        measured = pretrained_cfg_of(model)
        set_pretrained_cfg(model, _unmeasured(measured, num_classes=measured["num_classes"]))
    loaded = pretrained_cfg_of(model)
    if features_only:
        model = FeatureListNet(model, FAMILIES[cfg.family].feature_points(model), out_indices)
        set_pretrained_cfg(model, dict(_unmeasured(loaded, num_classes=0), features_only=True))
    elif num_classes is not None and num_classes != loaded["num_classes"]:
        reset_classifier(model, num_classes, device=device, dtype=dtype)
    return model.eval()


def reset_classifier(model: nn.Module, num_classes: int, device: torch.device | str | None = None,
                     dtype: torch.dtype | None = None) -> None:
    """Replace the classifier with a freshly initialised ``num_classes``-way one (0: no head).

    The model's own ``reset_classifier`` (timm's method) swaps the head, on ``device`` and in
    ``dtype`` when given, else on the model's, and updates ``pretrained_cfg`` (the new size, no measured
    errors, and for pretrained weights the ``base_model`` a fine-tuned export names).
    """
    cast(ClassifierMixin, model).reset_classifier(num_classes, device=device, dtype=dtype)


def transforms(name_or_model: str | os.PathLike | nn.Module | dict[str, Any] | ModelConfig) -> Any:
    """The eval transform of a model: resize, centre crop, to a float tensor, normalise (like torchvision's
    ``weights.transforms()``, it takes a PIL image or an image tensor, uint8 in [0, 255] or float in [0, 1])."""
    if isinstance(name_or_model, (nn.Module, dict, ModelConfig)):
        cfg = config_of(name_or_model)
    else:
        cfg = _config_of_name(name_or_model)
    return eval_transform(cfg.input_size[-1], cfg.mean, cfg.std, cfg.interpolation, cfg.resize)


class ToFloatImage:
    """A PIL image or array to a float tensor in [0, 1] (torchvision's ``ToTensor``); an image tensor as
    ``weights.transforms()`` takes it: uint8 scaled to [0, 1], float kept."""

    def __call__(self, image: Any) -> torch.Tensor:
        from torchvision.transforms import functional as F

        if isinstance(image, torch.Tensor):
            return F.convert_image_dtype(image, torch.float32) if not image.is_floating_point() else image
        return F.to_tensor(image)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def eval_transform(size: int, mean: Sequence[float], std: Sequence[float], interpolation: str = "bilinear",
                   resize: int | None = None) -> Any:
    """Resize the shorter side to ``resize`` (default ``size``), centre-crop ``size``, to a float tensor, normalise: the
    one eval preprocessing, for loaded models (:func:`transforms`) and for the trainer's validation split alike."""
    from torchvision import transforms as T

    return T.Compose([
        T.Resize(resize or size, interpolation=T.InterpolationMode(interpolation)),
        T.CenterCrop(size),
        ToFloatImage(),
        T.Normalize(mean, std),
    ])


def count_parameters(name: str | os.PathLike, num_classes: int | None = None) -> int:
    """Number of parameters of a model, counted on the meta device (no memory, no weights)."""
    return _count(_config_of_name(name), num_classes)


def _config_of_name(name: str | os.PathLike) -> ModelConfig:
    """The config of a registry name, an exported folder or a Hub repo id (its config.json only is fetched)."""
    if is_repo_id(name):
        return resolve_source(name, pretrained=False).cfg
    return resolve_config(name)


def _dilated(cfg: ModelConfig, output_stride: int | None) -> ModelConfig:
    """``cfg`` with its ResNet's last stages dilated to ``output_stride`` (None: as it is; 32: undilated)."""
    if output_stride is None:
        return cfg
    if cfg.family != "resnet":
        raise InvalidArgumentError(f"output_stride dilates the ResNet and ResNeXt models only; {cfg.name} is a "
                                   f"{cfg.family} model, which takes none.")
    check_output_stride(output_stride, cfg.arch_args.get("bottleneck", True))
    arch_args = {k: v for k, v in cfg.arch_args.items() if k != "output_stride"}
    return cfg.replace(arch_args=arch_args if output_stride == 32 else dict(arch_args, output_stride=output_stride))


def _unmeasured(pretrained_cfg: dict[str, Any], num_classes: int) -> dict[str, Any]:
    """A ``pretrained_cfg`` for another head: its classifier's errors no longer describe the model."""
    source = pretrained_cfg.get("source")
    return dict(config_of(pretrained_cfg).unmeasured(num_classes=num_classes).to_dict(), source=source)


def _check_load_arguments(name: Any, num_classes: Any, device: Any, dtype: Any, weights: Any, features_only: bool,
                          out_indices: Any) -> None:
    """Refuse arguments of the wrong kind, or that contradict each other, before anything is read or fetched, each in
    one sentence."""
    if features_only and num_classes is not None:
        raise InvalidArgumentError("num_classes has no meaning with features_only=True, which removes the classifier.")
    if out_indices is not None and not features_only:
        raise InvalidArgumentError("out_indices selects feature levels, so it needs features_only=True.")
    if not isinstance(name, (str, os.PathLike)) or not str(name):
        raise InvalidArgumentError(f"name must be a registry name such as 'resnet50', an exported folder or a Hub repo id, "
                                   f"not {name!r}.")
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise InvalidArgumentError(f"weights must be the path of a weights file or an exported folder, not {weights!r}.")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0):
        raise InvalidArgumentError(f"num_classes must be a non-negative integer (0 for pooled embeddings), not {num_classes!r}.")
    if num_classes is not None and num_classes > MAX_CLASSES:
        raise InvalidArgumentError(f"num_classes={num_classes} is more classes than a classifier here can hold (at most "
                                   f"{MAX_CLASSES:,}): its weights alone would not fit in memory.")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise InvalidArgumentError(f"dtype must be a floating torch dtype such as torch.bfloat16, not {dtype!r}.")
    if device is not None:
        try:
            kind = torch.device(device).type
        except (RuntimeError, TypeError):
            raise InvalidArgumentError(f"device {device!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1').") from None
        if kind == "cuda" and not torch.cuda.is_available():
            raise InvalidArgumentError(f"device {device!r} was asked for, but torch sees no CUDA device here; use device='cpu'.")
