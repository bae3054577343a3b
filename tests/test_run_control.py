"""Run control of the trainer: extending and moving a run on resume, refusing changes to what is trained,
the dry run, and bad model shapes refused before any data is read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cutmix_zoo.errors import InvalidArgumentError
from cutmix_zoo.train import train_main
from cutmix_zoo.train.checkpoint import load_checkpoint
from cutmix_zoo.train.config import default_workers, train_parser

REPO = Path(__file__).resolve().parents[1]
TINY = ["--model", "pyramidnet", "--depth", "8", "--alpha", "12", "--no-bottleneck", "--dataset", "cifar10",
        "--data", "synthetic", "--synthetic-size", "64", "--batch-size", "16", "--workers", "0", "--device", "cpu", "--quiet"]


def _epochs(output: Path) -> list[dict]:
    records = map(json.loads, (output / "metrics.jsonl").read_text().splitlines())
    return [r for r in records if r["event"] == "epoch"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished two-epoch run."""
    output = tmp_path_factory.mktemp("finished")
    assert train_main([*TINY, "--epochs", "2", "--output", str(output)]) == 0
    return output


@pytest.mark.slow
def test_resume_with_more_epochs_extends_a_finished_run(finished, tmp_path):
    assert load_checkpoint(finished)["epoch"] == 2
    moved = tmp_path / "longer"
    assert train_main(["--resume", str(finished), "--epochs", "4", "--output", str(moved), "--quiet"]) == 0
    assert load_checkpoint(moved)["epoch"] == 4
    assert [r["epoch"] for r in _epochs(moved)] == [0, 1, 2, 3]  # the log continues the original's
    assert (moved / "export" / "model.safetensors").is_file()
    assert json.loads((moved / "export" / "config.json").read_text())["train_recipe"]["epochs"] == 4
    assert load_checkpoint(finished)["epoch"] == 2  # --output B leaves A as it was
    # the schedule is the 4-epoch run's: CIFAR drops at 50% and 75%
    assert [r["lr"] for r in _epochs(moved)][2:] == pytest.approx([0.025, 0.0025])


@pytest.mark.slow
def test_resume_into_the_same_folder_continues_to_the_new_epoch_count(finished, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    assert train_main(["--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    assert load_checkpoint(run)["epoch"] == 3 and len(_epochs(run)) == 3


@pytest.mark.parametrize("flags, named", [
    (["--lr", "0.5"], "--lr"),
    (["--model", "resnet50"], "--model"),
    (["--dataset", "cifar100"], "--dataset"),
    (["--mix", "mixup"], "--mix"),
    (["--recipe", "pyramidnet200_a240.mixup_c100"], "--recipe"),
    (["--depth", "20"], "--depth"),
])
def test_resume_refuses_flags_that_change_what_is_trained(finished, tmp_path, flags, named):
    with pytest.raises(InvalidArgumentError) as e:
        train_main(["--resume", str(finished), *flags, "--output", str(tmp_path / "x")])
    assert str(e.value).startswith(named + " cannot change when resuming") and "\n" not in str(e.value)
    assert not (tmp_path / "x").exists()


def test_resume_accepts_the_runs_own_values_and_run_flags(finished, tmp_path):
    out = tmp_path / "same"
    assert train_main(["--resume", str(finished), "--lr", "0.25", "--alpha", "12", "--mix-prob", "0.5", "--workers", "1", "--log-interval", "2",
                       "--output", str(out), "--quiet", "--no-export"]) == 0
    assert load_checkpoint(out)["epoch"] == 2 and not (out / "export").exists()


def _dry_run(capsys, *flags: str) -> dict:
    assert train_main([*flags, "--dry-run"]) == 0
    return json.loads(capsys.readouterr().out)


def test_dry_run_prints_the_resolved_run_without_touching_data_or_files(capsys, tmp_path):
    out = tmp_path / "never"
    run = _dry_run(capsys, "--recipe", "resnet50.cutmix_in1k", "--epochs", "90", "--data", str(tmp_path / "no-such-data"),
                   "--output", str(out))
    assert not out.exists()
    assert run["name"] == "resnet50.cutmix_in1k" and run["model"]["family"] == "resnet"
    assert run["model"]["parameters"] == 25_557_032  # ResNet-50, 1000 classes (torchvision's count)
    # train.py: epochs != 300 on ImageNet -> x0.1 every 30 epochs
    lrs = run["lr_per_epoch"]
    assert len(lrs) == 90 and lrs[29] == pytest.approx(0.1) and lrs[30] == pytest.approx(0.01) and lrs[89] == pytest.approx(0.001)
    assert run["recipe"]["mix"] == "cutmix" and run["recipe"]["mix_prob"] == 1.0 and run["recipe"]["batch_size"] == 256
    assert run["outputs"]["checkpoint"] == str(out / "checkpoint.pt") and run["outputs"]["export"] == str(out / "export")


def test_dry_run_counts_the_papers_pyramidnet(capsys):
    run = _dry_run(capsys, "--recipe", "pyramidnet200_a240.cutmix_c100")
    assert run["model"]["parameters"] == 26_844_952  # PyramidNet-200 alpha 240 on CIFAR-100, as the original
    assert run["model"]["num_classes"] == 100 and len(run["lr_per_epoch"]) == 300
    assert run["lr_per_epoch"][149] == pytest.approx(0.25) and run["lr_per_epoch"][150] == pytest.approx(0.025)


def test_bad_model_shapes_are_refused_before_the_data_is_read(tmp_path):
    with pytest.raises(InvalidArgumentError) as e:  # --data does not exist: the model is checked first
        train_main(["--model", "pyramidnet", "--depth", "111", "--alpha", "48", "--dataset", "cifar100",
                    "--data", str(tmp_path / "missing"), "--output", str(tmp_path / "out")])
    assert "pyramidnet111" in str(e.value) and "depth 111" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_bad_model_shape_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "cutmix_zoo.train", "--model", "pyramidnet", "--depth", "111", "--alpha", "48",
                           "--output", str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "cannot be built" in done.stderr


def test_default_workers_do_not_exceed_the_cpus():
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert train_parser().parse_args([]).workers == default_workers() == max(1, min(4, cpus))
    with pytest.raises(InvalidArgumentError, match="--workers must be 0 or more"):
        train_main([*TINY, "--workers", "-1", "--output", "unused"])
