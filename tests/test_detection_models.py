"""Detectors on zoo backbones: Faster R-CNN, RetinaNet and FCOS build on a ResNet and on the embedded PyramidNet, train a
step and detect on CPU; the generic FPN's levels, strides, anchors and frozen stages are the ones asked for."""

from __future__ import annotations

import pytest
import torch
from test_detection import TINY, tiny_resnet  # noqa: F401  (the tiny ResNet entry and its weights)
from torchvision.ops import FrozenBatchNorm2d

from cutmix_zoo.detection.models import DETECTORS, FeaturePyramidBackbone, build_detector
from cutmix_zoo.errors import InvalidArgumentError

EMBEDDED = "pyramidnet20_a48.cutmix_shapes"
SIZE = 64


def _targets() -> list[dict[str, torch.Tensor]]:
    return [{"boxes": torch.tensor([[8.0, 10.0, 30.0, 28.0], [34.0, 30.0, 60.0, 62.0]]), "labels": torch.tensor([1, 3])},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]  # an image with no object trains too


# Fewer proposals, sampled boxes and candidates than COCO's defaults: the same code paths at a fraction of the CPU time.
LIGHT = {"faster_rcnn": dict(rpn_pre_nms_top_n_train=200, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_train=100,
                             rpn_post_nms_top_n_test=50, box_batch_size_per_image=32, box_detections_per_img=20),
         "retinanet": dict(topk_candidates=50, detections_per_img=20), "fcos": dict(topk_candidates=50, detections_per_img=20)}


def _build(backbone: str, detector: str, weights=None):
    return build_detector(backbone, num_classes=3, detector=detector, out_channels=32, min_size=SIZE, max_size=SIZE, weights=weights,
                          **LIGHT[detector])


@pytest.mark.parametrize("detector", DETECTORS)
@pytest.mark.parametrize("backbone", ["resnet", "pyramidnet"])
def test_each_detector_trains_a_step_and_detects(backbone, detector, request):
    torch.manual_seed(0)
    model = _build(EMBEDDED, detector) if backbone == "pyramidnet" else _build(TINY, detector, request.getfixturevalue("tiny_resnet"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.backbone.body.modules())
    images = [torch.rand(3, SIZE, SIZE), torch.rand(3, SIZE, SIZE)]
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    name, watched = next((n, p) for n, p in trainable if n.startswith("backbone.body."))
    before = watched.detach().clone()
    model.train()
    losses = model(images, _targets())
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for n, p in trainable if n.startswith("backbone.body.")), "a trainable stage got no gradient"
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)
    torch.optim.SGD([p for _, p in trainable], lr=0.01).step()
    assert not torch.equal(watched, before), name
    model.eval()
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2 and set(detections[0]) == {"boxes", "labels", "scores"}
    assert ((detections[0]["labels"] >= 1) & (detections[0]["labels"] <= 3)).all()


def test_generic_fpn_levels_follow_their_strides():
    model = build_detector(EMBEDDED, 2, out_channels=32, min_size=SIZE, max_size=SIZE)
    assert isinstance(model.backbone, FeaturePyramidBackbone)
    config = model.detector_config
    assert (config["levels"], config["strides"]) == ([1, 2, 3], [1, 2, 4, 8])  # the CIFAR PyramidNet's stages, then the max-pooled extra level
    assert config["anchor_sizes"] == [[8], [16], [32], [64]] and config["aspect_ratios"] == [0.5, 1.0, 2.0]
    with torch.no_grad():
        outputs = model.backbone(torch.rand(1, 3, SIZE, SIZE))
    assert list(outputs) == ["0", "1", "2", "pool"]
    assert [o.shape[-1] for o in outputs.values()] == [SIZE // s for s in config["strides"]]
    assert all(o.shape[1] == 32 for o in outputs.values())
    one_stage = build_detector(EMBEDDED, 2, detector="fcos", out_channels=32).detector_config
    assert (one_stage["levels"], one_stage["strides"], one_stage["anchor_sizes"]) == ([2, 3], [2, 4, 8, 16], [[2], [4], [8], [16]])


def test_resnet_anchors_are_torchvisions(tiny_resnet):  # noqa: F811
    faster = build_detector(TINY, 2, weights=tiny_resnet, out_channels=16).detector_config
    assert faster["strides"] == [4, 8, 16, 32, 64] and faster["anchor_sizes"] == [[32], [64], [128], [256], [512]]
    retina = build_detector(TINY, 2, detector="retinanet", weights=tiny_resnet, out_channels=16).detector_config
    assert retina["levels"] == [2, 3, 4] and retina["strides"] == [8, 16, 32, 64, 128]
    assert retina["anchor_sizes"] == [[x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))] for x in (32, 64, 128, 256, 512)]


@pytest.mark.parametrize("freeze_stages", [0, 1, 2, 4])
def test_freeze_stages_freeze_the_stem_and_early_levels(freeze_stages, tiny_resnet):  # noqa: F811
    model = build_detector(EMBEDDED, 2, out_channels=16, freeze_stages=freeze_stages)
    levels = [["conv1", "bn1"], ["layer1"], ["layer2"], ["layer3", "bn_final", "relu_final"]]
    frozen = {name for level in levels[:freeze_stages] for name in level}
    for name, parameter in model.backbone.body.named_parameters():
        assert parameter.requires_grad == (name.split(".")[0] not in frozen), name
    assert all(p.requires_grad for p in model.backbone.fpn.parameters())
    resnet = build_detector(TINY, 2, weights=tiny_resnet, out_channels=16, freeze_stages=min(freeze_stages, 5))
    stages = ["conv1", "layer1", "layer2", "layer3", "layer4"]
    for name, parameter in resnet.backbone.body.named_parameters():
        assert parameter.requires_grad == (name.split(".")[0] not in stages[:freeze_stages]), name


def test_bad_detector_requests_are_one_sentence(tiny_resnet):  # noqa: F811
    cases = [
        (dict(detector="ssd"), "detector must be one of faster_rcnn, retinanet, fcos, not 'ssd'"),
        (dict(num_classes=0), "num_classes counts the object classes"),
        (dict(freeze_stages=5), "freeze_stages counts the feature levels frozen from the stem, 0 to 4"),
        (dict(levels=[3, 2]), "levels must name feature levels 0 to 3 in increasing order"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InvalidArgumentError, match=message):
            build_detector(EMBEDDED, **{"num_classes": 2, **kwargs})
    with pytest.raises(InvalidArgumentError, match="not the stem"):
        build_detector(TINY, 2, weights=tiny_resnet, levels=[0, 1])
