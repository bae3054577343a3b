"""``--decode gpu`` on the CPU: the device pipeline (decode_jpeg + augmentation per batch) against the PIL pipeline,
reproducible parameters, the trainer run through it, the flag's guard, and benchmarks/decode.py."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as F

from cutmix_zoo.errors import InvalidArgumentError
from cutmix_zoo.train import loop as train_loop
from cutmix_zoo.train import train_main
from cutmix_zoo.train.data import training_data
from cutmix_zoo.train.gpu_decode import EncodedBatch, collate_encoded

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
SEED = 7
# Sizes on both sides of 224 and 256, a greyscale JPEG and a PNG (an ImageFolder may hold either).
FILES = [((180, 240), "RGB", "jpg"), ((320, 260), "RGB", "jpg"), ((300, 400), "L", "jpg"), ((250, 230), "RGB", "png")]


def _image(rng: np.random.Generator, size: tuple[int, int], mode: str) -> Image.Image:
    """A smooth random image (upsampled colour field plus a little grain) of ``size`` (height, width)."""
    field = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize(size[::-1], Image.BICUBIC)
    pixels = np.clip(np.asarray(field, np.float32) + rng.normal(0, 4, (*size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).convert(mode)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """train/ and val/ with two classes, each holding every kind of file in FILES."""
    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i, (size, mode, ext) in enumerate(FILES):
                _image(rng, size, mode).save(root / split / cls / f"{i}.{ext}", **({"quality": 90} if ext == "jpg" else {}))
    return root


def _batch(dataset, keys) -> tuple[EncodedBatch, torch.Tensor]:
    return collate_encoded([dataset[k] for k in keys])


def test_device_pipeline_gives_normalised_224px_batches(tree):
    data = training_data("folder", str(tree), "imagenet", SEED, decode="gpu")
    batch, targets = _batch(data.train, [(0, i) for i in range(len(data.train))])
    assert all(d.dtype == torch.uint8 and d.dim() == 1 for d in batch.data) and targets.tolist() == [0] * 4 + [1] * 4
    x = data.train_to_device(batch, CPU)
    assert x.shape == (8, 3, 224, 224) and x.dtype == torch.float32 and torch.isfinite(x).all()
    val = data.val_to_device(_batch(data.val, range(len(data.val)))[0], CPU)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    pixels = val * std + mean
    assert val.shape == (8, 3, 224, 224) and pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    assert abs(float(pixels.mean()) - 0.5) < 0.2


def test_device_pipeline_equals_the_pil_pipeline(tree):
    """Same (seed, epoch, index): same crop, flip, jitter and lighting; pixels differ only by decoder and resize rounding."""
    cpu = training_data("folder", str(tree), "imagenet", SEED)
    gpu = training_data("folder", str(tree), "imagenet", SEED, decode="gpu")
    for epoch in (0, 3):
        keys = [(epoch, i) for i in range(len(cpu.train))]
        expected = torch.stack([cpu.train[k][0] for k in keys])
        got = gpu.train_to_device(_batch(gpu.train, keys)[0], CPU)
        assert (got - expected).abs().max() < 0.1 and (got - expected).abs().mean() < 2e-3
    expected = torch.stack([cpu.val[i][0] for i in range(len(cpu.val))])
    got = gpu.val_to_device(_batch(gpu.val, range(len(gpu.val)))[0], CPU)
    assert (got - expected).abs().max() < 0.1 and (got - expected).abs().mean() < 2e-3


def test_crop_and_flip_equal_torchvision_functional_on_the_decoded_image(tree):
    """With jitter and lighting zeroed, the device output is exactly resized_crop (+ hflip) of decode_jpeg, normalised."""
    data = training_data("folder", str(tree), "imagenet", SEED, decode="gpu")
    jpegs = [(1, i) for i, (_, _, ext) in enumerate(FILES * 2) if ext == "jpg"]
    batch, _ = _batch(data.train, jpegs)
    params = {**batch.params, "jitter": torch.zeros(len(jpegs), 3), "lighting": torch.zeros(len(jpegs), 3)}
    params["flip"] = torch.arange(len(jpegs)) % 2 == 0
    got = data.train_to_device(EncodedBatch(batch.data, params), CPU)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    for k, data_k in enumerate(batch.data):
        with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders in favour of TorchCodec
            warnings.simplefilter("ignore", DeprecationWarning)
            img = decode_jpeg(data_k, mode=ImageReadMode.RGB)
        ref = F.resized_crop(img, *params["crop"][k].tolist(), [224, 224], antialias=True)
        ref = F.horizontal_flip(ref) if params["flip"][k] else ref
        torch.testing.assert_close(got[k], (ref.float() / 255 - mean) / std, rtol=0, atol=1e-5)


def test_parameters_come_from_seed_epoch_and_index_only(tree):
    data = training_data("folder", str(tree), "imagenet", SEED, decode="gpu")
    again = training_data("folder", str(tree), "imagenet", SEED, decode="gpu")
    state = torch.random.get_rng_state()
    first = [data.train[(2, i)][1] for i in range(len(data.train))]
    assert torch.equal(torch.random.get_rng_state(), state)  # the training RNG is left alone
    for i in reversed(range(len(data.train))):  # another order, another dataset object (as another worker)
        assert all(torch.equal(first[i][k], v) for k, v in again.train[(2, i)][1].items())
    later = data.train[(3, 0)][1]
    other_seed = training_data("folder", str(tree), "imagenet", SEED + 1, decode="gpu").train[(2, 0)][1]
    assert not torch.equal(later["jitter"], first[0]["jitter"]) and not torch.equal(other_seed["jitter"], first[0]["jitter"])
    cpu = training_data("folder", str(tree), "imagenet", SEED).train  # the PIL pipeline shares the seeding
    assert not torch.equal(cpu[(2, 0)][0], cpu[(3, 0)][0])


def test_decode_gpu_is_refused_without_cuda_or_jpegs(tree, tmp_path):
    folder = ["--model", "pyramidnet", "--depth", "10", "--alpha", "12", "--no-bottleneck", "--quiet", "--output", str(tmp_path)]
    with pytest.raises(InvalidArgumentError, match="--decode gpu decodes on a CUDA device") as e:
        train_main([*folder, "--dataset", "folder", "--data", str(tree), "--decode", "gpu", "--device", "cpu"])
    assert "\n" not in str(e.value) and str(e.value).count(". ") == 0
    with pytest.raises(InvalidArgumentError, match="not --dataset cifar10"):
        train_main([*folder, "--dataset", "cifar10", "--depth", "8", "--decode", "gpu"])
    with pytest.raises(InvalidArgumentError, match="not --data synthetic"):
        train_main([*folder, "--dataset", "folder", "--decode", "gpu"])


def test_the_trainer_runs_through_the_device_pipeline(tree, tmp_path, monkeypatch):
    """The whole loop with --decode gpu on the CPU (the cuda guard lifted): loader workers, collate, device batches, eval."""
    monkeypatch.setattr(train_loop, "check_gpu_decode", lambda *args: None)
    assert train_main(["--model", "pyramidnet", "--depth", "10", "--alpha", "12", "--no-bottleneck", "--dataset", "folder",
                       "--data", str(tree), "--decode", "gpu", "--device", "cpu", "--epochs", "1", "--batch-size", "4",
                       "--workers", "1", "--quiet", "--no-export", "--output", str(tmp_path)]) == 0
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    (epoch,) = [r for r in records if r["event"] == "epoch"]
    assert np.isfinite(epoch["train_loss"]) and 0 <= epoch["val_top1_err"] <= 100


def test_decode_benchmark_runs_on_cpu_and_gives_a_verdict():
    cmd = [sys.executable, str(REPO / "benchmarks" / "decode.py"), "--device", "cpu", "--images", "8", "--workers", "1",
           "--batch-size", "4", "--step-batch", "1", "--steps", "1", "--warmup", "0"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    verdict = done.stdout.strip().splitlines()[-1]
    assert verdict.startswith(("verdict: decode-bound", "verdict: not decode-bound")) and "step/decode" in verdict
