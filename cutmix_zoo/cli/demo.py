"""``cutmix-zoo demo``: the whole path on the embedded model, offline, in under a minute on a CPU.

train (a one-epoch run of the bundled trainer) -> export -> load the exported folder -> load the
shipped CutMix model as a feature extractor -> evaluate it and its baseline on held-out data ->
fine-tune a Faster R-CNN on it for a few seconds on generated scenes and score it (mAP).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import cast

from .common import Subparsers

NAME = "demo"
HELP = "train, export, load and evaluate the embedded model, offline, in a minute"
DEMO_MODEL = "pyramidnet20_a48.cutmix_shapes"
BASELINE = "pyramidnet20_a48.baseline_shapes"
# The detection step: a few seconds of Faster R-CNN on 64-pixel Novel-Shapes scenes (a 32-channel FPN, light RPN and
# box-head sampling), enough for the fine-tuned detector to find shapes it was never trained to classify.
DETECT_SCENES, DETECT_VAL, DETECT_SIZE, DETECT_EPOCHS = 32, 8, 64, 5
DETECT_LIGHT = dict(rpn_pre_nms_top_n_train=200, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_train=100,
                    rpn_post_nms_top_n_test=50, box_batch_size_per_image=32, box_detections_per_img=20)


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``demo`` to the ``cutmix-zoo`` parser."""
    p = subparsers.add_parser(NAME, help=HELP, description=__doc__.split("\n\n")[0].replace("``", ""))
    p.add_argument("--train-images", type=int, default=1024, help="images in the quick training run (default 1024)")
    p.add_argument("--skip-train", action="store_true", help="skip the quick training run")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    return p


def run_demo(train_images: int = 1024, skip_train: bool = False, say=print) -> dict:
    """Run every step and return what was measured."""
    import tempfile

    import torch

    import cutmix_zoo

    from ..features import FeatureInfo
    from ..model_config import pretrained_cfg_of
    from ..train import train_main
    from ..train.evaluation import evaluate_model

    result: dict = {}
    start = time.perf_counter()
    if not skip_train:
        with tempfile.TemporaryDirectory(prefix="cutmix-zoo-demo-") as out:
            say(f"1. train: one epoch of {DEMO_MODEL}'s recipe on {train_images} generated Shapes-10 images (CutMix on the device)")
            code = train_main(["--recipe", DEMO_MODEL, "--epochs", "1", "--synthetic-size", str(train_images), "--device", "cpu",
                               "--workers", "0", "--output", out, "--quiet"])
            if code != 0:
                raise RuntimeError(f"the demo's training run exited with {code}")
            folder = os.path.join(out, "export")
            say(f"2. export: {sorted(os.listdir(folder))}")
            trained = cutmix_zoo.load(folder)
            result["trained_top1_err"] = pretrained_cfg_of(trained)["top1_err"]
            say(f"3. load the exported folder: a {type(trained).__name__} whose top-1 error after this one short epoch is "
                f"{result['trained_top1_err']:.2f}% (chance: 90%; the shipped model below trained for 30 epochs)")
    backbone = cutmix_zoo.load(DEMO_MODEL, features_only=True)
    with torch.no_grad():
        maps = backbone(torch.zeros(1, 3, 32, 32))
    result["feature_shapes"] = [list(m.shape) for m in maps]
    info = cast(FeatureInfo, backbone.feature_info)
    say(f"4. features: cutmix_zoo.load({DEMO_MODEL!r}, features_only=True) -> "
        + ", ".join(f"{tuple(m.shape)}" for m in maps)
        + f"; channels {info.channels()}, reductions {info.reduction()}")
    say("5. evaluate the shipped models on the 2,000 held-out Shapes-10 test images:")
    for name in (DEMO_MODEL, BASELINE):
        errors = evaluate_model(cutmix_zoo.load(name), "shapes", batch_size=250)
        result[name] = {"top1_acc": 100 - errors["top1_err"], "top5_acc": 100 - errors["top5_err"]}
        say(f"   {name:36} top-1 accuracy {result[name]['top1_acc']:.2f}%, top-5 accuracy {result[name]['top5_acc']:.2f}%")
    result["detection"] = detection_step(say)
    result["seconds"] = time.perf_counter() - start
    say(f"done in {result['seconds']:.1f} s")
    return result


def detection_step(say=print) -> dict:
    """Fine-tune a Faster R-CNN on the embedded CutMix backbone for a few seconds on generated scenes; what it measured.
    Without the ``detection`` extra (pycocotools scores the mAP) the step says how to get it and is left out."""
    import importlib.util
    import tempfile

    from ..detection.pycoco import DETECTION_EXTRA
    from ..detection.scenes import write_scenes

    if importlib.util.find_spec("pycocotools") is None:
        say(f"6. detect: left out, since scoring a detector needs pycocotools: {DETECTION_EXTRA}")
        return {"left_out": f"pycocotools is not installed ({DETECTION_EXTRA})"}
    from ..train.detection import DetectionRun, train_detector

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cutmix-zoo-demo-detect-") as out:
        data = write_scenes(os.path.join(out, "scenes"), train_images=DETECT_SCENES, val_images=DETECT_VAL, size=DETECT_SIZE)
        say(f"6. detect: Faster R-CNN on {DEMO_MODEL}, {DETECT_EPOCHS} epochs on {DETECT_SCENES} generated scenes of "
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
    result = run_demo(args.train_images, args.skip_train, say=(lambda *a, **k: None) if args.json else print)
    if args.json:
        json.dump(result, sys.stdout)
        print()
    return 0
