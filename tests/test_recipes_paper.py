"""The trainer's recipes against the paper and the original train.py, with every expected value written from them.

Sources: CutMix paper (Yun et al., ICCV 2019) section 4.1 and Table 5 (CIFAR-100 baselines), Table 3
(ImageNet baselines); the original train.py's ``adjust_learning_rate`` and the flags its README gives.
"""

from __future__ import annotations

import pytest

from cutmix_zoo.recipes import recipe_for
from cutmix_zoo.train.config import resolve, train_parser


def _resolved(*flags: str):
    return resolve(train_parser().parse_args(list(flags)))[0]


# (registry name, what the paper states for its regulariser)
PAPER_CIFAR100 = {
    "pyramidnet200_a240.mixup_c100": {"mix": "mixup", "beta": 1.0, "mix_prob": 1.0},            # Table 5, alpha=1.0
    "pyramidnet200_a240.manifold_mixup_c100": {"mix": "mixup", "beta": 1.0, "mix_layers": "random"},  # Table 5 "(alpha=1.0)"
    "pyramidnet200_a240.cutout_c100": {"mix": "cutout", "cutout_size": 16},                      # section 4.1: 16x16
    "pyramidnet200_a240.cutout_ls_c100": {"mix": "cutout", "cutout_size": 16, "label_smoothing": 0.1},
    "pyramidnet200_a240.dropblock_c100": {"mix": "none", "dropblock": 0.1, "dropblock_size": 4},  # keep prob 0.9, block 4
    "pyramidnet200_a240.dropblock_ls_c100": {"dropblock": 0.1, "dropblock_size": 4, "label_smoothing": 0.1},
    "pyramidnet200_a240.cutmix_c100": {"mix": "cutmix", "beta": 1.0, "mix_prob": 0.5},           # README: --beta 1.0 --cutmix_prob 0.5
}
PAPER_IMAGENET = {
    "resnet50.mixup_in1k": {"mix": "mixup", "beta": 1.0},
    "resnet50.manifold_mixup_in1k": {"mix": "mixup", "beta": 1.0, "mix_layers": "random"},
    "resnet50.cutout_in1k": {"mix": "cutout", "cutout_size": 112},                               # section 4.1: 112x112
    "resnet50.feature_cutmix_in1k": {"mix": "cutmix", "beta": 1.0, "mix_layers": "random"},
    "resnet50.cutmix_in1k": {"mix": "cutmix", "beta": 1.0, "mix_prob": 1.0},                    # README: --cutmix_prob 1.0
}


@pytest.mark.parametrize("name,stated", [*PAPER_CIFAR100.items(), *PAPER_IMAGENET.items()])
def test_baseline_recipes_are_the_papers(name, stated):
    recipe, _ = recipe_for(name)
    assert {k: getattr(recipe, k) for k in stated} == stated


def test_baselines_share_the_cutmix_schedule():
    """The paper trains every baseline with the CutMix run's epochs, batch and learning rate."""
    for names, values in ((PAPER_CIFAR100, (300, 64, 0.25)), (PAPER_IMAGENET, (300, 256, 0.1))):
        for name in names:
            recipe, _ = recipe_for(name)
            assert (recipe.epochs, recipe.batch_size, recipe.lr) == values, name


# train.py: ImageNet lr = args.lr * 0.1 ** (epoch // 75) when epochs == 300, else 0.1 ** (epoch // 30);
# CIFAR lr = args.lr * 0.1 ** (epoch // (epochs * 0.5)) * 0.1 ** (epoch // (epochs * 0.75)).
IMAGENET_300 = {0: 0.1, 74: 0.1, 75: 0.01, 149: 0.01, 150: 0.001, 224: 0.001, 225: 0.0001, 299: 0.0001}
IMAGENET_90 = {0: 0.1, 29: 0.1, 30: 0.01, 59: 0.01, 60: 0.001, 89: 0.001}
IMAGENET_100 = {0: 0.1, 29: 0.1, 30: 0.01, 60: 0.001, 90: 0.0001, 99: 0.0001}
CIFAR_300 = {0: 0.25, 149: 0.25, 150: 0.025, 224: 0.025, 225: 0.0025, 299: 0.0025}
CIFAR_200 = {0: 0.25, 99: 0.25, 100: 0.025, 149: 0.025, 150: 0.0025, 199: 0.0025}


@pytest.mark.parametrize("flags,expected", [
    (["--recipe", "resnet50.cutmix_in1k"], IMAGENET_300),
    (["--recipe", "resnet50.cutmix_in1k", "--epochs", "90"], IMAGENET_90),
    (["--recipe", "resnet50.mixup_in1k", "--epochs", "100"], IMAGENET_100),
    (["--model", "resnet50", "--dataset", "folder", "--epochs", "90"], IMAGENET_90),
    (["--recipe", "pyramidnet200_a240.cutmix_c100"], CIFAR_300),
    (["--recipe", "pyramidnet200_a240.cutmix_c100", "--epochs", "200"], CIFAR_200),
])
def test_learning_rate_of_every_epoch_is_the_originals(flags, expected):
    recipe = _resolved(*flags)
    for epoch, lr in expected.items():
        assert recipe.lr_at(epoch) == pytest.approx(lr), (flags, epoch)


def test_an_explicit_lr_step_still_wins():
    recipe = _resolved("--recipe", "resnet50.cutmix_in1k", "--epochs", "90", "--lr-step", "45")
    assert (recipe.lr_at(44), recipe.lr_at(45)) == (pytest.approx(0.1), pytest.approx(0.01))


def test_the_cutmix_pyramidnet_shows_its_own_files_figure_and_the_papers_mean_beside_it():
    """The linked file is the original README's 14.23 model; the paper's Table 5 reports 14.47 / 2.97 (mean of 3 runs)."""
    import cutmix_zoo
    from cutmix_zoo.hub.cards import model_table, render_card

    info = cutmix_zoo.model_info("pyramidnet200_a240")
    assert (info["top1_err"], info["top5_err"]) == (14.23, None)
    assert (info["paper_top1_err"], info["paper_top5_err"]) == (14.47, 2.97)
    assert "README" in info["err_source"] and "mean of 3 runs" in info["paper_err_source"]
    row = next(r for r in model_table().splitlines() if "pyramidnet200_a240.cutmix_c100" in r)
    assert "| 14.23 |" in row and "14.47 / 2.97" in row and "mean of 3 runs" in row
    card = render_card("pyramidnet200_a240.cutmix_c100")
    front = card.split("---")[1]
    assert "value: 85.77" in front and "85.53" not in front  # the model-index is the file's own accuracy
    assert "| 14.47 | 2.97 | paper, Table 5 (mean of 3 runs) |" in card
