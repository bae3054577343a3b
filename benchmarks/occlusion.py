"""What the occlusion sweep of ``cutmix-zoo robustness`` costs beyond its forward passes.

The sweep reads each image once and runs every hole size (centre and boundary) from the decoded batch, so
its time should be its forward passes plus one decode per image. This times, in the same process:

  sweep     cutmix_zoo.reports.robustness.evaluate(measures=["occlusion"]) on --images PNG files written to a temporary
            ImageFolder tree (Shapes-10 test images, enlarged to --image-size): reading, decoding, the eval
            transform, the masks and every forward pass
  forward   the same forward passes alone (the same batches, already decoded and masked, in the same order)

and prints sweep / forward (target: at most 1.1) and how many times each image was decoded (target: once).

    python benchmarks/occlusion.py                        # the embedded CutMix model, 256 images, 8 hole steps
    python benchmarks/occlusion.py --images 64 --rounds 1 # quick
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
from cutmix_zoo.reports import robustness
from cutmix_zoo.shapes import Shapes


def write_images(root: Path, count: int, size: int) -> tuple[list[str], list[int], list[str]]:
    """The first ``count`` Shapes-10 test images as PNGs in ``root/val/<class>/``."""
    data = Shapes("test")
    for name in data.classes:
        (root / "val" / name).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = Image.fromarray(data.images[i].permute(1, 2, 0).numpy())
        if size != image.width:
            image = image.resize((size, size), Image.BILINEAR)
        image.save(root / "val" / data.classes[int(data.targets[i])] / f"{i:05d}.png")
    return robustness.read_validation_folder(root)


def forward_only(model: torch.nn.Module, paths: list[str], hole_steps: int, batch_size: int, seed: int) -> float:
    """Seconds of the sweep's forward passes on batches decoded and masked beforehand (same order, same count)."""
    transform = cutmix_zoo.transforms(model)
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed)).tolist()
    height, width = model.pretrained_cfg["input_size"][-2:]
    sizes = robustness.hole_sizes(max(height, width), hole_steps)
    masks = {kind: robustness.occlusion_masks(height, width, sizes, kind) for kind in ("centre", "boundary")}
    inputs = []
    for start in range(0, len(order), batch_size):
        x = torch.stack([transform(robustness.open_image(paths[i])) for i in order[start:start + batch_size]])
        inputs.append(x)
        inputs += [x * masks["centre"][k] for k in range(1, len(sizes))]
        inputs += [x * masks["boundary"][k] for k in range(len(sizes) - 1)]
    with torch.no_grad():
        began = time.perf_counter()
        for x in inputs:
            model(x).argmax(1)
        return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pyramidnet20_a48.cutmix_shapes", help="registry name or exported folder")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=32, help="side of the PNGs written (default: 32, Shapes-10's)")
    parser.add_argument("--hole-steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of sweep and forward passes, interleaved; the fastest of each is printed")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1, steadier timings)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = cutmix_zoo.load(args.model)
    with tempfile.TemporaryDirectory(prefix="occlusion-bench-") as tmp:
        paths, labels, classes = write_images(Path(tmp), args.images, args.image_size)
        opened = 0
        real_open = robustness.open_image

        def counting_open(image):
            nonlocal opened
            opened += 1
            return real_open(image)

        sweeps, forwards = [], []
        forward_only(model, paths[: args.batch_size], args.hole_steps, args.batch_size, 0)  # warm-up
        for _ in range(args.rounds):
            opened = 0
            robustness.open_image = counting_open
            try:
                began = time.perf_counter()
                report = robustness.evaluate({args.model: model}, paths, labels, classes, measures=["occlusion"],
                                             hole_steps=args.hole_steps, batch_size=args.batch_size)
                sweeps.append(time.perf_counter() - began)
            finally:
                robustness.open_image = real_open
            forwards.append(forward_only(model, paths, args.hole_steps, args.batch_size, 0))
    result = report.models[args.model]
    sweep, forward = min(sweeps), min(forwards)  # the least disturbed round of each
    passes = result.forward_batches
    print(f"occlusion sweep of {args.model}: {len(paths)} PNGs of {args.image_size}x{args.image_size}, "
          f"{len(result.occlusion.hole_sizes)} hole sizes x 2 kinds, batch {args.batch_size}, "
          f"{torch.get_num_threads()} thread(s), best of {args.rounds} rounds")
    print(f"forward passes            {passes} batches")
    print(f"images decoded            {opened} ({opened / len(paths):.2f} per image; target: 1)")
    print(f"sweep (decode + forward)  {sweep:8.3f} s")
    print(f"forward passes alone      {forward:8.3f} s")
    ratio = sweep / forward
    print(f"sweep / forward passes: {ratio:.3f} (target <= 1.1)")
    return 0 if ratio <= 1.1 and opened == len(paths) else 1


if __name__ == "__main__":
    sys.exit(main())
