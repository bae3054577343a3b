"""``cutmix-zoo demo``: what a CutMix backbone buys, on the models that ship inside the package, offline, in under a minute on a CPU.

1. load the shipped CutMix model as a feature extractor and show its feature levels;
2. transfer: a linear probe on the pooled features of the CutMix backbone and of its baseline (trained alike without
   CutMix) on a Novel-Shapes draw, ten classes neither model saw (``cutmix-zoo transfer``'s functions): table and picture;
3. fine-tune the CutMix model with the trainer (``cutmix-zoo train --init``) on a Glyphs draw, ten arrow- and letter-like
   classes whose mirror images are one another (so its recipe does not flip), its validation error epoch by epoch, then
   reload its export and ``predict`` one validation image with class names;
4. fine-tune a Faster R-CNN on the CutMix backbone for a few seconds on generated scenes and score it (mAP);
5. say where everything was written and what to run next.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..errors import TrainingError
from .common import Subparsers
from .reporting import output_folder, write_report

if TYPE_CHECKING:
    from ..reports.transfer import TransferData

NAME = "demo"
HELP = "what a CutMix backbone buys: features, transfer, fine-tune, predict, detect, offline, in a minute"
DEMO_MODEL = "pyramidnet20_a48.cutmix_shapes"
BASELINE = "pyramidnet20_a48.baseline_shapes"
DEFAULT_OUTPUT = "runs/demo"
# The transfer task: Novel-Shapes' first draw, 20 training and 20 validation images per class (small data, where a
# pretrained backbone matters).
NOVEL_TRAIN, NOVEL_VAL, NOVEL_SEED = 20, 20, 0
# The fine-tune: the trainer's finetune recipe, shortened to 6 epochs, on Glyphs of the same sizes, where the probe
# alone leaves the most to gain (measured on 2026-12-08: 23.0% error after the first epoch, 8.5% after the sixth, 8 s);
# batches of 32 give it 7 steps an epoch on the 200 training images.
FINETUNE_EPOCHS, FINETUNE_BATCH = 6, 32
# The detection step: a few seconds of Faster R-CNN on 64-pixel Novel-Shapes scenes (a 32-channel FPN, light RPN and
# box-head sampling), enough for the fine-tuned detector to find shapes it was never trained to classify.
DETECT_SCENES, DETECT_VAL, DETECT_SIZE, DETECT_EPOCHS = 32, 8, 64, 5
DETECT_LIGHT = dict(rpn_pre_nms_top_n_train=200, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_train=100,
                    rpn_post_nms_top_n_test=50, box_batch_size_per_image=32, box_detections_per_img=20)
Say = Callable[[str], Any]


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``demo [--output DIR] [--json]`` to the ``cutmix-zoo`` parser."""
    p = subparsers.add_parser(NAME, help=HELP, description=__doc__.split("\n\n")[0].replace("``", ""))
    p.add_argument("-o", "--output", default=DEFAULT_OUTPUT, metavar="DIR",
                   help=f"folder for the Novel-Shapes images, transfer.png, the fine-tune's run and demo.json (default {DEFAULT_OUTPUT})")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object instead of the steps")
    return p


def run_demo(output: str | os.PathLike = DEFAULT_OUTPUT, say: Say = print) -> dict:
    """Run every step, writing into ``output``, and return what was measured (also written to ``output/demo.json``)."""
    start = time.perf_counter()
    out = output_folder(os.fspath(output))
    result: dict = {"output": str(out), "features": features_step(say)}
    data, result["transfer"] = transfer_step(out, say)
    result["finetune"] = finetune_step(out, say)
    result["detection"] = detection_step(say)
    result["seconds"] = time.perf_counter() - start
    write_report(out / "demo.json", result)
    export = result["finetune"]["export"]
    say(f"5. done in {result['seconds']:.1f} s; everything is in {out}: the images in {data.root} and {out / 'glyphs'}, "
        + (f"{Path(result['transfer']['picture']).name}, " if result["transfer"]["picture"] else "")
        + f"the fine-tune's run in {out / 'finetune'}, the figures in demo.json. Next: `cutmix-zoo transfer --data {data.root} "
        f"--models {DEMO_MODEL},{BASELINE} --finetune 15 -o {out / 'transfer'}` (fine-tune both backbones), or "
        f"`cutmix-zoo predict {out / 'glyphs' / 'val'}/*/*.png --model {export}`")
    return result


def features_step(say: Say) -> dict:
    """Load the shipped CutMix model as a feature extractor and show its levels on one 32-pixel image."""
    import torch

    import cutmix_zoo

    from ..features import FeatureInfo

    backbone = cutmix_zoo.load(DEMO_MODEL, features_only=True)
    with torch.no_grad():
        maps = backbone(torch.zeros(1, 3, 32, 32))
    info = cast(FeatureInfo, backbone.feature_info)
    say(f"1. features: cutmix_zoo.load({DEMO_MODEL!r}, features_only=True) -> "
        + ", ".join(f"{tuple(m.shape)}" for m in maps) + f"; channels {info.channels()}, reductions {info.reduction()}")
    return {"shapes": [list(m.shape) for m in maps], "channels": info.channels(), "reductions": info.reduction()}


def transfer_step(out: Path, say: Say) -> tuple[TransferData, dict]:
    """Write a Novel-Shapes draw into ``out``, probe the CutMix backbone and its baseline on it, print the table and draw
    the picture (said in one line and left out without matplotlib); the data and what was measured."""
    import importlib.util
    import tempfile

    import cutmix_zoo

    from ..reports import transfer
    from ..reports.plots import PLOTS_EXTRA
    from ..shapes import write_folder
    from .transfer import print_transfer_table, transfer_picture

    data = transfer.read_transfer_folder(write_folder(out / "novel-shapes", NOVEL_TRAIN, NOVEL_VAL, seed=NOVEL_SEED))
    say(f"2. transfer: linear probes on the pooled features of {DEMO_MODEL} and {BASELINE} (the same network trained "
        f"without CutMix) on Novel-Shapes, {len(data.classes)} classes neither model saw")
    models = {name: cutmix_zoo.load(name, num_classes=0) for name in (DEMO_MODEL, BASELINE)}
    with tempfile.TemporaryDirectory(prefix="cutmix-zoo-demo-features-") as cache:
        extracted = transfer.extract_features(models, data.paths, data.root, cache)
    results = transfer.probe_models(data, extracted, models, seed=NOVEL_SEED)
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        print_transfer_table(data, results, transfer.DEFAULT_HOLDOUT)
    for line in table.getvalue().splitlines():
        say(f"   {line}")
    picture = None
    if importlib.util.find_spec("matplotlib") is None:
        say(f"   the picture: left out, since drawing it needs matplotlib: {PLOTS_EXTRA}")
    else:
        picture = transfer_picture(data, results, None, out / "transfer.png")
        say(f"   the picture: {picture}")
    errors = {name: r.probe.top1_err for name, r in results.items()}
    return data, {"data": data.to_dict(), "probe_top1_err": errors, "picture": picture}


def finetune_step(out: Path, say: Say) -> dict:
    """Write a Glyphs draw into ``out`` and fine-tune the CutMix model on it with the trainer, as ``cutmix-zoo train
    --init`` does; say its validation error epoch by epoch, reload its export and predict one validation image with it."""
    import cutmix_zoo

    from ..model_config import pretrained_cfg_of
    from ..reports.transfer import read_transfer_folder
    from ..shapes import write_folder
    from ..train import train_main

    data = read_transfer_folder(write_folder(out / "glyphs", NOVEL_TRAIN, NOVEL_VAL, seed=NOVEL_SEED, glyphs=True))
    run = out / "finetune"
    argv = ["--init", DEMO_MODEL, "--data", str(data.root), "--epochs", str(FINETUNE_EPOCHS), "--batch-size", str(FINETUNE_BATCH),
            "--device", "cpu", "--workers", "0", "--output", str(run), "--quiet",
            "--force"]  # a demo run again into the same --output replaces its own earlier fine-tune
    say(f"3. fine-tune on Glyphs ({data.root}: {len(data.classes)} classes, each the mirror image of another, so the "
        f"recipe does not flip): cutmix-zoo train {' '.join(argv)}")
    code = train_main(argv)
    if code != 0:
        raise TrainingError(f"The demo's fine-tune stopped with exit status {code}; its run is in {run}.")
    errors = [record["val_top1_err"] for record in last_run_epochs(run / "metrics.jsonl")]
    say(f"   validation top-1 error by epoch: {' -> '.join(f'{e:.1f}%' for e in errors)} (from {errors[0]:.1f}% after the "
        f"first epoch to {errors[-1]:.1f}% after the last; chance is {100 - 100 / len(data.classes):.0f}%)")
    export = run / "export"
    model = cutmix_zoo.load(export)
    recorded = pretrained_cfg_of(model)["top1_err"]
    index = int(data.val[0])
    image, truth = data.paths[index], data.classes[int(data.labels[index])]
    top = cutmix_zoo.predict(image, model, top=3)[0]
    say(f"   cutmix_zoo.load({str(export)!r}) (the best epoch's weights, {recorded:.1f}% error), "
        f"predict {os.path.relpath(image, data.root)} (its class: {truth}): "
        + ", ".join(f"{p['label']} {p['probability']:.1%}" for p in top))
    return {"val_top1_err": errors, "start_top1_err": errors[0], "end_top1_err": errors[-1], "export": str(export),
            "export_top1_err": recorded, "image": image, "label": truth, "predictions": top}


def last_run_epochs(metrics: Path) -> list[dict]:
    """The ``epoch`` records of the last run a ``metrics.jsonl`` holds (a run into a folder holding only an unfinished
    run's log appends to it), read as the trainer's own reader reads it."""
    from ..train.metrics_log import read_metrics

    records = read_metrics(metrics)
    starts = [k for k, record in enumerate(records) if record.get("event") == "start"]
    epochs = [record for record in records[starts[-1] if starts else 0:] if record.get("event") == "epoch"]
    if not epochs:
        raise TrainingError(f"The demo's fine-tune left no epoch in {metrics}.")
    return epochs


def detection_step(say: Say = print) -> dict:
    """Fine-tune a Faster R-CNN on the embedded CutMix backbone for a few seconds on generated scenes; what it measured.
    Without the ``detection`` extra (pycocotools scores the mAP) the step says how to get it and is left out."""
    import importlib.util
    import tempfile

    from ..detection.pycoco import DETECTION_EXTRA
    from ..detection.scenes import write_scenes

    if importlib.util.find_spec("pycocotools") is None:
        say(f"4. detect: left out, since scoring a detector needs pycocotools: {DETECTION_EXTRA}")
        return {"left_out": f"pycocotools is not installed ({DETECTION_EXTRA})"}
    from ..train.detection import DetectionRun, train_detector

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cutmix-zoo-demo-detect-") as out:
        data = write_scenes(os.path.join(out, "scenes"), train_images=DETECT_SCENES, val_images=DETECT_VAL, size=DETECT_SIZE)
        say(f"4. detect: Faster R-CNN on {DEMO_MODEL}, {DETECT_EPOCHS} epochs on {DETECT_SCENES} generated scenes of "
            "Novel-Shapes (classes it never saw)")
        run = DetectionRun(init=DEMO_MODEL, data=[str(data)], output=os.path.join(out, "run"), epochs=DETECT_EPOCHS, batch_size=4,
                           lr=0.02, warmup_steps=10, out_channels=32, min_size=DETECT_SIZE, max_size=DETECT_SIZE,
                           detector_kwargs=DETECT_LIGHT)
        _, metrics = train_detector(run)
    found = {"map": metrics.map, "map50": metrics.map50, "train_images": DETECT_SCENES, "val_images": DETECT_VAL,
             "epochs": DETECT_EPOCHS, "seconds": time.perf_counter() - start}
    say(f"   its mAP on {DETECT_VAL} held-out scenes: {100 * metrics.map:.2f} (mAP@0.5 {100 * metrics.map50:.2f}; "
        f"cutmix-zoo transfer --task detection compares backbones), {found['seconds']:.1f} s")
    return found


def run(args: argparse.Namespace) -> int:
    """Run the demo, printing each step, or with ``--json`` only the results."""
    import torch

    torch.manual_seed(0)
    result = run_demo(args.output, say=(lambda line: None) if args.json else (lambda line: print(line, flush=True)))
    if args.json:
        json.dump(result, sys.stdout)
        print()
    return 0
