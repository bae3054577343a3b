"""What each part of the fine-tuning recipe buys: ``cutmix-zoo train --init`` on generated data of two kinds (Novel-Shapes,
and Glyphs, whose classes are one another's mirror images), for short and longer budgets, against the embedded CutMix
model's linear probe and against training from scratch.

Every variant is the ``finetune`` recipe with one part changed (or the old recipe: step schedule, random head, CutMix,
flip and pad-crop), run through the trainer as a user runs it; the figure is the last epoch's validation top-1 error
(no choice of epoch on the validation images), the mean and spread over seeds, each seed drawing its own data::

    python benchmarks/finetune_recipe.py                       # the table in docs/finetuning.md
    python benchmarks/finetune_recipe.py --kinds glyphs --variants recipe,old --seeds 1
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

CUTMIX, BASELINE = "pyramidnet20_a48.cutmix_shapes", "pyramidnet20_a48.baseline_shapes"
OLD = ["--lr-schedule", "step", "--lr-milestones", "0.5,0.75", "--mix", "cutmix", "--mix-prob", "0.5", "--hflip", "--crop", "pad",
       "--head-init", "random"]
# name -> (init, the flags changed from the finetune recipe)
VARIANTS: dict[str, tuple[str | None, list[str]]] = {
    "recipe": (CUTMIX, []),
    "baseline init": (BASELINE, []),
    "scratch": (None, ["--backbone-lr-mult", "1"]),
    "old recipe": (CUTMIX, OLD),
    "random head": (CUTMIX, ["--head-init", "random"]),
    "step schedule": (CUTMIX, ["--lr-schedule", "step", "--lr-milestones", "0.5", "--warmup", "0"]),
    "no warm-up": (CUTMIX, ["--warmup", "0"]),
    "cutmix 0.5": (CUTMIX, ["--mix", "cutmix", "--mix-prob", "0.5"]),
    "flip": (CUTMIX, ["--hflip"]),
    "pad-crop": (CUTMIX, ["--crop", "pad"]),
    "backbone x1": (CUTMIX, ["--backbone-lr-mult", "1"]),
    "backbone x0.01": (CUTMIX, ["--backbone-lr-mult", "0.01"]),
    "lr 0.03": (CUTMIX, ["--lr", "0.03"]),
    "lr 0.3": (CUTMIX, ["--lr", "0.3"]),
}
SHORT = {"recipe": "recipe", "baseline": "baseline init", "scratch": "scratch", "old": "old recipe"}


def finetune_error(data: Path, init: str | None, flags: list[str], epochs: int, seed: int, batch: int, out: Path) -> float:
    """The last epoch's validation top-1 error of one ``cutmix-zoo train`` run of the finetune recipe."""
    from cutmix_zoo.train import train_main

    start = ["--init", init] if init else ["--model", "pyramidnet20_a48", "--recipe", "finetune", "--input-size", "32"]
    argv = [*start, "--data", str(data), "--epochs", str(epochs), "--batch-size", str(batch), "--seed", str(seed), "--output", str(out),
            "--device", "cpu", "--workers", "0", "--quiet", "--no-export", *flags]
    with contextlib.redirect_stdout(io.StringIO()):
        if train_main(argv) != 0:
            raise SystemExit(f"the run {' '.join(argv)} failed")
    epochs_logged = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["event"] == "epoch"]
    return epochs_logged[-1]["val_top1_err"]


def probe_error(data: Path, model: str) -> float:
    """The linear probe's validation top-1 error of ``model`` on ``data`` (what ``cutmix-zoo transfer`` reports)."""
    import cutmix_zoo
    from cutmix_zoo.reports import transfer

    found = transfer.read_transfer_folder(data)
    with tempfile.TemporaryDirectory() as cache:
        x = transfer.extract_features({model: cutmix_zoo.load(model, num_classes=0)}, found.paths, found.root, cache)[model].features
    return transfer.linear_probe(x[found.train], found.labels[found.train], x[found.val], found.labels[found.val], len(found.classes)).top1_err


def _mean_sd(values: list[float]) -> str:
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kinds", default="novel,glyphs", help="novel and/or glyphs")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS (or recipe, baseline, scratch, old)")
    p.add_argument("--epochs", default="1,2,6")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--train-per-class", type=int, default=20)
    p.add_argument("--val-per-class", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()
    from cutmix_zoo.shapes import write_folder

    torch.set_num_threads(1)
    kinds, budgets = args.kinds.split(","), [int(e) for e in args.epochs.split(",")]
    names = [SHORT.get(v, v) for v in args.variants.split(",")]
    print(f"{args.train_per_class} training and {args.val_per_class} validation images a class, batch {args.batch_size}, "
          f"{args.seeds} seeds; last-epoch top-1 error %, mean ± sd over the seeds")
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folders = {(kind, seed): write_folder(Path(tmp) / f"{kind}{seed}", args.train_per_class, args.val_per_class, seed=seed,
                                              glyphs=kind == "glyphs") for kind in kinds for seed in range(args.seeds)}
        print(f"| {'variant':<16} | " + " | ".join(f"{kind} {e} ep" for kind in kinds for e in budgets) + " |")
        print("|" + "---|" * (1 + len(kinds) * len(budgets)))
        print(f"| {'probe (CutMix)':<16} | " + " | ".join(
            _mean_sd([probe_error(folders[kind, s], CUTMIX) for s in range(args.seeds)]) for kind in kinds for _ in budgets) + " |")
        for name in names:
            init, flags = VARIANTS[name]
            cells = []
            for kind in kinds:
                for epochs in budgets:
                    runs = Path(tmp) / "runs" / f"{name}-{kind}-{epochs}"
                    errors = [finetune_error(folders[kind, s], init, flags, epochs, s, args.batch_size, runs / str(s))
                              for s in range(args.seeds)]
                    cells.append(_mean_sd(errors))
            print(f"| {name:<16} | " + " | ".join(cells) + " |", flush=True)
    print(f"({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
