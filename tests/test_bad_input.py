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
    ((EMBEDDED, {"features_only": True, "out_indices": 0}), InvalidArgumentError, "asks for the last 0 feature levels"),
    ((EMBEDDED, {"features_only": True, "out_indices": 5}), InvalidArgumentError, "asks for the last 5 feature levels, but this model has 4"),
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


def _tiny_weights(tmp_path, dtype):
    from safetensors.torch import save_file

    state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in cutmix_zoo.load(EMBEDDED).state_dict().items()}
    path = tmp_path / f"{dtype}.safetensors".replace("torch.", "")
    save_file(state, path)
    return path


def test_half_precision_weights_load_as_float32_and_run(tmp_path):
    model = cutmix_zoo.load(EMBEDDED, weights=_tiny_weights(tmp_path, torch.float16))
    assert next(model.parameters()).dtype == torch.float32
    assert torch.isfinite(model(torch.randn(1, 3, 32, 32))).all()  # today's failure was later, in forward


def test_integer_weights_are_refused_in_one_sentence(tmp_path):
    with pytest.raises(WeightsError, match="quantised checkpoints are not supported") as e:
        cutmix_zoo.load(EMBEDDED, weights=_tiny_weights(tmp_path, torch.int8))
    assert "\n" not in str(e.value)


def test_a_torn_config_json_is_one_sentence(tmp_path):
    folder = cutmix_zoo.save_pretrained(cutmix_zoo.load(EMBEDDED), tmp_path / "export")
    (folder / "config.json").write_text('{"name": "x", "fam')
    with pytest.raises(WeightsError, match="not a readable JSON config"):
        cutmix_zoo.load(folder)


def test_a_folder_named_like_a_registry_model_does_not_shadow_it(tmp_path, monkeypatch):
    """Rule: a registry name means the registry's model; a same-named folder loads when written as a path."""
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    cutmix_zoo.save_pretrained(cutmix_zoo.load(EMBEDDED, num_classes=3), tmp_path / EMBEDDED)
    assert cutmix_zoo.load(EMBEDDED).pretrained_cfg["num_classes"] == 10  # the registry's
    assert cutmix_zoo.load(f"./{EMBEDDED}").pretrained_cfg["num_classes"] == 3  # the folder, as a path
    assert cutmix_zoo.load(Path(EMBEDDED)).pretrained_cfg["num_classes"] == 3


def test_a_cache_that_cannot_be_written_is_one_sentence(tiny_registry, tmp_path, monkeypatch):
    from tiny import FILE_ENTRY

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # a cache path under a regular file cannot be created, even by root
    monkeypatch.setenv("CUTMIX_ZOO_CACHE", str(blocker / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("CUTMIX_ZOO_ORIGINAL_URL", "http://127.0.0.1:9/")
    with pytest.raises(cutmix_zoo.ZooError, match="cannot be written") as e:
        cutmix_zoo.load(FILE_ENTRY, progress=False)
    assert "\n" not in str(e.value)


def _zip_with_flags(path, flag_bits: int = 0, method: int | None = None) -> None:
    """A folder zip whose checkpoint member claims encryption (flag bit 0) or an unknown compression method."""
    import struct
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("run/model_best.pth.tar", b"x" * 64)
    data = bytearray(path.read_bytes())
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    for offset, flags_at, method_at in ((local, 6, 8), (central, 8, 10)):
        struct.pack_into("<H", data, offset + flags_at, struct.unpack_from("<H", data, offset + flags_at)[0] | flag_bits)
        if method is not None:
            struct.pack_into("<H", data, offset + method_at, method)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("flags, method, says", [(1, None, "cannot be unpacked here"), (0, 99, "cannot be unpacked here")])
def test_encrypted_or_unsupported_zip_members_are_one_sentence(tmp_path, flags, method, says):
    from cutmix_zoo.errors import DownloadError
    from cutmix_zoo.hub.original import _checkpoint_in_zip

    archive = tmp_path / "folder.zip"
    _zip_with_flags(archive, flags, method)
    with pytest.raises(DownloadError, match=says) as e:
        _checkpoint_in_zip(archive, tmp_path / "out.pth.tar", "https://example.invalid/sh/x?dl=1")
    assert "https://example.invalid/sh/x?dl=1" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out.pth.tar").exists()
