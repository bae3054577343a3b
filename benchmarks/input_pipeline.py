"""Does the input pipeline keep up with the step? Each stage of ImageFolder training's input measured in one run.

  per core     what one loader worker (one process, one thread) delivers, collation included:
               (a) the PIL path of ``--decode cpu`` (PIL decode, RandomResizedCrop, flip, ToTensor, the original's
                   colour jitter and lighting, Normalize)
               (b) the bytes+parameters path of ``--decode gpu`` (cutmix_zoo.train.gpu_decode: read the file, its size
                   from the header, draw the augmentation's parameters); :func:`worker_rate` takes any such dataset
               both again from the same images written as WebDataset shards (``cutmix-zoo shard``; where the ``scale``
               extra is installed), streamed as the trainer streams them (:func:`stream_rate`)
  workers      the PIL path through a DataLoader of --workers processes
  device       (c) ``--decode gpu``'s device part alone (decode the batch, nvjpeg on cuda, and augment it) on batches
                   already read, (d) end to end with --workers processes
  step         (e) cutmix_zoo.train.loop.train_step of ResNet-50 at 224px with CutMix (bf16 and channels_last on cuda,
                   compiled there unless --no-compile; fp32 on cpu), alone on a batch already on the device, and fed
                   by the ``--decode gpu`` pipeline with --workers processes, as the trainer runs it

The images are --images generated 500x375 JPEGs (random detail at several scales plus grain, quality 90: about
ImageNet's mean size), written to a temporary ImageFolder tree. With --device cpu the device rows run on the CPU
(the same code the tests check). The last lines: whether PIL decoding is the bottleneck,
``bytes path / PIL path per core: X`` and, on cuda, ``end to end / step: Y``.

    python benchmarks/input_pipeline.py                        # cuda if available: 1024 images, the trainer's workers
    python benchmarks/input_pipeline.py --device cpu           # every row on the CPU
    python benchmarks/input_pipeline.py --device cpu --quick   # a check that it runs (about 30 s on 2 cores)
    python benchmarks/input_pipeline.py --device cpu --step-rate 6698   # the PIL path against a step timed on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset, default_collate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cutmix_zoo.train.config import default_workers  # noqa: E402
from cutmix_zoo.train.data import EpochSampler, make_loader, training_data  # noqa: E402
from cutmix_zoo.train.dataspec import DataSpec, dataset_size  # noqa: E402

from train_step import _sync, _time, trainer_step  # noqa: E402  (the step exactly as the train-step benchmark times it)


def photo_like(rng: np.random.Generator) -> Image.Image:
    """A 500x375 image with detail at several scales plus grain: its JPEG is about as large (and as slow to decode)
    as an average ImageNet photo's, unlike a flat or pure-noise image."""
    pixels = np.zeros((375, 500, 3), np.float32)
    for (h, w), weight in (((6, 8), 1.0), ((24, 32), 0.5), ((96, 128), 0.35)):
        field = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).resize((500, 375), Image.BICUBIC)
        pixels += weight * (np.asarray(field, np.float32) - 128)
    pixels = 128 + pixels / 1.2 + rng.normal(0, 10, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_jpegs(root: Path, count: int, classes: int = 4, seed: int = 0) -> None:
    """An ImageFolder tree of ``count`` training JPEGs (quality 90) and one validation JPEG per class."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        for split in ("train", "val") if i < classes else ("train",):
            folder = root / split / f"class{i % classes}"
            folder.mkdir(parents=True, exist_ok=True)
            photo_like(rng).save(folder / f"{i:05d}.jpg", quality=90)


def _rate(count: int, run: Callable[[], None], device: torch.device, min_s: float = 0.0) -> float:
    """Images per second of ``run`` (which handles ``count`` images), after one untimed pass that warms caches and
    workers; ``run`` is repeated until ``min_s`` seconds have passed, so that a fast one is not timed on noise."""
    run()
    _sync(device)
    start, passes = time.perf_counter(), 0
    while passes == 0 or time.perf_counter() - start < min_s:
        run()
        passes += 1
    _sync(device)
    return passes * count / (time.perf_counter() - start)


def _drain(batches: Iterable, finish: Callable, device: torch.device) -> Callable[[], None]:
    def run() -> None:
        for x, _ in batches:
            finish(x, device)
    return run


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread inside the block, as a DataLoader worker runs; the thread count is put back after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def worker_rate(dataset: Dataset, collate: Callable | None, batch: int, min_s: float = 1.0) -> float:
    """Images/s of one loader worker's whole job on ``dataset`` (keys ``(epoch, index)``): every sample, collated in
    batches of ``batch``, in this process with one thread (what a DataLoader worker gets). Any dataset of the trainer
    (a folder's PIL or bytes path, or another source of the same samples) gives its row of the table."""
    n, collate = dataset_size(dataset), collate or default_collate

    def run() -> None:
        for start in range(0, n, batch):
            collate([dataset[(0, i)] for i in range(start, min(start + batch, n))])
    with one_thread():
        return _rate(n, run, torch.device("cpu"), min_s)


def stream_rate(stream: IterableDataset, collate: Callable | None, batch: int, min_s: float = 1.0) -> float:
    """Images/s of one loader worker's whole job on a streamed dataset (shards): read, parse the tar, make each sample and
    collate them in batches of ``batch``, in this process with one thread."""
    n, collate = dataset_size(stream), collate or default_collate

    def run() -> None:
        cast(Any, stream).set_position(0)
        samples = iter(stream)
        while batch_ := list(itertools.islice(samples, batch)):
            collate(batch_)
    with one_thread():
        return _rate(n, run, torch.device("cpu"), min_s)


def shard_rates(tmp: str, batch: int, min_s: float) -> list[tuple[str, float]]:
    """The per-core rows of both paths read from shards of the same images; none without the scale extra."""
    if importlib.util.find_spec("webdataset") is None:
        return []
    from cutmix_zoo.train.shard_writer import write_shards

    shards = os.path.join(tmp, "shards")
    write_shards(tmp, shards)
    pil = training_data("imagenet", shards, "imagenet", seed=0)
    encoded = training_data("imagenet", shards, "imagenet", seed=0, decode="gpu")
    return [("(a) PIL decode+augment (shards), 1 core", stream_rate(cast(IterableDataset, pil.train), pil.collate, batch, min_s)),
            ("(b) bytes+parameters (shards), 1 core",
             stream_rate(cast(IterableDataset, encoded.train), encoded.collate, batch, min_s))]


def cpu_rates(data: DataSpec, workers: int, batch: int) -> tuple[float, float]:
    """PIL path images/s: one worker's job in this process (one thread), and a DataLoader of ``workers`` processes."""
    one = worker_rate(data.train, data.collate, batch, min_s=0.0)
    loader = make_loader(data.train, batch, EpochSampler(data.train, 1, 0, 0), workers, False, drop_last=False)
    return one, _rate(dataset_size(data.train), _drain(loader, lambda x, d: x, torch.device("cpu")), torch.device("cpu"))


def gpu_rates(data: DataSpec, workers: int, batch: int, device: torch.device) -> tuple[float, float]:
    """``--decode gpu`` images/s: decode+augment on the device of batches already read, and end to end with ``workers``."""
    n = dataset_size(data.train)
    sampler = EpochSampler(data.train, 1, 0, 0)
    read = list(make_loader(data.train, batch, sampler, 0, False, drop_last=False, collate_fn=data.collate))
    device_only = _rate(n, _drain(read, data.train_to_device, device), device)
    loader = make_loader(data.train, batch, sampler, workers, device.type == "cuda", drop_last=False, collate_fn=data.collate)
    return device_only, _rate(n, _drain(loader, data.train_to_device, device), device)


def _numerics(device: torch.device) -> None:
    if device.type == "cuda":  # as the trainer and benchmarks/train_step.py set them
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True


def step_rate(device: torch.device, batch: int, steps: int, warmup: int, compile_model: bool = False) -> float:
    """Images/s of the trainer's step (ResNet-50, 224px, CutMix) on synthetic data already on the device."""
    _numerics(device)
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, 3, 224, 224, device=device, generator=g)
    y = torch.randint(1000, (batch,), device=device, generator=g)
    step = trainer_step(device, device.type == "cuda", "cutmix", compile_model)
    for _ in range(max(warmup, 1 if compile_model else 0)):
        step(x, y)
    return batch / _time(lambda: step(x, y), steps, device)


def fed_step_rate(data: DataSpec, device: torch.device, batch: int, steps: int, warmup: int, workers: int,
                  compile_model: bool = False) -> float:
    """Images/s of the same step fed by ``data``'s pipeline (``--decode gpu``: workers, then the device's part), batch
    after batch as the trainer runs it; the epoch is repeated as often as ``warmup + steps`` batches need."""
    _numerics(device)
    sampler = EpochSampler(data.train, 1, 0, 0)
    loader = make_loader(data.train, batch, sampler, workers, device.type == "cuda", drop_last=True, collate_fn=data.collate)
    step = trainer_step(device, device.type == "cuda", "cutmix", compile_model)

    def batches() -> Iterable:
        epoch = 0
        while True:
            sampler.set_position(epoch)
            yield from loader
            epoch += 1

    feed = iter(batches())

    def one() -> None:
        encoded, y = next(feed)
        step(data.train_to_device(encoded, device), y.to(device, non_blocking=True))

    for _ in range(max(warmup, 1)):  # the workers start, and a compiled step compiles, here
        one()
    return batch / _time(one, steps, device)


@dataclass(frozen=True)
class Sizes:
    images: int
    workers: int
    batch: int
    step_batch: int
    steps: int
    warmup: int
    per_core_s: float  # the least time each per-core row is timed for


def sizes(args: argparse.Namespace, gpu: bool) -> Sizes:
    """The run's sizes: the flags given, else those of --quick or of the device."""
    default = Sizes(16, 1, 8, 2, 1, 1, 0.3) if args.quick else Sizes(1024, default_workers(), 64, 256, 30, 10, 2.0) if gpu \
        else Sizes(64, default_workers(), 16, 4, 2, 1, 1.0)
    pick = {k: getattr(args, k) for k in ("images", "workers", "batch", "step_batch", "steps", "warmup") if getattr(args, k) is not None}
    return Sizes(**{**default.__dict__, **pick})


def measure(tmp: str, s: Sizes, device: torch.device, step: float | None, compile_model: bool) -> list[tuple[str, float]]:
    """Every row of the table, as (label, img/s)."""
    pil = training_data("imagenet", tmp, "imagenet", seed=0)
    encoded = training_data("imagenet", tmp, "imagenet", seed=0, decode="gpu")
    pil_one = worker_rate(pil.train, pil.collate, s.batch, s.per_core_s)
    bytes_one = worker_rate(encoded.train, encoded.collate, s.batch, s.per_core_s)
    _, pil_all = cpu_rates(pil, s.workers, s.batch)
    dev_only, dev_all = gpu_rates(encoded, s.workers, s.batch, device)
    given = step is not None
    step = step if step is not None else step_rate(device, s.step_batch, s.steps, s.warmup, compile_model)
    fed = fed_step_rate(encoded, device, s.step_batch, s.steps, s.warmup, s.workers, compile_model)
    shards = shard_rates(tmp, s.batch, s.per_core_s)
    kind, w = device.type, s.workers
    model = f"ResNet-50, 224px, CutMix{', compiled' if compile_model else ''}"
    return [("(a) PIL decode+augment, 1 core", pil_one), ("(b) bytes+parameters (folder), 1 core", bytes_one),
            (f"PIL decode+augment, workers={w}", pil_all),
            (f"(c) device decode+augment on {kind}, device only", dev_only),
            (f"(d) device decode+augment on {kind}, workers={w} end to end", dev_all),
            (f"(e) train step alone ({model}{', given' if given else ''})", step),
            (f"(e) train step with the pipeline (--decode gpu, workers={w})", fed), *shards]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda")
    p.add_argument("--quick", action="store_true", help="tiny sizes, no compile: a check that every row runs (the tests run it on the CPU)")
    p.add_argument("--images", type=int, help="generated JPEGs (default 1024 on cuda, 64 on cpu, 16 with --quick)")
    p.add_argument("--workers", type=int, help="DataLoader processes (default: the trainer's, min(4, CPUs))")
    p.add_argument("--batch", type=int, help="loader batch of the per-core and device rows (default 64 on cuda, 16 on cpu)")
    p.add_argument("--step-batch", type=int, help="batch of the step rows (default 256 on cuda, 4 on cpu)")
    p.add_argument("--steps", type=int, help="timed steps (default 30 on cuda, 2 on cpu)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default 10 on cuda, 1 on cpu)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the step (default: on for cuda without --quick, as the trainer does for long runs; off on cpu)")
    p.add_argument("--step-rate", type=float, help="img/s of the step measured elsewhere, instead of timing it alone here")
    args = p.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    gpu = device.type == "cuda"
    s = sizes(args, gpu)
    compile_model = args.compile if args.compile is not None else gpu and not args.quick
    with tempfile.TemporaryDirectory() as tmp:
        write_jpegs(Path(tmp), s.images)
        kib = sum(f.stat().st_size for f in Path(tmp, "train").rglob("*.jpg")) / s.images / 1024
        rows = measure(tmp, s, device, args.step_rate, compile_model)
    name = torch.cuda.get_device_name(device) if gpu else "cpu"
    print(f"{s.images} JPEGs of 500x375 ({kib:.0f} KiB each), {os.cpu_count()} CPUs, device {name}, workers={s.workers}, "
          f"loader batch {s.batch}, step batch {s.step_batch}")
    width = max(len(r[0]) for r in rows)
    for label, rate in rows:
        print(f"{label.ljust(width)}  {rate:10.1f} img/s")
    pil_one, bytes_one = rows[0][1], rows[1][1]
    pil_all, step, fed = rows[2][1], rows[5][1], rows[6][1]
    if len(rows) > 7:
        print(f"from shards, bytes path / PIL path per core: {rows[8][1] / rows[7][1]:.1f}")
    print(f"verdict: {'decode-bound' if pil_all < step else 'not decode-bound'} with PIL in the workers: "
          f"{pil_all:.1f} img/s against the step's {step:.1f} (step/decode = {step / pil_all:.3g}x; keeping up needs about "
          f"{step / pil_one:.3g} PIL cores, or {step / bytes_one:.3g} cores on the bytes path)")
    print(f"bytes path / PIL path per core: {bytes_one / pil_one:.1f}")
    if gpu:
        print(f"end to end / step: {fed / step:.2f}")


if __name__ == "__main__":
    main()
