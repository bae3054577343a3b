"""Mixing on the device: CutMix's box and lam, labels mixed by lam, identity at probability 0, device and dtype kept."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from cutmix_zoo.fastload import build_on_meta
from cutmix_zoo.models.pyramidnet import PyramidNet
from cutmix_zoo.train.mixing import BatchMixer, DropBlock, cutmix, cutout, sample_beta

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _numbered_batch(n: int = 8, size: int = 32, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """Every image constant and equal to its index, so each pixel says where it came from."""
    return torch.arange(n, dtype=dtype, device=device).view(n, 1, 1, 1).expand(n, 3, size, size).clone()


def _generator(device="cpu", seed: int = 0) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def test_cutmix_pastes_one_box_whose_area_matches_lam():
    g = _generator()
    for trial in range(200):
        x = _numbered_batch(size=17 + trial % 16)
        rows, cols = x.shape[-2:]
        perm = torch.randperm(8, generator=g)
        lam = sample_beta(1.0, 1.0, g, x.device)
        mixed, new_lam = cutmix(x, perm, lam, torch.tensor(True), g)
        pasted = mixed != x
        from_partner = mixed == x[perm]
        assert torch.all(pasted <= from_partner)  # every changed pixel comes from the partner image
        box = (mixed != x) | (from_partner & (perm != torch.arange(8)).view(8, 1, 1, 1))
        same_box = box[perm != torch.arange(8)]
        if len(same_box):
            assert torch.equal(same_box.any(0), same_box.all(0))  # one box for the whole batch
            area = same_box[0, 0].sum().item()
            assert new_lam.item() == pytest.approx(1 - area / (rows * cols), abs=1e-6)
            r = same_box[0, 0].any(1).nonzero()
            c = same_box[0, 0].any(0).nonzero()
            if area:  # a rectangle no larger than the original's unclipped box
                assert area == (r.max() - r.min() + 1) * (c.max() - c.min() + 1)
                side = torch.sqrt(1 - lam)
                assert r.max() - r.min() + 1 <= 2 * (int(rows * side) // 2)
                assert c.max() - c.min() + 1 <= 2 * (int(cols * side) // 2)


def _original_lam(rng: np.random.Generator, size: int) -> float:
    """lam as the original train.py computes it: Beta(1, 1), its rand_bbox, then recomputed from the clipped box."""
    lam = rng.beta(1.0, 1.0)
    cut = np.sqrt(1.0 - lam)
    cut_w, cut_h = int(size * cut), int(size * cut)
    cx, cy = rng.integers(size), rng.integers(size)
    x1, x2 = np.clip(cx - cut_w // 2, 0, size), np.clip(cx + cut_w // 2, 0, size)
    y1, y2 = np.clip(cy - cut_h // 2, 0, size), np.clip(cy + cut_h // 2, 0, size)
    return 1 - (x2 - x1) * (y2 - y1) / (size * size)


def test_cutmix_lam_matches_pixels_and_follows_the_original_distribution():
    mixer = BatchMixer("cutmix", beta=1.0, prob=1.0, cutout_size=16, device=torch.device("cpu"), seed=3)
    lams = []
    for _ in range(2000):
        x = _numbered_batch(n=4)
        y = torch.arange(4)
        m = mixer(x, y)
        changed = (m.x != x).float()[:, 0].mean(dim=(1, 2))
        moved = m.y_b != y
        assert torch.allclose(changed[moved], (1 - m.lam).expand(int(moved.sum())), atol=1e-6)
        lams.append(m.lam.item())
    rng = np.random.default_rng(0)
    original = [_original_lam(rng, 32) for _ in range(20000)]
    assert np.mean(lams) == pytest.approx(np.mean(original), abs=0.015)  # clipping pushes lam above 0.5
    assert np.std(lams) == pytest.approx(np.std(original), abs=0.015)


@pytest.mark.parametrize("mode", ["cutmix", "mixup"])
def test_labels_mix_by_lam(mode):
    mixer = BatchMixer(mode, beta=1.0, prob=1.0, cutout_size=16, device=torch.device("cpu"), seed=0, label_smoothing=0.1)
    x, y = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4, 5])
    m = mixer(x, y)
    logits = torch.randn(6, 10)
    soft = m.lam * F.one_hot(y, 10).float() + (1 - m.lam) * F.one_hot(m.y_b, 10).float()
    expected = F.cross_entropy(logits, soft, label_smoothing=0.1)
    assert mixer.loss(logits, y, m).item() == pytest.approx(expected.item(), rel=1e-5)
    if mode == "mixup":
        partner = x[[int(v) for v in m.y_b]]
        assert torch.allclose(m.x, m.lam * x + (1 - m.lam) * partner, atol=1e-6)


@pytest.mark.parametrize("mode", ["cutmix", "mixup", "cutout", "cutout+mixup"])
def test_probability_zero_is_the_identity(mode):
    mixer = BatchMixer(mode, beta=1.0, prob=0.0, cutout_size=16, device=torch.device("cpu"), seed=0)
    for _ in range(20):
        x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
        m = mixer(x.clone(), y)
        if mode == "cutout+mixup":  # cutout always, mixup never
            assert m.lam.item() == 1.0
            continue
        assert torch.equal(m.x, x)
        if m.lam is not None:
            assert m.lam.item() == 1.0
            logits = torch.randn(4, 5)
            assert mixer.loss(logits, y, m).item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("mode", ["cutmix", "mixup", "cutout", "cutout+mixup"])
def test_outputs_stay_on_the_input_device_and_dtype(mode, dtype, device):
    mixer = BatchMixer(mode, beta=1.0, prob=1.0, cutout_size=8, device=torch.device(device), seed=0)
    x = torch.randn(4, 3, 16, 16, device=device).to(dtype)
    m = mixer(x, torch.arange(4, device=device))
    assert m.x.dtype == dtype and m.x.device == x.device and m.x.shape == x.shape
    if m.lam is not None:
        assert m.lam.device == x.device and m.y_b.device == x.device


def test_cutout_zeroes_one_square_per_image():
    g = _generator()
    x = torch.ones(64, 3, 32, 32)
    out = cutout(x, 16, 1.0, g)
    holes = (out[:, 0] == 0).sum(dim=(1, 2))
    assert torch.all(holes <= 256) and torch.all(holes > 0)
    assert torch.all((out == 0).all(1) == (out[:, :1] == 0)[:, 0])  # same square in every channel


@pytest.mark.parametrize("a", [0.2, 1.0, 2.0])
def test_beta_sampler_matches_the_distribution(a):
    g = _generator(seed=1)
    draws = torch.stack([sample_beta(a, a, g, torch.device("cpu")) for _ in range(4000)])
    assert draws.min() >= 0 and draws.max() <= 1
    assert draws.mean().item() == pytest.approx(0.5, abs=0.03)
    assert draws.var().item() == pytest.approx(1 / (4 * (2 * a + 1)), rel=0.12)


@pytest.mark.parametrize("mode", ["cutmix", "mixup"])
def test_feature_level_mixing_mixes_inside_the_forward(mode):
    torch.manual_seed(0)
    model = PyramidNet(8, 12, 10, bottleneck=False).train()
    mixer = BatchMixer(mode, beta=1.0, prob=1.0, cutout_size=8, device=torch.device("cpu"), seed=0, layers="random")
    mixer.attach(model, "pyramidnet")
    levels = set()
    for _ in range(12):
        x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
        m = mixer(x, y)
        levels.add(m.lam is None)  # None before the forward: the mix happens at a feature map
        out = model(m.x)
        m = mixer.collect(m)
        assert m.lam is not None and 0 <= m.lam.item() <= 1
        assert torch.isfinite(mixer.loss(out, y, m))
    assert levels == {True, False}


def test_dropblock_drops_blocks_in_training_only():
    torch.manual_seed(0)
    model = PyramidNet(8, 12, 10, bottleneck=False)
    block = DropBlock(0.3, 3)
    block.progress = 1.0
    block.attach(model, "pyramidnet")
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    a, b = model(x), model(x)
    assert torch.equal(a, b)
    model.train()
    features = []
    model.layer3.register_forward_hook(lambda m, i, o: features.append(o))
    model(x)
    assert (features[0] == 0).float().mean() > 0.1


@pytest.mark.parametrize("family, args, mixed, dropped", [
    ("resnet", {"layers": [3, 4, 6, 3]}, ["layer1", "layer2", "layer3"], ["layer3", "layer4"]),  # resnet50
    ("pyramidnet", {"depth": 200, "alpha": 240, "bottleneck": True}, ["layer1", "layer2"], ["layer2", "layer3"]),  # pyramidnet200_a240
])
def test_stages_come_from_the_family_feature_points(family, args, mixed, dropped):
    """Feature mixing hooks the stages before the last, DropBlock the last two: the children named ``layer*`` as before."""
    def hooked(attach) -> list[str]:
        model = build_on_meta(family, args, 10)
        attach(model, family)
        return [name for name, child in model.named_children() if child._forward_hooks]

    mixer = BatchMixer("cutmix", beta=1.0, prob=1.0, cutout_size=8, device=torch.device("cpu"), seed=0, layers="random")
    assert hooked(mixer.attach) == mixed
    assert hooked(DropBlock(0.1, 4).attach) == dropped


class _NoHostSync(TorchDispatchMode):
    """Fails on every operator that copies a device value to the host (``.item()``, ``bool()``, ``nonzero``)."""

    SYNCING = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default, torch.ops.aten.equal.default}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        assert func not in self.SYNCING, f"{func} would synchronise with the host"
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("mode", ["cutmix", "mixup", "cutout"])
def test_mixing_never_synchronises_with_the_host(mode):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mixer = BatchMixer(mode, beta=1.0, prob=0.5, cutout_size=16, device=device, seed=0)
    x, y = torch.randn(8, 3, 32, 32, device=device), torch.arange(8, device=device)
    logits = torch.randn(8, 10, device=device)
    with _NoHostSync():
        for _ in range(5):
            m = mixer(x, y)
            mixer.loss(logits, y, m)
    with pytest.raises(AssertionError, match="synchronise"), _NoHostSync():
        x.sum().item()


def test_a_whole_training_step_never_synchronises_with_the_host():
    from cutmix_zoo.train.loop import train_step

    torch.manual_seed(0)
    model = PyramidNet(8, 12, 10, bottleneck=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    mixer = BatchMixer("cutmix", beta=1.0, prob=1.0, cutout_size=16, device=torch.device("cpu"), seed=0)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    metrics = torch.zeros(4)
    train_step(model, optimizer, mixer, x, y, contextlib.nullcontext, metrics)  # first step creates the momentum buffers
    with _NoHostSync():
        for _ in range(3):
            train_step(model, optimizer, mixer, x, y, contextlib.nullcontext, metrics)
    assert metrics[3] == 32
