"""The training run, top to bottom: set up ranks, data, model and mixing; train epoch by epoch;
evaluate; checkpoint; export.

Under ``torchrun`` every rank runs this same code on its share of the global batch
(DistributedDataParallel, NCCL on GPUs, gloo on CPU); only rank 0 logs and writes files. A step
never waits for the host: mixing draws on the device, and metrics stay on the device until they
are reduced every ``--log-interval`` steps.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import random
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
from torch import nn

from ..errors import InvalidArgumentError
from ..models import build_model
from ..registry import DATASETS, LICENSE
from . import checkpoint as ckpt
from .config import (BEST_WEIGHTS, CHECKPOINT_NAME, EXIT_INTERRUPTED, EXPORT_DIR, METRICS, ModelSpec, Recipe, describe_run, resolve,
                     resumed_args)
from .data import EpochSampler, ShardSampler, make_loader, to_device, training_data
from .gpu_decode import check_gpu_decode
from .mixing import BatchMixer, DropBlock


@dataclass
class Ranks:
    """Where this process sits in the run."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_ranks(device: str) -> Ranks:
    """Join the torchrun process group if there is one (NCCL on cuda, gloo on cpu) and pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    kind = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError("--device cuda was asked for, but torch sees no CUDA device here.")
    target = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if kind == "cuda" else torch.device(kind)
    if kind == "cuda":
        torch.cuda.set_device(target)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if kind == "cuda" else "gloo")
    return Ranks(rank, world_size, target)


def all_sum(t: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    if ranks.world_size > 1:
        dist.all_reduce(t)
    return t


def average_buffers(model: nn.Module, ranks: Ranks) -> None:
    """Average BatchNorm running statistics over ranks, so every rank evaluates and saves the same model."""
    if ranks.world_size == 1:
        return
    for buf in model.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf)
            buf.div_(ranks.world_size)


def weights_sha256(model: nn.Module) -> str:
    """A digest of every tensor of the model (to show that ranks hold identical weights)."""
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class MetricsLog:
    """JSON lines in OUTPUT/metrics.jsonl (and TensorBoard scalars when tensorboard is installed), rank 0 only."""

    def __init__(self, output: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.path = output / METRICS
        self.tb = None
        if enabled:
            with contextlib.suppress(ImportError):
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(output / "tensorboard"))

    def write(self, record: dict[str, Any], step: Optional[int] = None) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None and step is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                    self.tb.add_scalar(f"{record.get('event', 'run')}/{k}", v, step)


def topk_errors(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Counts of top-1 and top-5 misses in a batch, as a device tensor (top-5 is top-C below 5 classes)."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit = top == y[:, None]
    return torch.stack([(~hit[:, 0]).sum(), (~hit.any(dim=1)).sum()]).float()


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, mixer: BatchMixer, x: torch.Tensor, y: torch.Tensor,
               autocast, metrics: torch.Tensor) -> None:
    """One optimisation step on a device batch; adds its loss sum, top-1/top-5 misses and size to ``metrics`` on the device."""
    mixed = mixer(x, y)
    with autocast():
        logits = model(mixed.x)
    mixed = mixer.collect(mixed)
    loss = mixer.loss(logits.float(), y, mixed)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        metrics += torch.cat([loss.detach()[None] * len(y), topk_errors(logits, y), y.new_full((1,), len(y), dtype=torch.float32)])


@torch.no_grad()
def evaluate(model: nn.Module, loader, ranks: Ranks, autocast, channels_last: bool,
             finish: Callable[[Any, torch.device], torch.Tensor] = to_device) -> dict[str, float]:
    """Loss and top-1/top-5 error (%) on a loader whose shards together cover the split once; ``finish`` makes a
    loader batch the model's input on the device."""
    model.eval()
    sums = torch.zeros(4, device=ranks.device)  # loss sum, top-1 misses, top-5 misses, images
    for x, y in loader:
        x = finish(x, ranks.device)
        y = y.to(ranks.device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            logits = model(x)
        loss = nn.functional.cross_entropy(logits.float(), y, reduction="sum")
        sums += torch.cat([loss[None], topk_errors(logits, y), y.new_full((1,), len(y), dtype=torch.float32)])
    loss, miss1, miss5, n = all_sum(sums, ranks).tolist()
    n = max(n, 1.0)
    return {"loss": loss / n, "top1_err": 100 * miss1 / n, "top5_err": 100 * miss5 / n, "images": int(n)}


class StopFlag:
    """Set by SIGTERM (or SIGINT); the loop saves a checkpoint at the next check and exits."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread: no handler, no graceful stop
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def agreed(self, ranks: Ranks) -> bool:
        """Whether any rank was asked to stop (a collective: every rank must call it at the same step)."""
        if ranks.world_size == 1:
            return self.requested
        flag = torch.tensor([float(self.requested)], device=ranks.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def export_config(recipe: Recipe, spec: ModelSpec, name: str, method: str, num_classes: int, registry_dataset: str,
                  best: dict[str, Any], seed: int, world_size: int) -> dict[str, Any]:
    """config.json of the exported folder: what ``load(FOLDER)`` needs plus the run's results and recipe."""
    data = DATASETS.get(registry_dataset, DATASETS["imagenet-1k"])
    return {
        "name": name,
        "architecture": spec.architecture,
        "family": spec.family,
        "arch_args": spec.args,
        "num_classes": num_classes,
        "dataset": registry_dataset,
        "method": method,
        "input_size": list(data.input_size),
        "mean": list(data.mean),
        "std": list(data.std),
        "interpolation": data.interpolation,
        "crop_pct": data.crop_pct,
        "resize": data.resize,
        "hub_repo": None,
        "license": LICENSE,
        "top1_err": best["top1_err"],
        "top5_err": best["top5_err"],
        "err_source": f"cutmix_zoo.train, best of {recipe.epochs} epochs (epoch {best['epoch']})",
        "training": _training_text(recipe, seed, world_size),
        "train_recipe": {**dataclasses.asdict(recipe), "seed": seed, "world_size": world_size},
    }


def _training_text(recipe: Recipe, seed: int, world_size: int) -> str:
    """The recipe in a sentence or two, for the model card."""
    schedule = (f"x{recipe.lr_gamma} every {recipe.lr_step} epochs" if recipe.lr_step
                else f"x{recipe.lr_gamma} at {', '.join(f'{m:.0%}' for m in recipe.lr_milestones)} of training")
    mixing = "no mixing" if recipe.mix == "none" else (
        f"{recipe.mix} (beta {recipe.beta}, probability {recipe.mix_prob}, {'input' if recipe.mix_layers == 'input' else 'input or a random stage'})")
    extras = "".join([f", label smoothing {recipe.label_smoothing}" if recipe.label_smoothing else "",
                      f", DropBlock {recipe.dropblock} (block {recipe.dropblock_size})" if recipe.dropblock else ""])
    return (f"Trained with `python -m cutmix_zoo.train`: {recipe.epochs} epochs, global batch {recipe.batch_size} on {world_size} "
            f"rank(s), SGD (momentum {recipe.momentum}, Nesterov {recipe.nesterov}, weight decay {recipe.weight_decay}), "
            f"lr {recipe.lr} {schedule}, {mixing}{extras}, {recipe.transforms} transforms, seed {seed}. "
            "The exported weights are those of the best validation epoch; the full recipe is `train_recipe` in config.json.\n")


def run(args: argparse.Namespace) -> int:
    """Train as ``args`` say; returns 0 when done, 143 when interrupted with a checkpoint saved."""
    resume_state = ckpt.load_checkpoint(args.resume) if args.resume else None
    if resume_state is not None:
        args = resumed_args(resume_state["args"], args)
    output = Path(args.output)
    recipe, spec, name, method = resolve(args)
    if args.dry_run:
        print(json.dumps(describe_run(args, recipe, spec, name, method), indent=2))
        return 0
    if args.workers < 0:
        raise InvalidArgumentError(f"--workers must be 0 or more, not {args.workers}.")
    ranks = setup_ranks(args.device)
    device = ranks.device
    if args.decode == "gpu":
        check_gpu_decode(recipe.dataset, args.data, device)
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    else:
        torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    bf16 = args.precision == "bf16" or (args.precision == "auto" and device.type == "cuda")
    channels_last = args.channels_last if args.channels_last is not None else device.type == "cuda"

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    if recipe.batch_size % ranks.world_size:
        raise InvalidArgumentError(f"--batch-size {recipe.batch_size} does not split evenly over {ranks.world_size} ranks.")
    per_rank_batch = recipe.batch_size // ranks.world_size

    data = training_data(recipe.dataset, args.data, recipe.transforms, args.seed, args.download, args.synthetic_size, args.decode)
    sampler = EpochSampler(data.train, ranks.world_size, ranks.rank, args.seed)
    pin = device.type == "cuda"
    train_loader = make_loader(data.train, per_rank_batch, sampler, args.workers, pin, drop_last=True, collate_fn=data.collate)
    val_loader = make_loader(data.val, per_rank_batch, ShardSampler(len(data.val), ranks.world_size, ranks.rank), args.workers, pin,
                             drop_last=False, collate_fn=data.collate)
    steps = len(sampler) // per_rank_batch
    if steps == 0:
        raise InvalidArgumentError(f"The training set ({len(data.train)} images) is smaller than one per-rank batch of {per_rank_batch}.")

    torch.manual_seed(args.seed)  # the same initial weights on every rank
    model = build_model(spec.family, spec.args, data.num_classes)
    random.seed(args.seed + ranks.rank)
    torch.manual_seed(args.seed + ranks.rank)
    mixer = BatchMixer(recipe.mix, recipe.beta, recipe.mix_prob, recipe.cutout_size, device, args.seed,
                       recipe.mix_layers, recipe.label_smoothing)
    mixer.attach(model)
    dropblock = None
    if recipe.dropblock > 0:
        dropblock = DropBlock(recipe.dropblock, recipe.dropblock_size)
        dropblock.attach(model)
    model.to(device=device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay, nesterov=recipe.nesterov)

    start_epoch, start_step = 0, 0
    best = {"top1_err": 100.0, "top5_err": 100.0, "epoch": -1}
    partial = torch.zeros(4, device=device)  # this epoch's loss sum, top-1 misses, top-5 misses, images
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        mixer.load_state_dict(resume_state["mixer"])
        start_epoch, start_step, best = resume_state["epoch"], resume_state["step"], resume_state["best"]
        per_rank = resume_state["ranks"]
        if len(per_rank) == ranks.world_size:
            ckpt.set_rng_states(per_rank[ranks.rank]["rng"], device)
            partial = per_rank[ranks.rank]["metrics"].to(device)

    module = model
    if ranks.world_size > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if args.compile:
        model = torch.compile(model)

    log = MetricsLog(output, ranks.is_main)
    if ranks.is_main:
        output.mkdir(parents=True, exist_ok=True)
        if resume_state is not None:
            _carry_run_files(Path(args.resume), output)
        log.write({"event": "start", "name": name, "resumed_from": str(args.resume) if args.resume else None,
                   "epoch": start_epoch, "step": start_step, "world_size": ranks.world_size, "device": str(device),
                   "bf16": bf16, "channels_last": channels_last, "recipe": dataclasses.asdict(recipe)})

    def save(epoch: int, step: int) -> None:
        per_rank = {"rng": ckpt.rng_states(device), "metrics": partial.cpu()}
        gathered = [None] * ranks.world_size
        if ranks.world_size > 1:
            dist.all_gather_object(gathered, per_rank)
        else:
            gathered = [per_rank]
        if ranks.is_main:
            ckpt.save_atomic({"version": 1, "args": vars(args), "epoch": epoch, "step": step, "best": best,
                              "model": module.state_dict(), "optimizer": optimizer.state_dict(),
                              "mixer": mixer.state_dict(), "ranks": gathered}, output / CHECKPOINT_NAME)

    from tqdm import tqdm

    total_steps = recipe.epochs * steps
    with StopFlag() as stop:
        for epoch in range(start_epoch, recipe.epochs):
            lr = recipe.lr_at(epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            first = start_step if epoch == start_epoch else 0
            if first == 0:
                partial.zero_()
            sampler.set_position(epoch, first * per_rank_batch)
            model.train()
            started = time.perf_counter()
            bar = tqdm(total=steps, initial=first, desc=f"epoch {epoch + 1}/{recipe.epochs}", disable=not ranks.is_main or args.quiet, leave=False)
            step = first
            for x, y in train_loader:
                x = data.train_to_device(x, device)
                y = y.to(device, non_blocking=True)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                if dropblock is not None:
                    dropblock.progress = (epoch * steps + step) / total_steps
                train_step(model, optimizer, mixer, x, y, autocast, partial)
                step += 1
                bar.update(1)
                at_interval = step % args.log_interval == 0 or step == steps
                if at_interval:
                    loss_sum, miss1, miss5, n = all_sum(partial.clone(), ranks).tolist()
                    record = {"event": "train", "epoch": epoch, "step": step, "lr": lr, "loss": loss_sum / n,
                              "top1_err": 100 * miss1 / n, "top5_err": 100 * miss5 / n}
                    bar.set_postfix(loss=f"{record['loss']:.3f}", err=f"{record['top1_err']:.1f}")
                    log.write(record, epoch * steps + step)
                if step < steps and (at_interval or ranks.world_size == 1) and stop.agreed(ranks):
                    save(epoch, step)
                    bar.close()
                    log.write({"event": "interrupted", "epoch": epoch, "step": step})
                    return EXIT_INTERRUPTED
            bar.close()
            train_time = time.perf_counter() - started
            average_buffers(module, ranks)
            val = evaluate(module, val_loader, ranks, autocast, channels_last, data.val_to_device)
            if val["top1_err"] <= best["top1_err"]:
                best = {"top1_err": val["top1_err"], "top5_err": val["top5_err"], "epoch": epoch}
                if ranks.is_main:
                    from ..convert import save_safetensors

                    save_safetensors({k: v.detach().cpu() for k, v in module.state_dict().items()}, output / BEST_WEIGHTS)
            loss_sum, miss1, miss5, n = all_sum(partial.clone(), ranks).tolist()
            record = {"event": "epoch", "epoch": epoch, "lr": lr, "train_loss": loss_sum / n, "train_top1_err": 100 * miss1 / n,
                      "train_top5_err": 100 * miss5 / n, "val_loss": val["loss"], "val_top1_err": val["top1_err"],
                      "val_top5_err": val["top5_err"], "best_top1_err": best["top1_err"], "best_top5_err": best["top5_err"],
                      "best_epoch": best["epoch"], "images_per_s": n / train_time}
            log.write(record, (epoch + 1) * steps)
            if ranks.is_main and not args.quiet:
                print(f"epoch {epoch + 1}/{recipe.epochs}: train loss {record['train_loss']:.4f}, val top-1/top-5 error "
                      f"{val['top1_err']:.2f}/{val['top5_err']:.2f} (best {best['top1_err']:.2f}/{best['top5_err']:.2f})", flush=True)
            save(epoch + 1, 0)
            if epoch + 1 < recipe.epochs and stop.agreed(ranks):
                log.write({"event": "interrupted", "epoch": epoch + 1, "step": 0})
                return EXIT_INTERRUPTED

    digests = [None] * ranks.world_size
    digest = weights_sha256(module)
    if ranks.world_size > 1:
        dist.all_gather_object(digests, digest)
    else:
        digests = [digest]
    if ranks.is_main:
        export_dir = None
        if args.export:
            from safetensors.torch import load_file

            from ..export import save_pretrained

            module.load_state_dict(load_file(output / BEST_WEIGHTS))
            cfg = export_config(recipe, spec, name, method, data.num_classes, data.registry_dataset, best, args.seed, ranks.world_size)
            export_dir = save_pretrained(module, output / EXPORT_DIR, cfg=cfg, card=_card(cfg))
        log.write({"event": "end", "best_top1_err": best["top1_err"], "best_top5_err": best["top5_err"], "best_epoch": best["epoch"],
                   "final_weights_sha256": digests, "export": str(export_dir) if export_dir else None})
    if ranks.world_size > 1:
        dist.barrier()
    return 0


def _carry_run_files(resumed: Path, output: Path) -> None:
    """Resuming into another --output: copy the run's checkpoint, best weights and metrics there, so the export,
    the log and a later resume continue from B while A stays as it was."""
    checkpoint = resumed / CHECKPOINT_NAME if resumed.is_dir() else resumed
    source = checkpoint.parent
    if source.resolve() == output.resolve():
        return
    from ..convert import atomic_path

    for src, name in ((checkpoint, CHECKPOINT_NAME), (source / BEST_WEIGHTS, BEST_WEIGHTS), (source / METRICS, METRICS)):
        if src.is_file() and not (output / name).exists():
            with atomic_path(output / name) as tmp:
                shutil.copyfile(src, tmp)


def _card(cfg: dict[str, Any]) -> Optional[str]:
    """None (the zoo's model card) for a registry dataset; a short card for an ImageFolder run, which the zoo's cards do not describe."""
    if cfg["dataset"] in DATASETS:
        return None
    return (f"---\nlicense: {cfg['license']}\nlibrary_name: cutmix_zoo\n---\n# {cfg['name']}\n\n"
            f"{cfg['family']} {cfg['arch_args']} trained with `cutmix_zoo.train` on an ImageFolder dataset of {cfg['num_classes']} "
            f"classes: best top-1/top-5 error {cfg['top1_err']:.2f}/{cfg['top5_err']:.2f}. {cfg['training']}\n")
