"""Datasets, the original transforms, and resumable distributed sampling.

Data comes from a CIFAR folder in torchvision's format, an ImageFolder tree with ``train/`` and
``val/``, or ``synthetic`` (a small learnable random dataset shaped like the chosen one). The
random augmentation of a sample is seeded from (run seed, epoch, index), so it is the same
whichever worker loads it and whether or not the run was interrupted and resumed mid-epoch.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from torchvision.datasets import ImageFolder

from ..recipes import CROPS
from ..registry import FOLDER, data_config
from ..reports.folders import class_folders, image_extensions, read_image_tree
from .dataspec import DataError, DataSpec, Inputs, dataset_size, sample_seed, seeded

if TYPE_CHECKING:
    from torchvision.datasets import CIFAR10

# AlexNet-style PCA lighting of the original (ImageNet eigenvalues and eigenvectors of RGB).
_EIGVAL = (0.2175, 0.0188, 0.0045)
_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))
_CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


class Lighting:
    """PCA lighting noise on a [0, 1] tensor image (AlexNet), as the original ImageNet recipe."""

    def __init__(self, alphastd: float = 0.1) -> None:
        self.alphastd = alphastd
        self.eigval = torch.tensor(_EIGVAL)
        self.eigvec = torch.tensor(_EIGVEC)

    def draw(self) -> torch.Tensor:
        """The per-channel weights of the eigenvectors, from torch's RNG (shared with the GPU-decoding path)."""
        return torch.randn(3) * self.alphastd

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        alpha = self.draw()
        rgb = (self.eigvec * alpha[None, :] * self.eigval[None, :]).sum(1)
        return img + rgb[:, None, None]


class ColorJitter:
    """The original's colour jitter on a tensor: brightness, contrast and saturation in random order.

    Each is a blend towards black, the grey mean or the greyscale image by a factor drawn from
    U(-strength, strength); this differs from torchvision's ColorJitter, which scales by 1 + factor.
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4) -> None:
        self.strengths = (brightness, contrast, saturation)

    @staticmethod
    def _grey(img: torch.Tensor) -> torch.Tensor:
        return (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]).expand_as(img)

    def draw(self) -> tuple[list[int], list[float]]:
        """The order of the three operations and each one's factor (0 where its strength is 0), from torch's RNG."""
        order = torch.randperm(3).tolist()
        factors = [0.0, 0.0, 0.0]
        for op in order:
            if self.strengths[op]:
                factors[op] = float(torch.empty(()).uniform_(-self.strengths[op], self.strengths[op]))
        return order, factors

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        order, factors = self.draw()
        for op in order:
            if self.strengths[op] == 0:
                continue
            factor = factors[op]
            if op == 0:
                target = torch.zeros_like(img)
            elif op == 1:
                target = torch.full_like(img, float(self._grey(img)[0].mean()))
            else:
                target = self._grey(img)
            img = img.lerp(target, factor)
        return img


def build_transforms(kind: str, input_size: int, mean: tuple, std: tuple, resize: int, fit: bool = False, hflip: bool = True,
                     crop: str = "") -> tuple[Callable, Callable]:
    """The original train and eval transforms: ``imagenet`` (crop, flip, jitter, lighting) or ``cifar`` (pad-crop, flip).

    The eval transform is :func:`cutmix_zoo.api.eval_transform`, the one that loaded models use (resize the shorter
    side to ``resize``, centre-crop, normalise; CIFAR's 32x32 images pass through the resize and crop unchanged).
    ``fit``: the images may not be ``input_size`` pixels (a folder, another size), so they are first resized and
    centre-cropped as the eval transform does before a pad-and-crop. ``hflip``: the random horizontal flip (off where a
    mirror image is another class: text, digits, arrows). ``crop``: ``pad`` (pad 4 pixels, crop at random: ``cifar``'s
    own), ``resized`` (a random-resized crop: ``imagenet``'s own), ``none`` (the eval transform's resize and centre
    crop), ``""`` the transform set's own.
    """
    from torchvision import transforms as T

    from ..api import eval_transform

    if kind not in ("imagenet", "cifar"):
        raise DataError(f"Unknown transform set {kind!r}: use 'imagenet' or 'cifar'.")
    crop = crop or ("resized" if kind == "imagenet" else "pad")
    if crop not in CROPS:
        raise DataError(f"Unknown crop {crop!r}: use one of {', '.join(CROPS)}.")
    normalize = T.Normalize(mean, std)
    val = eval_transform(input_size, mean, std, resize=resize)
    fitted = [T.Resize(resize), T.CenterCrop(input_size)] if fit or kind == "imagenet" else []
    cropping = {"resized": [T.RandomResizedCrop(input_size)], "pad": [*fitted, T.RandomCrop(input_size, padding=4)],
                "none": fitted}[crop]
    flip = [T.RandomHorizontalFlip()] if hflip else []
    colour = [ColorJitter(0.4, 0.4, 0.4), Lighting(0.1)] if kind == "imagenet" else []
    train = T.Compose([*cropping, *flip, T.ToTensor(), *colour, normalize])
    return train, val


class SyntheticImages(Dataset):
    """A learnable random dataset: each class is a smooth colour pattern, each sample that pattern plus noise (uint8)."""

    def __init__(self, num_samples: int, num_classes: int, size: int, split_seed: int) -> None:
        patterns = torch.Generator().manual_seed(0)
        templates = torch.randn(num_classes, 3, 4, 4, generator=patterns)
        templates = torch.nn.functional.interpolate(templates, size=(size, size), mode="bilinear", align_corners=False)
        noise = torch.Generator().manual_seed(1 + split_seed)
        self.targets = torch.arange(num_samples) % num_classes
        images = 128 + 50 * templates[self.targets] + 40 * torch.randn(num_samples, 3, size, size, generator=noise)
        self.images = images.clamp(0, 255).to(torch.uint8)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.targets[index])


class TensorTransform:
    """uint8 CHW image -> normalised float, with a random horizontal flip when training (synthetic data)."""

    def __init__(self, mean: tuple, std: tuple, flip: bool) -> None:
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.flip = flip

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        img = img.float().div_(255)
        if self.flip and torch.rand(()) < 0.5:
            img = img.flip(-1)
        return (img - self.mean) / self.std


class Augmented(Dataset):
    """Applies a random transform to a dataset's images, seeding torch from (seed, epoch, index).

    Keys are ``(epoch, index)`` pairs from :class:`EpochSampler`. The caller's RNG state is left
    untouched, so loading in the main process does not disturb the training RNG.
    """

    def __init__(self, base: Dataset, transform: Callable, seed: int) -> None:
        self.base, self.transform, self.seed = base, transform, seed

    def __len__(self) -> int:
        return dataset_size(self.base)

    def __getitem__(self, key: tuple[int, int] | int) -> tuple[torch.Tensor, int]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        img, target = self.base[index]
        with seeded(sample_seed(self.seed, epoch, index)):
            return self.transform(img), target


class EpochSampler(DistributedSampler):
    """DistributedSampler that yields ``(epoch, index)`` keys and can start part-way into an epoch."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.start = 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Sample ``epoch``'s order from its ``start``-th index of this rank on (start > 0: a resumed epoch)."""
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = list(super().__iter__())[self.start:]
        return iter([(self.epoch, i) for i in indices])

    def __len__(self) -> int:
        return self.num_samples - self.start


class ShardSampler(Sampler):
    """Every ``num_replicas``-th index from ``rank``: each sample evaluated exactly once over all ranks."""

    def __init__(self, length: int, num_replicas: int, rank: int) -> None:
        self.indices = list(range(rank, length, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _check_folder(path: str) -> None:
    if not os.path.isdir(path):
        raise DataError(f"The data folder {path} does not exist or is not a folder.")


def read_image(path: str) -> Any:
    """The loader of every ImageFolder here: the RGB image at ``path``, decoded in full at once (a PIL image).

    A file that cannot be read (truncated, corrupt, not an image, unreadable) raises :class:`DataError` naming it. It
    is not skipped: skipping would train on fewer images than the folder holds without saying so, and shift the batches
    that follow it. The training loop answers the error by saving a checkpoint of its last completed step first, so
    once the file is replaced (or removed) ``--resume`` continues from there; ``cutmix-zoo eval`` stops with the same
    sentence. Checking every file's header when the folder is opened would cost minutes on ImageNet, and would still
    miss a file cut short after its header, which only decoding finds.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")  # convert() decodes the whole file, so a truncated one fails here
    except UnidentifiedImageError:
        reason = "not an image format PIL can read"
    except OSError as e:
        reason = e.strerror or str(e).strip() or type(e).__name__
    except (SyntaxError, ValueError, Image.DecompressionBombError) as e:  # what PIL's decoders raise for malformed files
        reason = str(e).strip() or type(e).__name__
    reason = reason.splitlines()[0].rstrip(".")
    raise DataError(f"The image {path} cannot be read ({reason}): replace or remove it.")


class TreeFolder(ImageFolder):
    """torchvision's ImageFolder whose classes and files are read by :func:`cutmix_zoo.reports.folders.read_image_tree`,
    the reader of every report (ImageFolder's own rules), so a folder trains on the images a report reads."""

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        classes = class_folders(directory)
        if not classes:
            raise FileNotFoundError(f"Couldn't find any class folder in {directory}")
        return classes, {name: k for k, name in enumerate(classes)}

    @staticmethod
    def make_dataset(directory: str, class_to_idx: dict[str, int], extensions: Any = None, is_valid_file: Any = None,
                     allow_empty: bool = False) -> list[tuple[str, int]]:
        tree = read_image_tree(directory, sorted(class_to_idx, key=lambda name: class_to_idx[name]))
        empty = tree.empty_classes()
        if empty:
            raise FileNotFoundError(f"Found no valid file for the classes {', '.join(sorted(empty))}. "
                                    f"Supported extensions are: {', '.join(image_extensions())}")
        return tree.samples


def _image_folder(path: str, transform: Callable | None = None) -> ImageFolder:
    try:
        return TreeFolder(path, transform=transform, loader=read_image)
    except (FileNotFoundError, OSError) as e:
        raise DataError(f"{path} is not an ImageFolder tree (one subfolder of images per class): {e}.") from None


def _cifar(dataset: str, root: str, train: bool, download: bool, transform: Callable | None = None) -> CIFAR10:
    from torchvision.datasets import CIFAR10, CIFAR100

    if not download:
        _check_folder(root)
        if not os.path.isdir(os.path.join(root, _CIFAR_FOLDERS[dataset])):
            raise DataError(f"{root} holds no {dataset} in torchvision's format (no {_CIFAR_FOLDERS[dataset]}/ inside); "
                            "point --data at the folder that contains it, or pass --download to fetch it there.")
    cls = CIFAR10 if dataset == "cifar10" else CIFAR100
    try:
        return cls(root, train=train, download=download, transform=transform)
    except RuntimeError as e:
        raise DataError(f"{root} holds an unreadable {dataset}: {e}") from None


def _split_folders(root: str, dataset: str) -> tuple[str, str]:
    _check_folder(root)
    train, val = os.path.join(root, "train"), os.path.join(root, "val")
    if not (os.path.isdir(train) and os.path.isdir(val)):
        raise DataError(f"{root} needs train/ and val/ subfolders, each with one folder of images per class, for --dataset {dataset}.")
    return train, val


def _held_out(folder: ImageFolder, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Train and validation indices of one ImageFolder tree: ``fraction`` of each class's images (at least one, and never
    all) drawn with ``seed`` for validation, the same split ``cutmix-zoo transfer --val-split`` draws
    (:func:`cutmix_zoo.reports.transfer.split_per_class`), so its probe and a fine-tune are scored on the same images."""
    from ..reports.transfer import split_per_class

    targets = torch.tensor(folder.targets)
    counts = torch.bincount(targets, minlength=len(folder.classes)).tolist()
    for label, count in enumerate(counts):
        if count < 2:
            raise DataError(f"The class {folder.classes[label]!r} of {folder.root} has {count} image(s); --val-split needs at least "
                            "two per class (one to train on, one to validate).")
    train, val = split_per_class(targets, fraction, seed)
    return train.tolist(), val.tolist()


def _folders(data: str, dataset: str, val_split: float | None, seed: int, val_tf: Callable) -> tuple[Dataset, Dataset, list[str]]:
    """The train set (untransformed) and the validation set (``val_tf``) of an ImageFolder tree, and its class names:
    ``data/train`` and ``data/val``, or with ``val_split`` one tree split per class."""
    from torch.utils.data import Subset

    if val_split is None:
        train_dir, val_dir = _split_folders(data, dataset)
        base_train, val = _image_folder(train_dir), _image_folder(val_dir, transform=val_tf)
        if val.classes != base_train.classes:
            raise DataError(f"{data}: train/ and val/ need the same class folders (train/ has {len(base_train.classes)}, val/ has "
                            f"{len(val.classes)}{', named differently' if len(val.classes) == len(base_train.classes) else ''}).")
        return base_train, val, list(base_train.classes)
    _check_folder(data)
    if os.path.isdir(os.path.join(data, "train")) and os.path.isdir(os.path.join(data, "val")):
        raise DataError(f"{data} is already split into train/ and val/: drop --val-split, or point --data at one folder of class folders.")
    whole = _image_folder(data)
    train_idx, val_idx = _held_out(whole, val_split, seed)
    return Subset(whole, train_idx), Subset(_image_folder(data, transform=val_tf), val_idx), list(whole.classes)


def training_data(dataset: str, data: str, transforms: str, seed: int, download: bool = False,
                  synthetic_size: int = 0, decode: str = "cpu", inputs: Inputs | None = None,
                  val_split: float | None = None, val_data: str | None = None, hflip: bool = True,
                  crop: str = "") -> DataSpec:
    """The train and validation sets of a run (train augmentation keyed by epoch and index).

    ``inputs`` (default: the dataset's) sets the crop size and normalisation, e.g. those of the model a run starts from.
    ``val_split`` holds out that fraction of each class of a single ImageFolder tree for validation. ``hflip`` and
    ``crop`` choose the training augmentation (:func:`build_transforms`; generated data is flipped or not, never cropped).
    Shards and Parquet files (a folder of them, or a pattern of tar shards with ``val_data``'s) are streamed: :mod:`.streams`.
    ``decode="gpu"`` (ImageFolder trees only): workers read the files' bytes and draw the augmentation's
    parameters; decoding and augmenting happen on the device (see :mod:`.gpu_decode`).
    """
    cfg = data_config(dataset)
    name = FOLDER if dataset == FOLDER else cfg.name
    if inputs is None:
        inputs = Inputs(cfg.input_size[-1], cfg.mean, cfg.std, cfg.resize)
    size, mean, std = inputs.size, inputs.mean, inputs.std
    if dataset == "shapes":
        from ..shapes import Shapes

        train = Augmented(Shapes("train", synthetic_size), TensorTransform(mean, std, flip=hflip), seed)
        val = Augmented(Shapes("test"), TensorTransform(mean, std, flip=False), seed)
        return DataSpec(train, val, cfg.num_classes, cfg.name)
    if data == "synthetic":
        num_classes = cfg.num_classes
        n = synthetic_size or (2048 if size <= 64 else 512)
        train = Augmented(SyntheticImages(n, num_classes, size, split_seed=0), TensorTransform(mean, std, flip=hflip), seed)
        val = Augmented(SyntheticImages(max(n // 4, num_classes), num_classes, size, split_seed=1), TensorTransform(mean, std, flip=False), seed)
        return DataSpec(train, val, num_classes, cfg.name)
    fit = dataset not in _CIFAR_FOLDERS or size != cfg.input_size[-1]
    train_tf, val_tf = build_transforms(transforms, size, mean, std, inputs.resize, fit, hflip, crop)
    if dataset in _CIFAR_FOLDERS:
        cifar_train = _cifar(dataset, data, True, download)
        return DataSpec(Augmented(cifar_train, train_tf, seed), _cifar(dataset, data, False, download, transform=val_tf), cfg.num_classes, name)
    from .streams import is_stream, stream_data

    if is_stream(data):
        return stream_data(data, val_data, val_split, decode, seed, train_tf, val_tf, name)
    base_train, val_set, classes = _folders(data, dataset, val_split, seed, val_tf)
    if len(classes) < 2:
        raise DataError(f"{data} holds {len(classes)} class folder(s); a classifier needs at least two.")
    if decode == "gpu":
        from .gpu_decode import encoded_data

        spec = encoded_data(base_train, val_set, train_tf, val_tf, seed, len(classes), name)
        return dataclasses.replace(spec, classes=classes)
    return DataSpec(Augmented(base_train, train_tf, seed), val_set, len(classes), name, classes=classes)


def eval_data(data: str, cfg: Mapping[str, Any]) -> CIFAR10 | ImageFolder:
    """The validation split of a CIFAR folder or an ImageFolder tree (``DIR/val`` if present, else ``DIR``), with the eval
    transform of the model config ``cfg`` (a loaded model's ``pretrained_cfg``): :func:`cutmix_zoo.api.transforms`."""
    from ..api import transforms

    _check_folder(data)
    transform = transforms(dict(cfg))
    for name, folder in _CIFAR_FOLDERS.items():
        if os.path.isdir(os.path.join(data, folder)):
            return _cifar(name, data, False, False, transform=transform)
    root = os.path.join(data, "val") if os.path.isdir(os.path.join(data, "val")) else data
    return _image_folder(root, transform=transform)


def make_loader(dataset: Dataset, batch_size: int, sampler: Sampler | None, workers: int, pin_memory: bool,
                drop_last: bool, collate_fn: Callable | None = None) -> DataLoader:
    """A DataLoader with its own generator (so it never consumes the global RNG) and persistent workers; a streamed
    dataset (no ``sampler``) gets fresh workers each epoch, which take the epoch's position set on it."""
    kwargs: dict[str, Any] = {}
    if workers > 0:
        kwargs = {"persistent_workers": sampler is not None, "prefetch_factor": 4}
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin_memory,
                      drop_last=drop_last, collate_fn=collate_fn, generator=torch.Generator().manual_seed(0), **kwargs)
