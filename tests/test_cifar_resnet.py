"""The CIFAR ResNet (and ImageNet ResNet-200) of the CutMix release: sizes, key names and computation
checked against the original ``resnet.py``, the trainer's ``--model resnet`` on CIFAR, export and load."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F

import cutmix_zoo
from cutmix_zoo.errors import InvalidArgumentError
from cutmix_zoo.models import FAMILIES, build_model
from cutmix_zoo.models.resnet import CifarResNet
from cutmix_zoo.train import train_main
from cutmix_zoo.train.checkpoint import load_checkpoint
from cutmix_zoo.train.config import resolve, train_parser

# Measured by building clovaai/CutMix-PyTorch's resnet.py (commit 2d8eb68) as its train.py does,
# ResNet(dataset, depth, num_classes, bottleneck), and counting sum(p.numel() for p in
# model.parameters()) and len(model.state_dict()) (with PyTorch's num_batches_tracked buffers).
# (dataset, depth, bottleneck) -> (parameters, state-dict entries); not computed from this package.
ORIGINAL_SIZES = {
    ("cifar100", 110, False): (1_736_564, 668),
    ("cifar10", 110, False): (1_730_714, 668),
    ("cifar100", 56, False): (861_620, 344),
    ("cifar100", 164, True): (1_727_284, 998),
    ("cifar10", 164, True): (1_704_154, 998),
    ("cifar10", 8, False): (78_042, 56),
    ("imagenet", 200, True): (64_673_832, 1_220),
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}


def _build(dataset: str, depth: int, bottleneck: bool, meta: bool = True) -> torch.nn.Module:
    """The network ``cutmix-zoo train --model resnet --depth D --dataset DATASET`` builds."""
    argv = ["--model", "resnet", "--depth", str(depth), "--dataset", dataset] + ([] if bottleneck else ["--no-bottleneck"])
    _, spec, _, _ = resolve(train_parser().parse_args(argv))
    if meta:
        with torch.device("meta"):
            return build_model(spec.family, spec.args, NUM_CLASSES[dataset])
    return build_model(spec.family, spec.args, NUM_CLASSES[dataset])


@pytest.mark.parametrize("key", list(ORIGINAL_SIZES), ids=lambda k: f"{k[0]}-{k[1]}-{'bottleneck' if k[2] else 'basic'}")
def test_sizes_equal_the_original_resnet_py(key):
    model = _build(*key)
    params, entries = ORIGINAL_SIZES[key]
    assert sum(p.numel() for p in model.parameters()) == params
    assert len(model.state_dict()) == entries


def test_resnet110_on_cifar100_is_about_1_7m_parameters():
    model = _build("cifar100", 110, bottleneck=False)
    assert isinstance(model, CifarResNet)
    assert 1.7e6 < sum(p.numel() for p in model.parameters()) < 1.75e6


# The original's key names: conv1/bn1 stem, layerS.B.{conv,bn}K, layerS.B.downsample.{0,1}, fc.
_ORIGINAL_KEY = re.compile(
    r"(conv1\.weight|bn1\.(weight|bias|running_mean|running_var|num_batches_tracked)|fc\.(weight|bias)"
    r"|layer[1-3]\.\d+\.(conv[1-3]\.weight|bn[1-3]\.(weight|bias|running_mean|running_var|num_batches_tracked)"
    r"|downsample\.0\.weight|downsample\.1\.(weight|bias|running_mean|running_var|num_batches_tracked)))"
)


def test_basic_resnet110_keys_are_the_originals():
    state = _build("cifar100", 110, bottleneck=False).state_dict()
    assert all(_ORIGINAL_KEY.fullmatch(k) for k in state), [k for k in state if not _ORIGINAL_KEY.fullmatch(k)]
    assert state["conv1.weight"].shape == (16, 3, 3, 3)
    assert state["layer3.17.conv2.weight"].shape == (64, 64, 3, 3)
    assert "layer3.18.conv1.weight" not in state and "layer1.17.bn2.running_var" in state
    assert state["layer2.0.downsample.0.weight"].shape == (32, 16, 1, 1)
    assert state["layer3.0.downsample.1.running_mean"].shape == (64,)
    assert not any(k.startswith("layer1.0.downsample") for k in state)  # 16 -> 16 at stride 1: identity shortcut
    assert not any(k.startswith("layer4") or "conv3" in k for k in state)
    assert state["fc.weight"].shape == (100, 64) and state["fc.bias"].shape == (100,)


def test_bottleneck_resnet164_keys_are_the_originals():
    state = _build("cifar100", 164, bottleneck=True).state_dict()
    assert all(_ORIGINAL_KEY.fullmatch(k) for k in state)
    assert state["layer1.0.downsample.0.weight"].shape == (64, 16, 1, 1)  # 16 -> 64 (expansion 4)
    assert state["layer2.0.conv2.weight"].shape == (32, 32, 3, 3)
    assert state["layer3.17.conv3.weight"].shape == (256, 64, 1, 1)
    assert "layer3.18.conv1.weight" not in state
    assert state["fc.weight"].shape == (100, 256)


def test_imagenet_resnet200_has_the_originals_stages():
    model = _build("imagenet", 200, bottleneck=False)  # --no-bottleneck has no effect on ImageNet, as in the original
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [3, 24, 36, 3]
    state = model.state_dict()
    assert state["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert state["fc.weight"].shape == (1000, 2048)


def _original_forward(state: dict[str, torch.Tensor], x: torch.Tensor, bottleneck: bool) -> torch.Tensor:
    """The original resnet.py's CIFAR forward in eval mode, written from its description with the state dict's tensors."""
    def bn(h, prefix):
        return F.batch_norm(h, state[prefix + ".running_mean"], state[prefix + ".running_var"],
                            state[prefix + ".weight"], state[prefix + ".bias"], False, 0.0, 1e-5)

    def conv(h, key, stride=1):
        w = state[key]
        return F.conv2d(h, w, stride=stride, padding=w.shape[-1] // 2)

    h = F.relu(bn(conv(x, "conv1.weight"), "bn1"))
    for stage in (1, 2, 3):
        block = 0
        while f"layer{stage}.{block}.conv1.weight" in state:
            p = f"layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            if bottleneck:  # 1x1, 3x3 (carries the stride), 1x1
                out = F.relu(bn(conv(h, p + ".conv1.weight"), p + ".bn1"))
                out = F.relu(bn(conv(out, p + ".conv2.weight", stride), p + ".bn2"))
                out = bn(conv(out, p + ".conv3.weight"), p + ".bn3")
            else:  # 3x3 (carries the stride), 3x3
                out = F.relu(bn(conv(h, p + ".conv1.weight", stride), p + ".bn1"))
                out = bn(conv(out, p + ".conv2.weight"), p + ".bn2")
            shortcut = h
            if p + ".downsample.0.weight" in state:
                shortcut = bn(conv(h, p + ".downsample.0.weight", stride), p + ".downsample.1")
            h = F.relu(out + shortcut)
            block += 1
    h = F.avg_pool2d(h, 8).flatten(1)
    return F.linear(h, state["fc.weight"], state["fc.bias"])


@pytest.mark.parametrize("depth,bottleneck", [(20, False), (29, True)])
def test_forward_computes_what_the_original_does(depth, bottleneck):
    torch.manual_seed(0)
    model = _build("cifar100", depth, bottleneck, meta=False)
    with torch.no_grad():
        for name, buffer in model.named_buffers():  # statistics that matter, so a misplaced BN or stride shows
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        expected = _original_forward(model.state_dict(), x, bottleneck)
    assert logits.shape == (2, 100)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def test_feature_points_follow_the_stages():
    basic = _build("cifar100", 56, bottleneck=False, meta=False).eval()
    points = FAMILIES["cifar_resnet"].feature_points(basic)
    assert points == [("relu", 16, 1), ("layer1", 16, 1), ("layer2", 32, 2), ("layer3", 64, 4)]
    assert basic.num_features == 64
    x = torch.randn(1, 3, 32, 32)
    h = x
    shapes = {}
    for name, child in basic.named_children():
        h = child(h)
        shapes[name] = tuple(h.shape)
    assert [shapes[name] for name, _, _ in points] == [(1, c, 32 // r, 32 // r) for _, c, r in points]
    assert torch.equal(h, basic(x))
    bottleneck = _build("cifar10", 164, bottleneck=True)
    assert [c for _, c, _ in FAMILIES["cifar_resnet"].feature_points(bottleneck)] == [16, 64, 128, 256]


def test_model_spec_builds_the_cifar_network_and_refuses_other_depths():
    _, spec, name, _ = resolve(train_parser().parse_args(
        ["--model", "resnet", "--depth", "110", "--no-bottleneck", "--dataset", "cifar100", "--mix", "cutmix"]))
    assert (spec.family, spec.args, spec.architecture) == ("cifar_resnet", {"depth": 110, "bottleneck": False}, None)
    assert name == "resnet110_cifar_basic.cutmix_c100"
    # bottlenecks by default, as the original train.py
    _, spec, _, _ = resolve(train_parser().parse_args(["--model", "resnet", "--depth", "164", "--dataset", "cifar10"]))
    assert spec.args == {"depth": 164, "bottleneck": True}
    _, spec, _, _ = resolve(train_parser().parse_args(["--model", "resnet", "--depth", "200", "--dataset", "imagenet"]))
    assert (spec.family, spec.args) == ("resnet", {"layers": [3, 24, 36, 3], "bottleneck": True})

    refused = [
        (["--depth", "50", "--dataset", "cifar100"], "9n+2 with bottlenecks"),
        (["--depth", "56", "--no-bottleneck", "--dataset", "cifar10"], None),  # 6 * 9 + 2: accepted
        (["--depth", "51", "--no-bottleneck", "--dataset", "cifar10"], "6n+2 with --no-bottleneck"),
        (["--depth", "2", "--dataset", "shapes"], "not 2"),
        (["--depth", "110", "--dataset", "imagenet"], "18, 34, 50, 101, 152, 200"),
    ]
    for flags, message in refused:
        args = train_parser().parse_args(["--model", "resnet", *flags])
        if message is None:
            assert resolve(args)[1].family == "cifar_resnet"
            continue
        with pytest.raises(InvalidArgumentError, match=re.escape(message)) as raised:
            resolve(args)
        text = str(raised.value)
        assert "\n" not in text and text.endswith(".") and text.replace("e.g.", "eg").count(".") == 1, text


@pytest.mark.slow
def test_a_short_run_exports_a_loadable_cifar_resnet(tmp_path):
    output = tmp_path / "run"
    assert train_main(["--model", "resnet", "--depth", "8", "--no-bottleneck", "--dataset", "cifar10", "--data", "synthetic",
                       "--synthetic-size", "64", "--epochs", "1", "--batch-size", "32", "--workers", "0", "--device", "cpu",
                       "--output", str(output), "--quiet"]) == 0
    folder = output / "export"
    cfg = json.loads((folder / "config.json").read_text())
    assert (cfg["family"], cfg["arch_args"], cfg["num_classes"]) == ("cifar_resnet", {"depth": 8, "bottleneck": False}, 10)
    assert cfg["name"].startswith("resnet8_cifar_basic.")

    trained = build_model("cifar_resnet", cfg["arch_args"], 10)
    trained.load_state_dict(load_checkpoint(output)["model"])  # one epoch: the best weights are the last
    trained.eval()
    fresh = build_model("cifar_resnet", cfg["arch_args"], 10).eval()
    model = cutmix_zoo.load(folder)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        assert torch.equal(logits, trained(x))
        assert not torch.equal(logits, fresh(x))
    assert logits.shape == (4, 10)

    features = cutmix_zoo.load(folder, features_only=True)
    assert features.feature_info.channels() == [16, 16, 32, 64]
    assert features.feature_info.reduction() == [1, 1, 2, 4]
    maps = features(x)
    assert [tuple(m.shape) for m in maps] == [(4, 16, 32, 32), (4, 16, 32, 32), (4, 32, 16, 16), (4, 64, 8, 8)]
    with torch.no_grad():
        assert torch.equal(maps[-1], trained.layer3(trained.layer2(trained.layer1(trained.relu(trained.bn1(trained.conv1(x)))))))
