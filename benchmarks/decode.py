"""Is ImageFolder training decode-bound? CPU decoding, GPU decoding and the trainer's step, measured in one run.

  cpu decode  the trainer's ImageFolder pipeline (PIL decode, RandomResizedCrop, flip, ToTensor, the original's
              colour jitter and lighting, Normalize): one worker in process, then a DataLoader of --workers processes
  gpu decode  ``--decode gpu`` (cutmix_zoo.train.gpu_decode): workers read bytes and draw the parameters, the device
              decodes the batch (nvjpeg on cuda) and augments it; device-only and end to end with --workers processes
  step        cutmix_zoo.train.loop.train_step of ResNet-50 at 224px on synthetic device data with CutMix
              (benchmarks/train_step.py's "ours": bf16 and channels_last on cuda, fp32 on cpu)

The images are --images generated 500x375 JPEGs (random detail at several scales plus grain, quality 90: about
ImageNet's mean size), written to a temporary ImageFolder tree. Training is decode-bound when the CPU loader
delivers fewer images per second than the step consumes; the last line says whether it is, and by how much.
With --device cpu the "gpu" path runs on the CPU (the same code the tests check).

    python benchmarks/decode.py                                   # cuda if available: 1024 images, 8 workers
    python benchmarks/decode.py --device cpu --images 64 --workers 2 --step-batch 4 --steps 2
    python benchmarks/decode.py --device cpu --step-rate 2500    # CPU decoding against a step measured on a GPU
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cutmix_zoo.train.data import EpochSampler, make_loader, training_data  # noqa: E402
from cutmix_zoo.train.dataspec import DataSpec  # noqa: E402

from train_step import _sync, _time, ours  # noqa: E402  (the step exactly as the train-step benchmark times it)


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


def _rate(count: int, run: Callable[[], None], device: torch.device) -> float:
    """Images per second of ``run`` (which handles ``count`` images), after one untimed pass that warms caches and workers."""
    run()
    _sync(device)
    start = time.perf_counter()
    run()
    _sync(device)
    return count / (time.perf_counter() - start)


def _drain(batches: Iterable, finish: Callable, device: torch.device) -> Callable[[], None]:
    def run() -> None:
        for x, _ in batches:
            finish(x, device)
    return run


def cpu_rates(data: DataSpec, workers: int, batch: int) -> tuple[float, float]:
    """CPU decode+augment images/s: one worker in this process (one thread), and a DataLoader of ``workers`` processes."""
    n = len(data.train)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what a DataLoader worker gets
    one = _rate(n, lambda: [data.train[(0, i)] for i in range(n)], torch.device("cpu"))
    torch.set_num_threads(threads)
    loader = make_loader(data.train, batch, EpochSampler(data.train, 1, 0, 0), workers, False, drop_last=False)
    return one, _rate(n, _drain(loader, lambda x, d: x, torch.device("cpu")), torch.device("cpu"))


def gpu_rates(data: DataSpec, workers: int, batch: int, device: torch.device) -> tuple[float, float]:
    """``--decode gpu`` images/s: decode+augment on the device of batches already read, and end to end with ``workers``."""
    n = len(data.train)
    sampler = EpochSampler(data.train, 1, 0, 0)
    read = list(make_loader(data.train, batch, sampler, 0, False, drop_last=False, collate_fn=data.collate))
    device_only = _rate(n, _drain(read, data.train_to_device, device), device)
    loader = make_loader(data.train, batch, sampler, workers, device.type == "cuda", drop_last=False, collate_fn=data.collate)
    return device_only, _rate(n, _drain(loader, data.train_to_device, device), device)


def step_rate(device: torch.device, batch: int, steps: int, warmup: int) -> float:
    """Images/s of the trainer's step (ResNet-50, 224px, CutMix) on synthetic data already on the device."""
    gpu = device.type == "cuda"
    if gpu:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, 3, 224, 224, device=device, generator=g)
    y = torch.randint(1000, (batch,), device=device, generator=g)
    step = ours(x, y, device, gpu, "cutmix", False)
    for _ in range(warmup):
        step()
    return batch / _time(step, steps, device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda")
    p.add_argument("--images", type=int, help="generated JPEGs (default 1024 on cuda, 64 on cpu)")
    p.add_argument("--workers", type=int, help="DataLoader processes (default min(8, CPU count))")
    p.add_argument("--batch-size", type=int, default=64, help="loader batch (default 64)")
    p.add_argument("--step-batch", type=int, help="batch of the timed step (default 256 on cuda, 8 on cpu)")
    p.add_argument("--steps", type=int, help="timed steps (default 30 on cuda, 3 on cpu)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default 10 on cuda, 1 on cpu)")
    p.add_argument("--step-rate", type=float, help="img/s of the step measured elsewhere (train_step.py on the training GPU) "
                                                     "instead of timing it here")
    args = p.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    gpu = device.type == "cuda"
    images = args.images or (1024 if gpu else 64)
    workers = args.workers if args.workers is not None else min(8, os.cpu_count() or 1)
    step_batch = args.step_batch or (256 if gpu else 8)
    steps = args.steps or (30 if gpu else 3)
    warmup = args.warmup if args.warmup is not None else (10 if gpu else 1)

    with tempfile.TemporaryDirectory() as tmp:
        write_jpegs(Path(tmp), images)
        kib = sum(f.stat().st_size for f in Path(tmp, "train").rglob("*.jpg")) / images / 1024
        cpu_one, cpu_all = cpu_rates(training_data("imagenet", tmp, "imagenet", seed=0), workers, args.batch_size)
        dev_only, dev_all = gpu_rates(training_data("imagenet", tmp, "imagenet", seed=0, decode="gpu"), workers, args.batch_size, device)
    step = args.step_rate or step_rate(device, step_batch, steps, warmup)
    shared = 1 / (1 / step + 1 / dev_only)  # the step and the device decode take turns on one device

    name = torch.cuda.get_device_name(device) if gpu else "cpu"
    print(f"{images} JPEGs of 500x375 ({kib:.0f} KiB each), {os.cpu_count()} CPUs, device {name}, workers={workers}, "
          f"loader batch {args.batch_size}, step batch {step_batch}")
    rows = [("cpu decode+augment, 1 worker (1 thread)", cpu_one), (f"cpu decode+augment, workers={workers}", cpu_all),
            (f"device decode+augment on {device.type}, device only", dev_only),
            (f"device decode+augment on {device.type}, workers={workers} end to end", dev_all),
            ("train step (ResNet-50, 224px, CutMix)" + (", given" if args.step_rate else ""), step),
            (f"train step + device decode sharing {device.type}", shared)]
    width = max(len(r[0]) for r in rows)
    for label, rate in rows:
        print(f"{label.ljust(width)}  {rate:9.1f} img/s")
    bound = cpu_all < step
    print(f"verdict: {'decode-bound' if bound else 'not decode-bound'}: CPU decoding gives {cpu_all:.1f} img/s with workers={workers}, "
          f"the step takes {step:.1f} img/s (step/decode = {step / cpu_all:.2f}x; keeping up needs about "
          f"{step / cpu_one:.2f} decoding cores); --decode gpu on {device.type} gives {min(dev_all, shared):.1f} img/s with the step")


if __name__ == "__main__":
    main()
