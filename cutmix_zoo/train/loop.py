"""The training run, top to bottom: :func:`run` reads as its phases, each a commented block: setup (the ranks,
data, model and mixing into a :class:`~.state.Run`), then each epoch (its train steps, its evaluation, its atomic
checkpoint), then finish (every rank's weight digest, the export). How a run stops early, and what it says then,
is :mod:`.failures`; the loop calls it where a stop can happen.

Under ``torchrun`` every rank runs this same code on its share of the global batch
(DistributedDataParallel, NCCL on GPUs, gloo on CPU); only rank 0 logs and writes files. A step
never waits for the host: mixing draws on the device, and metrics stay on the device until they
are reduced every ``--log-interval`` steps.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from ..errors import InvalidArgumentError
from ..models import build_model
from ..recipes import Recipe
from . import checkpoint as ckpt
from . import failures
from .config import (
    BEST_WEIGHTS,
    CHECKPOINT_NAME,
    EXIT_INTERRUPTED,
    EXPORT_DIR,
    ModelSpec,
    check_free_space,
    check_output,
    compile_step,
    describe_run,
    resolve,
    resumed_args,
    run_inputs,
)
from .data import DataError, EpochSampler, ShardSampler, make_loader, training_data
from .dataspec import DataSpec, dataset_size
from .evaluation import evaluate, topk_errors
from .export import export_config
from .failures import StopFlag
from .finetune import Init, freeze_levels, load_init, param_groups, probe_head, resolve_init
from .gpu_decode import check_gpu_decode
from .metrics_log import MetricsLog
from .mixing import BatchMixer, DropBlock
from .ranks import Ranks, all_sum, autocast, average_buffers, setup_ranks
from .state import Run
from .streams import ShardStream


def run(args: argparse.Namespace) -> int:
    """Train as ``args`` say; returns 0 when done, 143 when interrupted with a checkpoint saved."""
    # Setup: a resumed run takes its checkpoint's settings; a dry run prints them and stops
    resume_state = ckpt.load_checkpoint(args.resume, settings="args") if args.resume else None
    if resume_state is not None:
        args = resumed_args(resume_state["args"], args)
    if args.dry_run:
        print(json.dumps(describe_run(args, *resolve(args)), indent=2))
        return 0
    resolve(args)  # bad flags are refused before the output folder is claimed
    with ckpt.claimed_output(args):  # one run per --output; another run's files only with --force
        return train_claimed(args, resume_state)


def train_claimed(args: argparse.Namespace, resume_state: dict[str, Any] | None) -> int:
    """The run in the --output it holds: setup, each epoch's steps, evaluation and checkpoint, then finish."""
    training = setup(args, resume_state)

    with StopFlag() as stop:
        for epoch in range(training.start_epoch, training.recipe.epochs):
            # Train steps: from the resumed step in the resumed epoch; a stop asked for mid-epoch saves and ends the run
            lr = begin_epoch(training, epoch)
            train_time = train_steps(training, epoch, lr, stop)
            if train_time is None:
                return EXIT_INTERRUPTED
            # Evaluation: validation errors, the best weights so far, the epoch's log line
            evaluate_epoch(training, epoch, lr, train_time)
            # Checkpoint: written atomically, the run as it starts the next epoch
            save_checkpoint(training, epoch + 1, 0)
            if epoch + 1 < training.recipe.epochs and stop.agreed(training.ranks):  # the last epoch finishes instead
                failures.interrupted(training, epoch + 1, 0)
                return EXIT_INTERRUPTED

    # Finish: every rank's weight digest, the best epoch's export
    return finish(training)


def setup(args: argparse.Namespace, resume_state: dict[str, Any] | None = None) -> Run:
    """Everything a run needs before its first step: ranks and device, data and loaders, the model (the same initial
    weights on every rank), mixing, the optimizer, the state of ``resume_state`` (a checkpoint) if given, and the log.

    The order of the seeding and of the model's construction is part of a run's result: an exact resume depends on it.
    An ``--output`` that cannot be written is refused before the data is read, one whose disk cannot hold a checkpoint
    before the first step (:class:`~cutmix_zoo.errors.TrainingError`).
    """
    # What is trained, where, and in which numerics
    output = Path(args.output)
    recipe, spec, name, method = resolve(args)
    init = resolve_init(args.init, args.model) if args.init else None
    inputs = run_inputs(recipe, init, args.model)
    ranks = setup_ranks(args.device)
    if ranks.is_main:
        check_output(output)
    if args.decode == "gpu":
        check_gpu_decode(recipe.dataset, args.data, ranks.device)
    bf16, channels_last = set_numerics(args, ranks.device)

    # The data: this rank's share of every epoch, in whole per-rank batches
    if recipe.batch_size % ranks.world_size:
        raise InvalidArgumentError(f"--batch-size {recipe.batch_size} does not split evenly over {ranks.world_size} ranks.")
    per_rank_batch = recipe.batch_size // ranks.world_size
    data = training_data(recipe.dataset, args.data, recipe.transforms, args.seed, args.download, args.synthetic_size, args.decode,
                         inputs, args.val_split, args.val_data, recipe.hflip, recipe.crop)
    sampler = epoch_sampler(data, ranks, args.seed, per_rank_batch, args.workers)
    train_loader, val_loader = make_loaders(data, sampler, per_rank_batch, args.workers, ranks)
    steps = steps_per_epoch(data, sampler, per_rank_batch)

    # The model: the same initial weights on every rank (one seed), then each rank's own draws (a seed per rank)
    torch.manual_seed(args.seed)
    module = initial_network(spec, init, data.num_classes, resumed=resume_state is not None)
    frozen = freeze_levels(module, spec.family, recipe.freeze_stages)
    random.seed(args.seed + ranks.rank)
    torch.manual_seed(args.seed + ranks.rank)
    mixer, dropblock = attach_mixing(module, spec.family, recipe, ranks.device, args.seed)
    # Module.to's stubs have no overload for device and memory_format together, which it takes at run time.
    module.to(device=ranks.device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)  # type: ignore[call-overload]
    if init is not None and resume_state is None and recipe.head_init == "probe":  # the new head starts as a linear probe
        probe_head(module, device_batches(data, train_loader, ranks.device, channels_last), data.num_classes)
    optimizer = torch.optim.SGD(param_groups(module, spec.family, recipe.lr, recipe.backbone_lr_mult), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay, nesterov=recipe.nesterov)
    if ranks.is_main:
        check_free_space(output, checkpoint_bytes(module))

    # Where it starts: the first step, or where the resumed checkpoint stopped (weights, momentum, mixing, RNG states)
    start_epoch, start_step, best, partial = restore(resume_state, module, optimizer, mixer, ranks)
    model = parallel(module, ranks, compiled := compile_step(args.compile, ranks.device.type, (recipe.epochs - start_epoch) * steps - start_step))

    # The run, and its log's first line
    training = Run(args=args, recipe=recipe, spec=spec, name=name, method=method, output=output, init=init, inputs=inputs,
                   ranks=ranks, bf16=bf16, channels_last=channels_last, compiled=compiled,
                   data=data, sampler=sampler, train_loader=train_loader, val_loader=val_loader, steps=steps,
                   model=model, module=module, optimizer=optimizer, mixer=mixer, dropblock=dropblock, frozen=frozen,
                   log=MetricsLog(output, ranks.is_main), start_epoch=start_epoch, start_step=start_step, best=best,
                   partial=partial, saved=(start_epoch, start_step) if resume_state is not None else None)
    start_log(training, resumed=resume_state is not None)
    return training


def set_numerics(args: argparse.Namespace, device: torch.device) -> tuple[bool, bool]:
    """Set torch's algorithm choices for the run (deterministic, or cuDNN's autotuned; TF32 on) and return whether it
    computes in bf16 autocast and in channels-last memory (``--precision``, ``--channels-last``; both on for cuda)."""
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    else:
        torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    bf16 = args.precision == "bf16" or (args.precision == "auto" and device.type == "cuda")
    channels_last = args.channels_last if args.channels_last is not None else device.type == "cuda"
    return bf16, channels_last


def epoch_sampler(data: DataSpec, ranks: Ranks, seed: int, per_rank_batch: int, workers: int) -> EpochSampler | ShardStream:
    """What orders this rank's share of each epoch and can start it part-way: an :class:`~.data.EpochSampler` over a
    dataset, or a streamed dataset itself (:class:`~.streams.ShardStream`, split here over the ranks and workers)."""
    if isinstance(data.train, ShardStream) and isinstance(data.val, ShardStream):
        data.train.split(ranks.world_size, ranks.rank, per_rank_batch, workers)
        data.val.split(ranks.world_size, ranks.rank, per_rank_batch, workers)
        return data.train
    return EpochSampler(data.train, ranks.world_size, ranks.rank, seed)


def steps_per_epoch(data: DataSpec, sampler: EpochSampler | ShardStream, per_rank_batch: int) -> int:
    """The steps of an epoch: whole per-rank batches of this rank's share; a training set smaller than one batch is refused."""
    steps = len(sampler) // per_rank_batch
    if steps == 0:
        raise InvalidArgumentError(f"The training set ({dataset_size(data.train)} images) is smaller than one per-rank batch "
                                   f"of {per_rank_batch}.")
    return steps


def make_loaders(data: DataSpec, sampler: EpochSampler | ShardStream, per_rank_batch: int, workers: int,
                 ranks: Ranks) -> tuple[DataLoader, DataLoader]:
    """This rank's training loader (whole batches in ``sampler``'s order) and validation loader (its shard, every image)."""
    pin = ranks.device.type == "cuda"
    streamed = isinstance(sampler, ShardStream)  # a stream orders itself: no sampler
    train_loader = make_loader(data.train, per_rank_batch, sampler if isinstance(sampler, EpochSampler) else None, workers, pin,
                               drop_last=True, collate_fn=data.collate)
    val_sampler = None if streamed else ShardSampler(dataset_size(data.val), ranks.world_size, ranks.rank)
    val_loader = make_loader(data.val, per_rank_batch, val_sampler, workers, pin, drop_last=False, collate_fn=data.collate)
    return train_loader, val_loader


def device_batches(data: DataSpec, loader: DataLoader, device: torch.device, channels_last: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``loader``'s batches on ``device`` as a training step receives them (decoded, in the run's memory format)."""
    for x, y in loader:
        x = data.train_to_device(x, device)
        yield (x.contiguous(memory_format=torch.channels_last) if channels_last else x), y.to(device)


def initial_network(spec: ModelSpec, init: Init | None, num_classes: int, resumed: bool) -> nn.Module:
    """The network before its first step: the ``--init`` model with a fresh head, else built from scratch (as when
    ``resumed``, whose checkpoint holds the weights)."""
    if init is not None and not resumed:
        return load_init(init, num_classes)
    return build_model(spec.family, spec.args, num_classes)


def attach_mixing(module: nn.Module, family: str, recipe: Recipe, device: torch.device, seed: int) -> tuple[BatchMixer, DropBlock | None]:
    """The recipe's batch mixing and DropBlock (None when off), attached to ``module``'s stages."""
    mixer = BatchMixer(recipe.mix, recipe.beta, recipe.mix_prob, recipe.cutout_size, device, seed,
                       recipe.mix_layers, recipe.label_smoothing)
    mixer.attach(module, family)
    dropblock = None
    if recipe.dropblock > 0:
        dropblock = DropBlock(recipe.dropblock, recipe.dropblock_size)
        dropblock.attach(module, family)
    return mixer, dropblock


def checkpoint_bytes(module: nn.Module) -> int:
    """The disk a run needs in its --output: a checkpoint (weights, buffers and momentum) and best.safetensors (weights,
    buffers)."""
    state_bytes = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    return 2 * state_bytes + sum(p.numel() * p.element_size() for p in module.parameters())


def restore(resume_state: dict[str, Any] | None, module: nn.Module, optimizer: torch.optim.Optimizer, mixer: BatchMixer,
            ranks: Ranks) -> tuple[int, int, dict[str, Any], torch.Tensor]:
    """Load a checkpoint's weights, momentum and mixing state, and return where the run starts: epoch, step, the best
    epoch so far and this rank's partial metrics. On as many ranks as the checkpoint's, each rank's RNG states and
    partial metrics are restored too (an exact resume); without a checkpoint, the first step of a new run."""
    start_epoch, start_step = 0, 0
    best = {"top1_err": 100.0, "top5_err": 100.0, "epoch": -1}
    partial = torch.zeros(4, device=ranks.device)
    if resume_state is not None:
        module.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        mixer.load_state_dict(resume_state["mixer"])
        start_epoch, start_step, best = resume_state["epoch"], resume_state["step"], resume_state["best"]
        per_rank = resume_state["ranks"]
        if len(per_rank) == ranks.world_size:
            ckpt.set_rng_states(per_rank[ranks.rank]["rng"], ranks.device)
            partial = per_rank[ranks.rank]["metrics"].to(ranks.device)
    return start_epoch, start_step, best, partial


def parallel(module: nn.Module, ranks: Ranks, compile_model: bool) -> nn.Module:
    """What the steps call: ``module`` in DistributedDataParallel on several ranks, compiled when ``compile_model``
    (:func:`.config.compile_step`'s rule)."""
    model = module
    if ranks.world_size > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[ranks.device.index] if ranks.device.type == "cuda" else None)
    if compile_model:
        model = torch.compile(model)  # type: ignore[assignment]  # an OptimizedModule (nn.Module); the stubs say a plain callable
    return model


def start_log(run: Run, resumed: bool) -> None:
    """Make the output folder (rank 0), carry a resumed run's files into it, and log the run's start; from here a log
    line that cannot be written stops the run with :func:`.failures.unwritable`'s sentence."""
    args, ranks = run.args, run.ranks
    run.log.failed = functools.partial(failures.unwritable, run)
    if ranks.is_main:
        run.output.mkdir(parents=True, exist_ok=True)
        if resumed:
            ckpt.carry_run_files(Path(args.resume), run.output)
        run.log.write({"event": "start", "name": run.name, "init": args.init, "resumed_from": str(args.resume) if args.resume else None,
                       "epoch": run.start_epoch, "step": run.start_step, "world_size": ranks.world_size, "device": str(ranks.device),
                       "bf16": run.bf16, "channels_last": run.channels_last, "compiled": run.compiled, "recipe": dataclasses.asdict(run.recipe)})


def set_rate(run: Run, step: int) -> float:
    """Set the learning rate of the run's ``step``-th step (scaled per parameter group); returns the unscaled rate."""
    lr = run.recipe.lr_at_step(step, run.steps)
    for group in run.optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)  # the backbone's multiplier (checkpoints from before it have none)
    return lr


def begin_epoch(run: Run, epoch: int) -> float:
    """Set the learning rate of ``epoch``'s first step (its resumed step in a resumed epoch) and put the model in training
    mode; returns the rate."""
    lr = set_rate(run, epoch * run.steps + (run.start_step if epoch == run.start_epoch else 0))
    run.model.train()
    for module in run.frozen:  # frozen levels keep their pretrained BatchNorm statistics
        module.eval()
    return lr


def train_steps(run: Run, epoch: int, lr: float, stop: StopFlag) -> float | None:
    """Train ``epoch``'s steps (from ``run.start_step`` if it is the resumed epoch); returns their time in seconds, or
    None when the run stopped on request (SIGTERM/SIGINT, agreed by all ranks) at a check (every step on one rank, every
    ``--log-interval`` steps on several), its checkpoint saved and "interrupted" logged.

    The training loss is checked where the metrics are reduced anyway (:func:`log_steps`, no extra host sync). An image
    that cannot be read (:class:`.data.DataError`) stops the run with a checkpoint of the last completed step saved
    first, so ``--resume`` continues once the file is replaced or removed.
    """
    from tqdm import tqdm

    ranks, device, steps = run.ranks, run.ranks.device, run.steps
    first = run.start_step if epoch == run.start_epoch else 0
    if first == 0:
        run.partial.zero_()
    run.sampler.set_position(epoch, first * run.per_rank_batch)
    cast = functools.partial(autocast, device, run.bf16)
    total_steps = run.recipe.epochs * steps
    started = time.perf_counter()
    bar = tqdm(total=steps, initial=first, desc=f"epoch {epoch + 1}/{run.recipe.epochs}", disable=not ranks.is_main or run.args.quiet,
               leave=False)
    step = first
    try:
        for x, y in run.train_loader:
            x = run.data.train_to_device(x, device)
            y = y.to(device, non_blocking=True)
            if run.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if run.dropblock is not None:
                run.dropblock.progress = (epoch * steps + step) / total_steps
            lr = set_rate(run, epoch * steps + step)  # a warm-up or a cosine moves it every step
            train_step(run.model, run.optimizer, run.mixer, x, y, cast, run.partial)
            step += 1
            bar.update(1)
            at_interval = step % run.args.log_interval == 0 or step == steps
            if at_interval:
                log_steps(run, epoch, step, lr, bar)
            if step < steps and (at_interval or ranks.world_size == 1) and stop.agreed(ranks):
                save_checkpoint(run, epoch, step)
                failures.interrupted(run, epoch, step)
                return None
    except DataError as error:  # an unreadable image: keep the steps done, so --resume continues
        save_checkpoint(run, epoch, step, alone=True)
        raise failures.stopped_by_data(run, error, epoch, step) from None
    finally:
        bar.close()
    return time.perf_counter() - started


def log_steps(run: Run, epoch: int, step: int, lr: float, bar: Any) -> None:
    """Reduce this epoch's training metrics over the ranks, stop on a non-finite loss, log them and show them on ``bar``."""
    loss_sum, miss1, miss5, n = all_sum(run.partial.clone(), run.ranks).tolist()
    # The same reduced value on every rank: all of them stop here.
    failures.check_finite(run, "training loss", loss_sum / n, f"epoch {epoch + 1}, step {step}", epoch, step)
    record = {"event": "train", "epoch": epoch, "step": step, "lr": lr, "loss": loss_sum / n,
              "top1_err": 100 * miss1 / n, "top5_err": 100 * miss5 / n}
    bar.set_postfix(loss=f"{record['loss']:.3f}", err=f"{record['top1_err']:.1f}")
    run.log.write(record, epoch * run.steps + step)


def evaluate_epoch(run: Run, epoch: int, lr: float, train_time: float) -> None:
    """After ``epoch``'s last step: evaluate (BatchNorm statistics averaged over ranks first), keep the weights if they
    are the best so far, and log and print the epoch.

    A validation image that cannot be read stops the run with a checkpoint of the epoch's training saved first (its
    evaluation runs on resume); a non-finite validation loss stops it with the files on disk as they are.
    """
    ranks = run.ranks
    average_buffers(run.module, ranks)
    try:
        val = evaluate(run.module, run.val_loader, ranks, run.bf16, run.channels_last, run.data.val_to_device)
    except DataError as error:
        save_checkpoint(run, epoch, run.steps, alone=True)
        raise failures.stopped_by_data(run, error, epoch, run.steps) from None
    # The last step's update made the weights non-finite: keep the files as they are.
    failures.check_finite(run, "validation loss", val["loss"], f"the end of epoch {epoch + 1}", epoch, run.steps)
    if val["top1_err"] <= run.best["top1_err"]:
        run.best = {"top1_err": val["top1_err"], "top5_err": val["top5_err"], "epoch": epoch}
        if ranks.is_main:
            from ..hub.convert import save_safetensors

            with failures.writing(run, run.output / BEST_WEIGHTS):
                save_safetensors({k: v.detach().cpu() for k, v in run.module.state_dict().items()}, run.output / BEST_WEIGHTS)
    best = run.best
    loss_sum, miss1, miss5, n = all_sum(run.partial.clone(), ranks).tolist()
    record = {"event": "epoch", "epoch": epoch, "lr": lr, "train_loss": loss_sum / n, "train_top1_err": 100 * miss1 / n,
              "train_top5_err": 100 * miss5 / n, "val_loss": val["loss"], "val_top1_err": val["top1_err"],
              "val_top5_err": val["top5_err"], "best_top1_err": best["top1_err"], "best_top5_err": best["top5_err"],
              "best_epoch": best["epoch"], "images_per_s": n / train_time, "train_samples": int(n)}
    run.log.write(record, (epoch + 1) * run.steps)
    if ranks.is_main and not run.args.quiet:
        print(f"epoch {epoch + 1}/{run.recipe.epochs}: train loss {record['train_loss']:.4f}, val top-1/top-5 error "
              f"{val['top1_err']:.2f}/{val['top5_err']:.2f} (best {best['top1_err']:.2f}/{best['top5_err']:.2f})", flush=True)


def save_checkpoint(run: Run, epoch: int, step: int, alone: bool = False) -> None:
    """Write OUTPUT/checkpoint.pt atomically (rank 0): the run continues at ``step`` of ``epoch``. A collective: every
    rank hands rank 0 its RNG states and partial metrics, which an exact resume on as many ranks restores.

    Weights holding a NaN or an infinity are never written: the run stops with a TrainingError and the previous
    checkpoint stays. ``alone``: this rank writes by itself while the others wait elsewhere (it stops on an unreadable
    image); on several ranks that checkpoint holds no RNG states or partial metrics, so its resume is not exact.
    """
    failures.check_weights(run, epoch, step)
    per_rank = {"rng": ckpt.rng_states(run.ranks.device), "metrics": run.partial.cpu()}
    gathered: list[Any] = [None] * run.ranks.world_size
    if run.ranks.world_size > 1 and not alone:
        dist.all_gather_object(gathered, per_rank)
    else:
        gathered = [per_rank] if run.ranks.world_size == 1 else []
    if run.ranks.is_main or alone:
        path = run.output / CHECKPOINT_NAME
        with failures.writing(run, path):
            ckpt.save_atomic({"version": 1, "args": vars(run.args), "epoch": epoch, "step": step, "best": run.best,
                              "model": run.module.state_dict(), "optimizer": run.optimizer.state_dict(),
                              "mixer": run.mixer.state_dict(), "ranks": gathered}, path)
    run.saved = (epoch, step)


def finish(run: Run) -> int:
    """After the last epoch: log every rank's final weight digest, export the best epoch's weights (rank 0, unless
    ``--no-export``), and wait for all ranks; returns 0."""
    ranks, best = run.ranks, run.best
    digests: list[Any] = [None] * ranks.world_size
    digest = weights_sha256(run.module)
    if ranks.world_size > 1:
        dist.all_gather_object(digests, digest)
    else:
        digests = [digest]
    if ranks.is_main:
        export_dir = None
        if run.args.export:
            from safetensors.torch import load_file

            from ..hub.export import save_pretrained

            run.module.load_state_dict(load_file(run.output / BEST_WEIGHTS))
            synthetic = run.args.data == "synthetic" and run.recipe.dataset != "shapes"  # Shapes-10 is generated but real
            cfg = export_config(run.recipe, run.spec, run.name, run.method, run.data.num_classes, run.data.registry_dataset, best,
                                run.args.seed, ranks.world_size, measured_on=None if synthetic else run.data.registry_dataset,
                                inputs=run.inputs, init=run.init, classes=run.data.classes)
            export_dir = save_pretrained(run.module, run.output / EXPORT_DIR, cfg=cfg)
        run.log.write({"event": "end", "best_top1_err": best["top1_err"], "best_top5_err": best["top5_err"], "best_epoch": best["epoch"],
                       "final_weights_sha256": digests, "export": str(export_dir) if export_dir else None})
    if ranks.world_size > 1:
        dist.barrier()
    return 0


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, mixer: BatchMixer, x: torch.Tensor, y: torch.Tensor,
               autocast: Callable[[], contextlib.AbstractContextManager], metrics: torch.Tensor) -> None:
    """One optimisation step on a device batch, the forward pass inside ``autocast()``; adds its loss sum, top-1/top-5
    misses and size to ``metrics`` on the device."""
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


def weights_sha256(model: nn.Module) -> str:
    """A digest of every tensor of the model (to show that ranks hold identical weights)."""
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
