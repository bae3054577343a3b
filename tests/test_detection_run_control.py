"""Run control of detection training on the trainer's machinery: exact resume (after an epoch and after SIGTERM mid-epoch),
two gloo ranks ending with identical weights, the dry run, every bad input one line before any training step, and
``shapes --scenes`` writing a folder the COCO reader reads."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cutmix_zoo.cli import main
from cutmix_zoo.detection.data import default_splits, read_split
from cutmix_zoo.detection.scenes import write_scenes
from cutmix_zoo.train import detection_loop
from cutmix_zoo.train.checkpoint import load_checkpoint
from cutmix_zoo.train.config import EXIT_INTERRUPTED
from cutmix_zoo.train.detection import DetectionInterrupted, DetectionRun, train_detector

from servers import free_port

REPO = Path(__file__).resolve().parents[1]
INIT = "pyramidnet20_a48.cutmix_shapes"
LIGHT = dict(rpn_pre_nms_top_n_train=100, rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_train=50, rpn_post_nms_top_n_test=20,
             box_batch_size_per_image=16, box_detections_per_img=10)
# Two steps an epoch (two images, one per step), one val image, a small detector: what an exact resume needs and no more.
SMALL = dict(init=INIT, epochs=2, batch_size=1, lr=0.01, warmup_steps=1, out_channels=16, min_size=48, max_size=48,
             detector_kwargs=LIGHT, workers=0, quiet=True)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return write_scenes(tmp_path_factory.mktemp("scenes"), train_images=2, val_images=1, size=48)


@pytest.fixture(scope="module")
def whole(scenes, tmp_path_factory) -> Path:
    """An uninterrupted two-epoch run."""
    output = tmp_path_factory.mktemp("whole")
    train_detector(DetectionRun(data=[str(scenes)], output=str(output), **SMALL))
    return output


def _weights(output: Path) -> dict[str, torch.Tensor]:
    return load_file(output / "export" / "model.safetensors")


def _epochs(output: Path) -> list[dict]:
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in records if r["event"] == "epoch"]


def _assert_same_run(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert _epochs(a) == _epochs(b) and len(_epochs(a)) == 2


@pytest.mark.slow
def test_one_epoch_then_resume_to_two_equals_two_epochs(scenes, whole, tmp_path):
    train_detector(DetectionRun(data=[str(scenes)], output=str(tmp_path), **{**SMALL, "epochs": 1}))
    assert (load_checkpoint(tmp_path)["epoch"], load_checkpoint(tmp_path)["step"]) == (1, 0)
    train_detector(DetectionRun(data=[str(scenes)], output=str(tmp_path), **SMALL, resume=str(tmp_path)))
    _assert_same_run(whole, tmp_path)


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_that_step_and_resumes_exactly(scenes, whole, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    original = detection_loop.train_step

    def step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # epoch 2, step 1 of 2
            os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(detection_loop, "train_step", step)
        with pytest.raises(DetectionInterrupted, match=r"stopped on request: .*checkpoint.pt keeps the weights of epoch 2, step 1; "
                                                        r"continue it with --resume"):
            train_detector(DetectionRun(data=[str(scenes)], output=str(tmp_path), **SMALL))
    assert (load_checkpoint(tmp_path)["epoch"], load_checkpoint(tmp_path)["step"]) == (1, 1)
    # the command line continues it: what is trained comes from the checkpoint
    assert main(["detect", "train", "--resume", str(tmp_path), "--quiet"]) == 0
    _assert_same_run(whole, tmp_path)
    assert main(["detect", "train", "--resume", str(tmp_path), "--lr", "0.5", "--epochs", "3"]) == 2
    assert "--lr cannot change when resuming" in capsys.readouterr().err



@pytest.mark.slow
def test_two_gloo_ranks_finish_with_identical_weights(scenes, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), "-m", "cutmix_zoo", "detect", "train", "--init", INIT, "--data", str(scenes),
           "--output", str(tmp_path), "--recipe", "scenes", "--epochs", "1", "--batch-size", "2", "--min-size", "48",
           "--max-size", "48", "--out-channels", "16", "--workers", "0", "--device", "cpu", "--quiet"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    start, end = records[0], records[-1]
    assert start["world_size"] == 2 and end["event"] == "end"
    assert len(end["final_weights_sha256"]) == 2 and len(set(end["final_weights_sha256"])) == 1
    assert [r["event"] for r in records].count("epoch") == 1 and (tmp_path / "export" / "model.safetensors").is_file()


def test_dry_run_prints_the_resolved_recipe_and_reads_no_data(scenes, tmp_path, capsys, monkeypatch):
    import PIL.Image

    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: pytest.fail("the dry run opened an image"))
    assert main(["detect", "train", "--init", INIT, "--data", str(scenes), "--output", str(tmp_path / "out"), "--batch-size", "4",
                 "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["recipe"]["name"] == "coco_faster_rcnn" and "torchvision" in plan["recipe"]["sources"]["lr"]
    assert plan["run"]["lr"] == pytest.approx(0.02 * 4 / 16) and plan["run"]["epochs"] == 26
    assert plan["lr_per_epoch"] == pytest.approx([0.005] * 16 + [0.0005] * 6 + [0.00005] * 4)
    assert plan["run"]["aspect_group_factor"] == 3 and plan["run"]["min_size"] == 800
    assert not (tmp_path / "out").exists()
    assert main(["detect", "train", "--init", INIT, "--data", str(scenes), "--output", str(tmp_path), "--recipe", "voc_paper",
                 "--dry-run"]) == 0
    voc = json.loads(capsys.readouterr().out)
    assert voc["run"]["min_size"][0] == 480 and voc["run"]["min_size"][-1] == 800 and voc["run"]["lr_milestones"] == [12, 16]
    assert all(source.startswith(("not in the paper", "the CutMix paper")) for source in voc["recipe"]["sources"].values())


def _coco(root: Path) -> tuple[Path, dict]:
    path = root / "annotations" / "instances_train.json"
    return path, json.loads(path.read_text())


def _break(how: str, root: Path) -> None:
    """Spoil the COCO scenes at ``root`` in one way the issue lists (or a value a run refuses)."""
    path, data = _coco(root)
    ann = data["annotations"][0]
    edits = {
        "outside": lambda: ann.update(bbox=[40, 40, 30, 30]),
        "negative": lambda: ann.update(bbox=[4, 4, -3, 5]),
        "category": lambda: ann.update(category_id=99),
        "unlisted": lambda: ann.update(image_id=77),
        "empty": lambda: data.update(images=[], annotations=[]),
    }
    if how in edits:
        edits[how]()
        path.write_text(json.dumps(data))
    elif how == "missing":
        (root / "train" / data["images"][0]["file_name"]).unlink()
    elif how == "unreadable":
        (root / "train" / data["images"][0]["file_name"]).write_bytes(b"not a png")
    elif how == "json":
        path.write_text(path.read_text()[:-10])


BAD = [("outside", [], "lies outside its 48x48 image"), ("negative", [], "has a negative width or height"),
       ("category", [], "has the category id 99, which is not in the file's categories"),
       ("unlisted", [], "is of an image that the file does not list"), ("missing", [], "is listed but does not exist"),
       ("unreadable", [], "cannot be read"), ("empty", [], "lists no images: the split 'train' is empty"),
       ("json", [], "is not valid JSON"), ("none", ["--epochs", "0"], "--epochs must be a positive integer"),
       ("none", ["--batch-size", "3"], "is smaller than one per-rank batch of 3"), ("none", ["--lr", "-1"], "--lr must be positive"),
       ("none", ["--device", "meta"], "is not one the trainer runs on"), ("none", ["--freeze-stages", "9"], "freeze_stages counts")]


@pytest.mark.parametrize("how, flags, message", BAD, ids=[f"{h}{''.join(f)}" for h, f, _ in BAD])
def test_bad_input_is_one_line_before_any_training_step(scenes, tmp_path, monkeypatch, capsys, how, flags, message):
    root = tmp_path / "data"
    shutil.copytree(scenes, root)
    _break(how, root)
    monkeypatch.setattr(detection_loop, "train_step", lambda *a, **k: pytest.fail("a training step ran"))
    rc = main(["detect", "train", "--init", INIT, "--data", str(root), "--output", str(tmp_path / "out"), "--recipe", "scenes",
               "--min-size", "48", "--max-size", "48", "--batch-size", "2", "--workers", "0", *flags])
    err = capsys.readouterr().err
    assert rc != 0 and len(err.strip().splitlines()) == 1 and err.startswith("cutmix-zoo: error: ") and message in err, err
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


def test_voc_malformed_xml_and_empty_box_are_one_line(tmp_path, capsys):
    root = write_scenes(tmp_path / "voc", train_images=2, val_images=1, size=48, layout="voc")
    xml = root / "Annotations" / "train_00001.xml"
    good = xml.read_text()
    for text, message in ((good[:-20], "is not valid XML"),
                          (good.replace("<xmax>", "<xmax>-", 1), "has a non-positive width or height")):
        xml.write_text(text)
        assert main(["detect", "train", "--init", INIT, "--data", str(root), "--output", str(tmp_path / "out"), "--workers", "0"]) == 1
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err


def test_a_run_without_init_or_data_is_one_line(tmp_path, capsys):
    assert main(["detect", "train", "--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == ("cutmix-zoo: error: detect train needs --init and --data (or --resume OUTPUT to "
                                               "continue a run).")


def test_shapes_scenes_writes_a_folder_the_coco_reader_reads(tmp_path, capsys):
    assert main(["shapes", str(tmp_path / "scenes"), "--scenes", "--train-images", "3", "--val-images", "2", "--size", "48"]) == 0
    assert "COCO layout" in capsys.readouterr().out
    assert default_splits(tmp_path / "scenes") == ("train", "val")
    train = read_split(tmp_path / "scenes", "train")
    assert train.layout == "coco" and len(train.records) == 3 and len(train.classes) == 10
    assert all(r.width == r.height == 48 and len(r.boxes) >= 1 for r in train.records)
    assert main(["shapes", str(tmp_path / "scenes"), "--scenes"]) == 2  # not empty
    assert main(["shapes", str(tmp_path / "voc"), "--scenes", "--layout", "voc", "--train-images", "1", "--val-images", "1"]) == 0
    assert default_splits(tmp_path / "voc") == ("train", "val")


def test_a_stop_on_request_is_one_line_and_exit_143(scenes, tmp_path, monkeypatch, capsys):
    import cutmix_zoo.train.detection as detection

    def stopped(run):
        raise DetectionInterrupted(f"The run stopped on request: ...; continue it with --resume {run.output}.")

    monkeypatch.setattr(detection, "train_detector", stopped)
    assert main(["detect", "train", "--init", INIT, "--data", str(scenes), "--output", str(tmp_path)]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip().splitlines() == [f"cutmix-zoo: The run stopped on request: ...; continue it with --resume {tmp_path}."]
