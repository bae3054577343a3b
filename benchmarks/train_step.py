"""Images per second of the trainer's step against an original-style and a timm-style loop, in one run.

All loops train the same ResNet-50 on the same synthetic batch already on the device, so only the
step differs:
  original  fp32, nn.DataParallel, numpy lam and box on the host, .item() of loss/top-1/top-5 every step
  timm      bf16 autocast (cuda), channels_last, timm.data.Mixup(mode="batch") with SoftTargetCrossEntropy
  ours      cutmix_zoo.train.loop.train_step: bf16 autocast (cuda), channels_last, CutMix drawn on the device,
            metrics accumulated on the device (optionally torch.compile)
  ours/none the same step without mixing, for the cost of CutMix

On CPU every loop runs fp32 (bf16 autocast is a GPU feature here). Targets on an H200-class GPU:
ours >= 3x original, >= 1.1x timm, CutMix <= 1% of the step.

    python benchmarks/train_step.py                      # cuda if available: batch 256, 30 steps
    python benchmarks/train_step.py --device cpu --batch-size 8 --steps 3
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cutmix_zoo.models import build_model
from cutmix_zoo.registry import ARCHITECTURES
from cutmix_zoo.train.evaluation import topk_errors
from cutmix_zoo.train.loop import train_step
from cutmix_zoo.train.mixing import BatchMixer


def _model(device: torch.device, channels_last: bool) -> nn.Module:
    torch.manual_seed(0)
    arch = ARCHITECTURES["resnet50"]
    model = build_model(arch.family, arch.args, 1000).to(device).train()
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(step: Callable[[], None], steps: int, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / steps


def original_style(x: torch.Tensor, y: torch.Tensor, device: torch.device) -> Callable[[], None]:
    """The original train.py step: DataParallel, fp32, numpy CutMix on the host, .item() each step."""
    model = nn.DataParallel(_model(device, channels_last=False))
    optimizer = _sgd(model)
    rng = np.random.default_rng(0)

    def step() -> None:
        inp = x.clone()
        lam = rng.beta(1.0, 1.0)
        index = torch.randperm(inp.size(0)).to(device)
        rows, cols = inp.size(2), inp.size(3)
        cut = np.sqrt(1.0 - lam)
        cr, cc = rng.integers(rows), rng.integers(cols)
        r1, r2 = np.clip(cr - int(rows * cut) // 2, 0, rows), np.clip(cr + int(rows * cut) // 2, 0, rows)
        c1, c2 = np.clip(cc - int(cols * cut) // 2, 0, cols), np.clip(cc + int(cols * cut) // 2, 0, cols)
        inp[:, :, r1:r2, c1:c2] = inp[index, :, r1:r2, c1:c2]
        lam = 1 - (r2 - r1) * (c2 - c1) / (rows * cols)
        out = model(inp)
        loss = F.cross_entropy(out, y) * lam + F.cross_entropy(out, y[index]) * (1.0 - lam)
        errors = topk_errors(out.detach(), y)
        loss.item(), errors[0].item(), errors[1].item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def timm_style(x: torch.Tensor, y: torch.Tensor, device: torch.device, bf16: bool) -> Callable[[], None]:
    """timm's train loop shape: Mixup in batch mode (host-drawn lam/box), soft-target CE, bf16, channels_last."""
    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy

    model = _model(device, channels_last=True)
    optimizer = _sgd(model)
    mixup = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, mode="batch", label_smoothing=0.0, num_classes=1000)
    criterion = SoftTargetCrossEntropy()

    def step() -> None:
        inp, target = mixup(x.clone(), y)
        inp = inp.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(inp)
            loss = criterion(out, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def trainer_step(device: torch.device, bf16: bool, mix: str, compile_model: bool) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """The trainer's own step (cutmix_zoo.train.loop.train_step) on a ResNet-50, for any batch it is given."""
    model = _model(device, channels_last=True)
    optimizer = _sgd(model)
    if compile_model:
        model = torch.compile(model)
    mixer = BatchMixer(mix, beta=1.0, prob=1.0, cutout_size=112, device=device, seed=0)
    metrics = torch.zeros(4, device=device)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        train_step(model, optimizer, mixer, x.contiguous(memory_format=torch.channels_last), y, autocast, metrics)

    return step


def ours(x: torch.Tensor, y: torch.Tensor, device: torch.device, bf16: bool, mix: str, compile_model: bool) -> Callable[[], None]:
    """The trainer's own step on the fixed batch ``x``, ``y``."""
    step = trainer_step(device, bf16, mix, compile_model)
    inp = x.contiguous(memory_format=torch.channels_last)
    return lambda: step(inp, y)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, help="default 256 on cuda, 8 on cpu")
    p.add_argument("--steps", type=int, help="timed steps per loop (default 30 on cuda, 3 on cpu)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default 10 on cuda, 1 on cpu)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds; the median is reported")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--compile", action="store_true", help="also time our step under torch.compile")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    gpu = device.type == "cuda"
    batch = args.batch_size or (256 if gpu else 8)
    steps = args.steps or (30 if gpu else 3)
    warmup = args.warmup if args.warmup is not None else (10 if gpu else 1)
    if gpu:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, 3, args.image_size, args.image_size, device=device, generator=g)
    y = torch.randint(1000, (batch,), device=device, generator=g)

    loops = {
        "original (fp32, DataParallel, host CutMix, .item())": lambda: original_style(x, y, device),
        f"timm ({'bf16' if gpu else 'fp32'}, channels_last, Mixup batch)": lambda: timm_style(x, y, device, gpu),
        f"ours ({'bf16' if gpu else 'fp32'}, channels_last, device CutMix)": lambda: ours(x, y, device, gpu, "cutmix", False),
        "ours, no mixing": lambda: ours(x, y, device, gpu, "none", False),
    }
    if args.compile:
        loops["ours + torch.compile"] = lambda: ours(x, y, device, gpu, "cutmix", True)
    built = {name: make() for name, make in loops.items()}
    for step in built.values():
        for _ in range(warmup):
            step()
    # Interleaved rounds, median per loop: fair under clock changes and neighbours on a shared machine.
    rounds = [{name: _time(step, steps, device) for name, step in built.items()} for _ in range(args.rounds)]
    seconds = {name: float(np.median([r[name] for r in rounds])) for name in built}
    names = list(loops)
    original, timm_, our, none = (seconds[n] for n in names[:4])
    rows = [{"loop": n, "images_per_s": batch / s, "vs_original": original / s, "vs_timm": timm_ / s} for n, s in seconds.items()]
    cutmix_cost = (our - none) / our
    name = torch.cuda.get_device_name(device) if gpu else "cpu"
    if args.json:
        print(json.dumps({"device": name, "batch_size": batch, "steps": steps, "rounds": args.rounds, "image_size": args.image_size,
                          "loops": rows, "cutmix_cost_fraction": cutmix_cost}, indent=2))
        return
    print(f"ResNet-50 train step, {name}, batch {batch}, {args.image_size}px, median of {args.rounds} rounds of {steps} steps after {warmup} warm-up")
    width = max(len(n) for n in names)
    print(f"{'loop'.ljust(width)}  {'img/s':>9}  {'x original':>10}  {'x timm':>7}")
    for r in rows:
        print(f"{r['loop'].ljust(width)}  {r['images_per_s']:9.1f}  {r['vs_original']:10.2f}  {r['vs_timm']:7.2f}")
    print(f"CutMix cost: {100 * cutmix_cost:.2f}% of our step ({1000 * (our - none):.2f} ms of {1000 * our:.2f} ms)")


if __name__ == "__main__":
    main()
