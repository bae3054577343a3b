"""The trainer on CPU: recipes from the registry, learning, exact resume, two-rank DDP, export and eval, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import cutmix_zoo
from cutmix_zoo.errors import InvalidArgumentError, UnknownModelError, WeightsError
from cutmix_zoo.recipes import recipe_for
from cutmix_zoo.registry import ENTRIES
from cutmix_zoo.train import eval_main, train_main
from cutmix_zoo.train import loop as train_loop
from cutmix_zoo.train.checkpoint import load_checkpoint
from cutmix_zoo.train.config import EXIT_INTERRUPTED, resolve, train_parser
from cutmix_zoo.train.data import DataError

from servers import free_port

REPO = Path(__file__).resolve().parents[1]
TINY = ["--model", "pyramidnet", "--depth", "8", "--alpha", "12", "--no-bottleneck", "--dataset", "cifar10",
        "--data", "synthetic", "--quiet"]


def _records(output: Path, event: str) -> list[dict]:
    lines = (output / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == event]


def _weights(output: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(output)["model"]


# --- recipes -------------------------------------------------------------------------------

def test_every_registry_entry_has_a_recipe():
    for name in ENTRIES:
        recipe, arch = recipe_for(name)
        assert arch == ENTRIES[name].arch and recipe.nesterov and recipe.momentum == 0.9 and recipe.weight_decay == 1e-4


def test_recipes_are_the_originals():
    c100, _ = recipe_for("pyramidnet200_a240.cutmix_c100")
    assert (c100.epochs, c100.batch_size, c100.lr, c100.mix, c100.beta, c100.mix_prob) == (300, 64, 0.25, "cutmix", 1.0, 0.5)
    # the original: lr * 0.1 ** (epoch // (epochs * 0.5)) * 0.1 ** (epoch // (epochs * 0.75))
    for epoch in (0, 149, 150, 224, 225, 299):
        assert c100.lr_at(epoch) == pytest.approx(0.25 * 0.1 ** (epoch // 150.0) * 0.1 ** (epoch // 225.0))
    in1k, _ = recipe_for("resnet50.cutmix_in1k")
    assert (in1k.epochs, in1k.batch_size, in1k.lr, in1k.mix_prob, in1k.transforms) == (300, 256, 0.1, 1.0, "imagenet")
    assert [in1k.lr_at(e) for e in (0, 74, 75, 150, 225)] == pytest.approx([0.1, 0.1, 0.01, 0.001, 0.0001])
    assert recipe_for("resnet50.baseline_in1k")[0].mix == "none"
    assert recipe_for("pyramidnet200_a240.cutout_ls_c100")[0].label_smoothing == 0.1
    assert recipe_for("resnet50.feature_cutmix_in1k")[0].mix_layers == "random"


def test_flags_override_the_recipe():
    args = train_parser().parse_args(["--recipe", "resnet50.cutmix_in1k", "--epochs", "90", "--lr", "0.2", "--mix-prob", "0.5"])
    recipe, spec, name, method = resolve(args)
    assert (recipe.epochs, recipe.lr, recipe.mix_prob, recipe.lr_at(29), recipe.lr_at(30)) == (90, 0.2, 0.5, 0.2, pytest.approx(0.02))
    assert (spec.family, spec.architecture, name, method) == ("resnet", "resnet50", "resnet50.cutmix_in1k", "cutmix")
    args = train_parser().parse_args(["--model", "pyramidnet", "--depth", "110", "--alpha", "64", "--mix", "mixup", "--dataset", "cifar100"])
    recipe, spec, name, method = resolve(args)
    assert spec.args == {"depth": 110, "alpha": 64, "bottleneck": True, "imagenet": False}
    assert (recipe.lr, recipe.mix, name) == (0.25, "mixup", "pyramidnet110_a64.mixup_c100")


def test_bad_arguments_fail_with_one_sentence(tmp_path):
    with pytest.raises(UnknownModelError, match="Unknown model"):
        train_main(["--recipe", "resnet50.nonsense_in1k"])
    with pytest.raises(InvalidArgumentError, match="--depth and --alpha"):
        train_main(["--model", "pyramidnet", "--output", str(tmp_path)])
    with pytest.raises(InvalidArgumentError, match="--batch-size must be at least 1"):
        train_main([*TINY, "--batch-size", "0", "--output", str(tmp_path)])


def test_missing_or_misshapen_data_folders_are_one_sentence(tmp_path):
    with pytest.raises(DataError, match="does not exist") as e:
        train_main([*TINY, "--data", str(tmp_path / "nowhere"), "--output", str(tmp_path)])
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        train_main([*TINY, "--data", str(tmp_path), "--output", str(tmp_path)])
    with pytest.raises(DataError, match="train/ and val/"):
        train_main([*TINY, "--dataset", "folder", "--depth", "10", "--data", str(tmp_path), "--output", str(tmp_path)])
    with pytest.raises(WeightsError, match="no checkpoint"):
        train_main(["--resume", str(tmp_path / "none")])


@pytest.mark.parametrize("dataset, entry, size", [("imagenet", "resnet50.cutmix_in1k", (300, 200)),
                                                  ("cifar100", "pyramidnet200_a240.cutmix_c100", (32, 32))])
def test_the_trainers_eval_transform_is_the_zoos(dataset, entry, size):
    """Validation during training gives what cutmix_zoo.transforms gives for a model trained on the same data."""
    import numpy as np

    from cutmix_zoo.registry import data_config
    from cutmix_zoo.train.data import build_transforms

    data = data_config(dataset)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    _, trainer = build_transforms("imagenet" if dataset == "imagenet" else "cifar", data.input_size[-1], data.mean, data.std,
                                  data.resize)
    assert torch.equal(trainer(image), cutmix_zoo.transforms(entry)(image))


# --- training ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A short run on the learnable synthetic set: 4 epochs of a 8-layer PyramidNet with CutMix, two loader workers."""
    output = tmp_path_factory.mktemp("run")
    assert train_main([*TINY, "--epochs", "4", "--batch-size", "32", "--lr", "0.1", "--synthetic-size", "640",
                       "--workers", "2", "--output", str(output)]) == 0
    return output


@pytest.mark.slow
def test_a_short_run_learns(trained):
    epochs = _records(trained, "epoch")
    assert len(epochs) == 4
    assert epochs[0]["val_top1_err"] < 90 or epochs[-1]["val_top1_err"] < epochs[0]["val_top1_err"]
    end = _records(trained, "end")[0]
    assert end["best_top1_err"] < 25, epochs  # chance is 90% on 10 classes
    assert end["best_top1_err"] == min(e["val_top1_err"] for e in epochs)


@pytest.mark.slow
def test_export_loads_back_as_a_zoo_model(trained, tmp_path):
    folder = trained / "export"
    assert {p.name for p in folder.iterdir()} >= {"model.safetensors", "config.json", "README.md"}
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["family"] == "pyramidnet" and cfg["arch_args"]["depth"] == 8 and cfg["num_classes"] == 10
    assert cfg["top1_err"] == _records(trained, "end")[0]["best_top1_err"]
    model = cutmix_zoo.load(folder)
    from safetensors.torch import load_file

    best = load_file(trained / train_loop.BEST_WEIGHTS)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in best.items())
    features = cutmix_zoo.load(folder, features_only=True)
    assert len(features(torch.randn(1, 3, 32, 32))) == len(features.feature_info)
    head = cutmix_zoo.load(str(folder), num_classes=3)
    assert head(torch.randn(2, 3, 32, 32)).shape == (2, 3)


@pytest.mark.slow
def test_eval_reports_the_exported_models_error(trained, tmp_path, capsys):
    from cutmix_zoo.train.data import SyntheticImages

    val = SyntheticImages(64, 10, 32, split_seed=1)
    for i in range(len(val)):
        img, target = val[i]
        path = tmp_path / "val" / f"class{target}"
        path.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(path / f"{i}.png")
    assert eval_main([str(trained / "export"), "--data", str(tmp_path), "--workers", "0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 64 and result["top1_err"] < 50
    assert result["precision"] == "fp32"  # the original test.py and the published numbers are fp32

    # fp32 evaluation equals the model's own fp32 logits; bf16 is asked for by name and differs in the loss
    from cutmix_zoo.train.evaluation import evaluate_model

    model = cutmix_zoo.load(trained / "export")
    fp32 = evaluate_model(model, str(tmp_path), batch_size=64)
    x = torch.stack([cutmix_zoo.transforms(model)(Image.open(p).convert("RGB")) for p in sorted((tmp_path / "val").rglob("*.png"))])
    y = torch.tensor([int(p.parent.name.removeprefix("class")) for p in sorted((tmp_path / "val").rglob("*.png"))])
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model(x), y).item()
    assert fp32["loss"] == pytest.approx(expected, rel=1e-5)
    assert eval_main([str(trained / "export"), "--data", str(tmp_path), "--workers", "0", "--json", "--precision", "bf16"]) == 0
    bf16 = json.loads(capsys.readouterr().out)
    assert bf16["precision"] == "bf16" and bf16["loss"] != fp32["loss"] and bf16["loss"] == pytest.approx(fp32["loss"], rel=0.05)


def _interrupt_at(monkeypatch, step: int, how: str) -> None:
    """Make the training loop get SIGTERM (or crash) during its ``step``-th optimisation step."""
    calls = {"n": 0}
    original = train_loop.BatchMixer.loss

    def loss(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == step:
            if how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(train_loop.BatchMixer, "loss", loss)


RESUME_RUN = [*TINY, "--epochs", "3", "--batch-size", "16", "--synthetic-size", "128", "--workers", "0", "--deterministic",
              "--dropblock", "0.1", "--mix-layers", "random", "--log-interval", "3", "--no-export"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("whole")
    assert train_main([*RESUME_RUN, "--output", str(output)]) == 0
    return output


@pytest.mark.slow
@pytest.mark.parametrize("how, step", [("sigterm", 11), ("crash", 13)])
def test_interrupted_and_resumed_equals_uninterrupted(uninterrupted, tmp_path, monkeypatch, how, step):
    """SIGTERM mid-epoch saves a checkpoint at that step; a crash leaves the last epoch's; both resume exactly."""
    with monkeypatch.context() as patch:
        _interrupt_at(patch, step, how)
        if how == "sigterm":
            assert train_main([*RESUME_RUN, "--output", str(tmp_path)]) == EXIT_INTERRUPTED
            state = load_checkpoint(tmp_path)
            assert (state["epoch"], state["step"]) == (1, step - 8)  # 8 steps per epoch
        else:
            with pytest.raises(KeyboardInterrupt):
                train_main([*RESUME_RUN, "--output", str(tmp_path)])
            assert (load_checkpoint(tmp_path)["epoch"], load_checkpoint(tmp_path)["step"]) == (1, 0)
    assert train_main(["--resume", str(tmp_path), "--quiet"]) == 0
    expected, got = _weights(uninterrupted), _weights(tmp_path)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    whole = [{k: v for k, v in r.items() if k != "images_per_s"} for r in _records(uninterrupted, "epoch")]
    resumed = [{k: v for k, v in r.items() if k != "images_per_s"} for r in _records(tmp_path, "epoch")]
    assert resumed == whole



@pytest.mark.slow
def test_two_gloo_ranks_end_with_identical_weights(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), "-m", "cutmix_zoo.train", *TINY, "--epochs", "2", "--batch-size", "32",
           "--synthetic-size", "256", "--workers", "0", "--device", "cpu", "--output", str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    start = _records(tmp_path, "start")[0]
    assert start["world_size"] == 2
    end = _records(tmp_path, "end")[0]
    assert len(end["final_weights_sha256"]) == 2 and len(set(end["final_weights_sha256"])) == 1
    assert (tmp_path / "export" / "model.safetensors").is_file()
    steps = [r["step"] for r in _records(tmp_path, "train") if r["epoch"] == 0]
    assert steps[-1] == 256 // 32  # the global batch of 32 is 16 per rank: 128 images per rank
