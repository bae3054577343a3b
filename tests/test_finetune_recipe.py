"""The fine-tuning recipe (``--recipe finetune``, the default of ``train --init``) on generated data of two kinds,
Novel-Shapes and the orientation-sensitive Glyphs: it transfers at every budget (1, 2 and 6 epochs), its schedule,
augmentation and linear-probe head, and the Glyphs generator whose classes are one another's mirror images."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest
import torch

import cutmix_zoo
from cutmix_zoo.recipes import finetune_recipe
from cutmix_zoo.reports import transfer
from cutmix_zoo.shapes import GLYPHS, glyph_masks, make_shapes, write_folder
from cutmix_zoo.train.config import train_parser
from cutmix_zoo.train.data import build_transforms
from cutmix_zoo.train.evaluation import evaluate
from cutmix_zoo.train.failures import StopFlag
from cutmix_zoo.train.loop import begin_epoch, setup, train_steps

CUTMIX, BASELINE = "pyramidnet20_a48.cutmix_shapes", "pyramidnet20_a48.baseline_shapes"
KINDS, BUDGETS, SEEDS = ("novel", "glyphs"), (1, 2, 6), (0, 1, 2)
TRAIN, VAL, BATCH = 2, 3, 10  # images a class, and the batch: two steps an epoch, every combination in about half a minute
# Measured with these sizes (mean top-1 error over the three seeds, for each kind and budget, on 30 validation images):
# fine-tuned CutMix 28.9-54.4%, between 6.7 points below and 0.0 points above its linear probe (35.6% on Novel-Shapes,
# 54.4% on Glyphs); from scratch 84.4-92.2%; the baseline init 35.6-58.9%, 5.5 points behind CutMix on average.
# The margins leave room for one or two validation images (3.3 points each) beyond the worst case measured.
PROBE_MARGIN = 7.0
SCRATCH_GAP = 20.0

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], Path]:
    """A small ImageFolder tree of each kind for each seed (each seed its own draw)."""
    root = tmp_path_factory.mktemp("data")
    return {(kind, seed): write_folder(root / f"{kind}{seed}", TRAIN, VAL, seed=seed, glyphs=kind == "glyphs")
            for kind in KINDS for seed in SEEDS}


def _finetune(data: Path, start: str | None, epochs: int, seed: int, output: Path) -> float:
    """The validation top-1 error after ``epochs`` of the finetune recipe (from ``start``, or from scratch at the full
    rate everywhere): the trainer's own setup and steps, evaluated once at the end rather than after every epoch."""
    origin = ["--init", start] if start else ["--model", "pyramidnet20_a48", "--recipe", "finetune", "--input-size", "32",
                                              "--backbone-lr-mult", "1"]
    args = train_parser().parse_args([*origin, "--data", str(data), "--epochs", str(epochs), "--batch-size", str(BATCH),
                                      "--seed", str(seed), "--output", str(output), "--device", "cpu", "--workers", "0", "--quiet"])
    run = setup(args)
    with StopFlag() as stop:
        for epoch in range(epochs):
            assert train_steps(run, epoch, begin_epoch(run, epoch), stop) is not None
    return evaluate(run.module, run.val_loader, run.ranks, run.bf16, run.channels_last, run.data.val_to_device)["top1_err"]


@pytest.fixture(scope="module")
def errors(folders, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, int], list[float]]:
    """Every combination's error over the seeds: (kind, start, epochs) -> one error a seed; start is cutmix, baseline,
    scratch, or probe (the CutMix model's linear probe, one a seed, the same for every budget)."""
    runs = tmp_path_factory.mktemp("runs")
    out: dict[tuple[str, str, int], list[float]] = {}
    for (kind, seed), data in folders.items():
        found = transfer.read_transfer_folder(data)
        x = transfer.extract_features({CUTMIX: cutmix_zoo.load(CUTMIX, num_classes=0)}, found.paths, found.root, runs / "cache")[CUTMIX].features
        probe = transfer.linear_probe(x[found.train], found.labels[found.train], x[found.val], found.labels[found.val], 10).top1_err
        for epochs in BUDGETS:
            out.setdefault((kind, "probe", epochs), []).append(probe)
            for name, start in (("cutmix", CUTMIX), ("baseline", BASELINE), ("scratch", None)):
                error = _finetune(data, start, epochs, seed, runs / f"{kind}-{seed}-{epochs}-{name}")
                out.setdefault((kind, name, epochs), []).append(error)
    return out


def _mean(values: list[float]) -> float:
    return statistics.mean(values)


@pytest.mark.slow
@pytest.mark.parametrize("epochs", BUDGETS)
@pytest.mark.parametrize("kind", KINDS)
def test_fine_tuning_the_cutmix_model_beats_scratch_and_keeps_near_its_probe(errors, kind, epochs):
    tuned, scratch, probe = (errors[kind, name, epochs] for name in ("cutmix", "scratch", "probe"))
    assert _mean(tuned) < _mean(scratch) - SCRATCH_GAP, (tuned, scratch)
    assert _mean(tuned) <= _mean(probe) + PROBE_MARGIN, (tuned, probe)


@pytest.mark.slow
def test_the_cutmix_init_is_at_least_as_good_as_the_baseline_init_on_average(errors):
    cutmix = [e for kind in KINDS for epochs in BUDGETS for e in errors[kind, "cutmix", epochs]]
    baseline = [e for kind in KINDS for epochs in BUDGETS for e in errors[kind, "baseline", epochs]]
    assert _mean(cutmix) <= _mean(baseline), (cutmix, baseline)


def test_the_head_starts_as_a_linear_probe(folders, tmp_path):
    data = folders["novel", 0]
    base = ["--init", CUTMIX, "--data", str(data), "--device", "cpu", "--workers", "0", "--quiet", "--batch-size", str(BATCH)]
    probed = setup(train_parser().parse_args([*base, "--output", str(tmp_path / "a")]))
    fresh = setup(train_parser().parse_args([*base, "--output", str(tmp_path / "b"), "--head-init", "random"]))
    before = {k: evaluate(r.module, r.val_loader, r.ranks, False, False, r.data.val_to_device)["top1_err"]
              for k, r in (("probe", probed), ("random", fresh))}
    assert before["probe"] + 30 < before["random"], before  # a random head is at chance (90%); the probed one separates classes
    init = cutmix_zoo.load(CUTMIX).state_dict()
    assert all(torch.equal(probed.module.state_dict()[k], v) for k, v in init.items() if not k.startswith("fc."))  # only the head


def test_the_schedule_spends_a_short_run_at_useful_rates():
    recipe = finetune_recipe("folder", 1, 32)
    rates = [recipe.lr_at_step(step, 20) for step in range(20)]
    assert rates[0] == pytest.approx(0.1 / 3) and max(rates) == pytest.approx(0.1)  # two warm-up steps, then the peak
    assert rates[2:] == sorted(rates[2:], reverse=True) and 0 < rates[-1] < 0.001  # a cosine down to nearly zero
    assert statistics.mean(rates) > 0.04  # the old x0.1 after half the run spent half of a short run at a tenth
    six = finetune_recipe("folder", 6, 32)  # 30 steps: 3 of warm-up, then a cosine over the other 27
    assert [six.lr_at_step(s, 5) for s in (0, 3, 16)] == pytest.approx([0.1 / 4, 0.1, 0.05 * (1 + math.cos(math.pi * 13 / 27))])


def test_the_recipe_defaults_and_the_original_recipes_keep_theirs():
    recipe = finetune_recipe("folder", None, 32)
    assert (recipe.lr_schedule, recipe.warmup, recipe.mix, recipe.hflip, recipe.crop, recipe.head_init) == \
        ("cosine", 0.1, "none", False, "none", "probe")
    original = train_parser().parse_args(["--recipe", "pyramidnet200_a240.cutmix_c100"])
    from cutmix_zoo.train.config import resolve

    c100 = resolve(original)[0]
    assert (c100.lr_schedule, c100.warmup, c100.hflip, c100.crop, c100.head_init) == ("step", 0.0, True, "", "random")
    assert c100.lr_at_step(0, 10) == c100.lr_at(0) and c100.lr_at_step(1500, 10) == c100.lr_at(150)


def test_flip_and_crop_are_options(folders):
    from PIL import Image

    image = Image.open(next((folders["glyphs", 0] / "train" / "arrow_left").iterdir()))
    mean, std = (0.5,) * 3, (0.295,) * 3
    plain, val = build_transforms("cifar", 32, mean, std, 32, fit=True, hflip=False, crop="none")
    assert torch.equal(plain(image), val(image))  # the fine-tune's default: the evaluation's pixels, no flip, no crop
    flipping, _ = build_transforms("cifar", 32, mean, std, 32, fit=True, hflip=True, crop="none")
    outputs = []
    for seed in range(8):
        torch.manual_seed(seed)
        outputs.append(flipping(image))
    assert any(torch.equal(o, val(image).flip(-1)) for o in outputs) and any(torch.equal(o, val(image)) for o in outputs)
    padded, _ = build_transforms("cifar", 32, mean, std, 32, fit=True, hflip=False, crop="pad")
    torch.manual_seed(0)
    assert padded(image).shape == (3, 32, 32) and not all(torch.equal(padded(image), val(image)) for _ in range(4))


def test_glyph_classes_are_one_anothers_mirror_images():
    coords = torch.arange(32, dtype=torch.float32) + 0.5 - 16  # centred, so a horizontal flip maps dx to -dx exactly
    dx, dy, r = coords.view(1, 1, 32).expand(10, 32, 32), coords.view(1, 32, 1).expand(10, 32, 32), torch.full((10, 1, 1), 9.0)
    masks = glyph_masks(dx, dy, r, torch.arange(10))
    for k in range(0, 10, 2):
        assert torch.equal(masks[k].flip(-1), masks[k + 1]) and not torch.equal(masks[k], masks[k + 1]), GLYPHS[k]
    images, labels = make_shapes(20, seed=3, glyphs=True)
    assert images.shape == (20, 3, 32, 32) and labels.bincount().tolist() == [2] * 10


def test_the_shapes_command_writes_glyphs(tmp_path, capsys):
    from cutmix_zoo.cli import main

    assert main(["shapes", str(tmp_path / "g"), "--glyphs", "--train-per-class", "1", "--val-per-class", "1"]) == 0
    assert sorted(p.name for p in (tmp_path / "g" / "train").iterdir()) == sorted(n.replace(" ", "_") for n in GLYPHS)
    assert main(["shapes", str(tmp_path / "h"), "--glyphs", "--shapes10"]) == 2
    assert "--glyphs and --shapes10 name two different datasets" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--decode", "gpu"], "--decode gpu augments as the ImageNet recipe does"),
    (["--lr-schedule", "cosine", "--lr-step", "3"], "the cosine schedule has none"),
    (["--warmup", "1.5"], "--warmup is a fraction of the run's steps in [0, 1)"),
    (["--dataset", "shapes", "--crop", "pad"], "generated images are not cropped"),
], ids=["gpu-decode", "cosine-drops", "warmup", "shapes-crop"])
def test_recipe_flags_that_cannot_work_are_one_sentence(folders, argv, message):
    from cutmix_zoo.errors import InvalidArgumentError
    from cutmix_zoo.train.config import resolve

    args = train_parser().parse_args(["--init", CUTMIX, "--data", str(folders["novel", 0]), *argv])
    with pytest.raises(InvalidArgumentError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")) as caught:
        resolve(args)
    assert "\n" not in str(caught.value)


def test_drops_asked_for_select_the_step_schedule(folders):
    from cutmix_zoo.train.config import resolve

    args = train_parser().parse_args(["--init", CUTMIX, "--data", str(folders["novel", 0]), "--epochs", "4", "--lr-milestones", "0.5"])
    recipe = resolve(args)[0]
    assert recipe.lr_schedule == "step" and [recipe.lr_at(e) for e in range(4)] == pytest.approx([0.1, 0.1, 0.01, 0.01])


def test_a_probe_head_from_one_image_a_class_fits_them():
    from cutmix_zoo.train.finetune import SINGLE_IMAGE_L2, probe_head

    model = cutmix_zoo.load(CUTMIX)
    model.reset_classifier(3)
    x, y = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2])
    assert probe_head(model, [(x, y)], 3) == SINGLE_IMAGE_L2  # nothing to hold out: the fixed strength
    with torch.no_grad():
        assert model.eval()(x).argmax(1).tolist() == [0, 1, 2]
