"""load(..., output_stride=8 | 16): dilated ResNets for segmentation, with the same weights and truthful reductions."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.segmentation.deeplabv3 import DeepLabHead

import cutmix_zoo


@pytest.mark.parametrize("output_stride,reductions", [(32, [2, 4, 8, 16, 32]), (16, [2, 4, 8, 16, 16]), (8, [2, 4, 8, 8, 8])])
def test_feature_reductions_are_the_real_strides(output_stride, reductions):
    features = cutmix_zoo.load("resnet50", pretrained=False, features_only=True, output_stride=output_stride)
    assert features.feature_info.reduction() == reductions
    assert features.feature_info.channels() == [64, 256, 512, 1024, 2048]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps = features(x)
    assert [64 // m.shape[-1] for m in maps] == reductions


def test_deeplabv3_head_on_a_dilated_resnet50():
    backbone = cutmix_zoo.load("resnet50", pretrained=False, features_only=True, out_indices=[4], output_stride=8)
    head = DeepLabHead(backbone.feature_info.channels(-1), 21).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        [c5] = backbone(x)
        out = head(c5)
    assert c5.shape == (2, 2048, 8, 8)
    assert out.shape == (2, 21, 64 // 8, 64 // 8)


def test_the_same_weights_load_into_the_dilated_network(resnet50_file, resnet50_state):
    model = cutmix_zoo.load("resnet50", weights=resnet50_file, output_stride=16)
    assert all(torch.equal(v, resnet50_state[k]) for k, v in model.state_dict().items())
    assert model.layer4[0].conv2.dilation == (1, 1) and model.layer4[0].conv2.stride == (1, 1)
    assert model.layer4[1].conv2.dilation == (2, 2)
    assert model.pretrained_cfg["arch_args"]["output_stride"] == 16
    assert model.pretrained_cfg["top1_err"] is None  # a dilated classifier is not the network whose error was measured
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert model.forward_features(x).shape == (1, 2048, 4, 4) and model(x).shape == (1, 1000)
    plain = cutmix_zoo.load("resnet50", weights=resnet50_file, output_stride=32)
    assert "output_stride" not in plain.pretrained_cfg["arch_args"] and plain.pretrained_cfg["top1_err"] is not None


def test_export_of_a_dilated_model_reloads_dilated(resnet50_file, tmp_path):
    folder = cutmix_zoo.save_pretrained(cutmix_zoo.load("resnet50", weights=resnet50_file, output_stride=8), tmp_path / "os8")
    again = cutmix_zoo.load(folder, features_only=True)
    assert again.feature_info.reduction() == [2, 4, 8, 8, 8]
    assert cutmix_zoo.load(folder, features_only=True, output_stride=32).feature_info.reduction() == [2, 4, 8, 16, 32]


@pytest.mark.parametrize("name,output_stride,match", [
    ("pyramidnet20_a48.cutmix_shapes", 8, "ResNet and ResNeXt models only"),
    ("pyramidnet20_a48.cutmix_shapes", 32, "ResNet and ResNeXt models only"),
    ("resnet50", 4, "must be 8, 16 or 32"),
    ("resnet50", 64, "must be 8, 16 or 32"),
    ("resnet50", True, "must be 8, 16 or 32"),
])
def test_output_stride_refusals_are_one_sentence(name, output_stride, match):
    with pytest.raises(cutmix_zoo.InvalidArgumentError, match=match) as caught:
        cutmix_zoo.load(name, pretrained=False, output_stride=output_stride)
    assert "\n" not in str(caught.value)


def test_basic_block_resnets_cannot_be_dilated():
    from cutmix_zoo.models.resnet import build_resnet

    with pytest.raises(cutmix_zoo.InvalidArgumentError, match="bottleneck blocks"):
        build_resnet([2, 2, 2, 2], bottleneck=False, output_stride=16)
    assert build_resnet([1, 1, 1, 1], bottleneck=False, output_stride=32).output_stride == 32
