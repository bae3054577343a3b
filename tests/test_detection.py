"""Detection backbones: frozen batch norm that keeps the checkpoint's outputs, the right frozen stages, detectors that train."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

import cutmix_zoo
from cutmix_zoo import registry
from cutmix_zoo.detection.backbone import detection_backbone
from cutmix_zoo.errors import InvalidArgumentError

TINY = "tinyresnet10.cutmix_in1k"  # a one-block-per-stage ResNet: the ResNet code path at a tenth of ResNet-50's cost


@pytest.fixture
def tiny_resnet(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Register the tiny ResNet entry and return a weights file for it with non-trivial batch norm statistics."""
    from safetensors.torch import save_file

    from cutmix_zoo.models import build_model

    arch = registry.Architecture(name="tinyresnet10", family="resnet", args={"layers": [1, 1, 1, 1], "bottleneck": False},
                                 description="ResNet-10 for tests")
    entry = registry.Entry(name=TINY, arch=arch.name, dataset="imagenet-1k", method="cutmix", top1_err=30.0, top5_err=10.0,
                           err_source="test", original_path=None, layout="bare")
    stack = contextlib.ExitStack()
    stack.enter_context(registry.registered(arch, entry))
    request.addfinalizer(stack.close)
    torch.manual_seed(0)
    state = build_model("resnet", arch.args, 1000).state_dict()
    for key, value in state.items():
        if key.endswith("running_mean"):
            value.normal_(0, 0.1)
        elif key.endswith("running_var"):
            value.uniform_(0.5, 1.5)
    path = tmp_path / "tinyresnet10.safetensors"
    save_file(state, path)
    return path


def test_frozen_batch_norm_keeps_the_checkpoints_outputs(resnet50_file):
    body = detection_backbone("resnet50", fpn=False, weights=resnet50_file)
    assert body.out_channels == 2048
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in body.modules()) == 53
    reference = cutmix_zoo.load("resnet50", weights=resnet50_file, features_only=True, out_indices=[-1])
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)  # in float64 the two ways of applying BN agree to rounding
    with torch.no_grad():
        torch.testing.assert_close(body.double().train()(x)["0"], reference.double()(x)[0], atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("trainable_layers", range(6))
def test_trainable_layers_freeze_the_stem_and_early_stages(tiny_resnet, trainable_layers):
    backbone = detection_backbone(TINY, trainable_layers=trainable_layers, weights=tiny_resnet)
    trainable = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    for name, parameter in backbone.body.named_parameters():
        assert parameter.requires_grad == any(name.startswith(layer + ".") for layer in trainable), name
    assert all(p.requires_grad for p in backbone.fpn.parameters())
    assert not any(p.requires_grad for n, p in backbone.body.named_parameters() if "bn" in n or "downsample.1" in n)


def test_norm_layer_none_keeps_trainable_batch_norm(tiny_resnet):
    backbone = detection_backbone(TINY, weights=tiny_resnet, norm_layer=None, trainable_layers=5)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules()) == 12  # stem, 2 per block, 3 downsamples
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in backbone.modules())
    assert all(p.requires_grad for p in backbone.parameters())


def test_faster_rcnn_trains_and_infers(tiny_resnet):
    backbone = detection_backbone(TINY, weights=tiny_resnet, out_channels=64)
    assert backbone.out_channels == 64
    model = FasterRCNN(backbone, num_classes=3, min_size=96, max_size=96)
    image = torch.rand(3, 96, 96)
    target = {"boxes": torch.tensor([[10.0, 12.0, 50.0, 60.0], [40.0, 30.0, 90.0, 85.0]]), "labels": torch.tensor([1, 2])}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    before = model.backbone.body.layer4[0].conv1.weight.detach().clone()

    model.train()
    losses = model([image], [target])
    loss = sum(losses.values())
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert torch.isfinite(loss)
    loss.backward()
    for name, parameter in model.backbone.body.named_parameters():
        assert (parameter.grad is not None) == parameter.requires_grad, name
    assert model.backbone.body.layer4[0].conv1.weight.grad.abs().sum() > 0
    optimizer.step()
    assert not torch.equal(model.backbone.body.layer4[0].conv1.weight, before)

    model.eval()
    with torch.no_grad():
        [detections] = model([image])
    assert set(detections) == {"boxes", "labels", "scores"} and detections["boxes"].shape[1] == 4


def test_retinanet_and_mask_rcnn_take_it(tiny_resnet):
    image = torch.rand(3, 64, 64)
    retina_backbone = detection_backbone(TINY, weights=tiny_resnet, returned_layers=[2, 3, 4],
                                         extra_blocks=LastLevelP6P7(256, 256))
    retina = RetinaNet(retina_backbone, num_classes=3, min_size=64, max_size=64).eval()
    mask = MaskRCNN(detection_backbone(TINY, weights=tiny_resnet), num_classes=3, min_size=64, max_size=64).eval()
    with torch.no_grad():
        assert len(retina_backbone(image[None])) == 5
        assert set(retina([image])[0]) == {"boxes", "labels", "scores"}
        assert set(mask([image])[0]) == {"boxes", "labels", "scores", "masks"}


def test_bad_requests_are_one_sentence(tiny_resnet):
    cases = [
        (dict(name="pyramidnet200_a240"), "is a pyramidnet model; detection backbones are made from the ResNet and ResNeXt entries only"),
        (dict(name=TINY, trainable_layers=6), "trainable_layers must be an integer from 0 to 5"),
        (dict(name=TINY, returned_layers=[0, 1]), "returned_layers must name stages 1 to 4"),
        (dict(name=TINY, returned_layers=[3, 2]), "returned_layers must name stages 1 to 4"),
        (dict(name=TINY, fpn=False, returned_layers=[4]), "need fpn=True"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InvalidArgumentError, match=message):
            detection_backbone(weights=tiny_resnet, **kwargs)
    with pytest.raises(InvalidArgumentError, match="cannot hold a BatchNorm2d's weights and statistics"):
        detection_backbone(TINY, weights=tiny_resnet, norm_layer=lambda channels: torch.nn.GroupNorm(1, channels))
    with pytest.raises(cutmix_zoo.UnknownModelError):
        detection_backbone("resnet5", weights=tiny_resnet)
