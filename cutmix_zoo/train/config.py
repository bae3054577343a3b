"""The trainer's command line and the run configuration it resolves to.

``--recipe NAME`` starts from the registry entry's recipe (dataset base + method mixing); every
flag left unset keeps the recipe's value, every flag given overrides it. ``--model`` names a
registry model or architecture, or a family (``pyramidnet``, ``resnet``) shaped by
``--depth``/``--alpha``/``--no-bottleneck`` as in the original ``train.py``: ``resnet`` on CIFAR is the
original resnet.py's CIFAR ResNet (depth 9n+2 with bottlenecks, 6n+2 with basic blocks), on ImageNet
torchvision's ResNet-18/34/50/101/152/200. ``--init NAME|FOLDER|FILE`` starts from a zoo model's weights with a
fresh head (:mod:`.finetune`), with ``--recipe finetune`` by default.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from ..errors import InvalidArgumentError, TrainingError, UnknownModelError
from ..fastload import build_on_meta
from ..model_config import ModelConfig
from ..models import level_children
from ..recipes import CROPS, FEATURE_MIX_MODES, FINETUNE, Recipe, base_recipe, finetune_recipe, method_settings, recipe_for
from ..registry import ARCHITECTURES, FOLDER, TRAINER_DATASETS, DataConfig, data_config, get_entry, is_registry_name, run_suffix
from .dataspec import Inputs
from .finetune import Init, resolve_init

# ImageNet depths of the original resnet.py: depth -> (blocks per stage, bottleneck).
_RESNET_DEPTHS = {18: ([2, 2, 2, 2], False), 34: ([3, 4, 6, 3], False), 50: ([3, 4, 6, 3], True),
                  101: ([3, 4, 23, 3], True), 152: ([3, 8, 36, 3], True), 200: ([3, 24, 36, 3], True)}
RECIPE_FIELDS = [f.name for f in dataclasses.fields(Recipe)]
EXIT_INTERRUPTED = 143
MAX_INPUT_SIZE = 4096  # pixels a side: a 4096-pixel crop is 200 MB of float32 activations per image at the stem already
# What a run writes into its --output folder.
CHECKPOINT_NAME = "checkpoint.pt"
METRICS = "metrics.jsonl"
BEST_WEIGHTS = "best.safetensors"
EXPORT_DIR = "export"
# Flags a resumed run may change: where files are and how this process runs, not what is trained.
RESOLVED_FLAGS = (*RECIPE_FIELDS, "recipe", "model", "depth", "alpha", "bottleneck", "dataset", "init")  # flags resolve() reads
RESUMABLE_FLAGS = ("epochs", "output", "data", "val_data", "device", "workers", "decode", "quiet", "log_interval", "compile",
                   "precision", "channels_last", "export", "download", "dry_run", "force")

# A cuda run compiles its step by default from this many steps left to train: the compiled ResNet-50 step is 1.45x
# the eager one on an H200 (about 17 ms saved per step of 256), so 5,000 steps repay a compile of up to about 85 s
# (an estimate; benchmarks/gpu_check.py measures the compile time and the steps that repay it).
COMPILE_MIN_STEPS = 5000


def compile_step(flag: bool | None, device_type: str, steps_left: int) -> bool:
    """Whether a run compiles its step: as ``--compile``/``--no-compile`` say when given (None: neither), else on cuda
    for runs with at least :data:`COMPILE_MIN_STEPS` steps left to train; eager on the CPU, where compiling gains little."""
    if flag is not None:
        return flag
    return device_type == "cuda" and steps_left >= COMPILE_MIN_STEPS


def default_workers() -> int:
    """Loader processes per rank: 4, or fewer where the machine has fewer CPUs (torch warns beyond them)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cpus))


@dataclass(frozen=True)
class ModelSpec:
    """What to build: a builder family and its arguments, with the registry architecture it is (if any)."""

    family: str
    args: dict[str, Any]
    architecture: str | None
    label: str


def _float_tuple(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def train_parser() -> argparse.ArgumentParser:
    """The trainer's command line (``python -m cutmix_zoo.train``, ``cutmix-zoo train``): what to train, the data,
    the recipe's values to override and how the run runs, in that order in ``--help``."""
    p = argparse.ArgumentParser(
        prog="cutmix-zoo train",
        description="Train a zoo model with the original CutMix recipes (torchrun for several GPUs or nodes). "
                    "Writes OUTPUT/checkpoint.pt every epoch, OUTPUT/metrics.jsonl, and at the end OUTPUT/export/ "
                    "(model.safetensors, config.json, README.md of the best epoch) that cutmix_zoo.load(FOLDER) loads.",
    )
    _model_flags(p.add_argument_group("what to train"))
    _data_flags(p.add_argument_group("data"))
    recipe = p.add_argument_group("recipe overrides (default: the recipe's value)")
    _schedule_flags(recipe)
    _mixing_flags(recipe)
    _finetune_flags(recipe)
    _run_flags(p.add_argument_group("run"))
    return p


def _model_flags(g: argparse._ArgumentGroup) -> None:
    """What to train: a recipe, an init, a model (or a family shaped by --depth/--alpha/--no-bottleneck)."""
    g.add_argument("--recipe", help="registry name whose original recipe to use, e.g. resnet50.cutmix_in1k, or 'finetune' (the default "
                                    "with --init: lr 0.1 for the new head and x0.1 for the pretrained layers, 30 epochs, CutMix on half "
                                    "the batches; see the README for where each value comes from)")
    g.add_argument("--init", metavar="NAME|FOLDER|FILE", help="start from a zoo model's weights (a registry name, an exported folder, "
                                                             "or a weights file with --model ARCH) with a fresh head sized to the data")
    g.add_argument("--model", help="registry model or architecture (resnet50, pyramidnet200_a240) or a family: pyramidnet, resnet "
                                    "(CIFAR ResNet on cifar10/cifar100/shapes, ImageNet ResNet on imagenet/folder)")
    g.add_argument("--depth", type=int, help="depth for --model pyramidnet/resnet")
    g.add_argument("--alpha", type=float, help="widening factor for --model pyramidnet")
    g.add_argument("--no-bottleneck", dest="bottleneck", action="store_false", default=True, help="basic blocks for --model pyramidnet/resnet")


def _data_flags(g: argparse._ArgumentGroup) -> None:
    """Which data, where it is and how it is read."""
    g.add_argument("--dataset", choices=TRAINER_DATASETS,
                   help="default: the recipe's, else cifar100 (shapes: the generated Shapes-10, --data is not used)")
    g.add_argument("--data", default="synthetic", help="CIFAR folder, ImageFolder tree with train/ and val/, a shard folder "
                                                       "(cutmix-zoo shard), a folder of Parquet files (data/train-*.parquet), "
                                                       "tar shards as a pattern (train-{000000..000099}.tar: paths, http(s):// "
                                                       "URLs or pipe: commands), or 'synthetic' (default)")
    g.add_argument("--val-data", metavar="SHARDS", help="with --data a pattern of tar shards: the validation shards' pattern")
    g.add_argument("--val-split", type=float, metavar="F", help="--data is one ImageFolder tree (a folder per class): hold out this "
                                                                 "fraction of each class's images, drawn with --seed, for validation")
    g.add_argument("--download", action="store_true", help="download CIFAR into --data if it is not there")
    g.add_argument("--synthetic-size", type=int, default=0,
                   help="training images of --data synthetic (default 2048 at 32px, 512 at 224px) or of --dataset shapes (default 5000)")
    g.add_argument("--workers", type=int, default=default_workers(),
                   help=f"data loading processes per rank (default {default_workers()}: 4 or the CPU count if smaller; "
                        "0 loads in the training process)")
    g.add_argument("--decode", choices=["cpu", "gpu"], default="cpu",
                   help="where ImageFolder JPEGs are decoded and augmented: cpu (PIL in the workers, default) or gpu "
                        "(workers read bytes; nvjpeg and the augmentation run on the CUDA device)")


def _schedule_flags(g: argparse._ArgumentGroup) -> None:
    """The recipe's length, batch, learning-rate schedule and optimizer."""
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int, help="global batch, split evenly over the ranks")
    g.add_argument("--lr", type=float, help="initial learning rate")
    g.add_argument("--lr-milestones", type=_float_tuple, help="comma-separated fractions of the run where lr drops (CIFAR: 0.5,0.75)")
    g.add_argument("--lr-step", type=int,
                   help="drop lr every N epochs instead of at milestones (ImageNet, as the original: 75 for 300 epochs, else 30)")
    g.add_argument("--lr-gamma", type=float)
    g.add_argument("--lr-schedule", choices=["step", "cosine"], help="step: x--lr-gamma at milestones or every --lr-step epochs (the "
                                                                      "original's); cosine: per step, a linear warm-up then a cosine to "
                                                                      "zero over the run (finetune's)")
    g.add_argument("--warmup", type=float, metavar="F", help="the fraction of the run's steps over which the rate rises linearly "
                                                             "to the schedule's (finetune: 0.1; the original recipes: 0)")
    g.add_argument("--momentum", type=float)
    g.add_argument("--weight-decay", type=float)


def _mixing_flags(g: argparse._ArgumentGroup) -> None:
    """The recipe's mixing (CutMix, Mixup, Cutout and their feature-level forms) and regularisation."""
    g.add_argument("--mix", choices=["cutmix", "mixup", "cutout", "none", "cutout+mixup"])
    g.add_argument("--mix-prob", type=float, help="probability that a batch is mixed (cutout: per image)")
    g.add_argument("--beta", type=float, help="Beta(beta, beta) distribution of lam")
    g.add_argument("--mix-layers", choices=["input", "random"],
                   help="'random': mix the input or one stage's features (Feature CutMix, Manifold Mixup)")
    g.add_argument("--cutout-size", type=int)
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--dropblock", type=float, help="DropBlock drop probability on the last two stages (0: off)")
    g.add_argument("--dropblock-size", type=int)


def _finetune_flags(g: argparse._ArgumentGroup) -> None:
    """The crop size, and how much of the network trains (for fine-tuning: a slower backbone, frozen levels)."""
    g.add_argument("--input-size", type=int, metavar="PIXELS", help="train and evaluate at this crop size (default: the --init model's, "
                                                                     "else the dataset's; small images are not blown up to 224)")
    g.add_argument("--backbone-lr-mult", type=float, metavar="X", help="learning rate multiplier of every layer but the classifier "
                                                                      "(finetune: 0.1)")
    g.add_argument("--freeze-stages", type=int, metavar="K", help="freeze the first K feature levels, the stem being the first "
                                                                  "(no gradients, BatchNorm statistics kept); default 0")
    g.add_argument("--head-init", choices=["probe", "random"], help="the new head of an --init run: probe (finetune's default) starts "
                                                                    "it from a linear probe on the training images' features, random "
                                                                    "from torch's initialisation")
    g.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None,
                   help="random horizontal flips in training (finetune: off, since a mirrored digit, letter or arrow is another "
                        "class; the original recipes: on)")
    g.add_argument("--crop", choices=CROPS, help="training crop of an image folder or CIFAR: pad (pad 4 pixels, crop at random), "
                                                 "resized (a random-resized crop), none (resize and centre-crop as in evaluation); "
                                                 "default: pad for small inputs, resized for the ImageNet recipe, none for finetune")


def _run_flags(g: argparse._ArgumentGroup) -> None:
    """How the run runs: its files, resuming, seed, device, numerics, logging and export."""
    g.add_argument("--output", default="runs/train", help="folder for checkpoint.pt, metrics.jsonl and export/ (default runs/train)")
    g.add_argument("--force", action="store_true", help="start a new run in an --output that holds another run's files, "
                                                         "removing them first (without it such a folder is refused)")
    g.add_argument("--resume", help="checkpoint file or output folder to continue; what is trained comes from the checkpoint, and "
                                    "--epochs (to extend a run), --output, --workers, --device and other run flags may change")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda")
    g.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto", help="auto: bf16 autocast on cuda, fp32 on cpu")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="default: on for cuda")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help=f"torch.compile the training step (default: on for cuda runs of at least {COMPILE_MIN_STEPS} steps, "
                        "off on cpu and for shorter runs)")
    g.add_argument("--deterministic", action="store_true", help="deterministic algorithms (exact resume on GPUs; slower)")
    g.add_argument("--log-interval", type=int, default=20, help="steps between metric reductions, log lines and (multi-rank) interruption checks")
    g.add_argument("--no-export", dest="export", action="store_false", default=True, help="skip writing OUTPUT/export/")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--dry-run", action="store_true", help="print the resolved run (model, recipe, learning rate of every epoch, "
                                                          "output files) as JSON and exit without reading data or writing files")


def model_spec(model: str | None, depth: int | None, alpha: float | None, bottleneck: bool, dataset: str) -> ModelSpec:
    """Resolve ``--model`` (with ``--depth``/``--alpha``) to a family and its arguments."""
    if model in ("pyramidnet", "resnet"):
        imagenet = data_config(dataset).key == "imagenet"  # ImageNet and ImageFolder trees take the ImageNet layout
        if depth is None or (model == "pyramidnet" and alpha is None):
            raise InvalidArgumentError(f"--model {model} needs --depth{' and --alpha' if model == 'pyramidnet' else ''}.")
        if model == "pyramidnet" and not (math.isfinite(cast(float, alpha)) and cast(float, alpha) > 0):
            raise InvalidArgumentError(f"--alpha is how much wider the network grows, so it must be a positive number, not {alpha}.")
        if model == "resnet" and imagenet:
            if depth not in _RESNET_DEPTHS:
                raise InvalidArgumentError(f"--model resnet on {dataset} takes --depth {', '.join(map(str, _RESNET_DEPTHS))}, not {depth}.")
            layers, bottleneck = _RESNET_DEPTHS[depth]
            return ModelSpec("resnet", {"layers": layers, "bottleneck": bottleneck}, None, f"resnet{depth}")
        if model == "resnet":
            from ..models.resnet import cifar_resnet_blocks

            # The original's CIFAR ResNet: 9n+2 with bottlenecks (its train.py's default), 6n+2 with --no-bottleneck.
            # The original takes n = int((depth - 2) / 9 or 6) and so silently builds another depth; that is refused here.
            if cifar_resnet_blocks(depth, bottleneck) is None:
                given, other = (("9n+2 with bottlenecks (e.g. 164)", "6n+2 with --no-bottleneck (e.g. 110)") if bottleneck
                                else ("6n+2 with --no-bottleneck (e.g. 110)", "9n+2 without it (e.g. 164)"))
                raise InvalidArgumentError(f"--model resnet on {dataset} takes depth {given} or {other}, not {depth}.")
            return ModelSpec("cifar_resnet", {"depth": depth, "bottleneck": bottleneck}, None,
                             f"resnet{depth}_cifar" + ("" if bottleneck else "_basic"))
        alpha = cast(float, alpha)  # a pyramidnet without --alpha was refused above
        alpha_value = int(alpha) if float(alpha).is_integer() else alpha
        args = {"depth": depth, "alpha": alpha_value, "bottleneck": bottleneck, "imagenet": imagenet}
        return ModelSpec("pyramidnet", args, None, f"pyramidnet{depth}_a{alpha_value}" + ("" if bottleneck else "_basic"))
    arch = model if model in ARCHITECTURES else get_entry(cast(str, model)).arch
    spec = ARCHITECTURES[arch]
    return ModelSpec(spec.family, dict(spec.args), arch, arch)


def resolve(args: argparse.Namespace) -> tuple[Recipe, ModelSpec, str, str]:
    """The recipe, the model, the run's name and its method (registry spelling) from parsed flags."""
    if args.init is not None and not args.init.strip():
        raise InvalidArgumentError("--init needs a registry name, an exported folder or a weights file, not an empty string.")
    if args.recipe is None and args.model is None and args.init is None:
        raise InvalidArgumentError("Pass --recipe NAME (e.g. pyramidnet200_a240.cutmix_c100), --model ARCH or --init NAME to say what "
                                   "to train.")
    init = resolve_init(args.init, args.model) if args.init else None
    method = None
    arch = None
    if (args.recipe or (FINETUNE if init else None)) == FINETUNE:
        dataset = args.dataset or FOLDER
        size = args.input_size or input_source(dataset, init, args.model).input_size[-1]
        recipe = finetune_recipe(dataset, args.epochs, size)
        if init is None and args.model is None:
            raise InvalidArgumentError("--recipe finetune needs --init NAME|FOLDER|FILE (or --model ARCH for the same recipe from scratch).")
    elif args.recipe is not None:
        recipe, arch = recipe_for(args.recipe, args.epochs)
        method = get_entry(args.recipe).method
        if args.dataset is not None and args.dataset != recipe.dataset:
            recipe = base_recipe(args.dataset, args.epochs).replace(**method_settings(method))
    else:
        dataset = args.dataset
        if dataset is None:
            try:
                dataset = get_entry(args.model).data.key
            except UnknownModelError:
                dataset = "cifar100"
        recipe = base_recipe(dataset, args.epochs)
    overrides = {k: getattr(args, k) for k in RECIPE_FIELDS if k not in ("dataset", "transforms") and getattr(args, k, None) is not None}
    if args.lr_step is not None and args.lr_milestones is None:
        overrides["lr_milestones"] = ()
    if args.lr_milestones is not None and args.lr_step is None:
        overrides["lr_step"] = 0
    drops = args.lr_milestones is not None or args.lr_step is not None
    if drops and getattr(args, "lr_schedule", None) == "cosine":
        raise InvalidArgumentError("--lr-milestones and --lr-step place the drops of --lr-schedule step; the cosine schedule has none.")
    if drops:
        overrides["lr_schedule"] = "step"  # drops asked for: the step schedule, whatever the recipe's
    recipe = recipe.replace(**overrides)
    spec = init_spec(init, args) if init else model_spec(args.model or arch, args.depth, args.alpha, args.bottleneck, recipe.dataset)
    if args.mix is not None or method is None:
        method = {"none": "baseline", "cutout+mixup": "cutout_mixup"}.get(recipe.mix, recipe.mix)
        if recipe.mix_layers == "random" and recipe.mix in ("cutmix", "mixup"):
            method = FEATURE_MIX_MODES[recipe.mix == "mixup"]
    if init is not None:
        name = f"{spec.label}.{init.tag or method}_ft_{run_suffix(recipe.dataset)}"
    elif args.recipe and args.recipe != FINETUNE and args.model is None and args.mix is None:
        name = args.recipe
    else:
        name = f"{spec.label}.{method}_{run_suffix(recipe.dataset)}"
    check_recipe(recipe)
    check_run_flags(args)
    if args.decode == "gpu" and (not recipe.hflip or recipe.crop not in ("", "resized")):
        raise InvalidArgumentError("--decode gpu augments as the ImageNet recipe does (random-resized crops and flips): add --hflip "
                                   "--crop resized, or decode on the cpu.")
    check_model(spec, recipe.dataset, recipe.freeze_stages)
    return recipe, spec, name, method


def init_spec(init: Init, args: argparse.Namespace) -> ModelSpec:
    """The network of ``--init``: the init's own; ``--model`` may only repeat it (it names a weights file's architecture)."""
    cfg = init.config
    label = cfg.architecture or cfg.name.partition(".")[0]
    if init.kind != "file" and args.model is not None and args.model not in (label, cfg.name):
        raise InvalidArgumentError(f"--model {args.model} differs from the {label} that --init {init.source} holds; drop --model "
                                   "(with --init the network is the init's).")
    if args.depth is not None or args.alpha is not None or not args.bottleneck:
        raise InvalidArgumentError("--depth, --alpha and --no-bottleneck shape a new network; with --init the network is the init's.")
    return ModelSpec(cfg.family, dict(cfg.arch_args), cfg.architecture, label)


def input_source(dataset: str, init: Init | None, model: str | None) -> ModelConfig | DataConfig:
    """Whose input settings a run takes: the init model's (what its weights expect); on a folder, a registry model's own
    dataset's (a 32-pixel CIFAR-layout network is not fed 224-pixel crops); else the dataset's."""
    if init is not None:
        return init.config
    if dataset == FOLDER and model is not None and is_registry_name(model):
        return get_entry(model).data
    return data_config(dataset)


def run_inputs(recipe: Recipe, init: Init | None, model: str | None = None) -> Inputs:
    """The inputs a run trains and evaluates on (:func:`input_source`'s), at ``recipe.input_size`` when given, resized for
    evaluation in the same proportion as the source's own crop."""
    base = input_source(recipe.dataset, init, model)
    size = recipe.input_size or base.input_size[-1]
    return Inputs(size, tuple(base.mean), tuple(base.std), round(size / base.crop_pct), base.interpolation, base.crop_pct)


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest parent that exists (as a file, folder or link)."""
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def check_output(output: str | os.PathLike) -> None:
    """Refuse an ``--output`` this process cannot write (read-only, not its own, under a file), in one sentence, before
    any data is read.

    Nothing is left behind: an existing folder gets a probe file, removed at once; a folder still to be made is probed
    by making and removing a temporary folder in its nearest existing parent, where it will be made.
    """
    path = Path(output)
    existing = _nearest_existing(path)
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{existing} is not a folder")
        if existing == path:
            fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=path)
            os.close(fd)
            os.unlink(probe)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".write-check.", dir=existing))
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise TrainingError(f"--output {output} cannot be written ({reason}): choose a folder this user can write.") from None


def _size(n: int) -> str:
    return f"{n} bytes" if n < 10**6 else f"{n / 10**6:.1f} MB" if n < 10**9 else f"{n / 10**9:.1f} GB"


def check_free_space(output: str | os.PathLike, needed: int) -> None:
    """Refuse an ``--output`` whose disk has fewer than ``needed`` bytes free (what the run's first checkpoint and best
    weights take), in one sentence, before the first step: a full disk would otherwise end the first epoch."""
    free = shutil.disk_usage(_nearest_existing(Path(output))).free
    if free < needed:
        raise TrainingError(f"--output {output} cannot hold this run: its disk has {_size(free)} free and the run needs {_size(needed)} "
                            "for its checkpoint and best weights; free some space or choose another --output.")


def check_run_flags(args: argparse.Namespace) -> None:
    """Refuse run flags that cannot work, each with one sentence, before anything starts."""
    problems = [
        (args.workers < 0, f"--workers must be 0 or more, not {args.workers}"),
        (args.log_interval < 1, f"--log-interval must be at least 1 step, not {args.log_interval}"),
        (args.synthetic_size < 0, f"--synthetic-size must be 0 (the default size) or more, not {args.synthetic_size}"),
        (args.val_split is not None and not 0 < args.val_split < 1, f"--val-split is a fraction between 0 and 1, not {args.val_split}"),
        (args.val_split is not None and args.decode == "gpu", "--val-split reads a single folder with --decode cpu; split it into "
                                                               "train/ and val/ for --decode gpu"),
    ]
    for bad, message in problems:
        if bad:
            raise InvalidArgumentError(message + ".")
    if args.device != "auto":
        try:
            kind = torch.device(args.device).type
        except RuntimeError:
            raise InvalidArgumentError(f"--device {args.device!r} is not a torch device; use auto, cpu, cuda or cuda:N.") from None
        if kind not in ("cpu", "cuda"):
            raise InvalidArgumentError(f"--device {args.device!r} is not one the trainer runs on; use auto, cpu, cuda or cuda:N.")


def dataset_classes(dataset: str) -> int | None:
    """Classes of a trainer dataset known before its data is read (None for a folder, which its class folders decide)."""
    return None if dataset == FOLDER else data_config(dataset).num_classes


def check_model(spec: ModelSpec, dataset: str, freeze_stages: int = 0) -> int:
    """Build the model on the meta device (no memory, no data) and return its parameter count; a shape it cannot
    take, or more levels to freeze than it has, is one sentence, before any data loader starts. A folder dataset's head
    is left out of the count."""
    try:
        model = build_on_meta(spec.family, spec.args, dataset_classes(dataset) or 0)
    except (ValueError, TypeError, KeyError, RuntimeError, ZeroDivisionError) as e:
        reason = str(e).rstrip(".") or type(e).__name__
        raise InvalidArgumentError(f"The model {spec.label} ({spec.family} {spec.args}) cannot be built: {reason}.") from None
    levels = len(level_children(model, spec.family))
    if freeze_stages > levels:
        raise InvalidArgumentError(f"--freeze-stages {freeze_stages} is more than the {levels} feature levels of {spec.label} "
                                   f"(the stem and {levels - 1} stages); freezing all of them leaves only the classifier to train.")
    return sum(p.numel() for p in model.parameters())


def check_recipe(recipe: Recipe) -> None:
    """Refuse values that cannot train, each with one sentence (a NaN or an infinity is refused everywhere)."""
    floats = {"--lr": recipe.lr, "--backbone-lr-mult": recipe.backbone_lr_mult,
              "--lr-gamma": recipe.lr_gamma, "--momentum": recipe.momentum, "--weight-decay": recipe.weight_decay,
              "--beta": recipe.beta, "--mix-prob": recipe.mix_prob, "--label-smoothing": recipe.label_smoothing,
              "--dropblock": recipe.dropblock, "--warmup": recipe.warmup, **{f"--lr-milestones ({m})": m for m in recipe.lr_milestones}}
    problems = [(not math.isfinite(value), f"{flag} must be a finite number, not {value}") for flag, value in floats.items()]
    problems += [
        (recipe.epochs < 1, f"--epochs must be at least 1, not {recipe.epochs}"),
        (recipe.batch_size < 1, f"--batch-size must be at least 1, not {recipe.batch_size}"),
        (recipe.lr <= 0, f"--lr must be positive, not {recipe.lr}"),
        (not 0 < recipe.lr_gamma <= 1, f"--lr-gamma must be in (0, 1], not {recipe.lr_gamma}"),
        (recipe.lr_step < 0, f"--lr-step must be 0 or more epochs, not {recipe.lr_step}"),
        (not 0 <= recipe.momentum < 1, f"--momentum must be in [0, 1), not {recipe.momentum}"),
        (recipe.weight_decay < 0, f"--weight-decay must be non-negative, not {recipe.weight_decay}"),
        (not 0 <= recipe.mix_prob <= 1, f"--mix-prob must be between 0 and 1, not {recipe.mix_prob}"),
        (recipe.beta <= 0 and recipe.mix != "none", f"--beta must be positive for {recipe.mix}, not {recipe.beta}"),
        (recipe.cutout_size < 1, f"--cutout-size must be at least 1 pixel, not {recipe.cutout_size}"),
        (not 0 <= recipe.label_smoothing < 1, f"--label-smoothing must be in [0, 1), not {recipe.label_smoothing}"),
        (not 0 <= recipe.dropblock < 1, f"--dropblock must be in [0, 1), not {recipe.dropblock}"),
        (recipe.dropblock > 0 and recipe.dropblock_size < 1, f"--dropblock-size must be at least 1, not {recipe.dropblock_size}"),
        (recipe.backbone_lr_mult <= 0, f"--backbone-lr-mult must be positive (freeze layers with --freeze-stages), not {recipe.backbone_lr_mult}"),
        (recipe.freeze_stages < 0, f"--freeze-stages must be 0 or more, not {recipe.freeze_stages}"),
        (recipe.input_size != 0 and recipe.input_size < 8, f"--input-size must be at least 8 pixels, not {recipe.input_size}"),
        (recipe.input_size > MAX_INPUT_SIZE, f"--input-size must be at most {MAX_INPUT_SIZE} pixels (a batch of larger crops would not "
                                             f"fit in memory), not {recipe.input_size}"),
        (recipe.dataset == "shapes" and recipe.input_size not in (0, 32), f"Shapes-10 images are 32x32, so --input-size takes 32 on "
                                                                           f"--dataset shapes, not {recipe.input_size}"),
        (any(not 0 < m < 1 for m in recipe.lr_milestones), f"--lr-milestones are fractions of the run in (0, 1), not {recipe.lr_milestones}"),
        (not 0 <= recipe.warmup < 1, f"--warmup is a fraction of the run's steps in [0, 1), not {recipe.warmup}"),
        (recipe.transforms == "tensor" and recipe.crop not in ("", "none"), f"--crop {recipe.crop} crops image folders and CIFAR; "
                                                                             f"{recipe.dataset}'s generated images are not cropped"),
    ]
    for bad, message in problems:
        if bad:
            raise InvalidArgumentError(message + ".")


def describe_run(args: argparse.Namespace, recipe: Recipe, spec: ModelSpec, name: str, method: str) -> dict[str, Any]:
    """The resolved run as plain data (what ``--dry-run`` prints): the model, every recipe value, the learning rate
    of every epoch, how it runs and the files it writes."""
    output = Path(args.output)
    classes = dataset_classes(recipe.dataset)
    return {
        "name": name,
        "method": method,
        "model": {"label": spec.label, "family": spec.family, "args": spec.args, "architecture": spec.architecture,
                  "init": args.init, "num_classes": classes, "parameters": check_model(spec, recipe.dataset),
                  "parameters_counted": "with the classifier" if classes else "without the classifier (a folder's classes are read with its data)"},
        "recipe": dataclasses.asdict(recipe),
        "lr_per_epoch": [recipe.lr_at(epoch) for epoch in range(recipe.epochs)],
        "data": {"dataset": recipe.dataset, "data": args.data, "val_split": args.val_split, "workers": args.workers, "decode": args.decode,
                 "inputs": dataclasses.asdict(run_inputs(recipe, resolve_init(args.init, args.model) if args.init else None, args.model))},
        "run": {"seed": args.seed, "device": args.device, "precision": args.precision, "channels_last": args.channels_last,
                "compile": args.compile, "deterministic": args.deterministic, "log_interval": args.log_interval,
                "world_size": int(os.environ.get("WORLD_SIZE", "1")), "resume": args.resume},
        "outputs": {"checkpoint": str(output / CHECKPOINT_NAME), "metrics": str(output / METRICS),
                    "best_weights": str(output / BEST_WEIGHTS), "export": str(output / EXPORT_DIR) if args.export else None},
    }


def resumed_args(saved: dict[str, Any], given: argparse.Namespace) -> argparse.Namespace:
    """The run settings of a resumed run: the checkpoint's, with the run flags given now (``RESUMABLE_FLAGS``).

    Without ``--output`` the run continues in the checkpoint's folder. A flag that would change what is
    trained (model, dataset, recipe values, seed) is refused with one sentence naming it, rather than
    silently ignored: resuming continues the same training.
    """
    defaults = vars(train_parser().parse_args([]))
    merged = {**defaults, **saved, "resume": given.resume}  # defaults: flags added after the checkpoint was written
    resumed = Path(given.resume)
    merged["output"] = str(resumed if resumed.is_dir() else resumed.parent)  # the run continues where its checkpoint is
    for key, value in vars(given).items():
        if key in RESUMABLE_FLAGS and value != defaults.get(key):
            merged[key] = value
    run = resolve(argparse.Namespace(**merged))
    for key, value in vars(given).items():
        if key == "resume" or key in RESUMABLE_FLAGS or value == defaults.get(key) or value == merged.get(key):
            continue  # not given, given as its default, or the run's own value
        if key in RESOLVED_FLAGS and resolve(argparse.Namespace(**{**merged, key: value})) == run:
            continue  # spelled differently, resolves to the same training (--lr 0.25 on a 0.25 recipe)
        flag = {"bottleneck": "--no-bottleneck"}.get(key, "--" + key.replace("_", "-"))
        raise InvalidArgumentError(
            f"{flag} cannot change when resuming {given.resume} (the run trains with {merged.get(key)!r}, not {value!r}): "
            f"resuming continues the same training, so start a new run with another --output instead.")
    return argparse.Namespace(**merged)
