"""Images per second of our detection training against a torchvision-reference-style loop, evaluation throughput, and
(on CUDA) bf16 against fp32 mAP, in one run, on generated Novel-Shapes scenes.

Both training loops train the same detector (the same ``build_detector`` call, seed, SGD settings and warm-up) on the
same images in the same order, and after the epoch score the same val split with the same evaluation, so only the loop
differs:
  reference  torchvision/references/detection/engine.py's train_one_epoch: a plain loop, the loss dict reduced across
             ranks (a no-op in one process) and summed, ``.item()`` of the sum checked with math.isfinite, every loss
             ``.item()``-ed into a metric logger, a LambdaLR warm-up stepped each step
  ours       cutmix_zoo.train.detection.train_detector (one epoch: its loop, metrics.jsonl, the per-epoch mAP)
Each is timed on its second epoch (the first warms the allocator and the caches); img/s counts the training images.
The ratio is ours / reference (target >= 1.0). Evaluation throughput is images/s of predict_split (the detector over the
val split) and of evaluate_detections (pycocotools' COCOeval) on the trained detector.

    python benchmarks/detection.py              # cuda if available: 128-pixel scenes, 128 training images
    python benchmarks/detection.py --quick      # CPU, 64-pixel scenes, 16 training images (a test runs this)
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from cutmix_zoo.detection.data import read_split
from cutmix_zoo.detection.dataset import DetectionDataset, collate
from cutmix_zoo.detection.evaluate import evaluate_detections, evaluate_model, predict_split
from cutmix_zoo.detection.models import build_detector
from cutmix_zoo.detection.scenes import write_scenes
from cutmix_zoo.train.detection import DetectionRun, train_detector

INIT = "pyramidnet20_a48.cutmix_shapes"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _run(args: argparse.Namespace, data: Path, output: Path, epochs: int) -> DetectionRun:
    return DetectionRun(init=args.init, data=[str(data)], output=str(output), epochs=epochs, batch_size=args.batch_size,
                        lr=args.lr, warmup_steps=args.warmup, seed=0, device=args.device, out_channels=args.fpn_channels,
                        min_size=args.size, max_size=args.size)


def reference_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, device: str,
                    scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, float]:
    """One epoch of torchvision's reference train_one_epoch (single process: reduce_dict returns its input)."""
    model.train()
    logged: dict[str, list[float]] = defaultdict(list)
    for images, targets in loader:
        images = [image.to(device) for image in images]
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        loss_dict = model(images, targets)
        losses = sum(loss for loss in loss_dict.values())
        loss_dict_reduced = dict(loss_dict)  # utils.reduce_dict: all_reduce across ranks, the dict itself with one
        losses_reduced = sum(loss for loss in loss_dict_reduced.values())
        loss_value = losses_reduced.item()
        if not math.isfinite(loss_value):
            raise SystemExit(f"Loss is {loss_value}, stopping training")
        optimizer.zero_grad()
        losses.backward()
        optimizer.step()
        scheduler.step()
        for name, value in {"loss": losses_reduced, **loss_dict_reduced}.items():  # MetricLogger.update: .item() each
            logged[name].append(value.item())
        logged["lr"].append(optimizer.param_groups[0]["lr"])
    return {name: sum(values) / len(values) for name, values in logged.items()}


def time_reference(args: argparse.Namespace, data: Path) -> float:
    """Seconds of the reference loop's second epoch plus the same val scoring as ours."""
    train = read_split([str(data)], "train")
    val = read_split([str(data)], "val", classes=train.classes)
    torch.manual_seed(0)
    model = build_detector(args.init, len(train.classes), min_size=args.size, max_size=args.size, out_channels=args.fpn_channels)
    model.to(args.device)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=args.lr, momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.001 + 0.999 * min(1.0, (step + 1) / args.warmup))
    dataset = DetectionDataset(train, train=True, seed=0)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, collate_fn=collate, generator=torch.Generator().manual_seed(0))
    for epoch in range(2):
        dataset.set_epoch(epoch)
        _sync(args.device)
        start = time.perf_counter()
        reference_epoch(model, optimizer, loader, args.device, scheduler)
        evaluate_model(model, val, args.batch_size, args.device)
        _sync(args.device)
        seconds = time.perf_counter() - start
    return seconds


def time_ours(args: argparse.Namespace, data: Path, output: Path) -> tuple[float, nn.Module]:
    """Seconds of train_detector's second epoch (its metrics.jsonl's own timing, else the call's share), and the model."""
    start = time.perf_counter()
    model, _ = train_detector(_run(args, data, output, 2))
    wall = (time.perf_counter() - start) / 2
    lines = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    epochs = [line for line in lines if "seconds" in line and "epoch" in line]
    return (float(epochs[-1]["seconds"]) if epochs else wall), model


def eval_throughput(model: nn.Module, data: Path, args: argparse.Namespace) -> dict[str, float]:
    """Images/s of predict_split and of evaluate_detections on the val split, and the mAP they give."""
    train = read_split([str(data)], "train")
    val = read_split([str(data)], "val", classes=train.classes)
    model.to(args.device)
    predict_split(model, val, args.batch_size, args.device)  # warm-up
    _sync(args.device)
    start = time.perf_counter()
    predictions = predict_split(model, val, args.batch_size, args.device)
    _sync(args.device)
    middle = time.perf_counter()
    metrics = evaluate_detections(val, predictions)
    end = time.perf_counter()
    images = len(val.records)
    return {"images": images, "predict_img_s": images / (middle - start), "cocoeval_img_s": images / (end - middle),
            "total_img_s": images / (end - start), "map": metrics.map, "map50": metrics.map50}


def bf16_against_fp32(model: nn.Module, data: Path, args: argparse.Namespace) -> dict[str, float]:
    """The trained detector's val mAP in fp32 and under bf16 autocast (CUDA only)."""
    train = read_split([str(data)], "train")
    val = read_split([str(data)], "val", classes=train.classes)
    fp32 = evaluate_model(model, val, args.batch_size, args.device)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        bf16 = evaluate_model(model, val, args.batch_size, args.device)
    return {"fp32_map": fp32.map, "bf16_map": bf16.map, "fp32_map50": fp32.map50, "bf16_map50": bf16.map50}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="CPU-sized: 64-pixel scenes, 16 training and 8 val images")
    parser.add_argument("--init", default=INIT, help=f"the backbone (default {INIT}, which ships inside the package)")
    parser.add_argument("--json", action="store_true", help="also print the numbers as one JSON line")
    args = parser.parse_args()
    quick = dict(size=64, train=16, val=8, batch_size=4, fpn_channels=64, accuracy_epochs=0)
    full = dict(size=128, train=128, val=64, batch_size=8, fpn_channels=256, accuracy_epochs=6)
    for name, value in (quick if args.quick else full).items():
        setattr(args, name, value)
    args.lr, args.warmup = 0.02 * args.batch_size / 16, 10
    return args


def main() -> None:
    args = _arguments()
    with tempfile.TemporaryDirectory(prefix="det-bench-") as tmp:
        data = write_scenes(Path(tmp) / "scenes", train_images=args.train, val_images=args.val, size=args.size)
        reference = time_reference(args, data)
        ours, model = time_ours(args, data, Path(tmp) / "ours")
        result = {"device": args.device, "init": args.init, "size": args.size, "train_images": args.train,
                  "batch_size": args.batch_size, "reference_img_s": args.train / reference, "ours_img_s": args.train / ours,
                  "ratio": reference / ours}
        print(f"training, {args.init} faster_rcnn, {args.train} {args.size}-px images, batch {args.batch_size} on {args.device}: "
              f"reference loop {result['reference_img_s']:.1f} img/s, ours {result['ours_img_s']:.1f} img/s")
        print(f"ratio ours / reference: {result['ratio']:.2f}x (target >= 1.0)")
        result["eval"] = eval_throughput(model, data, args)
        e = result["eval"]
        print(f"evaluation of {e['images']} val images: predict {e['predict_img_s']:.1f} img/s, COCOeval {e['cocoeval_img_s']:.1f} "
              f"img/s, together {e['total_img_s']:.1f} img/s")
        if args.device.startswith("cuda") and args.accuracy_epochs:
            trained, _ = train_detector(_run(args, data, Path(tmp) / "accuracy", args.accuracy_epochs))
            result["precision"] = p = bf16_against_fp32(trained.to(args.device), data, args)
            print(f"bf16 vs fp32 after {args.accuracy_epochs} epochs: mAP {100 * p['bf16_map']:.2f} vs {100 * p['fp32_map']:.2f}, "
                  f"mAP@0.5 {100 * p['bf16_map50']:.2f} vs {100 * p['fp32_map50']:.2f}")
        else:
            print("bf16 vs fp32 mAP: skipped (needs CUDA and the full run)")
        if args.json:
            print(json.dumps(result))


if __name__ == "__main__":
    main()
