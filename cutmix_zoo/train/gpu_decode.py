"""``--decode gpu``: JPEG decoding and the ImageNet augmentation on the device, for ImageFolder training.

With PIL in the workers a CPU core decodes and augments about 200 ImageNet images a second, far
below what one GPU trains on (``benchmarks/input_pipeline.py`` measures both). Here the workers only
read each file's bytes, take the image's size from its header (:mod:`.headers`) and draw the
sample's random parameters (crop box, flip, jitter order and factors, lighting weights) as the
transform objects of the CPU pipeline draw them, seeded from (seed, epoch, index) as
:class:`~.data.Augmented` does, so exact resume holds and the parameters equal the CPU pipeline's;
:func:`encoded_sample` is that per-sample work for any source of bytes. The device then decodes the
batch in one ``decode_jpeg`` call (nvjpeg on cuda) and applies those parameters. The device is an argument throughout, so the whole path also
runs (and is tested) on the CPU; only the ``--decode gpu`` flag insists on cuda.

A file torchvision cannot decode (truncated, corrupt, not an image, or a format it lacks such as BMP) goes to the
folder's own loader, :func:`.data.read_image`, which the ImageFolder carries: it decodes what PIL can, and raises the
CPU pipeline's :class:`.data.DataError` naming the file for the rest, so the trainer stops with the same sentence and
checkpoint under both ``--decode`` values. Taking the loader from the dataset keeps this module from importing
:mod:`.data`, which imports it.
"""

from __future__ import annotations

import io
import math
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
from .dataspec import DataSpec, sample_seed, seeded
from .headers import image_size

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


class EncodedSample(NamedTuple):
    """One sample of the bytes path: the file's bytes as they are, its augmentation's parameters (empty for validation),
    its name (a path, or a shard's key: what an error names) and its class."""

    data: bytes
    params: dict[str, torch.Tensor]
    name: str
    target: int


class EncodedBatch(NamedTuple):
    """A loader batch before decoding: every file's bytes end to end in one 1-D uint8 tensor (on the host: one buffer
    to share between processes and pin, not one per file) with each file's length, the stacked augmentation
    parameters, and each file's path, so that a file the device cannot decode is named."""

    encoded: torch.Tensor
    lengths: list[int]
    params: dict[str, torch.Tensor]
    paths: list[str]

    @property
    def data(self) -> list[torch.Tensor]:
        """Each file's bytes, a view of ``encoded``."""
        return list(torch.split(self.encoded, self.lengths))


def crop_box(height: int, width: int, scale: tuple[float, float], log_ratio: tuple[float, float],
             ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """``RandomResizedCrop.get_params`` for an image of ``height`` x ``width`` known from its header: the same draws from
    torch's RNG in the same order (so the same box), with the log of ``ratio`` taken once by the caller, as float32."""
    area = height * width
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, size=(1,)).item())
            left = int(torch.randint(0, width - w + 1, size=(1,)).item())
            return top, left, h, w
    in_ratio = float(width) / float(height)  # torchvision's fallback: the central crop of the ratio's nearest bound
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class AugmentDraw:
    """The random parameters of the ImageNet train transform (crop box, flip, jitter order and factors, lighting
    weights) for one sample, drawn as the CPU pipeline's objects draw them.

    ``train`` is the CPU pipeline of ``build_transforms("imagenet", ...)`` (RandomResizedCrop, RandomHorizontalFlip,
    ToTensor, ColorJitter, Lighting, Normalize): the jitter and lighting objects draw their own parameters, the crop
    and flip take the same draws in the same order, so a sample gets the parameters it would get on the CPU.
    """

    def __init__(self, train: T.Compose) -> None:
        crop, flip, _, self.jitter, self.lighting, _ = train.transforms
        self.scale, self.ratio = tuple(crop.scale), tuple(crop.ratio)
        low, high = torch.log(torch.tensor(self.ratio)).tolist()  # float32, as get_params takes it
        self.log_ratio = (low, high)
        self.flip_p: float = flip.p

    def __call__(self, height: int, width: int) -> dict[str, torch.Tensor]:
        """The parameters for an image of ``height`` x ``width`` from torch's CPU RNG (the caller seeds it)."""
        top, left, h, w = crop_box(height, width, self.scale, self.log_ratio, self.ratio)
        flipped = torch.rand(1) < self.flip_p
        order, factors = self.jitter.draw()
        return {"crop": torch.tensor([top, left, h, w]), "flip": flipped[0], "order": torch.tensor(order),
                "jitter": torch.tensor(factors), "lighting": self.lighting.draw()}


def _size(data: bytes, name: str, read: Reader) -> tuple[int, int]:
    """``(height, width)`` from the file's header; one the header reader does not know (or an image so large that PIL
    refuses it) goes to PIL, and one PIL cannot open either to ``read``, whose DataError names it (an empty file, a
    text file, a header cut short)."""
    size = image_size(data)
    limit = Image.MAX_IMAGE_PIXELS
    if size is not None and (limit is None or size[0] * size[1] <= 2 * limit):
        return size
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):  # what PIL raises for a malformed header
        with read(name) as img:
            width, height = img.size
    return height, width


def encoded_sample(data: bytes, name: str, target: int, draw: AugmentDraw | None, seed: int, read: Reader) -> EncodedSample:
    """One sample of the bytes path from any source of (name, bytes, class): a folder's file or a shard's record.

    ``draw`` (None for validation) draws the augmentation's parameters from torch's CPU generator seeded with ``seed``
    (:func:`.dataspec.sample_seed` of the run's seed, the epoch and the sample's index), the caller's RNG state left
    as it was; the image's size comes from the header. ``read(name)`` is asked only for a header that cannot be read:
    it returns the decoded image or raises the error naming the sample.
    """
    if draw is None:
        return EncodedSample(data, {}, name, target)
    height, width = _size(data, name, read)
    with seeded(seed):
        return EncodedSample(data, draw(height, width), name, target)


class EncodedImages(Dataset):
    """An ImageFolder's files as raw bytes, each with its train augmentation's parameters when ``train`` is given.

    ``train`` is the CPU pipeline of ``build_transforms("imagenet", ...)``, whose draws :class:`AugmentDraw` repeats
    from the same seed. A file gone since the folder was listed, or whose header cannot be read, goes to ``read`` (the
    ImageFolder's loader), whose DataError names it. Keys are ``(epoch, index)`` pairs, or plain indices for validation.
    """

    def __init__(self, samples: list[tuple[str, int]], read: Reader, seed: int, train: T.Compose | None = None) -> None:
        self.samples, self.read, self.seed = samples, read, seed
        self.draw = AugmentDraw(train) if train is not None else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int] | int) -> EncodedSample:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        path, target = self.samples[index]
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:  # gone or unreadable since the folder was listed: the loader raises its DataError naming it
            self.read(path)
            raise  # the file came back meanwhile: the error stands
        return encoded_sample(data, path, target, self.draw, sample_seed(self.seed, epoch, index), self.read)


def collate_encoded(samples: list[EncodedSample]) -> tuple[EncodedBatch, torch.Tensor]:
    """Batch encoded samples: the bytes end to end in one tensor, the parameters and targets stacked, the names listed."""
    data, params, names, targets = zip(*samples)
    stacked = {k: torch.stack([p[k] for p in params]) for k in params[0]}
    encoded = torch.from_numpy(np.frombuffer(bytearray(b"".join(data)), dtype=np.uint8))  # torch.frombuffer refuses b""
    return EncodedBatch(encoded, [len(d) for d in data], stacked, list(names)), torch.tensor(targets)


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
    files = batch.data
    images: list[torch.Tensor | None] = [None] * len(files)
    jpeg = [i for i, d in enumerate(files) if _is_jpeg(d)]
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders in favour of TorchCodec
        warnings.simplefilter("ignore", DeprecationWarning)
        if jpeg:
            decoded = _decode_jpegs([files[i] for i in jpeg], [batch.paths[i] for i in jpeg], device, read)
            for i, img in zip(jpeg, decoded):
                images[i] = img
        for i in set(range(len(files))) - set(jpeg):
            images[i] = _decode_one(files[i], batch.paths[i], device, read)
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
