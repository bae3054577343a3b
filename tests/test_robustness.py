"""cutmix-zoo robustness: the paper's section 4.3 on a generated validation folder (Shapes-10 test images written as PNGs)."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import cutmix_zoo
from cutmix_zoo.cli import main
from cutmix_zoo.cli.reporting import shapes_benchmark
from cutmix_zoo.errors import InvalidArgumentError
from cutmix_zoo.reports import robustness

CUTMIX, BASELINE = "pyramidnet20_a48.cutmix_shapes", "pyramidnet20_a48.baseline_shapes"
IMAGES = 120


def write_val(root: Path, count: int, rename=lambda name: name) -> Path:
    """The first ``count`` Shapes-10 test images as ``root/val/<class>/<index>.png``."""
    images, labels, classes, _ = shapes_benchmark(count)
    for image, label in zip(images, labels):
        folder = root / "val" / rename(classes[label])
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{len(list(folder.iterdir())):04d}.png")
    return root


@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory) -> Path:
    return write_val(tmp_path_factory.mktemp("shapes"), IMAGES)


@pytest.fixture(scope="module")
def report(shapes_folder, tmp_path_factory, one_thread) -> tuple[dict, Path, str]:
    out = tmp_path_factory.mktemp("report")
    pytest.importorskip("matplotlib")
    import io
    from contextlib import redirect_stdout

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main(["robustness", "--data", str(shapes_folder), "--models", f"{CUTMIX},{BASELINE}", "-o", str(out),
                     "--hole-steps", "4", "--ratios", "5", "--noise-images", "120", "--batch-size", "40"])
    assert code == 0
    return json.loads((out / "report.json").read_text()), out, buffer.getvalue()


def test_report_has_the_documented_fields(report):
    data, out, printed = report
    assert data["images"] == IMAGES and data["decoded_images"] == IMAGES  # each image decoded once
    assert data["classes"] == sorted(data["classes"]) and len(data["classes"]) == 10
    assert data["settings"]["hole_steps"] == 4 and data["settings"]["ratios"] == [0, 0.25, 0.5, 0.75, 1]
    assert data["settings"]["epsilon"] == pytest.approx(8 / 255) and data["settings"]["ood"] == ["gaussian", "uniform"]
    assert data["command"].startswith("cutmix-zoo robustness --data ")
    assert set(data["models"]) == {CUTMIX, BASELINE}
    for name, r in data["models"].items():
        assert r["model"] == name and r["input_size"] == [32, 32] and r["label_mapping"] == "class names"
        assert set(r) >= {"clean", "occlusion", "in_between", "fgsm", "ood"}
        assert r["occlusion"]["hole_sizes"] == [0, 8, 16, 24, 32]
        assert len(r["occlusion"]["centre_top1_err"]) == len(r["occlusion"]["boundary_top1_err"]) == 5
        assert len(r["in_between"]["mixup_err"]) == len(r["in_between"]["cutmix_err"]) == 5
        assert len(r["in_between"]["mixup_neither_in_top2"]) == len(r["in_between"]["cutmix_neither_in_top2"]) == 5
        assert r["in_between"]["pairs"] == IMAGES
        for kind in ("gaussian", "uniform"):
            assert set(r["ood"][kind]) == {"tnr_at_95_tpr", "auroc", "detection_acc"}
    for picture in ("occlusion.png", "in_between.png", "summary.png"):
        with Image.open(out / picture) as image:
            assert image.format == "PNG" and image.width > 400 and image.height > 150
    assert sorted(Path(p).name for p in data["pictures"]) == ["in_between.png", "occlusion.png", "summary.png"]
    assert "Top-1 error (%) under occlusion" in printed and f"{CUTMIX}  " in printed and "FGSM acc %" in printed


def test_the_clean_error_is_the_models_own_and_occlusion_ends_at_chance(report, shapes_folder):
    data, _, _ = report
    paths = sorted(str(p) for p in (shapes_folder / "val").rglob("*.png"))
    truth = [Path(p).parent.name for p in paths]
    for name, r in data["models"].items():
        predictions = cutmix_zoo.predict(paths, model=name, top=1)
        misses = sum(p[0]["label"] != t for p, t in zip(predictions, truth))
        assert r["clean"]["top1_err"] == pytest.approx(100 * misses / IMAGES)
        occlusion = r["occlusion"]
        assert occlusion["centre_top1_err"][0] == r["clean"]["top1_err"]  # hole size 0: nothing is occluded
        assert occlusion["boundary_top1_err"][-1] == r["clean"]["top1_err"]  # the kept square is the whole image
        for full in (occlusion["centre_top1_err"][-1], occlusion["boundary_top1_err"][0]):  # a blank image: one class for all
            assert 75 <= full <= 100
        assert occlusion["centre_top1_err"][2] > r["clean"]["top1_err"]  # a half-size hole hurts


def test_cutmix_and_baseline_are_both_measured_fgsm_hurts_and_noise_is_detected(report):
    data, _, _ = report
    for name in (CUTMIX, BASELINE):
        r = data["models"][name]
        assert r["fgsm"]["top1_acc"] < r["fgsm"]["clean_top1_acc"] == r["clean"]["top1_acc"]
        mix = r["in_between"]
        # lam = 1 is the first image alone: "neither class" is then at most its clean error
        assert mix["mixup_err"][-1] <= r["clean"]["top1_err"] + 1e-9 and mix["cutmix_err"][-1] <= r["clean"]["top1_err"] + 1e-9
        assert max(mix["cutmix_err"]) > mix["cutmix_err"][-1]  # blends are harder than either image
        assert all(a >= b for a, b in zip(mix["mixup_err"], mix["mixup_neither_in_top2"]))  # top-2 is the stricter test
        for kind in ("gaussian", "uniform"):
            metrics = r["ood"][kind]
            assert all(0 <= v <= 1 for v in metrics.values())
            assert metrics["auroc"] > 0.5 and metrics["detection_acc"] >= 0.5
    assert data["models"][CUTMIX]["in_between"]["cutmix_err"] != data["models"][BASELINE]["in_between"]["cutmix_err"]


def test_every_image_is_decoded_once_and_every_size_runs_from_the_decoded_batch(shapes_folder, monkeypatch, one_thread):
    paths, labels, classes = robustness.read_validation_folder(shapes_folder)
    paths, labels = paths[:24], labels[:24]
    opened = []
    real = robustness.open_image
    monkeypatch.setattr(robustness, "open_image", lambda image: opened.append(image) or real(image))
    ood = paths[:5]
    result = robustness.evaluate([CUTMIX], paths, labels, classes, hole_steps=4, ratios=3, noise_count=10, batch_size=12, ood_images=ood)
    assert sorted(opened) == sorted(paths + ood) and result.decoded_images == 29
    r = result.models[CUTMIX]
    batches = 2
    # per batch: clean, 4 + 4 occlusions (sizes 0 and full reuse the clean pass), 3 x 2 blends, FGSM (with gradient) and
    # its check; then one batch per noise kind and one for the out-of-distribution folder
    assert r.forward_batches == batches * (1 + 8 + 6 + 2) + 2 + 1
    assert set(r.ood) == {"gaussian", "uniform", "folder"}


def test_folders_named_by_class_in_another_order_map_by_name(tmp_path, one_thread):
    model = cutmix_zoo.load(CUTMIX)
    root = write_val(tmp_path, 30, rename=lambda name: "z_" + name if name == "circle" else name.replace(" ", "-"))
    paths, labels, classes = robustness.read_validation_folder(root)
    mapping, how = robustness.label_map(model, classes)  # z_circle is no class name: the k-th folder is class k
    assert how == "folder order" and mapping.tolist() == list(range(10))
    with pytest.raises(InvalidArgumentError, match="has 10 classes but the data has 3 class folders whose names"):
        robustness.label_map(model, ["a", "b", "circle"])
    root2 = write_val(tmp_path / "b", 30, rename=lambda name: name.upper().replace(" ", "_"))
    paths, labels, classes = robustness.read_validation_folder(root2)
    mapping, how = robustness.label_map(model, classes)
    assert how == "class names" and classes[0] == "CIRCLE" and mapping[classes.index("HORIZONTAL_BAR")] == 7
    result = robustness.evaluate({"m": model}, paths, labels, classes, measures=["occlusion"], hole_steps=1)
    assert result.models["m"].clean.top1_err < 20 and "in_between" not in result.models["m"].to_dict()


def test_masks_pairs_and_sizes():
    assert robustness.hole_sizes(224, 8) == [0, 28, 56, 84, 112, 140, 168, 196, 224]
    centre = robustness.occlusion_masks(8, 8, [0, 4, 8], "centre")
    boundary = robustness.occlusion_masks(8, 8, [0, 4, 8], "boundary")
    assert centre.shape == (3, 1, 8, 8) and torch.equal(centre + boundary, torch.ones(3, 1, 8, 8))
    assert centre[0].sum() == 64 and centre[1].sum() == 48 and centre[2].sum() == 0
    assert centre[1, 0, 2:6, 2:6].sum() == 0  # the hole is centred
    patch = robustness.cutmix_masks(10, 10, 0.75, torch.tensor([[0.0, 0.0], [0.999, 0.999]]))
    assert patch.shape == (2, 1, 10, 10) and patch[0].sum() == 25 and patch[0, 0, :5, :5].all() and patch[1, 0, 5:, 5:].all()
    assert robustness.cutmix_masks(10, 10, 1.0, torch.rand(1, 2)).sum() == 0
    assert robustness.partners([0, 0, 1, 2]) == [2, 2, 3, 0] and robustness.partners([3, 3]) is None
    assert robustness.mixing_ratios(3) == [0, 0.5, 1]


def test_ood_metrics_on_known_scores():
    perfect = robustness.ood_metrics(torch.tensor([0.9, 0.8, 0.95]), torch.tensor([0.1, 0.2]))
    assert perfect == robustness.OodMetrics(tnr_at_95_tpr=1.0, auroc=1.0, detection_acc=1.0)
    same = robustness.ood_metrics(torch.full((10,), 0.5), torch.full((10,), 0.5))
    assert same.auroc == 0.5 and same.tnr_at_95_tpr == 0.0 and same.detection_acc == 0.5
    inside = torch.arange(1, 21, dtype=torch.float32)  # 1..20: the 95% TPR threshold keeps 19 of 20, so it is 2
    outside = torch.tensor([0.5, 1.5, 2.5, 30.0])
    m = robustness.ood_metrics(inside, outside)
    assert m.tnr_at_95_tpr == 0.5  # 0.5 and 1.5 fall below 2
    assert m.auroc == pytest.approx((20 + 19 + 18 + 0) / 80)
    assert m.detection_acc == pytest.approx(max(0.5 * (19 / 20 + 2 / 4), 0.5 * (18 / 20 + 3 / 4)))


def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def test_bad_input_is_one_line(tmp_path, capsys, shapes_folder, monkeypatch):
    out = str(tmp_path / "out")
    (tmp_path / "noval" / "train" / "a").mkdir(parents=True)
    one = tmp_path / "one" / "val" / "circle"
    one.mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(one / "a.png")
    broken = write_val(tmp_path / "broken", 20)
    (broken / "val" / "circle" / "zz.png").write_text("not a png")
    empty = tmp_path / "empty" / "val"
    (empty / "circle").mkdir(parents=True)
    (empty / "square").mkdir()
    Image.new("RGB", (32, 32)).save(empty / "circle" / "a.png")
    models = ["--models", CUTMIX]
    cases = [
        (["--data", str(tmp_path / "noval"), *models], 2, "has no val/ folder"),
        (["--data", str(tmp_path / "missing"), *models], 2, "does not exist"),
        (["--data", str(tmp_path / "one"), *models], 2, "needs at least two classes"),
        (["--data", str(empty.parent), *models], 2, "holds no images"),
        (["--data", str(broken), *models, "--measures", "occlusion", "--hole-steps", "1"], 2, "zz.png is not an image file"),
        (["--data", str(shapes_folder), "--models", "resnet5"], 2, "Unknown model 'resnet5'"),
        (["--data", str(shapes_folder), *models, "--measures", "occlusion,blur"], 2, "Unknown measure 'blur'"),
        (["--data", str(shapes_folder), *models, "--ood", str(tmp_path / "noval")], 2, "holds no images"),
    ]
    for argv, status, message in cases:
        code, err = _run(["robustness", *argv, "-o", out], capsys)
        assert code == status, argv
        assert err.startswith("cutmix-zoo: error: ") and message in err and len(err.strip().splitlines()) == 1, err

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    code, err = _run(["robustness", "--data", str(shapes_folder), *models, "-o", out], capsys)
    assert code == 1 and 'pip install "cutmix-zoo[plots]"' in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["robustness", "--help"])
    assert exit_info.value.code == 0 and "usage: cutmix-zoo robustness" in capsys.readouterr().out


def test_without_plots_only_the_json_is_written(shapes_folder, tmp_path, capsys, one_thread):
    out = tmp_path / "out"
    assert main(["robustness", "--data", str(shapes_folder), "--models", CUTMIX, "-o", str(out), "--no-plots",
                 "--measures", "fgsm,ood", "--limit", "30", "--epsilon", "0.1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
    data = json.loads((out / "report.json").read_text())
    assert data["images"] == 30 and data["settings"]["epsilon"] == 0.1 and data["pictures"] == []
    assert set(data["models"][CUTMIX]) >= {"fgsm", "ood"} and "occlusion" not in data["models"][CUTMIX]
    assert "FGSM acc %" in capsys.readouterr().out
