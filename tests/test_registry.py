"""The registry: the 18 released checkpoints, their facts, names, lookups and environment overrides."""

import pytest

import cutmix_zoo
from cutmix_zoo import registry


def test_every_original_checkpoint_is_registered():
    names = cutmix_zoo.list_models()
    originals = [n for n in names if registry.get_entry(n).original_path is not None]
    assert len(originals) == 18
    assert len([n for n in originals if n.endswith("_in1k")]) == 9
    assert len([n for n in originals if n.endswith("_c100")]) == 9
    assert [n for n in names if n not in originals] == ["pyramidnet20_a48.baseline_shapes", "pyramidnet20_a48.cutmix_shapes"]
    for n in names:
        arch, tag = n.split(".")
        assert arch in registry.ARCHITECTURES and tag


@pytest.mark.parametrize("arch", ["resnet50", "resnet101", "resnet152", "resnext101_32x4d", "pyramidnet200_a240", "pyramidnet20_a48"])
def test_bare_architecture_means_its_cutmix_entry(arch):
    entry = cutmix_zoo.get_entry(arch)
    assert entry.arch == arch and entry.method == "cutmix"


def test_list_models_takes_fnmatch_patterns():
    assert cutmix_zoo.list_models("resnet50.*") == sorted(n for n in registry.ENTRIES if n.startswith("resnet50."))
    assert cutmix_zoo.list_models("*cutmix*") == [
        "pyramidnet200_a240.cutmix_c100", "pyramidnet20_a48.cutmix_shapes", "resnet101.cutmix_in1k", "resnet152.cutmix_in1k",
        "resnet50.cutmix_in1k", "resnet50.feature_cutmix_in1k", "resnext101_32x4d.cutmix_in1k",
    ]
    assert cutmix_zoo.list_models("nothing*") == []
    assert cutmix_zoo.list_models(architectures=True) == sorted(registry.DEFAULT_TAGS)


def test_model_info_carries_the_facts(monkeypatch):
    monkeypatch.delenv("CUTMIX_ZOO_ORIGINAL_URL")
    info = cutmix_zoo.model_info("resnet50")
    assert info["name"] == "resnet50.cutmix_in1k"
    assert (info["top1_err"], info["top5_err"]) == (21.40, 5.92)
    assert info["num_classes"] == 1000 and info["input_size"] == [3, 224, 224]
    assert info["mean"] == [0.485, 0.456, 0.406] and info["resize"] == 256
    assert info["license"] == "mit" and "Yun" in info["citation"]
    assert info["original_url"] == "https://www.dropbox.com/sh/w8dvfgdc3eirivf/AABnGcTO9wao9xVGWwqsXRala?dl=1"
    assert info["packaging"] == "folder_zip" and info["layout"] == "trainpy" and info["sha256"] is None
    cifar = cutmix_zoo.model_info("pyramidnet200_a240")
    assert cifar["num_classes"] == 100 and cifar["input_size"] == [3, 32, 32]
    assert cifar["mean"][0] == pytest.approx(125.3 / 255)
    assert cutmix_zoo.model_info("resnet152")["top5_err"] is None
    assert cutmix_zoo.model_info("resnet152")["layout"] == "bare"
    assert cutmix_zoo.model_info("resnext101_32x4d")["packaging"] == "file"


def test_hub_org_and_original_base_can_be_moved(monkeypatch):
    monkeypatch.delenv("CUTMIX_ZOO_ORIGINAL_URL")
    assert cutmix_zoo.get_entry("resnet50.mixup_in1k").hub_repo == "cutmix-zoo/resnet50.mixup_in1k"
    monkeypatch.setenv("CUTMIX_ZOO_HUB_ORG", "acme")
    monkeypatch.setenv("CUTMIX_ZOO_ORIGINAL_URL", "http://mirror.local/dropbox")
    entry = cutmix_zoo.get_entry("resnet152")
    assert entry.hub_repo == "acme/resnet152.cutmix_in1k"
    assert entry.original_url == "http://mirror.local/dropbox/s/6vq1mzy27z8qxko/resnet152_cutmix_acc_80_80.pth?dl=1"


@pytest.mark.parametrize("typo,suggested", [("resnet5", "resnet50"), ("resnet50.cutmix", "resnet50.cutmix_in1k"),
                                            ("pyramidnet200", "pyramidnet200_a240")])
def test_unknown_name_suggests_close_names(typo, suggested):
    with pytest.raises(cutmix_zoo.UnknownModelError) as e:
        cutmix_zoo.get_entry(typo)
    assert suggested in str(e.value) and str(e.value).count(".") >= 1
    assert "\n" not in str(e.value)


def test_unknown_name_without_close_match_points_to_the_list():
    with pytest.raises(cutmix_zoo.UnknownModelError, match="cutmix-zoo list"):
        cutmix_zoo.load("vit_huge_patch14")


def test_registered_adds_for_a_block_and_refuses_taken_names():
    arch = registry.Architecture(name="demo_net", family="pyramidnet", args={"depth": 8, "alpha": 12, "bottleneck": False},
                                 description="a test architecture")
    entry = registry.Entry(name="demo_net.cutmix_c10", arch="demo_net", dataset="cifar-10", method="cutmix", top1_err=None,
                           top5_err=None, err_source="test", original_path=None, layout="bare")
    with registry.registered(arch, entry):
        assert registry.get_entry("demo_net.cutmix_c10") is entry and "demo_net.cutmix_c10" in registry.list_models()
        with pytest.raises(ValueError, match="already in the registry"):
            with registry.registered(entry):
                pass
    assert "demo_net.cutmix_c10" not in registry.ENTRIES and "demo_net" not in registry.ARCHITECTURES
    orphan = registry.dataclasses.replace(entry, arch="not_registered")
    with pytest.raises(ValueError, match="not registered"):
        with registry.registered(orphan):
            pass
    assert orphan.name not in registry.ENTRIES


def test_a_name_listed_twice_is_refused_when_the_tables_are_built():
    arch = registry.ARCHITECTURES["resnet50"]
    with pytest.raises(ValueError, match="lists the architecture 'resnet50' twice"):
        registry._table([arch, arch], "architecture")


def test_list_models_takes_timms_arguments():
    assert registry.list_models(["resnet101.*", "resnet152.*"]) == ["resnet101.cutmix_in1k", "resnet152.cutmix_in1k"]
    assert "resnet50.cutmix_in1k" not in registry.list_models("resnet50.*", exclude_filters="*cutmix*")
    assert registry.list_models("resnet50.*", exclude_filters=["*mix*", "*cut*"]) == ["resnet50.baseline_in1k"]
    assert registry.list_models("pyramidnet*", pretrained=True) == registry.list_models("pyramidnet*")
    assert registry.list_models("") == registry.list_models()  # timm's default filter is the empty string
    assert cutmix_zoo.list_models(["res*"], architectures=True, exclude_filters="resnext*") == ["resnet101", "resnet152", "resnet50"]


@pytest.mark.parametrize("name", registry.list_models())
def test_recorded_parameter_counts_equal_the_built_models(name):
    assert registry.get_entry(name).num_params == cutmix_zoo.count_parameters(name)
