"""Failures a training or evaluation run can meet while working: each ends with one sentence and exit code 1, in
bounded time, with the files on disk intact: a loss or weights that become non-finite, a corrupt image in the data
folder, an --output that cannot be written, non-finite weights given to `cutmix-zoo eval`."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from cutmix_zoo.errors import TrainingError, WeightsError, exit_code
from cutmix_zoo.train import eval_main, train_main
from cutmix_zoo.train import loop as train_loop
from cutmix_zoo.train.checkpoint import load_checkpoint
from cutmix_zoo.train.data import DataError, EpochSampler, read_image

REPO = Path(__file__).resolve().parents[1]
TINY = ["--model", "pyramidnet", "--depth", "8", "--alpha", "12", "--no-bottleneck", "--dataset", "cifar10",
        "--data", "synthetic", "--synthetic-size", "64", "--batch-size", "16", "--workers", "0", "--device", "cpu", "--quiet"]
STEPS = 64 // 16  # steps per epoch of TINY


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")


def _records(output: Path, event: str) -> list[dict]:
    return [r for r in map(json.loads, (output / "metrics.jsonl").read_text().splitlines()) if r["event"] == event]


def _finite(tensors: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())


# A run of `python -m cutmix_zoo.train` whose loss turns NaN from the optimisation step NAN_FROM on (counted from 1).
_NAN_FROM = """
import os, runpy
from cutmix_zoo.train import loop
calls, original, start = [0], loop.BatchMixer.loss, int(os.environ["NAN_FROM"])
def loss(self, *args, **kwargs):
    calls[0] += 1
    value = original(self, *args, **kwargs)
    return value * float("nan") if calls[0] >= start else value
loop.BatchMixer.loss = loss
runpy.run_module("cutmix_zoo.train", run_name="__main__", alter_sys=True)
"""


# --- a loss or weights that become non-finite -------------------------------------------------

@pytest.mark.slow
def test_a_diverging_run_stops_with_one_sentence_and_writes_no_nan(tmp_path):
    """--lr 1e30 passes check_recipe (it is finite) but sends the weights to infinity in the first steps."""
    done = subprocess.run([sys.executable, "-m", "cutmix_zoo.train", *TINY, "--epochs", "2", "--lr", "1e30", "--log-interval", "2",
                           "--output", str(tmp_path)], capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "training loss became" in lines[0] and "lower --lr" in lines[0], lines
    assert "no checkpoint" in lines[0]
    assert not (tmp_path / "checkpoint.pt").exists() and not (tmp_path / "best.safetensors").exists()
    assert not (tmp_path / "export").exists()
    text = (tmp_path / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text  # every line stays strict JSON
    [diverged] = _records(tmp_path, "diverged")
    assert (diverged["epoch"], diverged["step"], diverged["what"]) == (0, 2, "training loss")


@pytest.mark.slow
def test_nan_in_a_later_epoch_keeps_the_last_finite_checkpoint(tmp_path):
    """The loss turns NaN in the second epoch's first step: exit 1, one line, and checkpoint.pt and best.safetensors stay
    the first epoch's finite weights."""
    env = {**_env(), "NAN_FROM": str(STEPS + 1)}
    done = subprocess.run([sys.executable, "-c", _NAN_FROM, *TINY, "--epochs", "3", "--log-interval", "2", "--no-export",
                           "--output", str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "training loss became nan at epoch 2, step 2" in lines[0], lines
    assert str(tmp_path / "checkpoint.pt") in lines[0] and "epoch 1" in lines[0]
    state = load_checkpoint(tmp_path)
    assert (state["epoch"], state["step"]) == (1, 0) and _finite(state["model"])
    assert state["best"]["epoch"] == 0 and _finite(load_file(tmp_path / "best.safetensors"))
    assert len(_records(tmp_path, "epoch")) == 1


def _nan_gradients_at(monkeypatch, step: int, sigterm: bool = False) -> None:
    """From the ``step``-th optimisation step on, the loss stays finite but its gradients are NaN (so the weights turn NaN
    while the logged loss does not show it); with ``sigterm``, SIGTERM arrives during that step."""
    calls = {"n": 0}
    original = train_loop.BatchMixer.loss

    def loss(self, logits, *args, **kwargs):
        calls["n"] += 1
        value = original(self, logits, *args, **kwargs)
        if calls["n"] < step:
            return value
        if sigterm and calls["n"] == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return torch.where(torch.tensor(True), value, logits.sum() * float("nan"))  # value finite, gradient NaN

    monkeypatch.setattr(train_loop.BatchMixer, "loss", loss)


@pytest.mark.slow
def test_weights_that_turn_nan_in_an_epochs_last_step_are_not_saved(tmp_path, monkeypatch):
    """The loss of the last step is finite, so only the evaluation that follows sees the NaN weights: the run stops before
    the checkpoint and best.safetensors of that epoch are written."""
    _nan_gradients_at(monkeypatch, 2 * STEPS)
    with pytest.raises(TrainingError) as e:
        train_main([*TINY, "--epochs", "3", "--no-export", "--output", str(tmp_path)])
    assert "validation loss became nan at the end of epoch 2" in str(e.value) and "\n" not in str(e.value)
    state = load_checkpoint(tmp_path)
    assert (state["epoch"], state["step"]) == (1, 0) and _finite(state["model"])
    assert _finite(load_file(tmp_path / "best.safetensors"))
    assert exit_code(e.value) == 1


@pytest.mark.slow
def test_sigterm_after_the_weights_turned_nan_saves_no_checkpoint(tmp_path, monkeypatch):
    """Between two metric reductions nothing is checked on the host; the checkpoint an interruption writes is."""
    _nan_gradients_at(monkeypatch, STEPS + 2, sigterm=True)
    with pytest.raises(TrainingError) as e:
        train_main([*TINY, "--epochs", "2", "--log-interval", "100", "--no-export", "--output", str(tmp_path)])
    assert "weights became non-finite" in str(e.value) and "epoch 2, step 2" in str(e.value)
    state = load_checkpoint(tmp_path)
    assert (state["epoch"], state["step"]) == (1, 0) and _finite(state["model"])


# --- non-finite weights in `cutmix-zoo eval` -----------------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A finished one-epoch run with its export/, and an ImageFolder of 20 small PNGs to evaluate it on."""
    output = tmp_path_factory.mktemp("exported")
    assert train_main([*TINY, "--epochs", "1", "--output", str(output)]) == 0
    rng = np.random.default_rng(0)
    for i in range(20):
        folder = output / "images" / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return output


def _broken_export(exported: Path, tmp_path: Path, change) -> Path:
    folder = tmp_path / "broken"
    shutil.copytree(exported / "export", folder)
    weights = load_file(folder / "model.safetensors")
    change(weights)
    save_file(weights, folder / "model.safetensors")
    return folder


@pytest.mark.slow
def test_eval_of_nan_weights_says_so(exported, tmp_path, capsys):
    def poison(weights):
        key = next(k for k, v in weights.items() if v.is_floating_point() and k.endswith("weight"))
        weights[key][0] = float("nan")

    folder = _broken_export(exported, tmp_path, poison)
    assert eval_main([str(exported / "export"), "--data", str(exported / "images"), "--workers", "0", "--json"]) == 0
    assert math.isfinite(json.loads(capsys.readouterr().out)["loss"])  # the run's own export evaluates
    with pytest.raises(WeightsError) as e:
        eval_main([str(folder), "--data", str(exported / "images"), "--workers", "0"])
    assert "non-finite values (NaN or infinity)" in str(e.value) and "\n" not in str(e.value)  # refused by the load itself
    done = subprocess.run([sys.executable, "-m", "cutmix_zoo", "eval", str(folder), "--data", str(exported / "images"), "--workers", "0"],
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1 and "NaN or infinity" in done.stderr, done.stderr
    assert "loss nan" not in done.stdout


def test_eval_of_finite_weights_whose_logits_overflow_says_so(exported, tmp_path):
    def inflate(weights):
        for key, value in weights.items():
            if value.is_floating_point() and key.endswith("weight"):
                value.mul_(1e30)  # finite, but the logits overflow

    folder = _broken_export(exported, tmp_path, inflate)
    with pytest.raises(WeightsError) as e:
        eval_main([str(folder), "--data", str(exported / "images"), "--workers", "0"])
    assert "non-finite logits" in str(e.value) and "finite weights" in str(e.value) and "\n" not in str(e.value)


# --- a corrupt image in the data folder ----------------------------------------------------------

def _image_tree(root: Path, train_per_class: int = 4, classes: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", train_per_class), ("val", 2)):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.jpg", quality=90)
    return root


def _truncate(path: Path) -> bytes:
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    return whole


FOLDER_RUN = ["--model", "pyramidnet", "--depth", "10", "--alpha", "4", "--no-bottleneck", "--dataset", "folder",
              "--batch-size", "4", "--epochs", "2", "--device", "cpu", "--quiet", "--no-export", "--log-interval", "100"]


def test_the_loader_names_an_unreadable_image(tmp_path):
    good = tmp_path / "good.jpg"
    Image.new("RGB", (8, 8)).save(good)
    assert read_image(str(good)).size == (8, 8)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good.read_bytes()[:60])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    for path in (broken, text, tmp_path / "missing.jpg"):
        with pytest.raises(DataError) as e:
            read_image(str(path))
        assert str(e.value).startswith(f"The image {path} cannot be read (") and "\n" not in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_a_corrupt_training_image_stops_the_run_with_its_name_and_a_resumable_checkpoint(tmp_path, workers):
    data = _image_tree(tmp_path / "data")
    broken = data / "train" / "class2" / "1.jpg"
    whole = _truncate(broken)
    # where the file comes in epoch 0: ImageFolder sorts its files, the sampler shuffles them with the run's seed
    files = sorted(str(p) for p in (data / "train").rglob("*.jpg"))
    sampler = EpochSampler(files, 1, 0, seed=0)
    sampler.set_position(0)
    order = [i for _, i in sampler]
    step = order.index(files.index(str(broken))) // 4  # steps completed before the batch that holds it
    output = tmp_path / "out"
    with pytest.raises(DataError) as e:
        train_main([*FOLDER_RUN, "--data", str(data), "--workers", str(workers), "--output", str(output)])
    message = str(e.value)
    assert message.startswith(f"The image {broken} cannot be read") and "\n" not in message
    assert f"epoch 1, step {step} of 4" in message and f"--resume {output}" in message
    state = load_checkpoint(output)
    assert (state["epoch"], state["step"]) == (0, step)
    [stopped] = _records(output, "stopped")
    assert (stopped["epoch"], stopped["step"]) == (0, step) and stopped["error"] == message

    broken.write_bytes(whole)  # the file replaced: the run continues from that step
    assert train_main(["--resume", str(output), "--quiet"]) == 0
    assert load_checkpoint(output)["epoch"] == 2 and len(_records(output, "epoch")) == 2


@pytest.mark.slow
def test_a_corrupt_validation_image_keeps_the_trained_epoch(tmp_path):
    data = _image_tree(tmp_path / "data")
    broken = data / "val" / "class1" / "0.jpg"
    whole = _truncate(broken)
    output = tmp_path / "out"
    with pytest.raises(DataError) as e:
        train_main([*FOLDER_RUN, "--data", str(data), "--workers", "0", "--output", str(output)])
    assert str(e.value).startswith(f"The image {broken} cannot be read") and "after training epoch 1" in str(e.value)
    state = load_checkpoint(output)
    assert (state["epoch"], state["step"]) == (0, 4)  # the epoch's training is kept; its evaluation comes on resume
    broken.write_bytes(whole)
    assert train_main(["--resume", str(output), "--quiet"]) == 0
    epochs = _records(output, "epoch")
    assert [r["epoch"] for r in epochs] == [0, 1] and all(math.isfinite(r["train_loss"]) for r in epochs)


@pytest.mark.slow
def test_a_corrupt_image_on_the_command_line_is_one_line_and_exit_1(tmp_path):
    data = _image_tree(tmp_path / "data", train_per_class=2)
    broken = data / "train" / "class0" / "0.jpg"
    _truncate(broken)
    done = subprocess.run([sys.executable, "-m", "cutmix_zoo.train", *FOLDER_RUN, "--data", str(data), "--workers", "2",
                           "--output", str(tmp_path / "out")], capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(broken) in lines[0] and "Traceback" not in done.stderr, done.stderr


@pytest.mark.slow
def test_a_corrupt_image_on_one_of_two_ranks_stops_the_run_with_a_checkpoint(tmp_path):
    """The rank that meets the file writes the checkpoint by itself (the others wait in a collective until torchrun ends
    them): its step is kept, without the RNG states of the other ranks, so the resume continues but is not exact."""
    import socket

    data = _image_tree(tmp_path / "data")
    broken = data / "train" / "class2" / "1.jpg"
    whole = _truncate(broken)
    output = tmp_path / "out"

    def torchrun(*flags: str) -> subprocess.CompletedProcess:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                               "--master-port", str(port), "-m", "cutmix_zoo.train", *flags], capture_output=True, text=True,
                              env=_env(), timeout=300)

    done = torchrun(*FOLDER_RUN, "--batch-size", "8", "--data", str(data), "--workers", "0", "--output", str(output))
    assert done.returncode != 0
    assert f"cutmix-zoo train: error: The image {broken} cannot be read" in done.stderr, done.stderr[-3000:]
    state = load_checkpoint(output)
    assert state["epoch"] == 0 and state["ranks"] == [] and _finite(state["model"])
    broken.write_bytes(whole)
    done = torchrun("--resume", str(output), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert load_checkpoint(output)["epoch"] == 2 and len(_records(output, "epoch")) == 2


# --- an --output that cannot be written ----------------------------------------------------------

@pytest.mark.slow
def test_an_output_under_a_regular_file_is_refused_before_the_data_is_read(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(TrainingError) as e:  # --data does not exist: the output is checked first
        train_main([*TINY, "--data", str(tmp_path / "missing"), "--output", str(blocker / "run")])
    assert str(e.value).startswith(f"--output {blocker / 'run'} cannot be written") and "\n" not in str(e.value)
    assert blocker.read_text() == "a file, not a folder"
    done = subprocess.run([sys.executable, "-m", "cutmix_zoo.train", *TINY, "--output", str(blocker)], capture_output=True, text=True,
                          env=_env(), timeout=300)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1 and "cannot be written" in done.stderr, done.stderr


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders; the file case covers root")
def test_a_read_only_output_is_refused_before_training(tmp_path):
    output = tmp_path / "locked"
    output.mkdir()
    output.chmod(0o500)
    try:
        for target in (output, output / "run"):
            with pytest.raises(TrainingError, match="cannot be written") as e:
                train_main([*TINY, "--output", str(target)])
            assert "\n" not in str(e.value)
        assert list(output.iterdir()) == []
    finally:
        output.chmod(0o700)


def test_an_output_on_a_full_disk_is_refused_before_training(tmp_path, monkeypatch):
    from cutmix_zoo.train import config

    monkeypatch.setattr(config.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(TrainingError) as e:
        train_main([*TINY, "--output", str(tmp_path / "out")])
    assert "has 1000 bytes free" in str(e.value) and "needs" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out" / "metrics.jsonl").exists()


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full, a device whose every write fails with ENOSPC")
def test_a_metrics_log_on_a_full_disk_is_one_sentence_and_keeps_the_checkpoint(tmp_path):
    """metrics.jsonl linked to /dev/full: every append fails with ENOSPC, as on a full disk."""
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "metrics.jsonl").symlink_to("/dev/full")
    with pytest.raises(TrainingError) as e:
        train_main([*TINY, "--epochs", "1", "--output", str(fresh)])
    assert f"Could not write {fresh / 'metrics.jsonl'} (No space left on device)" in str(e.value)
    assert "no checkpoint of this run was written" in str(e.value) and "\n" not in str(e.value)

    run = tmp_path / "run"
    assert train_main([*TINY, "--epochs", "1", "--no-export", "--output", str(run)]) == 0
    before = (run / "checkpoint.pt").read_bytes()
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to("/dev/full")
    with pytest.raises(TrainingError) as e:
        train_main(["--resume", str(run), "--epochs", "2", "--quiet"])
    assert f"{run / 'checkpoint.pt'} keeps the weights of the end of epoch 1" in str(e.value)
    assert f"continue with --resume {run}" in str(e.value) and "\n" not in str(e.value)
    assert (run / "checkpoint.pt").read_bytes() == before


@pytest.mark.slow
def test_a_checkpoint_that_cannot_be_written_mid_run_is_one_sentence_and_keeps_the_previous(tmp_path, monkeypatch):
    assert train_main([*TINY, "--epochs", "1", "--no-export", "--output", str(tmp_path)]) == 0
    before = (tmp_path / "checkpoint.pt").read_bytes()

    def full(state, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(train_loop.ckpt, "save_atomic", full)
    with pytest.raises(TrainingError) as e:
        train_main(["--resume", str(tmp_path), "--epochs", "2", "--quiet"])
    assert f"Could not write {tmp_path / 'checkpoint.pt'}" in str(e.value) and "No space left on device" in str(e.value)
    assert "\n" not in str(e.value) and (tmp_path / "checkpoint.pt").read_bytes() == before
