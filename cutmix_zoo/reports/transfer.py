"""What a pretrained backbone buys on your own data: pooled features, cached on disk, and a linear probe on them.

``read_transfer_folder(folder)`` reads an ImageFolder tree with ``train/<class>/`` and ``val/<class>/`` (or, with
``val_split=F``, one ImageFolder ``<class>/`` split per class with a seeded generator, fraction F to val).

``extract_features(models, paths)`` runs every model, loaded with ``num_classes=0`` (pooled embeddings), over the
images once, in inference mode and in batches, through the model's own eval transform; models that share a transform
share the decoded batches. The features are cached as safetensors under ``cache_dir()/features`` (or ``cache=``),
keyed by the model's identity (its config and a sha256 of its tensors), the data (the folder, and every file's path,
size and modification time) and the transform's settings, so a second run with the same key reads them back and runs
no model, and a changed image makes a new key. Each file stores the sha256 of its features (:func:`features_digest`)
and is read back only when they still match it, one row per image: a file changed on disk is computed again.

``linear_probe(...)`` fits a multinomial logistic regression on the features (standardised with the fitting set's
mean and standard deviation) with full-batch L-BFGS, minimising ``mean cross-entropy + l2 / 2 * ||W||^2`` (the bias
is not penalised). As Kornblith, Shlens & Le ("Do Better ImageNet Models Transfer Better?", CVPR 2019) do, the L2
strength is chosen from log-spaced values on a held-out split of the *training* images (stratified, seeded,
``holdout`` of each class); the validation images are never seen until the model refit on all training images with
that strength is scored on them. Errors are percentages: top-1, and top-5 only when there are more than five classes
(with five or fewer, every class is in the top five and the error would be 0 by construction; it is None).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..api import transforms
from ..errors import InvalidArgumentError, WeightsError, ZooError
from ..files import atomic_path, sweep_temporaries
from ..model_config import pretrained_cfg_of
from .folders import class_folders, read_image_tree
from .inference import eval_mode
from .predict import open_image

DEFAULT_GRID = tuple(10.0 ** (k / 2) for k in range(-12, 5))  # 1e-6 to 1e2, two values a decade
DEFAULT_HOLDOUT = 0.2
MAX_ITERATIONS = 100
GRADIENT_TOLERANCE = 1e-4  # L-BFGS stops when no gradient component is larger: far below what moves a prediction
SMALL_IMAGE_SIDE = 64  # the embedded models' images are 32 pixels; at most this on the longer side counts as small
CACHE_FORMAT = 1
logger = logging.getLogger(__name__)


# --- the data ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TransferData:
    """The images of a transfer task: ``paths[i]`` has class ``labels[i]``; ``train`` and ``val`` index into them."""

    root: Path
    classes: list[str]
    paths: list[str]
    labels: torch.Tensor
    train: torch.Tensor
    val: torch.Tensor
    layout: str

    def to_dict(self) -> dict[str, Any]:
        """What ``report.json`` says of the data: the folder, its layout, the classes and how many images each split has."""
        return {"folder": str(self.root), "layout": self.layout, "classes": self.classes, "train_images": len(self.train),
                "val_images": len(self.val)}


TASK_CLASSES = "a classification task needs at least two"


def split_per_class(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the kept and the split-off images: ``fraction`` of each class (rounded, at least one, never all), drawn
    with a generator seeded by ``seed``; classes of one image stay whole. Both index lists are sorted."""
    g = torch.Generator().manual_seed(seed)
    kept, off = [], []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=g)]
        count = min(len(members) - 1, max(1, round(fraction * len(members))))
        off.append(members[:count])
        kept.append(members[count:])
    return torch.cat(kept).sort().values, torch.cat(off).sort().values


def read_transfer_folder(folder: str | os.PathLike, val_split: float | None = None, seed: int = 0) -> TransferData:
    """The images of ``FOLDER/train/<class>/`` and ``FOLDER/val/<class>/`` (classes in sorted order), or with
    ``val_split=F`` those of ``FOLDER/<class>/``, fraction F of each class going to val (seeded by ``seed``)."""
    root = Path(folder)
    if not root.is_dir():
        raise InvalidArgumentError(f"The data folder {root} does not exist or is not a folder.")
    has_split = (root / "train").is_dir() and (root / "val").is_dir()
    if val_split is not None:
        if not 0 < val_split < 1:
            raise InvalidArgumentError(f"--val-split is the fraction of each class held out for validation, between 0 and 1 "
                                       f"(exclusive), not {val_split}.")
        if has_split:
            raise InvalidArgumentError(f"{root} has train/ and val/ already: leave out --val-split, or point --data at one "
                                       "folder of class folders.")
        return _split_folder(root, val_split, seed)
    if not (root / "val").is_dir():
        raise InvalidArgumentError(f"{root} has no val/ folder: put the validation images in {root / 'val'}/<class>/ beside "
                                   f"train/, or pass --val-split F to hold out a fraction of each class of {root}/<class>/.")
    if not (root / "train").is_dir():
        raise InvalidArgumentError(f"{root} has val/ but no train/ folder: the training images go in {root / 'train'}/<class>/.")
    train = read_image_tree(root / "train")
    train.require_classes(2, TASK_CLASSES)
    val_classes = class_folders(root / "val")
    if val_classes != train.classes:
        only_train, only_val = sorted(set(train.classes) - set(val_classes)), sorted(set(val_classes) - set(train.classes))
        raise InvalidArgumentError(f"train/ and val/ of {root} need the same class folders; only in train/: "
                                   f"{', '.join(only_train) or 'none'}; only in val/: {', '.join(only_val) or 'none'}.")
    val = read_image_tree(root / "val", train.classes)
    train.require_images()
    val.require_images()
    paths, labels = train.paths + val.paths, torch.tensor(train.labels + val.labels)
    n_train = len(train.paths)
    return _with_two_training_images(TransferData(root, train.classes, paths, labels, torch.arange(n_train),
                                                  torch.arange(n_train, len(paths)), "train/ and val/"))


def _with_two_training_images(data: TransferData) -> TransferData:
    """``data``, refused in one sentence where a class has one training image: the probe holds out part of each class's
    training images to choose its L2 strength, and a class of one keeps it all."""
    counts = torch.bincount(data.labels[data.train], minlength=len(data.classes)).tolist()
    for name, count in zip(data.classes, counts):
        if count < 2:
            raise InvalidArgumentError(f"The class {name} of {data.root} has {count} training image{'' if count == 1 else 's'}; the "
                                       "probe holds out part of each class's training images to choose its L2 strength, so each "
                                       "class needs at least two.")
    return data


def _split_folder(root: Path, fraction: float, seed: int) -> TransferData:
    tree = read_image_tree(root)
    tree.require_classes(2, TASK_CLASSES)
    tree.require_images()
    for name, paths in zip(tree.classes, tree.images):
        if len(paths) < 2:
            raise InvalidArgumentError(f"The class folder {root / name} holds one image, which cannot be split into training "
                                       "and validation images.")
    labels = torch.tensor(tree.labels)
    train, val = split_per_class(labels, fraction, seed)
    return _with_two_training_images(TransferData(root, tree.classes, tree.paths, labels, train, val,
                                                  f"--val-split {fraction:g} (seed {seed})"))


def small_images(data: TransferData) -> bool:
    """Whether the data's images are small: the first training image of each class is at most ``SMALL_IMAGE_SIDE`` pixels
    on its longer side (the embedded 32-pixel models are then worth probing too)."""
    train_labels = data.labels[data.train]
    firsts = [int(data.train[train_labels == c][0]) for c in range(len(data.classes))]
    return all(max(open_image(data.paths[i]).size) <= SMALL_IMAGE_SIDE for i in firsts)


# --- features and their cache ----------------------------------------------------------------------------------

@dataclass
class Features:
    """One model's pooled features of the images (N, D) on the CPU, how long they took, and where they are cached."""

    features: torch.Tensor
    seconds: float
    cached: bool
    file: Path


def feature_cache_dir() -> Path:
    """The default feature cache: ``features/`` in the zoo's cache (``CUTMIX_ZOO_CACHE``, else ``~/.cache/cutmix_zoo``)."""
    from ..hub.cache import cache_dir

    return cache_dir() / "features"


def model_identity(model: nn.Module) -> dict[str, str]:
    """The model's name, a sha256 of its config (without where its file was) and a sha256 of its tensors, names and shapes:
    the same weights give the same identity wherever they were loaded from."""
    cfg = {k: v for k, v in pretrained_cfg_of(model).items() if k != "source"}
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return {"name": cfg["name"], "config_sha256": hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest(),
            "weights_sha256": digest.hexdigest()}


def transform_settings(model: nn.Module) -> dict[str, Any]:
    """The settings of the model's eval transform: what the images go through before the model sees them."""
    cfg = pretrained_cfg_of(model)
    return {k: cfg.get(k) for k in ("input_size", "resize", "interpolation", "mean", "std")}


def data_identity(root: str | os.PathLike, paths: Sequence[str]) -> dict[str, Any]:
    """The data folder and a sha256 of every image's path (relative to it), size and modification time, in order."""
    base = Path(root).resolve()
    digest = hashlib.sha256()
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError as e:  # a broken link, or a file removed since the folder was listed
            raise InvalidArgumentError(f"The image {path} cannot be read ({e.strerror or e}): replace or remove it.") from None
        digest.update(f"{os.path.relpath(Path(path).resolve(), base)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return {"folder": str(base), "images": len(paths), "files_sha256": digest.hexdigest()}


def cache_key(model: nn.Module, data: Mapping[str, Any]) -> dict[str, Any]:
    """What the features of ``model`` on the images of ``data`` (a :func:`data_identity`) depend on."""
    return {"format": CACHE_FORMAT, "model": model_identity(model), "transform": transform_settings(model), "data": dict(data)}


def cache_file(cache: Path, key: Mapping[str, Any]) -> Path:
    """The cache file of a key: named by the sha256 of the key's JSON."""
    return cache / f"{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]}.safetensors"


def features_digest(features: torch.Tensor) -> str:
    """The sha256 of a feature matrix's shape, dtype and bytes: what the cache stores beside the features and checks on read."""
    head = f"{tuple(features.shape)} {features.dtype}\n".encode()
    return hashlib.sha256(head + features.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def _read_cached(path: Path, key: Mapping[str, Any], rows: int) -> torch.Tensor | None:
    """The cached features at ``path`` when the file holds them for exactly ``key``, one finite row per image (``rows``),
    with the digest they were written with; None when absent, unreadable or changed since (they are then computed again)."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if metadata.get("key") != json.dumps(key, sort_keys=True):
                return None
            features = f.get_tensor("features")
    except (OSError, SafetensorError):
        return None
    if not _fits(features, rows) or metadata.get("sha256") != features_digest(features):
        logger.info("The feature cache %s is not what was written (%s rows, digest mismatch, non-finite rows or other shape); "
                    "computing it again.", path, features.shape[0] if features.dim() else 0)
        return None
    return features


def _fits(features: torch.Tensor, images: int) -> bool:
    """Whether cached ``features`` can be the features of ``images`` images: one finite row each (a file cut short, or
    rows gone non-finite, is computed again rather than fed to the probe)."""
    return features.dim() == 2 and features.shape[0] == images and bool(torch.isfinite(features).all())


def _write_cached(path: Path, key: Mapping[str, Any], features: torch.Tensor) -> None:
    from safetensors.torch import save_file

    try:
        with atomic_path(path) as tmp:
            save_file({"features": features.contiguous()}, str(tmp),
                      metadata={"key": json.dumps(key, sort_keys=True), "sha256": features_digest(features)})
    except OSError as e:
        raise ZooError(f"Could not write the feature cache {path} ({e.strerror or e}): pass --cache DIR to keep it elsewhere.") from None


def _decoded_batches(paths: Sequence[str], transform: Callable[[Any], torch.Tensor], batch_size: int,
                     workers: int) -> Iterator[torch.Tensor]:
    """Batches of transformed images in order, decoded by ``workers`` threads one batch ahead of the batch being used."""
    chunks = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]

    def decode(path: str) -> torch.Tensor:
        return transform(open_image(path))

    with ThreadPoolExecutor(max(1, workers)) as pool:
        ahead = pool.map(decode, chunks[0]) if chunks else None
        for k in range(len(chunks)):
            current, ahead = ahead, pool.map(decode, chunks[k + 1]) if k + 1 < len(chunks) else None
            yield torch.stack(list(current or []))


def _forward_all(models: Sequence[nn.Module], paths: Sequence[str], batch_size: int, workers: int,
                 progress: Callable[[Iterable[torch.Tensor]], Iterable[torch.Tensor]] | None) -> list[tuple[torch.Tensor, float]]:
    """The features of each model (all sharing one eval transform) and its seconds: its own forward passes plus an
    equal share of the decoding. Each runs in eval mode; its own mode is restored afterwards."""
    outputs: list[list[torch.Tensor]] = [[] for _ in models]
    forward = [0.0] * len(models)
    began = time.perf_counter()
    batches: Iterable[torch.Tensor] = _decoded_batches(paths, transforms(models[0]), batch_size, workers)
    with eval_mode(*models), torch.inference_mode():
        for x in progress(batches) if progress else batches:
            for k, model in enumerate(models):
                start = time.perf_counter()
                param = next(model.parameters())
                outputs[k].append(model(x.to(device=param.device, dtype=param.dtype)).float().cpu())
                forward[k] += time.perf_counter() - start
    shared = (time.perf_counter() - began - sum(forward)) / len(models)
    return [(torch.cat(out), seconds + shared) for out, seconds in zip(outputs, forward)]


def extract_features(models: Mapping[str, nn.Module], paths: Sequence[str], root: str | os.PathLike | None = None,
                     cache: str | os.PathLike | None = None, batch_size: int = 128, workers: int = 2,
                     progress: Callable[[Iterable[torch.Tensor]], Iterable[torch.Tensor]] | None = None) -> dict[str, Features]:
    """Pooled features of every image for every model (loaded with ``num_classes=0``), read from the cache when it holds
    them for this model, these files and this transform, else computed (each image decoded once per distinct transform)
    and written there. ``root`` is the data folder the paths are recorded relative to (default: their common folder);
    ``cache`` the cache folder (default: :func:`feature_cache_dir`)."""
    if not paths:
        raise InvalidArgumentError("There are no images to extract features from.")
    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be positive, not {batch_size}.")
    for name, model in models.items():
        cfg = pretrained_cfg_of(model)
        if cfg.get("num_classes") != 0 or cfg.get("features_only"):
            raise InvalidArgumentError(f"{name} does not give pooled features: load it with num_classes=0 (no classifier, no "
                                       "features_only).")
    folder = Path(cache) if cache is not None else feature_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ZooError(f"Could not create the feature cache {folder} ({e.strerror or e}): pass --cache DIR to keep it elsewhere.") from None
    sweep_temporaries(folder)  # what a writer killed mid-write left
    data = data_identity(root if root is not None else os.path.commonpath([os.path.abspath(p) for p in paths]), paths)
    result: dict[str, Features] = {}
    missing: dict[str, list[str]] = {}
    keys = {}
    for name, model in models.items():
        began = time.perf_counter()
        keys[name] = cache_key(model, data)
        file = cache_file(folder, keys[name])
        found = _read_cached(file, keys[name], len(paths))
        if found is not None:
            result[name] = Features(found, time.perf_counter() - began, True, file)
        else:
            missing.setdefault(json.dumps(keys[name]["transform"], sort_keys=True), []).append(name)
    for names in missing.values():
        for name, (features, seconds) in zip(names, _forward_all([models[n] for n in names], paths, batch_size, workers, progress)):
            if not torch.isfinite(features).all():
                raise WeightsError(f"{name} gives NaN or infinite features on these images, so no probe can be fitted on them: "
                                   "check that its weights are the ones you meant to load.")
            file = cache_file(folder, keys[name])
            _write_cached(file, keys[name], features)
            result[name] = Features(features, seconds, False, file)
    return {name: result[name] for name in models}


# --- the linear probe ------------------------------------------------------------------------------------------

@dataclass
class ProbeResult:
    """A linear probe's validation errors (percentages), the chosen L2 strength and how it was chosen."""

    top1_err: float
    top5_err: float | None
    l2: float
    grid: list[float]
    holdout_top1_err: list[float]
    holdout_loss: list[float]
    train_images: int
    holdout_images: int
    val_images: int
    fit_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON values."""
        return {"top1_err": self.top1_err, "top5_err": self.top5_err, "l2": self.l2, "grid": self.grid,
                "holdout_top1_err": self.holdout_top1_err, "holdout_loss": self.holdout_loss, "train_images": self.train_images,
                "holdout_images": self.holdout_images, "val_images": self.val_images, "fit_seconds": round(self.fit_seconds, 3)}


def standardise(fit: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """``fit`` and ``others`` minus ``fit``'s mean over its rows, divided by its standard deviation (1 where that is 0)."""
    mean = fit.mean(dim=0)
    std = fit.std(dim=0, correction=0)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return [(x - mean) / std for x in (fit, *others)]


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float,
                 start: tuple[torch.Tensor, torch.Tensor] | None = None,
                 max_iterations: int = MAX_ITERATIONS) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (D, C) and bias (C) minimising ``mean cross-entropy + l2 / 2 * ||W||^2`` over ``x`` (N, D), ``y`` (N), by
    full-batch L-BFGS with a strong-Wolfe line search (at most ``max_iterations`` steps, stopping at ``GRADIENT_TOLERANCE``),
    from zeros or from ``start`` (a neighbouring strength's solution)."""
    w = (start[0].clone() if start else x.new_zeros(x.shape[1], num_classes)).requires_grad_(True)
    b = (start[1].clone() if start else x.new_zeros(num_classes)).requires_grad_(True)
    optimizer = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iterations, history_size=10, tolerance_grad=GRADIENT_TOLERANCE,
                                  tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + 0.5 * l2 * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return w.detach(), b.detach()


def _percent(count: int, total: int) -> float:
    return round(100 * count / total, 4)


def top_errors(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float | None]:
    """Top-1 error and, with more than five classes, top-5 error, as percentages."""
    top1 = _percent(int((logits.argmax(1) != y).sum()), len(y))
    if logits.shape[1] <= 5:
        return top1, None
    hit = (logits.topk(5, dim=1).indices == y[:, None]).any(dim=1)
    return top1, _percent(int((~hit).sum()), len(y))


def select_l2(x: torch.Tensor, y: torch.Tensor, num_classes: int, grid: Sequence[float] = DEFAULT_GRID,
              holdout: float = DEFAULT_HOLDOUT, seed: int = 0
              ) -> tuple[float, list[float], list[float], int, tuple[torch.Tensor, torch.Tensor]]:
    """The L2 strength of ``grid`` whose fit on the training images less a held-out ``holdout`` of each class (seeded) has
    the lowest top-1 error on the held-out images (ties: the lower held-out cross-entropy), with every strength's held-out
    error and loss, how many images were held out, and that strength's fit (the refit's starting point). Only training
    images are used."""
    fit, held = split_per_class(y, holdout, seed)
    if len(held) == 0:
        raise InvalidArgumentError("Every class has one training image, so none can be held out to choose the L2 strength: "
                                   "give each class at least two.")
    x_fit, x_held = standardise(x[fit], x[held])
    errors: dict[float, float] = {}
    losses: dict[float, float] = {}
    fits: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}
    start = None
    for l2 in sorted(grid, reverse=True):  # strong to weak: each fit starts from the previous, smoother solution
        start = fits[l2] = fit_logistic(x_fit, y[fit], num_classes, l2, start)
        logits = x_held @ start[0] + start[1]
        errors[l2] = top_errors(logits, y[held])[0]
        losses[l2] = float(F.cross_entropy(logits, y[held]))
    best = min(grid, key=lambda l2: (errors[l2], losses[l2]))
    return best, [errors[l2] for l2 in grid], [losses[l2] for l2 in grid], len(held), fits[best]


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor, num_classes: int,
                 grid: Sequence[float] = DEFAULT_GRID, holdout: float = DEFAULT_HOLDOUT, seed: int = 0,
                 device: torch.device | str | None = None) -> ProbeResult:
    """Choose the L2 strength on held-out training images (:func:`select_l2`), refit on all training images with it, and
    score the validation images. Runs on ``device`` (default: the features'); deterministic given ``seed``."""
    if not grid or any(not l2 >= 0 for l2 in grid):
        raise InvalidArgumentError(f"The L2 grid needs at least one strength, none negative: {list(grid)}.")
    if not 0 < holdout < 1:
        raise InvalidArgumentError(f"The held-out fraction of the training images must be between 0 and 1 (exclusive), not {holdout}.")
    target = torch.device(device) if device is not None else train_x.device
    train_x, train_y = train_x.to(target, torch.float32), train_y.to(target)
    val_x, val_y = val_x.to(target, torch.float32), val_y.to(target)
    began = time.perf_counter()
    l2, errors, losses, held, chosen = select_l2(train_x, train_y, num_classes, grid, holdout, seed)
    x_train, x_val = standardise(train_x, val_x)
    w, b = fit_logistic(x_train, train_y, num_classes, l2, start=chosen)  # from the held-out search's fit: a few steps
    top1, top5 = top_errors(x_val @ w + b, val_y)
    seconds = time.perf_counter() - began
    return ProbeResult(top1, top5, l2, list(grid), errors, losses, len(train_y), held, len(val_y), seconds)


# --- the report -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FinetuneResult:
    """A short fine-tune's best validation errors (percentages), its best epoch, its epochs and the folder of its run."""

    top1_err: float | None
    top5_err: float | None
    best_epoch: int
    epochs: int
    output: str


@dataclass(frozen=True)
class ModelTransfer:
    """One model's transfer result: its features, the linear probe on them and, when run, a fine-tune beside it."""

    model: str
    feature_dim: int
    probe: ProbeResult
    extraction_seconds: float
    features_cached: bool
    feature_file: str
    finetune: FinetuneResult | None = None

    def to_dict(self) -> dict[str, Any]:
        """The model's part of ``report.json``, as plain JSON values."""
        out = {"model": self.model, "feature_dim": self.feature_dim, "probe": self.probe.to_dict(),
               "extraction_seconds": round(self.extraction_seconds, 3), "features_cached": self.features_cached,
               "feature_file": self.feature_file}
        return out if self.finetune is None else {**out, "finetune": dataclasses.asdict(self.finetune)}


def probe_models(data: TransferData, extracted: Mapping[str, Features], models: Mapping[str, nn.Module], holdout: float = DEFAULT_HOLDOUT,
                 seed: int = 0, device: torch.device | str | None = None) -> dict[str, ModelTransfer]:
    """A linear probe (:func:`linear_probe`) on each model's extracted features of ``data``: fitted on its training
    images, scored on its validation images."""
    results = {}
    for name, found in extracted.items():
        x = found.features
        probe = linear_probe(x[data.train], data.labels[data.train], x[data.val], data.labels[data.val], len(data.classes),
                             holdout=holdout, seed=seed, device=device)
        results[name] = ModelTransfer(pretrained_cfg_of(models[name])["name"], x.shape[1], probe, found.seconds, found.cached,
                                      str(found.file))
    return results
