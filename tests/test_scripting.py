"""torch.jit.script on every family (classifier and features_only), torch.fx and create_feature_extractor on PyramidNet."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from cutmix_zoo.features import FeatureListNet
from cutmix_zoo.models import FAMILIES, build_model
from cutmix_zoo.models.pyramidnet import PyramidNet

CASES = [  # (family, arguments, input side)
    ("resnet", {"layers": [1, 1, 1, 1]}, 64),
    ("cifar_resnet", {"depth": 8, "bottleneck": False}, 32),
    ("pyramidnet", {"depth": 20, "alpha": 12, "bottleneck": False}, 32),
    ("pyramidnet", {"depth": 11, "alpha": 12, "bottleneck": True}, 32),
    ("pyramidnet", {"depth": 26, "alpha": 12, "bottleneck": True, "imagenet": True}, 64),
]
IDS = ["resnet", "cifar_resnet8", "pyramidnet20_basic", "pyramidnet11_bottleneck", "pyramidnet26_imagenet"]


def _model(family: str, args: dict) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(family, args, 10)
    for module in model.modules():  # statistics that make every BatchNorm matter
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _script(module: nn.Module) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.x marks torch.jit as deprecated; it still works
        return torch.jit.script(module)


@pytest.mark.parametrize("family,args,size", CASES, ids=IDS)
def test_scripted_classifier_equals_eager(family, args, size):
    model = _model(family, args)
    scripted = _script(model)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(scripted(x), model(x))
        assert torch.equal(scripted.forward_features(x), model.forward_features(x))


@pytest.mark.parametrize("family,args,size", CASES, ids=IDS)
def test_scripted_features_only_equals_eager(family, args, size):
    model = _model(family, args)
    points = FAMILIES[family].feature_points(model)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    for out_indices in (None, (1, len(points) - 1)):
        features = FeatureListNet(model, points, out_indices).eval()
        scripted = _script(features)
        with torch.no_grad():
            eager, compiled = features(x), scripted(x)
        assert len(eager) == len(compiled) == len(features.feature_info.out_indices)
        assert all(torch.equal(a, b) for a, b in zip(eager, compiled))


@pytest.mark.parametrize("family,args,size", [c for c in CASES if c[0] == "pyramidnet"], ids=IDS[2:])
def test_fx_symbolic_trace_of_pyramidnet_equals_eager(family, args, size):
    model = _model(family, args)
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(traced(x), model(x))
    assert not any(n.op == "call_method" and n.target == "size" for n in traced.graph.nodes)  # no shape-dependent code


@pytest.mark.parametrize("family,args,size", [c for c in CASES if c[0] == "pyramidnet"], ids=IDS[2:])
def test_create_feature_extractor_on_pyramidnet_equals_the_feature_list(family, args, size):
    model = _model(family, args)
    train_nodes, eval_nodes = get_graph_node_names(model)
    assert "layer1" in {n.split(".")[0] for n in eval_nodes} and train_nodes == eval_nodes
    extractor = create_feature_extractor(model, return_nodes={"layer1": "c1", "layer2": "c2"}).eval()
    reference = FeatureListNet(model, FAMILIES[family].feature_points(model)).eval()
    names = [name for name, _, _ in FAMILIES[family].feature_points(model)]
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = extractor(x)
        expected = dict(zip(names, reference(x)))
    assert list(out) == ["c1", "c2"]
    assert torch.equal(out["c1"], expected["layer1"]) and torch.equal(out["c2"], expected["layer2"])


def test_scripting_keeps_the_state_dict_keys():
    """The release's checkpoints load strict: scripting-friendly code added no parameter, buffer or key."""
    with torch.device("meta"):
        model = PyramidNet(200, 240, 100, bottleneck=True)
    assert len(model.state_dict()) == 1_531
    blocks = [b for name in ("layer1", "layer2", "layer3") for b in getattr(model, name)]
    assert [b.pad_channels for b in blocks[:2]] == [blocks[0].out_channels - 16, blocks[1].out_channels - blocks[0].out_channels]
    assert all(b.pad_channels >= 0 and isinstance(b.pad_channels, int) for b in blocks)
