"""``--decode gpu``: JPEG decoding and the ImageNet augmentation on the device, for ImageFolder training.

With PIL in the workers a CPU core decodes and augments about 200 ImageNet images a second, far
below what one GPU trains on (``benchmarks/decode.py`` measures both). Here the workers only read
each file's bytes and draw the sample's random parameters (crop box, flip, jitter order and
factors, lighting weights) with the very transform objects of the CPU pipeline, seeded from
(seed, epoch, index) as :class:`~.data.Augmented` does, so exact resume holds and the parameters
equal the CPU pipeline's. The device then decodes the batch in one ``decode_jpeg`` call (nvjpeg on
cuda) and applies those parameters. The device is an argument throughout, so the whole path also
runs (and is tested) on the CPU; only the ``--decode gpu`` flag insists on cuda.

A file torchvision cannot decode (truncated, corrupt, not an image, or a format it lacks such as BMP) goes to the
folder's own loader, :func:`.data.read_image`, which the ImageFolder carries: it decodes what PIL can, and raises the
CPU pipeline's :class:`.data.DataError` naming the file for the rest, so the trainer stops with the same sentence and
checkpoint under both ``--decode`` values. Taking the loader from the dataset keeps this module from importing
:mod:`.data`, which imports it.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision import transforms as T
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms.v2 import functional as F

from ..errors import InvalidArgumentError
from ..registry import data_config
from .dataspec import DataSpec, sample_seed

_JPEG_MAGIC = b"\xff\xd8"
Reader = Callable[[str], Image.Image]  # an ImageFolder's loader: the RGB image at a path, or DataError naming the file


def check_gpu_decode(dataset: str, data: str, device: torch.device) -> None:
    """Refuse ``--decode gpu`` where it cannot work, in one sentence: it needs JPEG files and a CUDA device."""
    imagenet_like = data_config(dataset).key == "imagenet"
    if not imagenet_like or data == "synthetic":
        source = f"--dataset {dataset}" if not imagenet_like else "--data synthetic"
        raise InvalidArgumentError(f"--decode gpu decodes the JPEG files of an ImageFolder tree, so it needs --dataset imagenet "
                                   f"or folder with --data DIR, not {source}.")
    if device.type != "cuda":
        raise InvalidArgumentError(f"--decode gpu decodes on a CUDA device, but this run's device is {device}; "
                                   "use --decode cpu (the default) here.")


class EncodedBatch(NamedTuple):
    """A loader batch before decoding: each file's bytes (1-D uint8, on the host), the stacked augmentation parameters,
    and each file's path, so that a file the device cannot decode is named."""

    data: list[torch.Tensor]
    params: dict[str, torch.Tensor]
    paths: list[str]


class EncodedImages(Dataset):
    """An ImageFolder's files as raw bytes, each with its train augmentation's parameters when ``train`` is given.

    ``train`` is the CPU pipeline of ``build_transforms("imagenet", ...)`` (RandomResizedCrop,
    RandomHorizontalFlip, ToTensor, ColorJitter, Lighting, Normalize); its objects draw the
    parameters in the same order from the same seed, so a sample gets the crop, flip, jitter and
    lighting it would get on the CPU. The crop needs the image size, read from the file header
    without decoding; a file whose header PIL cannot read goes to ``read`` (the ImageFolder's loader),
    whose DataError names it. Keys are ``(epoch, index)`` pairs, or plain indices for validation.
    """

    def __init__(self, samples: list[tuple[str, int]], read: Reader, seed: int, train: T.Compose | None = None) -> None:
        self.samples, self.read, self.seed = samples, read, seed
        self.transforms = train.transforms if train is not None else None

    def __len__(self) -> int:
        return len(self.samples)

    def _draw(self, img: Image.Image) -> dict[str, torch.Tensor]:
        crop, flip, _, jitter, lighting, _ = cast("list[Any]", self.transforms)  # only called when train transforms are set
        top, left, height, width = crop.get_params(img, crop.scale, crop.ratio)
        flipped = torch.rand(1) < flip.p
        order, factors = jitter.draw()
        return {"crop": torch.tensor([top, left, height, width]), "flip": flipped[0], "order": torch.tensor(order),
                "jitter": torch.tensor(factors), "lighting": lighting.draw()}

    def _header(self, data: bytes, path: str) -> Image.Image:
        """The file opened by PIL for its size (only the header is read); one PIL cannot open goes to ``read``, whose
        DataError names it (an empty file, a text file, a header cut short)."""
        try:
            return Image.open(io.BytesIO(data))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):  # what PIL raises for a malformed header
            return self.read(path)

    def __getitem__(self, key: tuple[int, int] | int) -> tuple[torch.Tensor, dict[str, torch.Tensor], str, int]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        path, target = self.samples[index]
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:  # gone or unreadable since the folder was listed: the loader raises its DataError naming it
            self.read(path)
            raise  # the file came back meanwhile: the error stands
        params: dict[str, torch.Tensor] = {}
        if self.transforms is not None:
            with self._header(data, path) as img, torch.random.fork_rng(devices=[]):
                torch.manual_seed(sample_seed(self.seed, epoch, index))
                params = self._draw(img)
        encoded = torch.from_numpy(np.frombuffer(bytearray(data), dtype=np.uint8))  # torch.frombuffer refuses an empty file
        return encoded, params, path, target


def collate_encoded(samples: list[tuple[torch.Tensor, dict[str, torch.Tensor], str, int]]) -> tuple[EncodedBatch, torch.Tensor]:
    """Batch encoded samples: the bytes and paths stay lists (the lengths differ), the parameters and targets are stacked."""
    data, params, paths, targets = zip(*samples)
    stacked = {k: torch.stack([p[k] for p in params]) for k in params[0]}
    return EncodedBatch(list(data), stacked, list(paths)), torch.tensor(targets)


def _is_jpeg(data: torch.Tensor) -> bool:
    """Whether a file's bytes start as a JPEG's: its name may say otherwise (ImageNet holds a PNG named .JPEG)."""
    return data[:2].numpy().tobytes() == _JPEG_MAGIC


def _decode_one(data: torch.Tensor, path: str, device: torch.device, read: Reader) -> torch.Tensor:
    """One file as a uint8 RGB image on ``device``: a JPEG by ``decode_jpeg`` there, another format by torchvision on the
    host, and what torchvision refuses by ``read``, which decodes it with PIL or raises DataError naming ``path``."""
    try:
        if _is_jpeg(data):
            return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        return decode_image(data, mode=ImageReadMode.RGB).to(device)
    except RuntimeError:  # torchvision's decoders fail with RuntimeError, saying little (no file name)
        return F.pil_to_tensor(read(path)).to(device)


def _decode_jpegs(data: list[torch.Tensor], paths: list[str], device: torch.device, read: Reader) -> list[torch.Tensor]:
    """JPEGs in one batched ``decode_jpeg`` call; if it fails, one at a time, so that the file it failed on is found
    (and named) while a batch of good files pays nothing for the search."""
    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        return [_decode_one(d, p, device, read) for d, p in zip(data, paths)]


def decode(batch: EncodedBatch, device: torch.device, read: Reader) -> list[torch.Tensor]:
    """Decode a batch's files to uint8 RGB images on ``device``: the JPEGs in one batched ``decode_jpeg`` call (nvjpeg on
    cuda), any other file (an ImageFolder may hold a PNG) on the host; what torchvision cannot decode goes to ``read``."""
    images: list[torch.Tensor | None] = [None] * len(batch.data)
    jpeg = [i for i, d in enumerate(batch.data) if _is_jpeg(d)]
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders in favour of TorchCodec
        warnings.simplefilter("ignore", DeprecationWarning)
        if jpeg:
            decoded = _decode_jpegs([batch.data[i] for i in jpeg], [batch.paths[i] for i in jpeg], device, read)
            for i, img in zip(jpeg, decoded):
                images[i] = img
        for i in set(range(len(batch.data))) - set(jpeg):
            images[i] = _decode_one(batch.data[i], batch.paths[i], device, read)
    return cast("list[torch.Tensor]", images)  # every slot is filled: the JPEGs above, the rest here


class DeviceAugment:
    """The ImageNet train and eval transforms applied on the device to a decoded batch, with the workers' parameters.

    Train: crop and resize each image (antialiased bilinear to ``size``, rounded to uint8 as PIL
    does), then flip, the original's colour jitter, PCA lighting and normalisation on the whole
    batch at once. Eval: resize the shorter side to ``resize``, centre-crop ``size``, normalise. ``read`` is the
    folders' loader, for the files torchvision cannot decode (see :func:`decode`).
    """

    def __init__(self, train: T.Compose, val: T.Compose, read: Reader) -> None:
        self.read = read
        crop, _, _, jitter, lighting, normalize = train.transforms
        resize, center, _, _ = val.transforms
        self.size, self.center = list(crop.size), list(center.size)
        self.resize: int = resize.size
        self.mean, self.std = torch.tensor(normalize.mean), torch.tensor(normalize.std)
        self.eigval, self.eigvec = lighting.eigval, lighting.eigvec
        self._constants: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    def _on(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Mean, std, eigenvalues and eigenvectors on ``device``, copied there once."""
        if device not in self._constants:
            self._constants[device] = tuple(t.to(device) for t in (self.mean.view(1, 3, 1, 1), self.std.view(1, 3, 1, 1),
                                                                      self.eigval, self.eigvec))
        return self._constants[device]

    def train(self, batch: EncodedBatch, device: torch.device) -> torch.Tensor:
        """Normalised float training inputs (B, 3, size, size) on ``device`` from an encoded batch."""
        device = torch.device(device)
        images = decode(batch, device, self.read)
        crops = batch.params["crop"].tolist()  # host values: no device sync
        x = torch.stack([F.resized_crop(img, top, left, h, w, self.size, antialias=True)
                         for img, (top, left, h, w) in zip(images, crops)])
        p = {k: v.to(device, non_blocking=True) for k, v in batch.params.items()}
        x = torch.where(p["flip"].view(-1, 1, 1, 1), x.flip(-1), x).float().div_(255)
        x = self._jitter(x, p["order"], p["jitter"])
        mean, std, eigval, eigvec = self._on(device)
        rgb = (eigvec[None] * p["lighting"][:, None, :] * eigval[None, None, :]).sum(2)
        return (x + rgb[:, :, None, None] - mean) / std

    @staticmethod
    def _jitter(x: torch.Tensor, order: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
        """The original's brightness/contrast/saturation blends, each sample in its own order, as three batched steps."""
        for k in range(3):
            op = order[:, k].view(-1, 1, 1, 1)
            factor = factors.gather(1, order[:, k:k + 1]).view(-1, 1, 1, 1)
            grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
            target = torch.where(op == 0, 0.0, torch.where(op == 1, grey.mean((-2, -1), keepdim=True), grey))
            x = torch.lerp(x, target.expand_as(x), factor.expand_as(x))
        return x

    def val(self, batch: EncodedBatch, device: torch.device) -> torch.Tensor:
        """Normalised float eval inputs (B, 3, size, size) on ``device``: resize the shorter side, centre-crop."""
        device = torch.device(device)
        images = decode(batch, device, self.read)
        x = torch.stack([F.center_crop(F.resize(img, [self.resize], antialias=True), self.center) for img in images])
        mean, std, _, _ = self._on(device)
        return (x.float().div_(255) - mean) / std


def _image_files(dataset: Any) -> tuple[list[tuple[str, int]], Reader]:
    """The (path, class) samples and the loader of an ImageFolder, or of a Subset of one (a split held out of one tree)."""
    if isinstance(dataset, Subset):
        samples, read = _image_files(dataset.dataset)
        return [samples[i] for i in dataset.indices], read
    return dataset.samples, dataset.loader


def encoded_data(train: Any, val: Any, train_tf: T.Compose, val_tf: T.Compose, seed: int, num_classes: int,
                 registry_dataset: str) -> DataSpec:
    """The DataSpec of ``--decode gpu`` for ImageFolder ``train`` and ``val`` sets (or Subsets of them) with the CPU
    transforms they would use; their loader reads the files the device cannot decode."""
    (train_files, read), (val_files, val_read) = _image_files(train), _image_files(val)
    augment = DeviceAugment(train_tf, val_tf, read)
    return DataSpec(EncodedImages(train_files, read, seed, train_tf), EncodedImages(val_files, val_read, seed),
                    num_classes, registry_dataset, collate=collate_encoded, train_to_device=augment.train, val_to_device=augment.val)
