"""The workers' per-sample path: header sizes equal PIL's, the draws equal those of the transform objects seeded by
``torch.manual_seed`` (what the workers did before), and benchmarks/input_pipeline.py --quick on the CPU."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cutmix_zoo.train.data import Augmented, build_transforms
from cutmix_zoo.train.dataspec import sample_seed, seeded
from cutmix_zoo.train.gpu_decode import AugmentDraw, collate_encoded, encoded_sample
from cutmix_zoo.train.headers import image_size

REPO = Path(__file__).resolve().parents[1]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _encoded(size: tuple[int, int], fmt: str, **save) -> bytes:
    """An image of ``size`` (width, height) saved in ``fmt`` with PIL's ``save`` options."""
    rng = np.random.default_rng(size[0] * 7 + size[1])
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    out = io.BytesIO()
    img.save(out, fmt, **save)
    return out.getvalue()


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90; PIL's open (and the header) report the stored size
    return _encoded((40, 24), "JPEG", exif=exif.tobytes())


FILES = {
    "baseline": lambda: _encoded((50, 37), "JPEG", quality=90),
    "progressive": lambda: _encoded((33, 61), "JPEG", progressive=True),
    "greyscale": lambda: _encoded((20, 30), "JPEG"),
    "exif": _exif_rotated,
    "png": lambda: _encoded((45, 17), "PNG"),
    "png-16bit-grey": lambda: (lambda out: (Image.new("I;16", (9, 13)).save(out, "PNG"), out.getvalue())[1])(io.BytesIO()),
}


@pytest.mark.parametrize("kind", FILES)
def test_header_size_is_pils(kind):
    data = FILES[kind]()
    width, height = Image.open(io.BytesIO(data)).size
    assert image_size(data) == (height, width)


@pytest.mark.parametrize("data", [b"", b"\xff\xd8", b"\xff\xd8\xff\xe0\x00\x10JFIF", b"not an image", b"\x89PNG\r\n\x1a\n\x00",
                                  _encoded((8, 8), "BMP"), b"\xff\xd8\xff\xda\x00\x02"],
                         ids=["empty", "soi-only", "app0-cut-short", "text", "png-without-ihdr", "bmp", "scan-before-frame"])
def test_header_size_is_none_where_it_cannot_be_read(data):
    assert image_size(data) is None


def _before(train, img: Image.Image, seed: int) -> dict[str, torch.Tensor]:
    """The parameters as the workers drew them before: ``torch.manual_seed`` and the transform objects on a PIL image."""
    crop, flip, _, jitter, lighting, _ = train.transforms
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        top, left, height, width = crop.get_params(img, crop.scale, crop.ratio)
        flipped = torch.rand(1) < flip.p
        order, factors = jitter.draw()
        return {"crop": torch.tensor([top, left, height, width]), "flip": flipped[0], "order": torch.tensor(order),
                "jitter": torch.tensor(factors), "lighting": lighting.draw()}


def _unread(name: str) -> Image.Image:
    raise AssertionError(f"{name}: the header reader should have given the size")


# Ordinary photos, a tiny one, and extreme aspect ratios where RandomResizedCrop falls back to its central crop.
SIZES = [(375, 500), (500, 333), (224, 224), (16, 20), (3, 400), (400, 3), (1, 1)]


def test_draws_equal_the_transform_objects_seeded_by_torch_manual_seed():
    train, _ = build_transforms("imagenet", 224, MEAN, STD, 256)
    draw = AugmentDraw(train)
    state = torch.random.get_rng_state()
    crops = set()
    for height, width in SIZES:
        img = Image.new("RGB", (width, height))
        data = _encoded((width, height), "JPEG")
        for key in range(40):
            seed = sample_seed(7, key % 3, key)
            expected = _before(train, img, seed)
            got = encoded_sample(data, "x.jpg", 1, draw, seed, _unread).params
            assert got.keys() == expected.keys()
            for name, value in expected.items():
                assert got[name].dtype == value.dtype and torch.equal(got[name], value), (height, width, key, name)
            crops.add(tuple(got["crop"].tolist()))
    assert (0, 198, 3, 4) in crops and (198, 0, 4, 3) in crops  # the central-crop fallbacks were drawn too
    assert torch.equal(torch.random.get_rng_state(), state)


def test_pil_pipeline_equals_seeding_with_torch_manual_seed():
    """The CPU pipeline seeded through :func:`seeded` gives the pixels it gave when seeded by ``torch.manual_seed``."""
    train, _ = build_transforms("imagenet", 32, MEAN, STD, 36)
    images = [(Image.open(io.BytesIO(_encoded((48, 40), "JPEG"))).convert("RGB"), 0)] * 3
    data = Augmented(images, train, seed=3)
    for epoch, index in ((0, 0), (1, 2), (5, 1)):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(3, epoch, index))
            expected = train(images[index][0])
        assert torch.equal(data[(epoch, index)][0], expected)
    with seeded(5):
        first = torch.rand(3)
    with seeded(5):
        assert torch.equal(torch.rand(3), first)


def test_collate_keeps_every_files_bytes_and_the_names():
    samples = [encoded_sample(d, f"f{i}", i, None, 0, lambda name: None) for i, d in enumerate([b"\xff\xd8ab", b"", b"xyz"])]
    batch, targets = collate_encoded(samples)
    assert [bytes(t.numpy()) for t in batch.data] == [b"\xff\xd8ab", b"", b"xyz"]
    assert batch.encoded.numel() == 7 and batch.paths == ["f0", "f1", "f2"] and targets.tolist() == [0, 1, 2]
    assert batch.params == {}


@pytest.mark.slow
def test_quick_cpu_run_prints_every_row_and_the_ratio():
    """benchmarks/input_pipeline.py --quick on the CPU: every row a positive rate, the verdict, and the bytes path
    faster than the PIL path per core as its last line (the >= 20x target is for a full run on a quiet machine)."""
    cmd = [sys.executable, str(REPO / "benchmarks" / "input_pipeline.py"), "--device", "cpu", "--quick"]
    env = dict(os.environ, OMP_NUM_THREADS="1")  # OpenMP spinning slows 2 threads beside other jobs
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=150, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    rows = {label.strip(): float(rate) for label, rate in (re.match(r"(.+?)\s+([\d.]+) img/s$", line).groups()
                                                            for line in lines[1:-3])}
    assert [label[:3] for label in rows if label.startswith("(")] == ["(a)", "(b)", "(c)", "(d)", "(e)", "(e)", "(a)", "(b)"]
    assert len(rows) == 9 and all(rate > 0 for rate in rows.values()), rows
    shards = re.fullmatch(r"from shards, bytes path / PIL path per core: ([\d.]+)", lines[-3])  # the same images as shards
    assert shards and float(shards.group(1)) == pytest.approx(
        rows["(b) bytes+parameters (shards), 1 core"] / rows["(a) PIL decode+augment (shards), 1 core"], abs=0.06)
    assert lines[-2].startswith(("verdict: decode-bound", "verdict: not decode-bound")) and "step/decode" in lines[-2]
    ratio = re.fullmatch(r"bytes path / PIL path per core: ([\d.]+)", lines[-1])
    assert ratio and float(ratio.group(1)) > 1, lines[-1]
    per_core = [rate for label, rate in rows.items() if label.startswith(("(a)", "(b)"))]
    assert float(ratio.group(1)) == pytest.approx(per_core[1] / per_core[0], abs=0.06)  # printed to one decimal
