"""The training run, top to bottom: :func:`setup` the ranks, data, model and mixing into a :class:`Run`;
:func:`train_epoch` epoch by epoch (each ends with evaluation and a checkpoint); :func:`finish` with
the export. :func:`run` is those three in order.

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
import math
import os
import random
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from ..errors import InvalidArgumentError, TrainingError
from ..models import build_model
from ..recipes import Recipe
from . import checkpoint as ckpt
from .config import (
    BEST_WEIGHTS,
    CHECKPOINT_NAME,
    EXIT_INTERRUPTED,
    EXPORT_DIR,
    METRICS,
    ModelSpec,
    check_free_space,
    check_output,
    describe_run,
    resolve,
    resumed_args,
    run_inputs,
)
from .data import DataError, EpochSampler, ShardSampler, make_loader, training_data
from .dataspec import DataSpec, Inputs, dataset_size
from .evaluation import evaluate, nonfinite_tensors, topk_errors
from .export import export_config
from .finetune import Init, freeze_levels, load_init, param_groups, resolve_init
from .gpu_decode import check_gpu_decode
from .mixing import BatchMixer, DropBlock
from .ranks import Ranks, all_sum, autocast, average_buffers, setup_ranks


@dataclass
class Run:
    """Everything a training run holds between its steps: what it trains, where, on which data, and how far it is.

    ``model`` is what the steps call (DistributedDataParallel and/or compiled); ``module`` is the plain network inside,
    whose weights are evaluated, checkpointed and exported. ``start_epoch`` and ``start_step`` are where training
    begins (past 0 when resumed), ``best`` is the best validation epoch so far, ``partial`` this epoch's training
    metrics so far on this rank (loss sum, top-1 misses, top-5 misses, images), on the device, and ``saved`` the
    (epoch, step) of the checkpoint in ``output`` (None before this run wrote or resumed one). ``init`` is the zoo
    model the run started from (``--init``), ``inputs`` what the model is fed, and ``frozen`` the modules of the
    levels ``--freeze-stages`` froze, kept in eval mode.
    """

    args: argparse.Namespace
    recipe: Recipe
    spec: ModelSpec
    name: str
    method: str
    output: Path
    ranks: Ranks
    bf16: bool
    channels_last: bool
    data: DataSpec
    sampler: EpochSampler
    train_loader: DataLoader
    val_loader: DataLoader
    steps: int
    model: nn.Module
    module: nn.Module
    optimizer: torch.optim.Optimizer
    mixer: BatchMixer
    dropblock: DropBlock | None
    log: MetricsLog
    start_epoch: int
    start_step: int
    best: dict[str, Any]
    partial: torch.Tensor
    saved: tuple[int, int] | None = None
    init: Init | None = None
    inputs: Inputs | None = None
    frozen: list[nn.Module] = dataclasses.field(default_factory=list)

    @property
    def per_rank_batch(self) -> int:
        """Images per step on this rank: the global batch split evenly over the ranks."""
        return self.recipe.batch_size // self.ranks.world_size


def run(args: argparse.Namespace) -> int:
    """Train as ``args`` say; returns 0 when done, 143 when interrupted with a checkpoint saved."""
    resume_state = ckpt.load_checkpoint(args.resume) if args.resume else None
    if resume_state is not None:
        args = resumed_args(resume_state["args"], args)
    if args.dry_run:
        print(json.dumps(describe_run(args, *resolve(args)), indent=2))
        return 0
    training = setup(args, resume_state)
    with StopFlag() as stop:
        for epoch in range(training.start_epoch, training.recipe.epochs):
            if train_epoch(training, epoch, stop):
                return EXIT_INTERRUPTED
    return finish(training)


def setup(args: argparse.Namespace, resume_state: dict[str, Any] | None = None) -> Run:
    """Everything a run needs before its first step: ranks and device, data and loaders, the model (the same initial
    weights on every rank), mixing, the optimizer, the state of ``resume_state`` (a checkpoint) if given, and the log.

    The order of the seeding and of the model's construction is part of a run's result: an exact resume depends on it.
    An ``--output`` that cannot be written is refused before the data is read, one whose disk cannot hold a checkpoint
    before the first step (:class:`~cutmix_zoo.errors.TrainingError`).
    """
    output = Path(args.output)
    recipe, spec, name, method = resolve(args)
    init = resolve_init(args.init, args.model) if args.init else None
    inputs = run_inputs(recipe, init, args.model)
    ranks = setup_ranks(args.device)
    if ranks.is_main:
        check_output(output)
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

    if recipe.batch_size % ranks.world_size:
        raise InvalidArgumentError(f"--batch-size {recipe.batch_size} does not split evenly over {ranks.world_size} ranks.")
    per_rank_batch = recipe.batch_size // ranks.world_size
    data = training_data(recipe.dataset, args.data, recipe.transforms, args.seed, args.download, args.synthetic_size, args.decode,
                         inputs, args.val_split)
    sampler = EpochSampler(data.train, ranks.world_size, ranks.rank, args.seed)
    pin = device.type == "cuda"
    train_loader = make_loader(data.train, per_rank_batch, sampler, args.workers, pin, drop_last=True, collate_fn=data.collate)
    val_loader = make_loader(data.val, per_rank_batch, ShardSampler(dataset_size(data.val), ranks.world_size, ranks.rank), args.workers, pin,
                             drop_last=False, collate_fn=data.collate)
    steps = len(sampler) // per_rank_batch
    if steps == 0:
        raise InvalidArgumentError(f"The training set ({dataset_size(data.train)} images) is smaller than one per-rank batch "
                                   f"of {per_rank_batch}.")

    torch.manual_seed(args.seed)  # the same initial weights on every rank
    if init is not None and resume_state is None:
        module = load_init(init, data.num_classes)
    else:  # from scratch, or resumed: the checkpoint holds the weights
        module = build_model(spec.family, spec.args, data.num_classes)
    frozen = freeze_levels(module, spec.family, recipe.freeze_stages)
    random.seed(args.seed + ranks.rank)
    torch.manual_seed(args.seed + ranks.rank)
    mixer = BatchMixer(recipe.mix, recipe.beta, recipe.mix_prob, recipe.cutout_size, device, args.seed,
                       recipe.mix_layers, recipe.label_smoothing)
    mixer.attach(module, spec.family)
    dropblock = None
    if recipe.dropblock > 0:
        dropblock = DropBlock(recipe.dropblock, recipe.dropblock_size)
        dropblock.attach(module, spec.family)
    # Module.to's stubs have no overload for device and memory_format together, which it takes at run time.
    module.to(device=device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)  # type: ignore[call-overload]
    optimizer = torch.optim.SGD(param_groups(module, spec.family, recipe.lr, recipe.backbone_lr_mult), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay, nesterov=recipe.nesterov)
    if ranks.is_main:  # a checkpoint (weights, buffers and momentum) and best.safetensors (weights, buffers)
        state_bytes = sum(t.numel() * t.element_size() for t in module.state_dict().values())
        check_free_space(output, 2 * state_bytes + sum(p.numel() * p.element_size() for p in module.parameters()))

    start_epoch, start_step = 0, 0
    best = {"top1_err": 100.0, "top5_err": 100.0, "epoch": -1}
    partial = torch.zeros(4, device=device)
    if resume_state is not None:
        module.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        mixer.load_state_dict(resume_state["mixer"])
        start_epoch, start_step, best = resume_state["epoch"], resume_state["step"], resume_state["best"]
        per_rank = resume_state["ranks"]
        if len(per_rank) == ranks.world_size:
            ckpt.set_rng_states(per_rank[ranks.rank]["rng"], device)
            partial = per_rank[ranks.rank]["metrics"].to(device)

    model = module
    if ranks.world_size > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if args.compile:
        model = torch.compile(model)  # type: ignore[assignment]  # an OptimizedModule (nn.Module); the stubs say a plain callable

    log = MetricsLog(output, ranks.is_main)
    training = Run(args, recipe, spec, name, method, output, ranks, bf16, channels_last, data, sampler, train_loader, val_loader,
                   steps, model, module, optimizer, mixer, dropblock, log, start_epoch, start_step, best, partial,
                   saved=(start_epoch, start_step) if resume_state is not None else None, init=init, inputs=inputs, frozen=frozen)
    log.failed = functools.partial(unwritable, training)
    if ranks.is_main:
        output.mkdir(parents=True, exist_ok=True)
        if resume_state is not None:
            _carry_run_files(Path(args.resume), output)
        log.write({"event": "start", "name": name, "init": args.init, "resumed_from": str(args.resume) if args.resume else None,
                   "epoch": start_epoch, "step": start_step, "world_size": ranks.world_size, "device": str(device),
                   "bf16": bf16, "channels_last": channels_last, "recipe": dataclasses.asdict(recipe)})
    return training


def train_epoch(run: Run, epoch: int, stop: StopFlag) -> bool:
    """Train ``epoch`` (from ``run.start_step`` if it is the resumed epoch), then :func:`end_epoch` (evaluate, checkpoint).

    Returns True when the run stopped here on request (SIGTERM/SIGINT, agreed by all ranks), its checkpoint saved and
    "interrupted" logged: mid-epoch at a check (every step on one rank, every ``--log-interval`` steps on several), or
    at the end of any epoch but the last, which finishes instead.

    The training loss is checked where the metrics are reduced anyway (every ``--log-interval`` steps and at the epoch's
    end, no extra host sync): a NaN or an infinity stops the run with a :class:`~cutmix_zoo.errors.TrainingError`, the
    checkpoint on disk left as the last finite one. An image that cannot be read (:class:`.data.DataError`) stops it
    with a checkpoint of the last completed step saved first (or, after the last step, of the epoch's training before
    its evaluation), so ``--resume`` continues once the file is replaced or removed.
    """
    from tqdm import tqdm

    args, recipe, ranks, device, steps = run.args, run.recipe, run.ranks, run.ranks.device, run.steps
    lr = recipe.lr_at(epoch)
    for group in run.optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)  # the backbone's multiplier (checkpoints from before it have none)
    first = run.start_step if epoch == run.start_epoch else 0
    if first == 0:
        run.partial.zero_()
    run.sampler.set_position(epoch, first * run.per_rank_batch)
    run.model.train()
    for module in run.frozen:  # frozen levels keep their pretrained BatchNorm statistics
        module.eval()
    cast = functools.partial(autocast, device, run.bf16)
    total_steps = recipe.epochs * steps
    started = time.perf_counter()
    bar = tqdm(total=steps, initial=first, desc=f"epoch {epoch + 1}/{recipe.epochs}", disable=not ranks.is_main or args.quiet, leave=False)
    step = first
    try:
        for x, y in run.train_loader:
            x = run.data.train_to_device(x, device)
            y = y.to(device, non_blocking=True)
            if run.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if run.dropblock is not None:
                run.dropblock.progress = (epoch * steps + step) / total_steps
            train_step(run.model, run.optimizer, run.mixer, x, y, cast, run.partial)
            step += 1
            bar.update(1)
            at_interval = step % args.log_interval == 0 or step == steps
            if at_interval:
                loss_sum, miss1, miss5, n = all_sum(run.partial.clone(), ranks).tolist()
                if not math.isfinite(loss_sum):  # the same reduced value on every rank: all of them stop here
                    raise diverged(run, "training loss", str(loss_sum / n), f"epoch {epoch + 1}, step {step}", epoch, step)
                record = {"event": "train", "epoch": epoch, "step": step, "lr": lr, "loss": loss_sum / n,
                          "top1_err": 100 * miss1 / n, "top5_err": 100 * miss5 / n}
                bar.set_postfix(loss=f"{record['loss']:.3f}", err=f"{record['top1_err']:.1f}")
                run.log.write(record, epoch * steps + step)
            if step < steps and (at_interval or ranks.world_size == 1) and stop.agreed(ranks):
                save_checkpoint(run, epoch, step)
                bar.close()
                run.log.write({"event": "interrupted", "epoch": epoch, "step": step})
                return True
    except DataError as error:
        raise stopped_by_data(run, error, epoch, step) from None
    finally:
        bar.close()
    train_time = time.perf_counter() - started

    try:
        end_epoch(run, epoch, lr, train_time)
    except DataError as error:  # a validation image: the epoch's training is kept, its evaluation runs on resume
        raise stopped_by_data(run, error, epoch, steps) from None
    if epoch + 1 < recipe.epochs and stop.agreed(ranks):
        run.log.write({"event": "interrupted", "epoch": epoch + 1, "step": 0})
        return True
    return False


def end_epoch(run: Run, epoch: int, lr: float, train_time: float) -> None:
    """After ``epoch``'s last step: evaluate (BatchNorm statistics averaged over ranks first), keep the weights if they are
    the best so far, log and print the epoch, and save the checkpoint of the next epoch's start."""
    ranks = run.ranks
    average_buffers(run.module, ranks)
    val = evaluate(run.module, run.val_loader, ranks, run.bf16, run.channels_last, run.data.val_to_device)
    if not math.isfinite(val["loss"]):  # the last step's update made the weights non-finite: keep the files as they are
        raise diverged(run, "validation loss", str(val["loss"]), f"the end of epoch {epoch + 1}", epoch, run.steps)
    if val["top1_err"] <= run.best["top1_err"]:
        run.best = {"top1_err": val["top1_err"], "top5_err": val["top5_err"], "epoch": epoch}
        if ranks.is_main:
            from ..hub.convert import save_safetensors

            try:
                save_safetensors({k: v.detach().cpu() for k, v in run.module.state_dict().items()}, run.output / BEST_WEIGHTS)
            except OSError as e:
                raise unwritable(run, run.output / BEST_WEIGHTS, e) from None
    best = run.best
    loss_sum, miss1, miss5, n = all_sum(run.partial.clone(), ranks).tolist()
    record = {"event": "epoch", "epoch": epoch, "lr": lr, "train_loss": loss_sum / n, "train_top1_err": 100 * miss1 / n,
              "train_top5_err": 100 * miss5 / n, "val_loss": val["loss"], "val_top1_err": val["top1_err"],
              "val_top5_err": val["top5_err"], "best_top1_err": best["top1_err"], "best_top5_err": best["top5_err"],
              "best_epoch": best["epoch"], "images_per_s": n / train_time}
    run.log.write(record, (epoch + 1) * run.steps)
    if ranks.is_main and not run.args.quiet:
        print(f"epoch {epoch + 1}/{run.recipe.epochs}: train loss {record['train_loss']:.4f}, val top-1/top-5 error "
              f"{val['top1_err']:.2f}/{val['top5_err']:.2f} (best {best['top1_err']:.2f}/{best['top5_err']:.2f})", flush=True)
    save_checkpoint(run, epoch + 1, 0)


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


def save_checkpoint(run: Run, epoch: int, step: int, alone: bool = False) -> None:
    """Write OUTPUT/checkpoint.pt atomically (rank 0): the run continues at ``step`` of ``epoch``. A collective: every
    rank hands rank 0 its RNG states and partial metrics, which an exact resume on as many ranks restores.

    Weights holding a NaN or an infinity are never written: the run stops with a TrainingError and the previous
    checkpoint stays. ``alone``: this rank writes by itself while the others wait elsewhere (it stops on an unreadable
    image); on several ranks that checkpoint holds no RNG states or partial metrics, so its resume is not exact.
    """
    if nonfinite_tensors(run.module):  # DDP keeps the weights identical, so every rank decides the same
        at = f"epoch {epoch + 1}, step {step}" if step else f"the end of epoch {epoch}"
        raise diverged(run, "weights", "non-finite", at, epoch, step)
    per_rank = {"rng": ckpt.rng_states(run.ranks.device), "metrics": run.partial.cpu()}
    gathered: list[Any] = [None] * run.ranks.world_size
    if run.ranks.world_size > 1 and not alone:
        dist.all_gather_object(gathered, per_rank)
    else:
        gathered = [per_rank] if run.ranks.world_size == 1 else []
    if run.ranks.is_main or alone:
        path = run.output / CHECKPOINT_NAME
        try:
            ckpt.save_atomic({"version": 1, "args": vars(run.args), "epoch": epoch, "step": step, "best": run.best,
                              "model": run.module.state_dict(), "optimizer": run.optimizer.state_dict(),
                              "mixer": run.mixer.state_dict(), "ranks": gathered}, path)
        except OSError as e:
            raise unwritable(run, path, e) from None
    run.saved = (epoch, step)


def kept(run: Run) -> str:
    """What the run's files still hold, for a message about a run that stopped."""
    if run.saved is None:
        weights = "no checkpoint of this run was written"
    else:
        epoch, step = run.saved
        position = (f"epoch {epoch + 1}, step {step}" if step else f"the end of epoch {epoch}" if epoch else "the start")
        weights = f"{run.output / CHECKPOINT_NAME} keeps the weights of {position}"
    if run.best["epoch"] >= 0:
        weights += f", {run.output / BEST_WEIGHTS} those of epoch {run.best['epoch'] + 1}"
    return weights


def diverged(run: Run, what: str, value: str, at: str, epoch: int, step: int) -> TrainingError:
    """The error (logged as a "diverged" event) of a run whose ``what`` became ``value`` (a NaN or an infinity) at ``at``."""
    run.log.write({"event": "diverged", "epoch": epoch, "step": step, "what": what, "value": value})
    return TrainingError(f"The {what} became {value} at {at} (the training diverged): {kept(run)}; "
                         "start a new run with a lower --lr.")


def unwritable(run: Run, path: Path, error: OSError) -> TrainingError:
    """The error of a run that could not write ``path`` (a full disk, a folder made read-only)."""
    reason = error.strerror or str(error) or type(error).__name__
    return TrainingError(f"Could not write {path} ({reason}): {kept(run)}; free some space (or make the folder writable) "
                         f"and continue with --resume {run.output}.")


def stopped_by_data(run: Run, error: DataError, epoch: int, step: int) -> DataError:
    """Save a checkpoint of ``step`` (the steps completed) of ``epoch`` on this rank and log the stop; the error to raise."""
    save_checkpoint(run, epoch, step, alone=True)
    where = (f"after training epoch {epoch + 1}, before its evaluation" if step == run.steps
             else f"at epoch {epoch + 1}, step {step} of {run.steps}")
    message = (f"{str(error).rstrip('.')}; the run stopped {where}, saved in {run.output / CHECKPOINT_NAME}, "
               f"so --resume {run.output} continues it.")
    run.log.write({"event": "stopped", "epoch": epoch, "step": step, "error": message})
    return DataError(message)


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


class MetricsLog:
    """JSON lines in OUTPUT/metrics.jsonl (and TensorBoard scalars when tensorboard is installed), rank 0 only.

    A line that cannot be written (a full disk, a folder made read-only) stops the run with ``failed(path, error)``,
    which :func:`setup` makes :func:`unwritable`'s one sentence about what the run's files still hold.
    """

    def __init__(self, output: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.path = output / METRICS
        self.failed: Callable[[Path, OSError], Exception] = lambda path, error: TrainingError(
            f"Could not write {path} ({error.strerror or error}): free some space or make the folder writable.")
        self.tb = None
        if enabled:
            with contextlib.suppress(ImportError):
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(output / "tensorboard"))

    def write(self, record: dict[str, Any], step: int | None = None) -> None:
        """Append ``record`` as one line; its numbers also go to TensorBoard at ``step`` when given."""
        if not self.enabled:
            return
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise self.failed(self.path, e) from None
        if self.tb is not None and step is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                    self.tb.add_scalar(f"{record.get('event', 'run')}/{k}", v, step)


class StopFlag:
    """Set by SIGTERM (or SIGINT); the loop saves a checkpoint at the next check and exits."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
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


def _carry_run_files(resumed: Path, output: Path) -> None:
    """Resuming into another --output: copy the run's checkpoint, best weights and metrics there, so the export,
    the log and a later resume continue from B while A stays as it was."""
    checkpoint = resumed / CHECKPOINT_NAME if resumed.is_dir() else resumed
    source = checkpoint.parent
    if source.resolve() == output.resolve():
        return
    from ..files import atomic_path

    for src, name in ((checkpoint, CHECKPOINT_NAME), (source / BEST_WEIGHTS, BEST_WEIGHTS), (source / METRICS, METRICS)):
        if src.is_file() and not (output / name).exists():
            with atomic_path(output / name) as tmp:
                shutil.copyfile(src, tmp)
