"""Where timm users already are: the classifier methods timm's models have, and timm's FeatureInfo, checked against timm itself."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch import nn

import cutmix_zoo
from cutmix_zoo.models import build_model

FAMILY_CASES = [  # (family, arguments, classes, input side): one small network of each family
    ("resnet", {"layers": [1, 1, 1, 1]}, 7, 64),
    ("cifar_resnet", {"depth": 8, "bottleneck": False}, 10, 32),
    ("pyramidnet", {"depth": 20, "alpha": 12, "bottleneck": False}, 10, 32),
    ("pyramidnet", {"depth": 26, "alpha": 12, "bottleneck": True, "imagenet": True}, 10, 64),
]
IDS = ["resnet", "cifar_resnet", "pyramidnet", "pyramidnet_imagenet"]


def _randomise_statistics(model: nn.Module) -> None:
    """Non-trivial BatchNorm statistics, so a wrong order of operations shows in the outputs."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)


def _model(family: str, args: dict, classes: int) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(family, args, classes)
    _randomise_statistics(model)
    return model.eval()


@pytest.mark.parametrize("family,args,classes,size", FAMILY_CASES, ids=IDS)
def test_every_family_has_timms_classifier_methods(family, args, classes, size):
    model = _model(family, args, classes)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = model.forward_features(x)
        pooled = model.forward_head(features, pre_logits=True)
        logits = model(x)
        assert features.dim() == 4 and features.shape[1] == model.num_features
        assert pooled.shape == (2, model.num_features)
        assert torch.equal(pooled, features.mean(dim=(2, 3)))
        assert torch.equal(logits, model.forward_head(model.forward_features(x)))
        assert torch.equal(logits, model.forward_head(features))
    assert model.num_classes == classes and logits.shape == (2, classes)
    assert model.get_classifier() is model.fc and model.fc.in_features == model.num_features


@pytest.mark.parametrize("family,args,classes,size", FAMILY_CASES, ids=IDS)
def test_reset_classifier_on_the_model(family, args, classes, size):
    model = _model(family, args, classes)
    keys = set(model.state_dict())
    x = torch.randn(2, 3, size, size)
    model.reset_classifier(3)
    assert isinstance(model.get_classifier(), nn.Linear) and model.get_classifier().out_features == 3
    assert model.num_classes == 3 and not model.fc.training  # the new head follows the model's mode
    with torch.no_grad():
        assert model(x).shape == (2, 3)
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), nn.Identity) and model.num_classes == 0
    assert set(model.state_dict()) == {k for k in keys if not k.startswith("fc.")}
    with torch.no_grad():
        assert torch.equal(model(x), model.forward_head(model.forward_features(x), pre_logits=True))
    model.reset_classifier(5, "avg")  # back from no head: num_features sizes the new one
    assert model.fc.in_features == model.num_features and model(x).shape == (2, 5)
    with pytest.raises(cutmix_zoo.InvalidArgumentError, match="global_pool"):
        model.reset_classifier(5, "max")
    with pytest.raises(cutmix_zoo.InvalidArgumentError, match="num_classes"):
        model.reset_classifier(-1)


def test_resnets_stay_torchvision_resnets_with_its_keys():
    model = cutmix_zoo.load("resnet50", pretrained=False)
    assert isinstance(model, torchvision.models.ResNet)
    with torch.device("meta"):
        theirs = torchvision.models.resnet50().state_dict()
    assert list(model.state_dict()) == list(theirs)
    assert (model.num_classes, model.num_features) == (1000, 2048)


@pytest.mark.parametrize("name", ["resnet50", "pyramidnet20_a48.cutmix_shapes"])
def test_loaded_models_carry_the_attributes_and_reset_like_the_library_function(name, resnet50_file):
    weights = resnet50_file if name == "resnet50" else None
    by_method = cutmix_zoo.load(name, weights=weights)
    by_function = cutmix_zoo.load(name, weights=weights)
    assert isinstance(by_method.pretrained_cfg, dict) and by_method.pretrained_cfg["num_classes"] == by_method.num_classes
    assert by_method.pretrained_cfg["top1_err"] is not None  # measured weights, until the head changes
    by_method.reset_classifier(4)
    cutmix_zoo.reset_classifier(by_function, 4)
    assert by_method.pretrained_cfg == by_function.pretrained_cfg
    assert by_method.pretrained_cfg["num_classes"] == 4 and by_method.pretrained_cfg["top1_err"] is None
    assert by_method.fc.weight.shape == by_function.fc.weight.shape == (4, by_method.num_features)
    assert by_function.num_classes == 4
    embedder = cutmix_zoo.load(name, weights=weights, num_classes=0)
    assert embedder.num_classes == 0 and isinstance(embedder.get_classifier(), nn.Identity)


def test_new_head_is_made_in_the_models_dtype():
    model = cutmix_zoo.load("pyramidnet20_a48.cutmix_shapes", dtype=torch.bfloat16)
    model.reset_classifier(3)
    assert model.fc.weight.dtype == torch.bfloat16
    cutmix_zoo.reset_classifier(model, 2, dtype=torch.float32)
    assert model.fc.weight.dtype == torch.float32


def test_resnet18_methods_agree_with_timms_on_the_same_weights():
    torch.manual_seed(0)
    theirs = timm.create_model("resnet18", pretrained=False)
    _randomise_statistics(theirs)
    theirs.eval()
    ours = build_model("resnet", {"layers": [2, 2, 2, 2], "bottleneck": False}, 1000).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(ours.forward_features(x), theirs.forward_features(x))
        assert torch.equal(ours.forward_head(ours.forward_features(x), pre_logits=True),
                           theirs.forward_head(theirs.forward_features(x), pre_logits=True))
        assert torch.equal(ours(x), theirs(x))
    assert (ours.num_features, ours.num_classes) == (theirs.num_features, theirs.num_classes)
    assert type(ours.get_classifier()) is type(theirs.get_classifier())
    assert ours.get_classifier().weight.shape == theirs.get_classifier().weight.shape
    for n in (10, 0):
        ours.reset_classifier(n)
        theirs.reset_classifier(n)
        assert ours.num_classes == theirs.num_classes == n
        with torch.no_grad():
            assert ours(x).shape == theirs(x).shape
    assert type(ours.get_classifier()) is type(theirs.get_classifier()) is nn.Identity


# ---- feature_info ---------------------------------------------------------------------------------------------

def _pair(out_indices):
    theirs = timm.create_model("resnet50", pretrained=False, features_only=True, out_indices=out_indices)
    ours = cutmix_zoo.load("resnet50", pretrained=False, features_only=True, out_indices=out_indices)
    return ours.feature_info, theirs.feature_info


def _without_stem_name(value):
    """timm calls the stem's activation ``act1``; torchvision (and so cutmix_zoo) calls it ``relu``."""
    if isinstance(value, list):
        return [_without_stem_name(v) for v in value]
    if isinstance(value, dict) and value.get("module") in ("act1", "relu"):
        return {**value, "module": "<stem>"}
    return "<stem>" if value in ("act1", "relu") else value


@pytest.mark.parametrize("out_indices", [(1, 3), (0, 1, 2, 3, 4), (2,), (1, -1), 2, 5, 1])
def test_feature_info_answers_every_call_as_timms(out_indices):
    ours, theirs = _pair(out_indices)
    calls = [
        ("channels", ()), ("reduction", ()), ("module_name", ()), ("get_dicts", ()),
        ("get", ("num_chs",)), ("get", ("reduction", 0)), ("get", ("module", [0, 4])),
        ("channels", (0,)), ("channels", (2,)), ("channels", ([0, 2],)), ("reduction", (4,)), ("reduction", ((1, 3),)),
        ("module_name", (0,)), ("module_name", (1,)), ("module_name", ([1, 3],)),
        ("get_dicts", (["num_chs"],)), ("get_dicts", (["num_chs", "reduction"], 1)),
        ("get_dicts", (None, [0, 3])), ("get_dicts", (None, 4)),
    ]
    for method, args in calls:
        mine, timms = getattr(ours, method)(*args), getattr(theirs, method)(*args)
        assert _without_stem_name(mine) == _without_stem_name(timms), (method, args, mine, timms)
    assert len(ours) == len(theirs) == 5
    assert [_without_stem_name(ours[i]) for i in range(5)] == [_without_stem_name(theirs[i]) for i in range(5)]
    assert [ours.get("module", i) for i in range(1, 5)] == [theirs.get("module", i) for i in range(1, 5)]
    assert (ours.module_name(0), theirs.module_name(0)) == ("relu", "act1")  # the one name that differs


def test_feature_info_dicts_handed_out_are_copies():
    info = cutmix_zoo.load("resnet50", pretrained=False, features_only=True, out_indices=(1, 3)).feature_info
    info.get_dicts()[0]["num_chs"] = -1
    info[1]["num_chs"] = -1
    assert info.channels() == [256, 1024]


# ---- the rest of timm's model API: forward_intermediates, pruning, checkpointing, parameter groups ---------------

TIMM_INDICES = [None, 1, 3, 5, [0, 2], [-1, 1], [4, 0], (1, -2), [-5]]  # every form timm's feature_take_indices takes


@pytest.fixture(scope="module")
def resnet_pair():
    """A small Bottleneck ResNet of ours and timm's ResNet with the same weights (non-trivial BatchNorm statistics)."""
    from timm.models.resnet import Bottleneck, ResNet

    ours = _model("resnet", {"layers": [1, 1, 1, 1]}, 7)
    theirs = ResNet(block=Bottleneck, layers=[1, 1, 1, 1], num_classes=7).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours, theirs


def _same(mine, timms) -> bool:
    if isinstance(mine, torch.Tensor):
        return torch.equal(mine, timms)
    return type(mine) is type(timms) and len(mine) == len(timms) and all(_same(a, b) for a, b in zip(mine, timms))


@pytest.mark.parametrize("indices", TIMM_INDICES, ids=str)
def test_forward_intermediates_equals_timms_on_the_same_weights(resnet_pair, indices):
    ours, theirs = resnet_pair
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for options in ({}, {"stop_early": True}, {"intermediates_only": True}, {"norm": True, "stop_early": True}):
            mine = ours.forward_intermediates(x, indices=indices, **options)
            timms = theirs.forward_intermediates(x, indices=indices, **options)
            assert _same(mine, timms), options


def test_prune_intermediate_layers_as_timm(resnet_pair):
    import copy

    ours, theirs = (copy.deepcopy(m) for m in resnet_pair)
    assert ours.prune_intermediate_layers([1, 2]) == theirs.prune_intermediate_layers([1, 2]) == [1, 2]
    assert set(ours.state_dict()) == set(theirs.state_dict())
    assert ours.num_features == theirs.num_features == 512 and ours.num_classes == 0
    assert [d["num_chs"] for d in ours.feature_info] == [64, 256, 512]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert _same(ours.forward_intermediates(x, indices=[1, 2]), theirs.forward_intermediates(x, indices=[1, 2]))
        assert ours(x).shape == (1, 512)


@pytest.mark.parametrize("family,args,classes,size", FAMILY_CASES, ids=IDS)
def test_every_family_has_forward_intermediates_feature_info_and_default_cfg(family, args, classes, size):
    model = _model(family, args, classes)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x))
        listed = cutmix_zoo.features.FeatureListNet(model, model.feature_points())(x)
        assert _same(maps, listed)
    assert [m.shape[1] for m in maps] == [d["num_chs"] for d in model.feature_info]
    assert [size // m.shape[-1] for m in maps] == [d["reduction"] for d in model.feature_info]
    with pytest.raises(cutmix_zoo.InvalidArgumentError, match="NHWC"):
        model.forward_intermediates(x, output_fmt="NHWC")
    with pytest.raises(cutmix_zoo.InvalidArgumentError, match="out of range"):
        model.forward_intermediates(x, indices=[len(maps)])
    assert model.default_cfg == {}
    loaded = cutmix_zoo.load("pyramidnet20_a48.cutmix_shapes")
    assert loaded.default_cfg == loaded.pretrained_cfg and loaded.default_cfg["name"] == "pyramidnet20_a48.cutmix_shapes"


def test_classifier_feature_info_is_timms(resnet_pair):
    ours, theirs = resnet_pair
    assert _without_stem_name(ours.feature_info) == _without_stem_name(theirs.feature_info)


@pytest.mark.parametrize("family,args,classes,size", FAMILY_CASES, ids=IDS)
def test_grad_checkpointing_recomputes_blocks_and_keeps_outputs_and_gradients(family, args, classes, size):
    model = _model(family, args, classes).train()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(5))
    calls = []
    model.layer1[0].register_forward_pre_hook(lambda *_: calls.append(1))  # a recomputation may stop before the end

    def run() -> tuple[torch.Tensor, list[torch.Tensor]]:
        torch.manual_seed(0)
        model.zero_grad()
        out = model(x)
        out.square().sum().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()]

    with torch.random.fork_rng():
        plain = run()
    assert len(calls) == 1
    model.set_grad_checkpointing()
    with torch.random.fork_rng():
        checkpointed = run()
    assert len(calls) == 3  # forward, then the recomputation in backward
    assert torch.allclose(plain[0], checkpointed[0]) and all(torch.allclose(a, b) for a, b in zip(plain[1], checkpointed[1]))
    model.set_grad_checkpointing(False)
    run()
    assert len(calls) == 4


def _groups(model: nn.Module) -> list[tuple[float, float, int]]:
    import timm.optim

    groups = timm.optim.create_optimizer_v2(model, opt="sgd", lr=0.1, weight_decay=1e-4, layer_decay=0.75).param_groups
    return sorted((round(g["lr_scale"], 8), g["weight_decay"], len(g["params"])) for g in groups)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "resnext101_32x4d"])
def test_layer_decay_gives_timms_parameter_groups(name, recwarn):
    with torch.device("meta"):
        ours = cutmix_zoo.load(name, pretrained=False)
        theirs = timm.create_model(name, pretrained=False)
    mine = _groups(ours)
    assert mine == _groups(theirs)
    assert len({scale for scale, _, _ in mine}) == (18 if name == "resnet50" else 35)
    assert not [w for w in recwarn if "group" in str(w.message).lower()]
    assert ours.group_matcher(coarse=True)["blocks"][0][0] == theirs.group_matcher(coarse=True)["blocks"]


def test_pyramidnet_groups_its_blocks_and_final_norm():
    model = _model("pyramidnet", {"depth": 20, "alpha": 12, "bottleneck": False}, 10)
    scales = sorted({scale for scale, _, _ in _groups(model)})
    assert len(scales) == 1 + 9 + 1  # the stem, nine blocks, the final BatchNorm with the head
    assert scales[-1] == 1.0 and scales[0] == pytest.approx(0.75 ** 10)


def test_transforms_take_image_tensors_as_torchvisions_do():
    from PIL import Image

    preprocess = cutmix_zoo.transforms("pyramidnet20_a48.cutmix_shapes")
    pixels = torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(6))
    from_uint8 = preprocess(pixels)
    from_float = preprocess(pixels.float() / 255)
    from_pil = preprocess(Image.fromarray(pixels.permute(1, 2, 0).numpy()))
    assert from_uint8.dtype == torch.float32 and from_uint8.shape == from_pil.shape == (3, 32, 32)
    assert torch.allclose(from_uint8, from_float, atol=1e-2) and torch.allclose(from_uint8, from_pil, atol=0.1)
    assert torch.equal(preprocess(pixels[None])[0], from_uint8)  # a batch too
