"""Evaluation: the loss and top-1/top-5 error of a model on a loader (each epoch of a training run), and
``cutmix-zoo eval``, the same for any zoo model on a CIFAR folder or an ImageFolder tree.

The training loop imports this module, never the other way round: evaluating needs no training code.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ..errors import InvalidArgumentError, WeightsError
from .data import Augmented, DataError, TensorTransform, eval_data, make_loader
from .dataspec import to_device
from .ranks import Ranks, all_sum, autocast


def nonfinite_tensors(module: nn.Module) -> list[str]:
    """The names of ``module``'s floating-point parameters and buffers that hold a NaN or an infinity (one host sync)."""
    named = [(k, v) for k, v in module.state_dict().items() if v.is_floating_point()]
    if not named:
        return []
    device = named[0][1].device
    finite = torch.stack([torch.isfinite(v).all().to(device) for _, v in named]).tolist()
    return [k for (k, _), ok in zip(named, finite) if not ok]


def topk_errors(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Counts of top-1 and top-5 misses in a batch, as a device tensor (top-5 is top-C below 5 classes)."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit = top == y[:, None]
    return torch.stack([(~hit[:, 0]).sum(), (~hit.any(dim=1)).sum()]).float()


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, ranks: Ranks, bf16: bool, channels_last: bool,
             finish: Callable[[Any, torch.device], torch.Tensor] = to_device) -> dict[str, float]:
    """Loss and top-1/top-5 error (%) on a loader whose shards together cover the split once, the forward pass under
    bf16 autocast when ``bf16``; ``finish`` makes a loader batch the model's input on the device."""
    model.eval()
    sums = torch.zeros(4, device=ranks.device)  # loss sum, top-1 misses, top-5 misses, images
    for x, y in loader:
        x = finish(x, ranks.device)
        y = y.to(ranks.device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(ranks.device, bf16):
            logits = model(x)
        loss = nn.functional.cross_entropy(logits.float(), y, reduction="sum")
        sums += torch.cat([loss[None], topk_errors(logits, y), y.new_full((1,), len(y), dtype=torch.float32)])
    loss, miss1, miss5, n = all_sum(sums, ranks).tolist()
    n = max(n, 1.0)
    return {"loss": loss / n, "top1_err": 100 * miss1 / n, "top5_err": 100 * miss5 / n, "images": int(n)}


def eval_parser() -> argparse.ArgumentParser:
    """The command line of ``cutmix-zoo eval``."""
    p = argparse.ArgumentParser(
        prog="cutmix-zoo eval",
        description="Evaluate a zoo model (registry name, optionally with --weights, or an exported folder) on the "
                    "validation split of a CIFAR folder (torchvision's format) or an ImageFolder tree (DIR/val or DIR).",
    )
    p.add_argument("model", help="registry name (resnet50.cutmix_in1k) or exported folder")
    p.add_argument("--weights", help="weights file or exported folder to load into the registry architecture")
    p.add_argument("--data", required=True, help="CIFAR folder, ImageFolder tree, or 'shapes' (the generated Shapes-10 test split)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=4, help="data loading processes (0 loads in this process)")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="fp32 (default: as the original test.py and the published numbers) or bf16 autocast (faster on GPUs)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return p


def check_eval_arguments(batch_size: Any, workers: Any, precision: Any) -> None:
    """Refuse a batch size, a worker count or a precision that cannot evaluate, each in one sentence naming its flag."""
    if precision not in ("fp32", "bf16"):
        raise InvalidArgumentError(f"precision must be 'fp32' or 'bf16', not {precision!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"The batch size (--batch-size) must be a whole number of at least 1, not {batch_size!r}.")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise InvalidArgumentError(f"The data loading processes (--workers) must be 0 or more, not {workers!r}.")


def evaluate_model(model: nn.Module, data: str, batch_size: int = 128, workers: int = 0,
                   device: torch.device | None = None, precision: str = "fp32") -> dict[str, float]:
    """Loss and top-1/top-5 error of a loaded zoo model on a data folder or ``"shapes"``, with the model's eval transform.

    ``precision="fp32"`` (the default) is how the original test.py and the published numbers evaluate;
    ``"bf16"`` runs the forward pass under bf16 autocast.

    Weights holding a NaN or an infinity are refused before any data is read, and finite weights whose logits are not
    (activations that overflow) after the pass, each with a :class:`~cutmix_zoo.errors.WeightsError`: an error rate
    measured on such logits would mean nothing.
    """
    check_eval_arguments(batch_size, workers, precision)
    from ..model_config import pretrained_cfg_of

    cfg = pretrained_cfg_of(model)
    name = cfg.get("name") or type(model).__name__
    bad = nonfinite_tensors(model)
    if bad:
        total = sum(v.is_floating_point() for v in model.state_dict().values())
        raise WeightsError(f"The weights of {name} hold NaN or infinite values in {len(bad)} of {total} tensors "
                           f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}), so no error can be measured with them: "
                           "load finite weights.")
    device = device or torch.device("cpu")
    if data == "shapes":
        from ..shapes import Shapes

        dataset = Augmented(Shapes("test"), TensorTransform(tuple(cfg["mean"]), tuple(cfg["std"]), flip=False), seed=0)
    else:
        dataset = eval_data(data, cfg)
    loader = make_loader(dataset, batch_size, torch.utils.data.SequentialSampler(dataset), workers,
                         device.type == "cuda", drop_last=False)
    result = evaluate(model, loader, Ranks(0, 1, device), precision == "bf16", channels_last=False)
    if not math.isfinite(result["loss"]):
        raise WeightsError(f"{name} gives non-finite logits on {data} from finite weights (the loss is {result['loss']}): its "
                           "activations overflow, so its error would mean nothing; check that these are the weights you meant to load.")
    return result


def eval_device(text: str) -> torch.device:
    """The device of ``--device``: ``auto`` is cuda when available, else cpu; what torch cannot name is one sentence."""
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(text)
    except (RuntimeError, ValueError):
        raise InvalidArgumentError(f"--device {text!r} is not a torch device; use auto, cpu, cuda or cuda:N.") from None


def run_eval(args: argparse.Namespace) -> int:
    """Load the model ``args`` name (the data folder checked first), evaluate it and print its errors; 0 when done."""
    import os

    import cutmix_zoo

    from ..model_config import pretrained_cfg_of

    if args.data != "shapes" and not os.path.isdir(args.data):  # before the model, which may need a download
        raise DataError(f"The data folder {args.data} does not exist or is not a folder.")
    device = eval_device(args.device)
    check_eval_arguments(args.batch_size, args.workers, args.precision)
    model = cutmix_zoo.load(args.model, weights=args.weights, device=device)
    result = {"model": pretrained_cfg_of(model).get("name"), "data": args.data,
              "precision": args.precision, **evaluate_model(model, args.data, args.batch_size, args.workers, device, args.precision)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['model']} on {args.data}: top-1 error {result['top1_err']:.2f}%, top-5 error {result['top5_err']:.2f}% "
              f"({result['images']} images, {args.precision}, loss {result['loss']:.4f})", file=sys.stdout)
    return 0
