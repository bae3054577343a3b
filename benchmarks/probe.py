"""What the linear probe of ``cutmix-zoo transfer`` costs beside the feature extraction it follows.

The probe (every L2 strength of the grid fitted on the training images less the held-out part, then the refit on all
of them) should cost little next to running the backbone over the images once. This times, in the same process:

  extraction  cutmix_zoo.reports.transfer.extract_features on the PNG files of a Novel-Shapes ImageFolder tree written to a
              temporary folder (--train-per-class and --val-per-class images of each of the ten classes, enlarged to
              --image-size): reading, decoding, the eval transform and the forward passes, into an empty cache
  probe       cutmix_zoo.reports.transfer.linear_probe on those features: the whole L2 search and the refit

and prints probe / extraction (target: at most 0.10).

    python benchmarks/probe.py                                  # the embedded CutMix model, 4,000 images
    python benchmarks/probe.py --train-per-class 50 --rounds 1  # quick
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

import cutmix_zoo
from cutmix_zoo.reports import transfer
from cutmix_zoo.shapes import write_folder

TARGET = 0.10


def write_images(root: Path, train_per_class: int, val_per_class: int, size: int) -> transfer.TransferData:
    """A Novel-Shapes ImageFolder tree in ``root``, its PNGs enlarged to ``size`` pixels when that is not 32."""
    write_folder(root, train_per_class, val_per_class, novel=True, seed=0)
    if size != 32:
        for path in root.rglob("*.png"):
            Image.open(path).resize((size, size), Image.BILINEAR).save(path)
    return transfer.read_transfer_folder(root)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pyramidnet20_a48.cutmix_shapes", help="registry name or exported folder")
    parser.add_argument("--train-per-class", type=int, default=300)
    parser.add_argument("--val-per-class", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=32, help="side of the PNGs written (default: 32, Novel-Shapes')")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="decoding threads (default: 2, the command's)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of extraction and probe, interleaved; the fastest of each is printed")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1, steadier timings)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = cutmix_zoo.load(args.model, num_classes=0)
    extractions, fits = [], []
    with tempfile.TemporaryDirectory(prefix="probe-bench-") as tmp:
        data = write_images(Path(tmp) / "data", args.train_per_class, args.val_per_class, args.image_size)
        for k in range(args.rounds):
            began = time.perf_counter()
            found = transfer.extract_features({args.model: model}, data.paths, data.root, Path(tmp) / f"cache{k}", args.batch_size,
                                              args.workers)[args.model]
            extractions.append(time.perf_counter() - began)
            x = found.features
            result = transfer.linear_probe(x[data.train], data.labels[data.train], x[data.val], data.labels[data.val], len(data.classes))
            fits.append(result.fit_seconds)
    extraction, fit = min(extractions), min(fits)  # the least disturbed round of each
    print(f"linear probe of {args.model}: {len(data.train)} training and {len(data.val)} validation PNGs of "
          f"{args.image_size}x{args.image_size}, {x.shape[1]}-d features, {len(data.classes)} classes, batch {args.batch_size}, "
          f"{torch.get_num_threads()} thread(s), best of {args.rounds} rounds")
    print(f"L2 grid                    {len(result.grid)} strengths, chosen {result.l2:.0e} on {result.holdout_images} held-out images")
    print(f"validation top-1 error     {result.top1_err:.2f} %")
    print(f"extraction (decode + fwd)  {extraction:8.3f} s")
    print(f"probe (L2 search + refit)  {fit:8.3f} s")
    ratio = fit / extraction
    print(f"probe / extraction: {ratio:.3f} (target <= {TARGET})")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
