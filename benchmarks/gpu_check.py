"""Everything only a GPU can show, measured in one run: one JSON file plus a markdown table and verdict lines.

Sections (``--sections`` runs a subset, in this order):
  train_step    benchmarks/train_step.py's loops (original-style, timm-style, ours, ours without mixing, and with
                --compile ours under torch.compile) on ResNet-50: steady-state img/s and the ratios, and apart from
                them the compile time (the first compiled step less a steady one) and the steps that repay it; bf16
                autocast + channels_last on cuda, fp32 on cpu. CutMix's share of our step, as the difference with the unmixed step and as the
                mixer timed alone.
  decode        benchmarks/input_pipeline.py: PIL decoding in CPU workers against ``--decode gpu`` (nvjpeg + augmentation on
                the device), against the step rate of train_step (timed here when that section is not run).
  forward       the forward of every registry architecture (--quick: ResNet-50 and PyramidNet-20, one per family) with
                random weights: channels_last fp32 and bf16 autocast + channels_last logits against the fp32
                reference (TF32 off), max abs diff and its ratio to the largest logit within a tolerance.
  eval          the embedded Shapes-10 models (bundled weights): fp32 against bf16 autocast + channels_last on the
                generated test split (top-1 error of each, predictions changed, max abs logit diff).
  decode_train  the trainer end to end with ``--decode gpu`` on a generated ImageFolder of JPEGs: one short epoch,
                validation, export, and the exported folder loaded back (on cpu the same device pipeline runs with
                the trainer's cuda-only guard lifted).
  ddp           a one-rank process group (NCCL on cuda, gloo on cpu) in a spawned process running the trainer's
                step under DistributedDataParallel; whether it finished and its wall time.

Every section runs on its own: an exception is recorded as that section's error (the others still run) and the
JSON is rewritten after each section, so an interrupted run keeps what it measured. Exit code 1 when a section
raised. The full sizes are meant for a GPU (about 3 minutes on an H200 with torch.compile); ``--quick`` shrinks them
for a CPU check of the whole script (under 2 minutes on 2 cores; the tests run it).

    PYTHONPATH=. python benchmarks/gpu_check.py --out gpu_check.json      # cuda when available, torch.compile on
    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu_check.json
    python benchmarks/gpu_check.py --sections forward,eval
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import multiprocessing
import os
import platform
import queue
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # cutmix_zoo without installing it; the sibling benchmarks

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402

import cutmix_zoo  # noqa: E402
from cutmix_zoo.models import build_model  # noqa: E402
from cutmix_zoo.registry import ARCHITECTURES, get_entry  # noqa: E402
from cutmix_zoo.shapes import Shapes  # noqa: E402
from cutmix_zoo.train import config, evaluation, loop, train_main  # noqa: E402
from cutmix_zoo.train.data import Augmented, TensorTransform, make_loader, training_data  # noqa: E402
from cutmix_zoo.train.mixing import BatchMixer  # noqa: E402

import input_pipeline as pipeline_bench  # noqa: E402
import train_step as step_bench  # noqa: E402

FP32_REL_TOL = 1e-3  # max abs logit diff / max abs fp32 logit: channels_last fp32 against contiguous fp32
BF16_REL_TOL = 0.05  # the same for bf16 (8-bit mantissa, rounding accumulated over the depth)
CHANGED_PREDICTIONS_TOL = 0.005  # fraction of the embedded models' test predictions bf16 may change
EMBEDDED = ("pyramidnet20_a48.cutmix_shapes", "pyramidnet20_a48.baseline_shapes")
TINY_PYRAMIDNET = ("--model", "pyramidnet", "--depth", "10", "--alpha", "12", "--no-bottleneck")

Scalar = float | int | bool | str | None
Figures = dict[str, Scalar | dict[str, Scalar]]


@dataclass(frozen=True)
class Sizes:
    """How much each section does."""

    step_batch: int
    image_size: int  # train_step's input size, and the ResNets' in the forward section
    steps: int
    warmup: int
    rounds: int
    decode_images: int
    decode_workers: int
    decode_batch: int
    forward_archs: tuple[str, ...]
    forward_batch: int
    eval_images: int  # 0: the whole Shapes-10 test split (2,000 images)
    eval_batch: int
    train_images: int
    train_batch: int
    train_workers: int
    train_model: tuple[str, ...]  # the trainer's model flags
    ddp_arch: str
    ddp_batch: int
    ddp_steps: int


WORKERS = min(8, os.cpu_count() or 1)
FULL = Sizes(step_batch=256, image_size=224, steps=20, warmup=5, rounds=2,
             decode_images=512, decode_workers=WORKERS, decode_batch=64,
             forward_archs=tuple(ARCHITECTURES), forward_batch=16, eval_images=0, eval_batch=500,
             train_images=128, train_batch=32, train_workers=WORKERS, train_model=("--model", "resnet50"),
             ddp_arch="resnet50", ddp_batch=64, ddp_steps=5)
QUICK = Sizes(step_batch=4, image_size=32, steps=1, warmup=1, rounds=1,
              decode_images=16, decode_workers=2, decode_batch=8,
              forward_archs=("resnet50", "pyramidnet20_a48"), forward_batch=2, eval_images=256, eval_batch=128,
              train_images=16, train_batch=4, train_workers=1, train_model=TINY_PYRAMIDNET,
              ddp_arch="pyramidnet20_a48", ddp_batch=4, ddp_steps=2)


@dataclass
class Context:
    device: torch.device
    sizes: Sizes
    compile: bool
    results: dict[str, dict[str, Any]]  # the sections run so far

    @property
    def gpu(self) -> bool:
        return self.device.type == "cuda"

    def precision(self) -> str:
        return "bf16" if self.gpu else "fp32"


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"


def _input(device: torch.device, batch: int, size: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator(device=device).manual_seed(0)
    return (torch.randn(batch, 3, size, size, device=device, generator=g),
            torch.randint(classes, (batch,), device=device, generator=g))


def _autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


@contextlib.contextmanager
def _exact_fp32() -> Iterator[None]:
    """True fp32 references: TF32 off for matmuls and cuDNN convolutions (where cuDNN's default is on)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def compare_logits(ref: torch.Tensor, out: torch.Tensor, tolerance: float) -> dict[str, Scalar]:
    """Max abs diff of ``out`` from the fp32 ``ref``, relative to ref's largest magnitude, and top-1 agreement."""
    diff = (out.float() - ref).abs().max().item()
    scale = ref.abs().max().item()
    rel = diff / scale if scale > 0 else math.inf
    return {"max_abs_diff": diff, "max_abs_logit": scale, "rel_diff": rel,
            "top1_agree": (out.float().argmax(1) == ref.argmax(1)).float().mean().item(),
            "tolerance": tolerance, "within": math.isfinite(rel) and rel <= tolerance}


# --- train_step -----------------------------------------------------------------------------------------------------

def section_train_step(ctx: Context) -> Figures:
    s, device, gpu = ctx.sizes, ctx.device, ctx.gpu
    if gpu:  # as benchmarks/train_step.py sets them
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    x, y = _input(device, s.step_batch, s.image_size, 1000)
    loops: dict[str, Callable[[], Callable[[], None]]] = {
        "original": lambda: step_bench.original_style(x, y, device),
        "timm": lambda: step_bench.timm_style(x, y, device, gpu),
        "ours": lambda: step_bench.ours(x, y, device, gpu, "cutmix", False),
        "ours, no mixing": lambda: step_bench.ours(x, y, device, gpu, "none", False),
    }
    if ctx.compile:
        loops["ours + torch.compile"] = lambda: step_bench.ours(x, y, device, gpu, "cutmix", True)
    prec = ctx.precision()
    figures: Figures = {
        "setup": f"ResNet-50, batch {s.step_batch}, {s.image_size}px, median of {s.rounds} rounds of {s.steps} steps "
                 f"after {s.warmup} warm-up",
        "loops": f"original: fp32, DataParallel, host CutMix, .item(); timm: {prec}, channels_last, Mixup batch; "
                 f"ours: {prec}, channels_last, device CutMix",
    }
    built: dict[str, Callable[[], None]] = {}
    first: dict[str, float] = {}
    for name, make in loops.items():
        try:
            step = make()
            start = time.perf_counter()
            step()  # the compiled step compiles here
            step_bench._sync(device)
            first[name] = time.perf_counter() - start
            for _ in range(s.warmup - 1):
                step()
            built[name] = step
        except Exception as error:  # timm not installed, or torch.compile failing, costs those rows only
            if name not in ("timm", "ours + torch.compile"):
                raise
            figures[name] = f"skipped: {_one_line(error)}"
    rounds = [{name: step_bench._time(step, s.steps, device) for name, step in built.items()} for _ in range(s.rounds)]
    seconds = {name: float(np.median([r[name] for r in rounds])) for name in built}
    for name, sec in seconds.items():
        row: dict[str, Scalar] = {"img_s": s.step_batch / sec, "ms_per_step": 1000 * sec,
                                  "vs_original": seconds["original"] / sec}
        if "timm" in seconds:
            row["vs_timm"] = seconds["timm"] / sec
        figures[name] = row
    if "ours + torch.compile" in seconds:  # the compile time apart from the steady-state rate above
        compiled, eager = seconds["ours + torch.compile"], seconds["ours"]
        figures["torch.compile s (first compiled step - a steady one)"] = compile_s = first["ours + torch.compile"] - compiled
        figures["compiled steps to repay the compile"] = compile_s / (eager - compiled) if eager > compiled else None
    ours, none = seconds["ours"], seconds["ours, no mixing"]
    figures["CutMix share of our step % (ours - no mixing)"] = 100 * (ours - none) / ours
    mixer = BatchMixer("cutmix", beta=1.0, prob=1.0, cutout_size=112, device=device, seed=0)
    inp = x.contiguous(memory_format=torch.channels_last)
    for _ in range(s.warmup):
        mixer(inp, y)
    alone = step_bench._time(lambda: mixer(inp, y), s.steps, device)
    figures["CutMix alone ms"] = 1000 * alone
    figures["CutMix alone % of our step"] = 100 * alone / ours
    return figures


# --- decode ---------------------------------------------------------------------------------------------------------

def section_decode(ctx: Context) -> Figures:
    s, device = ctx.sizes, ctx.device
    with tempfile.TemporaryDirectory() as tmp:
        pipeline_bench.write_jpegs(Path(tmp), s.decode_images)
        kib = sum(f.stat().st_size for f in Path(tmp, "train").rglob("*.jpg")) / s.decode_images / 1024
        cpu_one, cpu_all = pipeline_bench.cpu_rates(training_data("imagenet", tmp, "imagenet", seed=0),
                                                    s.decode_workers, s.decode_batch)
        encoded = training_data("imagenet", tmp, "imagenet", seed=0, decode="gpu")
        bytes_one = pipeline_bench.worker_rate(encoded.train, encoded.collate, s.decode_batch, min_s=0.3)
        dev_only, dev_all = pipeline_bench.gpu_rates(encoded, s.decode_workers, s.decode_batch, device)
    step_figures = ctx.results.get("train_step", {}).get("figures", {})
    if isinstance(step_figures.get("ours"), dict):
        step, source = step_figures["ours"]["img_s"], f"train_step section ({s.image_size}px)"
    else:
        step, source = pipeline_bench.step_rate(device, s.step_batch, s.steps, s.warmup), "timed here (224px)"
    shared = 1 / (1 / step + 1 / dev_only)  # the step and the device decode take turns on one device
    w = s.decode_workers
    return {
        "setup": f"{s.decode_images} JPEGs of 500x375 ({kib:.0f} KiB each), {os.cpu_count()} CPUs, loader batch {s.decode_batch}",
        "CPU decode+augment, 1 worker img/s": cpu_one,
        f"CPU decode+augment, {w} workers img/s": cpu_all,
        "bytes+parameters (--decode gpu workers), 1 worker img/s": bytes_one,
        "bytes path / PIL path per core (x)": bytes_one / cpu_one,
        f"device decode+augment on {device.type}, device only img/s": dev_only,
        f"device decode+augment on {device.type}, {w} workers end to end img/s": dev_all,
        "train step img/s (ours, ResNet-50, CutMix)": step,
        "train step source": source,
        "train step + device decode sharing the device img/s": shared,
        "decode-bound with CPU decoding": cpu_all < step,
        "step / CPU decode (x)": step / cpu_all,
        "CPU cores needed to keep up": step / cpu_one,
        "--decode gpu with the step img/s": min(dev_all, shared),
    }


# --- forward --------------------------------------------------------------------------------------------------------

def section_forward(ctx: Context) -> Figures:
    figures: Figures = {}
    with _exact_fp32(), torch.no_grad():
        for arch in ctx.sizes.forward_archs:
            spec, entry = ARCHITECTURES[arch], get_entry(arch)
            size = entry.data.input_size[-1] if spec.family == "pyramidnet" else ctx.sizes.image_size
            torch.manual_seed(0)
            model = build_model(spec.family, spec.args, entry.num_classes).to(ctx.device).eval()
            x, _ = _input(ctx.device, ctx.sizes.forward_batch, size, entry.num_classes)
            ref = model(x)
            model.to(memory_format=torch.channels_last)
            x_cl = x.contiguous(memory_format=torch.channels_last)
            figures[f"{arch} ({size}px), fp32 channels_last"] = compare_logits(ref, model(x_cl), FP32_REL_TOL)
            with _autocast(ctx.device):
                figures[f"{arch} ({size}px), bf16 autocast + channels_last"] = compare_logits(ref, model(x_cl), BF16_REL_TOL)
    return figures


# --- eval -----------------------------------------------------------------------------------------------------------

def _logits(model: nn.Module, loader: Any, device: torch.device, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """All logits (fp32 on the host) and targets of a loader: fp32 contiguous, or bf16 autocast + channels_last."""
    outs, targets = [], []
    for x, y in loader:
        x = x.to(device)
        if bf16:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(device, bf16):
            outs.append(model(x).float().cpu())
        targets.append(y)
    return torch.cat(outs), torch.cat(targets)


def section_eval(ctx: Context) -> Figures:
    shapes = Shapes("test")
    n = ctx.sizes.eval_images or len(shapes)
    figures: Figures = {"images": f"{n} of the {len(shapes)} Shapes-10 test images"}
    with _exact_fp32(), torch.no_grad():
        for name in EMBEDDED:
            model = cutmix_zoo.load(name, device=ctx.device)
            cfg = model.pretrained_cfg
            data = Augmented(shapes, TensorTransform(tuple(cfg["mean"]), tuple(cfg["std"]), flip=False), seed=0)
            subset = torch.utils.data.Subset(data, range(n))
            loader = make_loader(subset, ctx.sizes.eval_batch, torch.utils.data.SequentialSampler(subset), 0, False,
                                 drop_last=False)
            ref, y = _logits(model, loader, ctx.device, bf16=False)
            model.to(memory_format=torch.channels_last)
            out, _ = _logits(model, loader, ctx.device, bf16=True)
            row = compare_logits(ref, out, BF16_REL_TOL)
            changed = int((ref.argmax(1) != out.argmax(1)).sum())
            row.update({"fp32_top1_err": 100 * evaluation.topk_errors(ref, y)[0].item() / n,
                        "bf16_top1_err": 100 * evaluation.topk_errors(out, y)[0].item() / n,
                        "registry_top1_err": get_entry(name).top1_err if n == len(shapes) else None,
                        "changed_predictions": changed,
                        "within": bool(row["within"]) and changed <= CHANGED_PREDICTIONS_TOL * n})
            figures[name] = row
    return figures


# --- decode_train ---------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _device_decode_allowed(device: torch.device) -> Iterator[None]:
    """``--decode gpu`` insists on cuda; on a CPU the same device pipeline runs with that guard lifted."""
    guard = loop.check_gpu_decode
    if device.type != "cuda":
        loop.check_gpu_decode = lambda *args: None
    try:
        yield
    finally:
        loop.check_gpu_decode = guard


def section_decode_train(ctx: Context) -> Figures:
    s = ctx.sizes
    with tempfile.TemporaryDirectory() as tmp:
        data, output = Path(tmp, "data"), Path(tmp, "run")
        pipeline_bench.write_jpegs(data, s.train_images)
        argv = [*s.train_model, "--dataset", "folder", "--data", str(data), "--decode", "gpu", "--device", ctx.device.type,
                "--epochs", "1", "--batch-size", str(s.train_batch), "--workers", str(s.train_workers), "--quiet",
                "--output", str(output)]
        start = time.perf_counter()
        with _device_decode_allowed(ctx.device):
            code = train_main(argv)
        wall = time.perf_counter() - start
        records = [json.loads(line) for line in (output / config.METRICS).read_text().splitlines()]
        (epoch,) = [r for r in records if r["event"] == "epoch"]
        exported = cutmix_zoo.load(str(output / config.EXPORT_DIR))
    return {
        "command": "cutmix-zoo train " + " ".join(a if a not in (str(data), str(output)) else "DIR" for a in argv),
        "finished": code == 0,
        "wall s (JPEGs written, one epoch, validation, export)": wall,
        "steps": s.train_images // s.train_batch,
        "train img/s (one short epoch, warm-up included)": epoch["images_per_s"],
        "train loss": epoch["train_loss"],
        "val top-1 err %": epoch["val_top1_err"],
        "export loads back": sum(p.numel() for p in exported.parameters()) > 0,
    }


# --- ddp ------------------------------------------------------------------------------------------------------------

def _ddp_rank(store: str, device_type: str, arch: str, batch: int, steps: int, results: Any) -> None:
    """Rank 0 of a one-rank process group: the trainer's step under DistributedDataParallel, reported on ``results``."""
    import torch.distributed as dist

    try:
        cuda = device_type == "cuda"
        device = torch.device("cuda", 0) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(device)
        backend = "nccl" if cuda else "gloo"
        start = time.perf_counter()
        dist.init_process_group(backend, init_method=f"file://{store}", rank=0, world_size=1)
        init_s = time.perf_counter() - start
        spec, entry = ARCHITECTURES[arch], get_entry(arch)
        torch.manual_seed(0)
        model = build_model(spec.family, spec.args, entry.num_classes).to(device, memory_format=torch.channels_last)
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[0] if cuda else None)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True)
        mixer = BatchMixer("cutmix", beta=1.0, prob=1.0, cutout_size=16, device=device, seed=0)
        x, y = _input(device, batch, entry.data.input_size[-1], entry.num_classes)
        x = x.contiguous(memory_format=torch.channels_last)
        metrics = torch.zeros(4, device=device)
        start = time.perf_counter()
        for _ in range(steps):
            loop.train_step(ddp, optimizer, mixer, x, y, lambda: _autocast(device, cuda), metrics)
        dist.all_reduce(metrics)
        steps_s = time.perf_counter() - start
        loss_sum, _, _, images = metrics.tolist()
        dist.destroy_process_group()
        results.put({"backend": backend, "world_size": 1, "model": arch, "batch": batch, "steps": steps,
                     "nccl_version": str(torch.cuda.nccl.version()) if cuda else None,
                     "init_process_group_s": init_s, "steps_s": steps_s, "mean_loss": loss_sum / images,
                     "loss_finite": math.isfinite(loss_sum)})
    except BaseException as error:  # reported to the parent, which records it as the section's error
        results.put({"error": _one_line(error), "traceback": traceback.format_exc()})


def section_ddp(ctx: Context, timeout: float = 180.0) -> Figures:
    spawn = multiprocessing.get_context("spawn")  # a fresh CUDA context in the rank, as torchrun would give
    results = spawn.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        rank = spawn.Process(target=_ddp_rank, args=(os.path.join(tmp, "store"), ctx.device.type, ctx.sizes.ddp_arch,
                                                     ctx.sizes.ddp_batch, ctx.sizes.ddp_steps, results))
        rank.start()
        while True:
            try:
                report = results.get(timeout=1.0)
                break
            except queue.Empty:
                if not rank.is_alive():
                    raise RuntimeError(f"the rank exited with code {rank.exitcode} without reporting") from None
                if time.perf_counter() - start > timeout:
                    rank.kill()
                    raise TimeoutError(f"the rank did not finish in {timeout:.0f} s") from None
        rank.join(30)
        wall = time.perf_counter() - start
    if "error" in report:
        raise RuntimeError(f"{report['error']}\n{report['traceback']}")
    return {"finished": rank.exitcode == 0, "wall s (spawn, init, steps)": wall, **report}


SECTIONS: dict[str, Callable[[Context], Figures]] = {
    "train_step": section_train_step,
    "decode": section_decode,
    "forward": section_forward,
    "eval": section_eval,
    "decode_train": section_decode_train,
    "ddp": section_ddp,
}


# --- report ---------------------------------------------------------------------------------------------------------

def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_format(v)}" for k, v in value.items())
    return "-" if value is None else str(value)


def table(results: dict[str, dict[str, Any]]) -> str:
    """The markdown table (section | figure | value) of every section's figures, wall time and error."""
    lines = ["| section | figure | value |", "|---|---|---|"]
    for name, result in results.items():
        rows = [*result["figures"].items(), ("section wall s", result["wall_s"])]
        if result["error"]:
            rows.append(("error", result["error"]))
        lines += [f"| {name} | {figure} | {_format(value).replace('|', '/')} |" for figure, value in rows]
    return "\n".join(lines)


def verdicts(results: dict[str, dict[str, Any]], device: torch.device) -> list[str]:
    """One line per target: the H200 targets of the train step, the decode verdict, agreement and completion checks."""
    lines = []

    def check(text: str, ok: bool) -> None:
        lines.append(f"{'PASS' if ok else 'FAIL'}: {text}")

    step = results.get("train_step", {}).get("figures", {})
    note = "" if device.type == "cuda" else " (targets for an H200-class GPU; on cpu for information)"
    for loop_name in ("ours", "ours + torch.compile"):
        row = step.get(loop_name)
        if isinstance(row, dict):
            check(f"{loop_name} vs original {row['vs_original']:.2f}x >= 3x{note}", row["vs_original"] >= 3)
            if "vs_timm" in row:
                check(f"{loop_name} vs timm {row['vs_timm']:.2f}x >= 1.1x{note}", row["vs_timm"] >= 1.1)
    compile_s = step.get("torch.compile s (first compiled step - a steady one)")
    if compile_s is not None:
        repay = step["compiled steps to repay the compile"]
        lines.append(f"INFO: torch.compile took {compile_s:.1f} s; the compiled step repays it after "
                     f"{'never (no faster)' if repay is None else f'{repay:.0f} steps'} (the trainer compiles cuda runs "
                     f"of at least {config.COMPILE_MIN_STEPS} steps by default)")
    share = step.get("CutMix share of our step % (ours - no mixing)")
    if share is not None:
        check(f"CutMix {share:.2f}% of our step <= 1% (alone: {step['CutMix alone % of our step']:.2f}%){note}", share <= 1)
    dec = results.get("decode", {}).get("figures", {})
    if dec:
        lines.append(f"INFO: {'decode-bound' if dec['decode-bound with CPU decoding'] else 'not decode-bound'} with CPU "
                     f"decoding (step / CPU decode {dec['step / CPU decode (x)']:.2f}x); --decode gpu keeps "
                     f"{dec['--decode gpu with the step img/s']:.1f} img/s with the step")
    for name in ("forward", "eval"):
        rows = {k: v for k, v in results.get(name, {}).get("figures", {}).items() if isinstance(v, dict)}
        if rows:
            worst = max(rows, key=lambda k: rows[k]["rel_diff"] / rows[k]["tolerance"])
            check(f"{name}: {len(rows)} comparisons within tolerance (worst: {worst}, rel diff "
                  f"{rows[worst]['rel_diff']:.2g} of {rows[worst]['tolerance']:g})", all(r["within"] for r in rows.values()))
    for name in ("decode_train", "ddp"):
        figures = results.get(name, {}).get("figures", {})
        if "finished" in figures:
            check(f"{name} finished", figures["finished"])
    for name, result in results.items():
        if result["error"]:
            check(f"{name} ran", False)
    return lines


def environment(device: torch.device) -> dict[str, Any]:
    gpu = device.type == "cuda"
    try:
        import timm
        timm_version: str | None = timm.__version__
    except ImportError:
        timm_version = None
    return {
        "device": torch.cuda.get_device_name(device) if gpu else platform.processor() or "cpu",
        "device_type": device.type,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm_version,
        "cuda": torch.version.cuda if gpu else None,
        "cudnn": torch.backends.cudnn.version() if gpu else None,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: cuda when available")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a check that every section runs (CPU, CI)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="also time our step under torch.compile (default: on for cuda without --quick)")
    p.add_argument("--out", default="gpu_check.json", help="the JSON file (default gpu_check.json)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    args = p.parse_args()
    chosen = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        p.error(f"unknown sections {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    sizes = QUICK if args.quick else FULL
    compile_model = args.compile if args.compile is not None else device.type == "cuda" and not args.quick
    ctx = Context(device, sizes, compile_model, {})
    report: dict[str, Any] = {**environment(device), "quick": args.quick, "compile": compile_model, "sizes": asdict(sizes),
                              "tolerances": {"fp32_rel": FP32_REL_TOL, "bf16_rel": BF16_REL_TOL,
                                             "changed_predictions": CHANGED_PREDICTIONS_TOL},
                              "sections": ctx.results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for name in [n for n in SECTIONS if n in chosen]:
        print(f"[gpu_check] {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            figures, error, trace = SECTIONS[name](ctx), None, None
        except Exception as exc:  # one failing section must not lose the others
            figures, error, trace = {}, _one_line(exc), traceback.format_exc()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        ctx.results[name] = {"figures": figures, "wall_s": time.perf_counter() - start, "error": error, "traceback": trace}
        print(f"[gpu_check] {name}: {'error: ' + error if error else 'done'} "
              f"({ctx.results[name]['wall_s']:.1f} s)", file=sys.stderr, flush=True)
        report["total_wall_s"] = time.perf_counter() - started
        out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    report["total_wall_s"] = time.perf_counter() - started
    report["verdicts"] = verdicts(ctx.results, device)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"gpu_check on {report['device']} (torch {report['torch']}, {report['date']}), "
          f"{report['total_wall_s']:.0f} s{', quick' if args.quick else ''}\n")
    print(table(ctx.results))
    print()
    print("\n".join(report["verdicts"]))
    print(f"\nwritten: {out}")
    return 1 if any(r["error"] for r in ctx.results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
