"""``--decode gpu`` on the CPU: the device pipeline (decode_jpeg + augmentation per batch) against the PIL pipeline,
reproducible parameters, the trainer run through it, the flag's guard, and files it cannot decode: read by the
folder's loader, or one sentence naming the file (on cuda too where there is one). Its benchmark is checked in
test_input_pipeline.py."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as F

from cutmix_zoo.cli import main as cli_main
from cutmix_zoo.errors import InvalidArgumentError, exit_code
from cutmix_zoo.train import loop as train_loop
from cutmix_zoo.train import train_main
from cutmix_zoo.train.checkpoint import load_checkpoint
from cutmix_zoo.train.data import DataError, EpochSampler, build_transforms, read_image, training_data
from cutmix_zoo.train.gpu_decode import EncodedBatch, collate_encoded, decode, encoded_data

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
    got = data.train_to_device(batch._replace(params=params), CPU)
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


@pytest.mark.slow
def test_the_trainer_runs_through_the_device_pipeline(tree, tmp_path, monkeypatch):
    """The whole loop with --decode gpu on the CPU (the cuda guard lifted): loader workers, collate, device batches, eval."""
    monkeypatch.setattr(train_loop, "check_gpu_decode", lambda *args: None)
    assert train_main(["--model", "pyramidnet", "--depth", "10", "--alpha", "12", "--no-bottleneck", "--dataset", "folder",
                       "--data", str(tree), "--decode", "gpu", "--device", "cpu", "--epochs", "1", "--batch-size", "4",
                       "--workers", "1", "--quiet", "--no-export", "--output", str(tmp_path)]) == 0
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    (epoch,) = [r for r in records if r["event"] == "epoch"]
    assert np.isfinite(epoch["train_loss"]) and 0 <= epoch["val_top1_err"] <= 100


# --- files the device cannot decode ----------------------------------------------------------------

DEVICES = [CPU] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


def _garbage_inside(jpeg: bytes) -> bytes:
    """The JPEG with 2,000 bytes of noise written over the middle of its entropy-coded data (a disk or transfer error),
    starting with 0xFF 0x9E, which is no JPEG marker. (Noise that holds only markers JPEG defines ends the scan early:
    libjpeg, in PIL as in torchvision, then warns and fills the rest with grey, and both pipelines train on it.)"""
    middle = len(jpeg) // 2
    noise = b"\xff\x9e" + np.random.default_rng(1).integers(0, 256, 1998, dtype=np.uint8).tobytes()
    return jpeg[:middle] + noise + jpeg[middle + len(noise):]


# How a file of the tree is broken: each makes PIL (the CPU pipeline) and torchvision fail alike.
BROKEN = {
    "truncated": lambda jpeg: jpeg[: len(jpeg) // 2],
    "garbage-inside": _garbage_inside,
    "header-cut-short": lambda jpeg: jpeg[:300],
    "text-named-jpg": lambda jpeg: b"this is not an image\n",
    "empty": lambda jpeg: b"",
}


@pytest.fixture
def copy_of_tree(tree, tmp_path) -> Path:
    """A copy of ``tree`` that a test may break."""
    return Path(shutil.copytree(tree, tmp_path / "data"))


def _pipeline(root: Path, split: str, device: torch.device) -> torch.Tensor:
    """One batch of the whole ``split`` through the --decode gpu pipeline: the workers' part, collate, the device's part."""
    data = training_data("folder", str(root), "imagenet", SEED, decode="gpu")
    dataset, to_device = (data.train, data.train_to_device) if split == "train" else (data.val, data.val_to_device)
    keys = [(0, i) for i in range(len(dataset))] if split == "train" else list(range(len(dataset)))
    batch, _ = collate_encoded([dataset[k] for k in keys])
    return to_device(batch, device)


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("split", ["train", "val"])
@pytest.mark.parametrize("broken", BROKEN)
def test_a_broken_file_is_one_sentence_naming_it_as_the_cpu_pipeline_says(copy_of_tree, split, broken, device):
    path = copy_of_tree / split / "b" / "1.jpg"  # the sixth file of eight: good JPEGs decode in the same batch
    path.write_bytes(BROKEN[broken](path.read_bytes()))
    with pytest.raises(DataError) as e:
        _pipeline(copy_of_tree, split, device)
    with pytest.raises(DataError) as cpu:
        read_image(str(path))
    message = str(e.value)
    assert message == str(cpu.value), message
    assert message.startswith(f"The image {path} cannot be read (") and message.endswith("): replace or remove it.")
    assert "\n" not in message and "decode_jpeg" not in message and ".cpp" not in message


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_file_removed_after_the_folder_was_listed_is_named(copy_of_tree, split):
    data = training_data("folder", str(copy_of_tree), "imagenet", SEED, decode="gpu")
    path = copy_of_tree / split / "a" / "2.jpg"
    path.unlink()
    with pytest.raises(DataError, match=f"^The image {path} cannot be read "):
        _ = data.train[(0, 2)] if split == "train" else data.val[2]


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_files_torchvision_cannot_decode_are_read_by_the_folders_loader(copy_of_tree, device):
    """A PNG named .jpg goes to torchvision's PNG decoder (by its bytes, not its name); a BMP, which torchvision cannot
    decode, to the folder's loader (PIL): both give PIL's pixels, in a batch with JPEGs, for training and validation."""
    odd = [copy_of_tree / "train" / "a" / "4.jpg", copy_of_tree / "val" / "b" / "4.bmp"]
    shutil.copy(copy_of_tree / "train" / "a" / "3.png", odd[0])
    Image.open(copy_of_tree / "val" / "b" / "3.png").save(odd[1])
    data = training_data("folder", str(copy_of_tree), "imagenet", SEED, decode="gpu")
    for dataset, keys, path in ((data.train, [(0, i) for i in range(9)], odd[0]), (data.val, range(9), odd[1])):
        batch, _ = collate_encoded([dataset[k] for k in keys])
        images = decode(batch, device, read_image)
        assert len(images) == 9 and all(img.device.type == device.type for img in images)
        assert torch.equal(images[batch.paths.index(str(path))].cpu(), F.pil_to_tensor(Image.open(path).convert("RGB")))
    assert _pipeline(copy_of_tree, "train", device).shape == _pipeline(copy_of_tree, "val", device).shape == (9, 3, 224, 224)


def test_subsets_of_one_folder_keep_their_files_and_the_loaders_sentence(copy_of_tree):
    """A split held out of one ImageFolder tree (torch Subsets of it) encodes the subsets' own files, and a broken one
    among them is still named by the folder's loader."""
    from torch.utils.data import Subset
    from torchvision.datasets import ImageFolder

    train_tf, val_tf = build_transforms("imagenet", 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 256)
    whole = ImageFolder(str(copy_of_tree / "train"), loader=read_image)
    data = encoded_data(Subset(whole, [0, 2, 5, 7]), Subset(whole, [1, 6]), train_tf, val_tf, SEED, 2, "folder")
    assert [p for p, _ in data.train.samples] == [whole.samples[i][0] for i in (0, 2, 5, 7)]
    assert [data.val[i][3] for i in range(2)] == [0, 1]
    broken = Path(whole.samples[6][0])
    broken.write_bytes(b"")
    with pytest.raises(DataError, match=f"^The image {broken} cannot be read "):
        data.val_to_device(collate_encoded([data.val[i] for i in range(2)])[0], CPU)


def _device_run(data: Path, output: Path, *extra: str) -> list[str]:
    return ["train", "--model", "pyramidnet", "--depth", "10", "--alpha", "12", "--no-bottleneck", "--dataset", "folder",
            "--data", str(data), "--decode", "gpu", "--device", "cpu", "--epochs", "1", "--batch-size", "4", "--quiet",
            "--no-export", "--log-interval", "100", "--output", str(output), *extra]


@pytest.mark.slow
@pytest.mark.parametrize(("broken", "workers"), [("truncated", "1"), ("empty", "1"), ("truncated", "0")])
def test_a_broken_training_image_stops_cutmix_zoo_train_with_one_line_and_a_checkpoint(copy_of_tree, tmp_path, monkeypatch, capsys,
                                                                                       broken, workers):
    """``cutmix-zoo train --decode gpu``: a file cut short fails on the device, an empty one in a loader worker (its
    header); either way one line names it, the exit status is a DataError's, and the steps before it are saved."""
    monkeypatch.setattr(train_loop, "check_gpu_decode", lambda *args: None)
    path = copy_of_tree / "train" / "b" / "1.jpg"
    whole = path.read_bytes()
    path.write_bytes(BROKEN[broken](whole))
    files = sorted(str(p) for p in (copy_of_tree / "train").rglob("*.*"))  # ImageFolder's order, shuffled by the run's seed
    sampler = EpochSampler(files, 1, 0, seed=0)
    sampler.set_position(0)
    step = [i for _, i in sampler].index(files.index(str(path))) // 4  # steps completed before the batch that holds it
    output = tmp_path / "out"
    assert cli_main(_device_run(copy_of_tree, output, "--workers", workers)) == exit_code(DataError("")) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cutmix-zoo: error: The image {path} cannot be read ("), err
    assert f"replace or remove it; the run stopped at epoch 1, step {step} of 2" in lines[0] and f"--resume {output}" in lines[0]
    assert "Traceback" not in err and "decode_jpeg" not in err
    state = load_checkpoint(output)
    assert (state["epoch"], state["step"]) == (0, step)

    path.write_bytes(whole)  # the file replaced: the run continues from the step it stopped at
    assert train_main(["--resume", str(output), "--quiet"]) == 0
    assert load_checkpoint(output)["epoch"] == 1


@pytest.mark.slow
def test_a_broken_validation_image_under_decode_gpu_keeps_the_trained_epoch(copy_of_tree, tmp_path, monkeypatch):
    monkeypatch.setattr(train_loop, "check_gpu_decode", lambda *args: None)
    path = copy_of_tree / "val" / "a" / "0.jpg"
    path.write_bytes(BROKEN["garbage-inside"](path.read_bytes()))
    output = tmp_path / "out"
    with pytest.raises(DataError) as e:
        train_main(_device_run(copy_of_tree, output, "--workers", "0")[1:])
    assert str(e.value).startswith(f"The image {path} cannot be read (") and "after training epoch 1" in str(e.value)
    assert exit_code(e.value) == 1 and "\n" not in str(e.value)
    assert (load_checkpoint(output)["epoch"], load_checkpoint(output)["step"]) == (0, 2)
