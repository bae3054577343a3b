"""PyramidNet: the CutMix release's sizes and state-dict layout, and a forward that features can split."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cutmix_zoo.models.pyramidnet import BasicBlock, Bottleneck, PyramidNet


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _run_children(model: PyramidNet, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run the top-level children one by one, keeping a copy of every child's output."""
    outputs = {}
    for name, child in model.named_children():
        x = child(x)
        outputs[name] = x.clone()
    return x, outputs


@pytest.fixture(scope="module")
def pyramidnet200() -> PyramidNet:
    torch.manual_seed(0)
    return PyramidNet(200, 240, 100, bottleneck=True).eval()


def test_pyramidnet200_matches_the_release_sizes() -> None:
    with torch.device("meta"):
        cifar100 = PyramidNet(200, 240, 100, bottleneck=True)
        cifar10 = PyramidNet(200, 240, 10, bottleneck=True)
    assert _num_params(cifar100) == 26_844_952
    assert len(cifar100.state_dict()) == 1_531
    assert _num_params(cifar10) == 26_752_702
    assert cifar100.num_features == 1_024
    assert cifar100.feature_points() == [("bn1", 16, 1), ("layer1", 384, 1), ("layer2", 704, 2), ("relu_final", 1_024, 4)]


def test_children_are_registered_in_forward_order() -> None:
    with torch.device("meta"):
        cifar = PyramidNet(20, 12, 10, bottleneck=False)
        imagenet = PyramidNet(26, 12, 10, imagenet=True)
    tail = ["bn_final", "relu_final", "avgpool", "flatten", "fc"]
    assert [n for n, _ in cifar.named_children()] == ["conv1", "bn1", "layer1", "layer2", "layer3", *tail]
    assert [n for n, _ in imagenet.named_children()] == [
        "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", *tail,
    ]


def test_basic_block_variant_uses_the_original_key_names() -> None:
    torch.manual_seed(0)
    model = PyramidNet(110, 64, 10, bottleneck=False).eval()
    keys = model.state_dict().keys()
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.bn1.weight", "layer1.0.conv1.weight",
                "layer3.17.conv2.weight", "layer3.17.bn3.num_batches_tracked", "bn_final.weight", "fc.weight", "fc.bias"):
        assert key in keys
    assert not any(".conv3." in key or ".bn4." in key for key in keys)
    assert {key.split(".")[0] for key in keys} == {"conv1", "bn1", "layer1", "layer2", "layer3", "bn_final", "fc"}
    assert all(len(getattr(model, f"layer{i}")) == 18 for i in (1, 2, 3))
    assert model.num_features == model.fc.in_features == 16 + 64
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("depth, bottleneck", [(11, True), (20, False)])
def test_cifar_forward_shape(depth: int, bottleneck: bool) -> None:
    model = PyramidNet(depth, 48, 7, bottleneck=bottleneck).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


@pytest.mark.parametrize("depth, block", [(18, BasicBlock), (26, Bottleneck)])
def test_imagenet_forward_shape_and_layout(depth: int, block: type) -> None:
    model = PyramidNet(depth, 48, 5, imagenet=True).eval()
    assert all(isinstance(b, block) for i in (1, 2, 3, 4) for b in getattr(model, f"layer{i}"))
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3, 4)] == [2, 2, 2, 2]
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)


@pytest.mark.parametrize("depth, bottleneck, imagenet", [(100, True, False), (21, False, False), (2, True, False), (30, True, True)])
def test_depth_that_does_not_fit_is_rejected(depth: int, bottleneck: bool, imagenet: bool) -> None:
    with pytest.raises(ValueError, match="depth"):
        PyramidNet(depth, 48, 10, bottleneck=bottleneck, imagenet=imagenet)


def test_bf16_forward_on_cpu() -> None:
    model = PyramidNet(11, 48, 10).eval().to(torch.bfloat16)
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 32, 32, dtype=torch.bfloat16))
    assert logits.dtype == torch.bfloat16
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("imagenet", [False, True])
def test_children_one_by_one_give_the_logits_and_the_feature_points(imagenet: bool) -> None:
    torch.manual_seed(0)
    model = PyramidNet(26 if imagenet else 20, 24, 10, bottleneck=imagenet, imagenet=imagenet).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, outputs = _run_children(model, x)
        assert torch.equal(logits, model(x))
    for name, channels, reduction in model.feature_points():
        assert outputs[name].shape == (2, channels, 64 // reduction, 64 // reduction)


def test_pyramidnet200_feature_points_match_a_32x32_forward(pyramidnet200: PyramidNet) -> None:
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits, outputs = _run_children(pyramidnet200, x)
        assert torch.equal(logits, pyramidnet200(x))
    assert logits.shape == (2, 100)
    for name, channels, reduction in pyramidnet200.feature_points():
        assert outputs[name].shape == (2, channels, 32 // reduction, 32 // reduction)


@pytest.mark.parametrize("block", [BasicBlock, Bottleneck])
def test_widening_block_zero_pads_its_shortcut(block: type) -> None:
    downsample = nn.AvgPool2d((2, 2), stride=(2, 2), ceil_mode=True)
    unit = block(16, 20, stride=2, downsample=downsample).eval()
    last_bn = unit.bn4 if block is Bottleneck else unit.bn3
    nn.init.zeros_(last_bn.weight)
    nn.init.zeros_(last_bn.bias)
    x = torch.randn(2, 16, 7, 7)
    with torch.no_grad():
        out = unit(x)
    assert out.shape == (2, unit.out_channels, 4, 4)
    assert unit.out_channels == 20 * block.expansion
    assert torch.equal(out[:, :16], downsample(x))
    assert torch.count_nonzero(out[:, 16:]) == 0
