"""Bad input, one case per line: each is refused with one sentence of the right class, before anything is read or written."""

from __future__ import annotations

import pytest
import torch

import cutmix_zoo
from cutmix_zoo.errors import InvalidArgumentError, UnknownModelError, WeightsError, exit_code
from cutmix_zoo.train import train_main

EMBEDDED = "pyramidnet20_a48"


@pytest.mark.parametrize("args, error, says", [
    ((None,), InvalidArgumentError, "name must be a registry name"),
    ((123,), InvalidArgumentError, "name must be a registry name"),
    (("",), InvalidArgumentError, "name must be a registry name"),
    (("resnet5O",), UnknownModelError, "Did you mean"),
    ((EMBEDDED, {"num_classes": True}), InvalidArgumentError, "num_classes must be a non-negative integer"),
    ((EMBEDDED, {"num_classes": -1}), InvalidArgumentError, "num_classes must be a non-negative integer"),
    ((EMBEDDED, {"num_classes": 2.5}), InvalidArgumentError, "num_classes must be a non-negative integer"),
    ((EMBEDDED, {"dtype": "float16"}), InvalidArgumentError, "dtype must be a floating torch dtype"),
    ((EMBEDDED, {"dtype": torch.int8}), InvalidArgumentError, "dtype must be a floating torch dtype"),
    ((EMBEDDED, {"device": "bogus"}), InvalidArgumentError, "is not a torch device"),
    ((EMBEDDED, {"device": 3.5}), InvalidArgumentError, "is not a torch device"),
    ((EMBEDDED, {"features_only": True, "out_indices": []}), InvalidArgumentError, "at least one feature level"),
    ((EMBEDDED, {"features_only": True, "out_indices": "12"}), InvalidArgumentError, "at least one feature level"),
    ((EMBEDDED, {"features_only": True, "out_indices": (True,)}), InvalidArgumentError, "out of range"),
    ((EMBEDDED, {"features_only": True, "out_indices": (9,)}), InvalidArgumentError, "out of range"),
    ((EMBEDDED, {"out_indices": (1,)}), InvalidArgumentError, "needs features_only=True"),
    ((EMBEDDED, {"features_only": True, "num_classes": 3}), InvalidArgumentError, "no meaning with features_only"),
    ((EMBEDDED, {"output_stride": 8}), InvalidArgumentError, "ResNet and ResNeXt models only"),
    (("resnet50", {"pretrained": False, "output_stride": 4}), InvalidArgumentError, "output_stride"),
    ((EMBEDDED, {"weights": "/no/such/file.safetensors"}), WeightsError, "does not exist"),
])
def test_load_refuses_bad_arguments_in_one_sentence(args, error, says):
    name, kwargs = args[0], (args[1] if len(args) > 1 else {})
    with pytest.raises(error, match=says) as e:
        cutmix_zoo.load(name, **kwargs)
    assert "\n" not in str(e.value) and exit_code(e.value) in (1, 2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the case is a machine without a GPU")
def test_cuda_without_a_gpu_is_one_sentence():
    with pytest.raises(InvalidArgumentError, match="sees no CUDA device"):
        cutmix_zoo.load(EMBEDDED, device="cuda")


def test_a_text_file_given_as_weights_is_one_sentence(tmp_path):
    text = tmp_path / "notes.safetensors"
    text.write_text("these are not weights")
    with pytest.raises(WeightsError) as e:
        cutmix_zoo.load(EMBEDDED, weights=text)
    assert str(text) in str(e.value) and "\n" not in str(e.value)


TINY = ["--model", "pyramidnet", "--depth", "8", "--alpha", "12", "--no-bottleneck", "--dataset", "cifar10", "--device", "cpu"]


@pytest.mark.parametrize("flags, says", [
    (["--beta", "nan"], "--beta must be a finite number"),
    (["--lr", "inf"], "--lr must be a finite number"),
    (["--lr", "-0.1"], "--lr must be positive"),
    (["--momentum", "-0.9"], "--momentum must be in"),
    (["--weight-decay=-1e-4"], "--weight-decay must be non-negative"),
    (["--weight-decay", "nan"], "--weight-decay must be a finite number"),
    (["--lr-gamma", "0"], "--lr-gamma must be in"),
    (["--lr-milestones", "0.5,1.5"], "--lr-milestones are fractions"),
    (["--mix-prob", "nan"], "--mix-prob must be a finite number"),
    (["--mix", "cutmix", "--beta", "0"], "--beta must be positive"),
    (["--dropblock", "0.1", "--dropblock-size", "0"], "--dropblock-size must be at least 1"),
    (["--cutout-size", "0"], "--cutout-size must be at least 1"),
    (["--log-interval", "0"], "--log-interval must be at least 1"),
    (["--workers", "-1"], "--workers must be 0 or more"),
    (["--synthetic-size", "-5"], "--synthetic-size must be 0"),
    (["--device", "bogus"], "--device 'bogus' is not a torch device"),
    (["--device", "meta"], "is not one the trainer runs on"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--depth", "111"], "cannot be built"),
])
def test_the_trainer_refuses_bad_flags_before_it_starts(tmp_path, flags, says):
    with pytest.raises(InvalidArgumentError) as e:
        train_main([*TINY, *flags, "--output", str(tmp_path / "out")])
    assert says in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_resume_of_a_file_that_is_not_a_checkpoint_is_one_sentence(tmp_path):
    bogus = tmp_path / "checkpoint.pt"
    bogus.write_text("not a checkpoint")
    with pytest.raises(WeightsError, match="Could not read the checkpoint") as e:
        train_main(["--resume", str(bogus)])
    assert "\n" not in str(e.value)
