"""``cutmix-zoo eval``: the top-1/top-5 error of any zoo model on a CIFAR folder or an ImageFolder tree."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from .data import DataError, eval_data, make_loader
from .loop import Ranks, evaluate


def eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cutmix-zoo eval",
        description="Evaluate a zoo model (registry name, optionally with --weights, or an exported folder) on the "
                    "validation split of a CIFAR folder (torchvision's format) or an ImageFolder tree (DIR/val or DIR).",
    )
    p.add_argument("model", help="registry name (resnet50.cutmix_in1k) or exported folder")
    p.add_argument("--weights", help="weights file or exported folder to load into the registry architecture")
    p.add_argument("--data", required=True, help="CIFAR folder or ImageFolder tree")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return p


def run_eval(args: argparse.Namespace) -> int:
    import os

    import cutmix_zoo

    if not os.path.isdir(args.data):  # before the model, which may need a download
        raise DataError(f"The data folder {args.data} does not exist or is not a folder.")
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    model = cutmix_zoo.load(args.model, weights=args.weights, device=device)
    cfg = model.pretrained_cfg
    dataset = eval_data(args.data, cfg["dataset"], cfg["input_size"][-1], tuple(cfg["mean"]), tuple(cfg["std"]), cfg["resize"])
    loader = make_loader(dataset, args.batch_size, torch.utils.data.SequentialSampler(dataset), args.workers,
                         device.type == "cuda", drop_last=False)
    bf16 = device.type == "cuda"
    result = evaluate(model, loader, Ranks(0, 1, device), lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16),
                      channels_last=False)
    result = {"model": cfg.get("name"), "data": args.data, **result}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['model']} on {args.data}: top-1 error {result['top1_err']:.2f}%, top-5 error {result['top5_err']:.2f}% "
              f"({result['images']} images, loss {result['loss']:.4f})", file=sys.stdout)
    return 0
