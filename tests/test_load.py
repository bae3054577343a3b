"""load(): every entry builds, loads weights exactly, and adapts its head the way timm users expect."""

from __future__ import annotations

import pytest
import torch
import torchvision
from safetensors.torch import save_file

import cutmix_zoo
from cutmix_zoo import registry

EXPECTED_PARAMS = {  # from the reference file
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext101_32x4d": 44_177_704,
    "pyramidnet200_a240": 26_844_952,
    "pyramidnet20_a48": 310_845,
}
RESNET_CHANNELS = [64, 256, 512, 1024, 2048]


def _input(name: str, batch: int = 1) -> torch.Tensor:
    size = 32 if registry.get_entry(name).dataset.startswith("cifar") else 64
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


def _check_size_and_features(name: str, device: str) -> None:
    """The entry's classifier and feature extractor, built on ``device``: parameter count, mode, config, output and map shapes."""
    model = cutmix_zoo.load(name, pretrained=False, device=device)
    entry = registry.get_entry(name)
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMS[entry.arch]
    assert all(p.device.type == device for p in model.parameters())
    assert not model.training and model.pretrained_cfg["name"] == entry.name
    x = _input(name).to(device)
    assert model(x).shape == (1, entry.num_classes)
    features = cutmix_zoo.load(name, pretrained=False, features_only=True, device=device)
    maps = features(x)
    info = features.feature_info
    assert [m.shape[1] for m in maps] == info.channels()
    assert [x.shape[-1] // m.shape[-1] for m in maps] == info.reduction()
    if entry.arch.startswith("res"):
        assert info.channels() == RESNET_CHANNELS and info.reduction() == [2, 4, 8, 16, 32]
    elif entry.arch == "pyramidnet200_a240":
        assert info.channels() == [16, 384, 704, 1024] and info.reduction() == [1, 1, 2, 4]
    else:
        assert info.channels() == [16, 32, 48, 64] and info.reduction() == [1, 1, 2, 4]


@pytest.mark.parametrize("name", registry.list_models())
def test_every_entry_has_the_expected_size_and_features_on_the_meta_device(name):
    """Shapes only: every entry's network, head and feature levels, without allocating (nine entries share PyramidNet-200)."""
    _check_size_and_features(name, "meta")


@pytest.mark.parametrize("arch", registry.list_models(architectures=True))
def test_every_architecture_builds_and_runs_for_real(arch):
    """One real build and forward per architecture, through its default entry."""
    _check_size_and_features(arch, "cpu")


@pytest.mark.parametrize("arch,tv", [("resnet50", "resnet50"), ("resnet101", "resnet101"), ("resnet152", "resnet152"),
                                     ("resnext101_32x4d", None)])
def test_resnet_state_dicts_equal_torchvision_key_for_key(arch, tv):
    with torch.device("meta"):
        ours = cutmix_zoo.load(arch, pretrained=False, device="meta").state_dict()
        if tv is None:
            theirs = torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=4).state_dict()
        else:
            theirs = getattr(torchvision.models, tv)().state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)


def test_loaded_resnet50_gives_torchvision_logits(resnet50_file, resnet50_state):
    reference = torchvision.models.resnet50()
    reference.load_state_dict(resnet50_state)
    reference.eval()
    model = cutmix_zoo.load("resnet50", weights=resnet50_file)
    assert isinstance(model, torchvision.models.ResNet)
    assert not any(t.is_meta for t in model.state_dict().values())
    assert model.pretrained_cfg["source"] == str(resnet50_file)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    for k, v in model.state_dict().items():
        assert torch.equal(v, resnet50_state[k]), k


def test_features_equal_the_full_models_activations(resnet50_file):
    full = cutmix_zoo.load("resnet50", weights=resnet50_file)
    acts = {}
    for name in ["relu", "layer1", "layer2", "layer3", "layer4"]:
        getattr(full, name).register_forward_hook(lambda m, i, o, name=name: acts.__setitem__(name, o.clone()))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        full(x)
        maps = cutmix_zoo.load("resnet50", weights=resnet50_file, features_only=True)(x)
        picked = cutmix_zoo.load("resnet50", weights=resnet50_file, features_only=True, out_indices=(1, -1))(x)
    assert len(maps) == 5
    for m, name in zip(maps, ["relu", "layer1", "layer2", "layer3", "layer4"]):
        assert torch.equal(m, acts[name])
    assert [p.shape[1] for p in picked] == [256, 2048]
    assert torch.equal(picked[1], acts["layer4"])


def test_features_only_drops_what_follows_the_last_level(resnet50_file):
    model = cutmix_zoo.load("resnet50", weights=resnet50_file, features_only=True, out_indices=[2])
    assert "fc" not in dict(model.named_children()) and "layer3" not in dict(model.named_children())
    assert model.feature_info.channels() == [512] and model.feature_info.module_name() == ["layer2"]
    assert all(k.startswith(("conv1", "bn1", "layer1", "layer2")) for k in model.state_dict())


def test_num_classes_zero_gives_pooled_embeddings(resnet50_file):
    full = cutmix_zoo.load("resnet50", weights=resnet50_file)
    headless = cutmix_zoo.load("resnet50", weights=resnet50_file, num_classes=0)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        emb = headless(x)
        stem = full.maxpool(full.relu(full.bn1(full.conv1(x))))
        expected = torch.flatten(full.avgpool(full.layer4(full.layer3(full.layer2(full.layer1(stem))))), 1)
    assert emb.shape == (2, 2048) and torch.equal(emb, expected)
    assert headless.pretrained_cfg["num_classes"] == 0


def test_new_num_classes_gets_a_fresh_head_on_the_loaded_backbone(resnet50_file, resnet50_state):
    torch.manual_seed(0)
    model = cutmix_zoo.load("resnet50", weights=resnet50_file, num_classes=10)
    assert model.fc.out_features == 10 and model.fc.weight.device.type == "cpu"
    assert torch.equal(model.layer4[2].conv3.weight, resnet50_state["layer4.2.conv3.weight"])
    assert not torch.equal(model.fc.weight[:10], resnet50_state["fc.weight"][:10])
    assert model.fc.weight.std() > 0 and model.pretrained_cfg["num_classes"] == 10
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_a_fine_tuned_file_keeps_its_own_head_size(tmp_path, resnet50_file):
    model = cutmix_zoo.load("resnet50", weights=resnet50_file, num_classes=7)
    path = tmp_path / "ft.safetensors"
    save_file(model.state_dict(), path)
    again = cutmix_zoo.load("resnet50", weights=path)
    assert again.fc.out_features == 7 and torch.equal(again.fc.weight, model.fc.weight)


def test_dtype_and_bf16_pyramidnet_forward_on_cpu(tmp_path):
    model = cutmix_zoo.load("pyramidnet200_a240", pretrained=False)
    path = tmp_path / "p.safetensors"
    save_file(model.state_dict(), path)
    bf16 = cutmix_zoo.load("pyramidnet200_a240", weights=path, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in bf16.parameters())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = bf16(x.bfloat16())
        ref = model(x)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert torch.allclose(out.float().softmax(1), ref.softmax(1), atol=0.05)


def test_transforms_match_the_entry():
    from PIL import Image

    image = Image.new("RGB", (320, 480), (124, 116, 104))
    x = cutmix_zoo.transforms("resnet50")(image)
    assert x.shape == (3, 224, 224)
    corner = torch.tensor([(124 / 255 - 0.485) / 0.229, (116 / 255 - 0.456) / 0.224, (104 / 255 - 0.406) / 0.225])
    assert torch.allclose(x[:, 0, 0], corner, atol=1e-5)
    small = cutmix_zoo.transforms("pyramidnet200_a240")(Image.new("RGB", (32, 32)))
    assert small.shape == (3, 32, 32) and small[0, 0, 0] == pytest.approx(-125.3 / 63.0, rel=1e-4)
    model = cutmix_zoo.load("resnet50", pretrained=False)
    assert str(cutmix_zoo.transforms(model)) == str(cutmix_zoo.transforms("resnet50"))


def test_plugs_into_torchvision_faster_rcnn(resnet50_file):
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import BackboneWithFPN

    body = cutmix_zoo.load("resnet50", weights=resnet50_file)
    backbone = BackboneWithFPN(body, {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
                               in_channels_list=[256, 512, 1024, 2048], out_channels=256)
    detector = FasterRCNN(backbone, num_classes=3, min_size=128, max_size=160).eval()
    with torch.no_grad():
        out = detector([torch.rand(3, 120, 150)])
    assert set(out[0]) == {"boxes", "labels", "scores"} and out[0]["boxes"].shape[-1] == 4


def test_bad_arguments_are_one_sentence_errors(tmp_path, resnet50_file):
    with pytest.raises(cutmix_zoo.InvalidArgumentError, match="out of range.*5 feature levels"):
        cutmix_zoo.load("resnet50", pretrained=False, features_only=True, out_indices=(0, 5))
    with pytest.raises(cutmix_zoo.InvalidArgumentError, match="non-negative"):
        cutmix_zoo.load("resnet50", pretrained=False, num_classes=-3)
    with pytest.raises(cutmix_zoo.InvalidArgumentError, match="features_only"):
        cutmix_zoo.load("resnet50", pretrained=False, out_indices=[1])
    with pytest.raises(cutmix_zoo.WeightsError, match="does not exist"):
        cutmix_zoo.load("resnet50", weights=tmp_path / "nope.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(cutmix_zoo.WeightsError, match="safetensors"):
        cutmix_zoo.load("resnet50", weights=garbage)


def test_weights_of_another_architecture_name_the_keys(resnet50_file):
    with pytest.raises(cutmix_zoo.WeightsError) as e:
        cutmix_zoo.load("resnet101", weights=resnet50_file)
    message = str(e.value)
    assert "do not fit resnet101.cutmix_in1k" in message and "missing keys" in message
    assert "layer3.6.conv1.weight" in message and "\n" not in message
    with pytest.raises(cutmix_zoo.WeightsError, match="unexpected keys.*another shape"):
        cutmix_zoo.load("pyramidnet200_a240", weights=resnet50_file)


class _WithNonPersistentBuffer(torch.nn.Module):
    """A family whose module has a buffer that no checkpoint holds (like a positional table)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 3)
        self.register_buffer("scale", torch.full((1,), 2.0), persistent=False)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.flatten = torch.nn.Flatten()
        self.fc = torch.nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.conv1(x) * self.scale)))

    def feature_points(self):
        return [("conv1", 4, 1)]


def test_a_family_with_non_persistent_buffers_gets_an_ordinary_build(tmp_path, monkeypatch):
    from cutmix_zoo.models import FAMILIES, Family

    monkeypatch.setitem(FAMILIES, "toy", Family(_WithNonPersistentBuffer, _WithNonPersistentBuffer.feature_points))
    toy = registry.Architecture(name="toy", family="toy", args={}, description="toy")
    entry = registry.Entry(name="toy.cutmix_c10", arch="toy", dataset="cifar-10", method="cutmix", top1_err=None, top5_err=None,
                           err_source="test", original_path=None, layout="bare")
    with registry.registered(toy, entry):
        _check_toy_loads(tmp_path)


def _check_toy_loads(tmp_path):
    reference = _WithNonPersistentBuffer(10)
    path = tmp_path / "toy.safetensors"
    save_file(reference.state_dict(), path)
    model = cutmix_zoo.load("toy.cutmix_c10", weights=path)
    assert not any(t.is_meta for t in list(model.parameters()) + list(model.buffers()))
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


def test_skipping_initialisers_only_affects_the_building_thread():
    import threading

    from cutmix_zoo.fastload import skip_init

    here, elsewhere = torch.zeros(3), torch.zeros(3)
    with skip_init():
        torch.nn.init.constant_(here, 3.0)
        worker = threading.Thread(target=torch.nn.init.constant_, args=(elsewhere, 3.0))
        worker.start()
        worker.join()
    assert torch.equal(here, torch.zeros(3)) and torch.equal(elsewhere, torch.full((3,), 3.0))
    torch.nn.init.constant_(here, 3.0)  # restored afterwards
    assert torch.equal(here, torch.full((3,), 3.0))


@pytest.mark.parametrize("family,args,classes", [("resnet", {"layers": [1, 1, 1, 1]}, 7),
                                                 ("pyramidnet", {"depth": 20, "alpha": 48, "bottleneck": False}, 10)])
def test_direct_slot_assignment_equals_load_state_dict_assign(family, args, classes):
    """The fast path (tensors put in their slots) gives the model that ``load_state_dict(assign=True)`` gives."""
    from cutmix_zoo.fastload import assign_tensors, build_on_meta
    from cutmix_zoo.models import build_model

    torch.manual_seed(0)
    reference = build_model(family, args, classes).eval()
    for module in reference.modules():  # non-trivial batch-norm statistics, so buffers matter too
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.num_batches_tracked.fill_(7)
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    fast, slow = build_on_meta(family, args, classes), build_on_meta(family, args, classes)
    assert all(p.is_meta for p in fast.parameters())
    assign_tensors(fast, state)
    assign_tensors(slow, state, direct=False)
    for model in (fast, slow):
        assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
        assert all(p.requires_grad for p in model.parameters())
    assert fast.state_dict().keys() == slow.state_dict().keys() == state.keys()
    assert all(torch.equal(fast.state_dict()[k], slow.state_dict()[k]) for k in state)
    assert all(fast.state_dict()[k].data_ptr() == state[k].data_ptr() for k in state)  # assigned, not copied
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(fast.eval()(x), slow.eval()(x)) and torch.equal(fast(x), reference(x))
