"""The registry: the single table of every model the zoo serves, and the lookups on it.

Everything per-model (builders, hubconf entrypoints, model cards, CLI listings, trainer recipes)
is derived from these tables; nothing per-model is written anywhere else. Entries read like
torchvision's ``Weights`` enums: data about one set of weights, with the architecture and the
dataset it was trained on referenced by name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import fnmatch
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidArgumentError, UnknownModelError

PAPER = "CutMix: Regularization Strategy to Train Strong Classifiers with Localizable Features (Yun et al., ICCV 2019)"
PAPER_URL = "https://arxiv.org/abs/1905.04899"
CODE_URL = "https://github.com/clovaai/CutMix-PyTorch"
LICENSE = "mit"
LIBRARY_NAME = "cutmix-zoo"  # the Hub's library_name, in cards, config.json and the download user agent
CITATION = """@inproceedings{yun2019cutmix,
    title={CutMix: Regularization Strategy to Train Strong Classifiers with Localizable Features},
    author={Yun, Sangdoo and Han, Dongyoon and Oh, Seong Joon and Chun, Sanghyuk and Choe, Junsuk and Yoo, Youngjoon},
    booktitle={International Conference on Computer Vision (ICCV)},
    year={2019}
}"""
ORIGINAL_BASE_URL = "https://www.dropbox.com/"
DEFAULT_HUB_ORG = "cutmix-zoo"


def hub_org() -> str:
    """The Hub organisation of the zoo's repos: ``CUTMIX_ZOO_HUB_ORG``, else :data:`DEFAULT_HUB_ORG`; a value the Hub
    cannot name (``a b``, ``../x``) is refused in one sentence rather than made into a repo id or a cache path."""
    org = os.environ.get("CUTMIX_ZOO_HUB_ORG") or DEFAULT_HUB_ORG
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?", org) or ".." in org or "--" in org:
        raise InvalidArgumentError(f"CUTMIX_ZOO_HUB_ORG={org!r} is not a Hub organisation name (letters, digits, '-', '_' and '.', "
                                   "not at either end): set it to one, or unset it for the zoo's own.")
    return org


@dataclass(frozen=True)
class Architecture:
    """A network shape: the builder family that makes it and the arguments it takes."""

    name: str
    family: str
    args: dict[str, Any]
    description: str


@dataclass(frozen=True)
class DataConfig:
    """What a model trained on one dataset expects as input: classes, size and normalisation.

    One dataset has three spellings, all here: ``name`` in cards and configs (``cifar-100``), ``key``
    on the command line and in the trainer (``cifar100``), ``suffix`` in registry tags (``c100``).
    """

    name: str
    key: str
    suffix: str
    hf_id: str | None
    num_classes: int
    input_size: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    crop_pct: float

    @property
    def resize(self) -> int:
        """Shorter-side resize before the centre crop (256 for a 224 crop at 0.875)."""
        return round(self.input_size[-1] / self.crop_pct)


@dataclass(frozen=True)
class Entry:
    """One set of weights: its architecture, data, reported error and where the file lives."""

    name: str
    arch: str
    dataset: str
    method: str
    top1_err: float | None
    top5_err: float | None
    err_source: str
    original_path: str | None
    layout: str
    sha256: str | None = None
    notes: str = ""
    bundled: bool = False
    paper_top1_err: float | None = None
    paper_top5_err: float | None = None
    paper_err_source: str = ""
    num_params: int | None = None  # known without building the model (a test checks it against the built one)

    @property
    def architecture(self) -> Architecture:
        return ARCHITECTURES[self.arch]

    @property
    def data(self) -> DataConfig:
        return DATASETS[self.dataset]

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def hub_repo(self) -> str:
        """The Hugging Face Hub repo id; the organisation comes from ``CUTMIX_ZOO_HUB_ORG`` (a Hub name, else one sentence)."""
        return f"{hub_org()}/{self.name}"

    @property
    def original_url(self) -> str | None:
        """The original release's download URL; the base can be moved with ``CUTMIX_ZOO_ORIGINAL_URL``."""
        if self.original_path is None:
            return None
        base = os.environ.get("CUTMIX_ZOO_ORIGINAL_URL") or ORIGINAL_BASE_URL
        return base.rstrip("/") + "/" + self.original_path + "?dl=1"

    @property
    def packaging(self) -> str:
        """``"folder_zip"`` for Dropbox shared folders (``sh/``), ``"file"`` for single files (``s/``), ``"bundled"``."""
        if self.bundled:
            return "bundled"
        return "folder_zip" if (self.original_path or "").startswith("sh/") else "file"

    @property
    def bundled_file(self) -> Path | None:
        """The weights shipped inside the package (the embedded default models), else None."""
        return Path(__file__).parent / "data" / f"{self.name}.safetensors" if self.bundled else None

    def as_dict(self) -> dict[str, Any]:
        """Everything known about the entry, flattened for JSON output and model cards."""
        data = dataclasses.asdict(self.data)
        return {
            "name": self.name,
            "architecture": self.arch,
            "family": self.architecture.family,
            "arch_args": dict(self.architecture.args),
            "description": self.architecture.description,
            "method": self.method,
            "dataset": self.dataset,
            "num_classes": self.num_classes,
            "top1_err": self.top1_err,
            "top5_err": self.top5_err,
            "err_source": self.err_source,
            "paper_top1_err": self.paper_top1_err,
            "paper_top5_err": self.paper_top5_err,
            "paper_err_source": self.paper_err_source or None,
            "num_params": self.num_params,
            "input_size": list(data["input_size"]),
            "mean": list(data["mean"]),
            "std": list(data["std"]),
            "interpolation": data["interpolation"],
            "crop_pct": data["crop_pct"],
            "resize": self.data.resize,
            "hub_repo": self.hub_repo,
            "original_url": self.original_url,
            "packaging": self.packaging,
            "layout": self.layout,
            "sha256": self.sha256,
            "license": LICENSE,
            "paper": PAPER,
            "paper_url": PAPER_URL,
            "citation": CITATION,
            "notes": self.notes,
        }


def _table(items: list[Any], kind: str) -> dict[str, Any]:
    """A name -> item table; a name given twice is a mistake in the registry, refused when it is imported."""
    table: dict[str, Any] = {}
    for item in items:
        if item.name in table:
            raise ValueError(f"The registry lists the {kind} {item.name!r} twice.")
        table[item.name] = item
    return table


ARCHITECTURES: dict[str, Architecture] = _table([
    Architecture(name="resnet50", family="resnet", args={"layers": [3, 4, 6, 3]},
                 description="ResNet-50 (He et al., 2016), torchvision layout"),
    Architecture(name="resnet101", family="resnet", args={"layers": [3, 4, 23, 3]},
                 description="ResNet-101 (He et al., 2016), torchvision layout"),
    Architecture(name="resnet152", family="resnet", args={"layers": [3, 8, 36, 3]},
                 description="ResNet-152 (He et al., 2016), torchvision layout"),
    Architecture(name="resnext101_32x4d", family="resnet", args={"layers": [3, 4, 23, 3], "groups": 32, "width_per_group": 4},
                 description="ResNeXt-101 32x4d (Xie et al., 2017), torchvision ResNet with grouped convolutions"),
    Architecture(name="pyramidnet200_a240", family="pyramidnet", args={"depth": 200, "alpha": 240, "bottleneck": True},
                 description="PyramidNet-200, alpha 240, bottleneck (Han et al., 2017), CIFAR layout of the CutMix repository"),
    Architecture(name="pyramidnet20_a48", family="pyramidnet", args={"depth": 20, "alpha": 48, "bottleneck": False},
                 description="PyramidNet-20, alpha 48, basic blocks (Han et al., 2017), CIFAR layout: the zoo's small embedded model"),
], "architecture")

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CIFAR_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
_CIFAR_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)

DATASETS: dict[str, DataConfig] = _table([
        DataConfig(name="imagenet-1k", key="imagenet", suffix="in1k", hf_id="ILSVRC/imagenet-1k", num_classes=1000, input_size=(3, 224, 224),
                   mean=_IMAGENET_MEAN, std=_IMAGENET_STD, interpolation="bilinear", crop_pct=0.875),
        DataConfig(name="cifar-100", key="cifar100", suffix="c100", hf_id="uoft-cs/cifar100", num_classes=100, input_size=(3, 32, 32),
                   mean=_CIFAR_MEAN, std=_CIFAR_STD, interpolation="bilinear", crop_pct=1.0),
        DataConfig(name="cifar-10", key="cifar10", suffix="c10", hf_id="uoft-cs/cifar10", num_classes=10, input_size=(3, 32, 32),
                   mean=_CIFAR_MEAN, std=_CIFAR_STD, interpolation="bilinear", crop_pct=1.0),
        DataConfig(name="shapes-10", key="shapes", suffix="shapes", hf_id=None, num_classes=10, input_size=(3, 32, 32),
                   mean=(0.5, 0.5, 0.5), std=(0.295, 0.295, 0.295), interpolation="bilinear", crop_pct=1.0),
], "dataset")
FOLDER = "folder"  # the trainer's ImageFolder tree: not a registry dataset, it trains like ImageNet
TRAINER_DATASETS = (*sorted(d.key for d in DATASETS.values()), FOLDER)


def data_config(key: str) -> DataConfig:
    """The data config a trainer dataset (``cifar100``, ``imagenet``, ``folder``) trains with: an ImageFolder tree's is ImageNet's."""
    return next(d for d in DATASETS.values() if d.key == ("imagenet" if key == FOLDER else key))


def run_suffix(key: str) -> str:
    """The tag suffix of a run on a trainer dataset: ``c100`` for cifar100, ``folder`` for an ImageFolder tree."""
    return FOLDER if key == FOLDER else data_config(key).suffix


# Parameters of each architecture with its dataset's head, so listings need no torch (tests/test_registry.py checks them).
_NUM_PARAMS = {"resnet50": 25_557_032, "resnet101": 44_549_160, "resnet152": 60_192_808, "resnext101_32x4d": 44_177_704,
               "pyramidnet200_a240": 26_844_952, "pyramidnet20_a48": 310_845}


def _in1k(arch: str, method: str, top1: float, top5: float | None, source: str, path: str, layout: str = "trainpy",
          **more: Any) -> Entry:
    return Entry(name=f"{arch}.{method}_in1k", arch=arch, dataset="imagenet-1k", method=method, top1_err=top1, top5_err=top5,
                 err_source=source, original_path=path, layout=layout, num_params=_NUM_PARAMS[arch], **more)


def _c100(method: str, top1: float, top5: float | None, path: str, source: str = "paper, Table 5", **more: Any) -> Entry:
    return Entry(name=f"pyramidnet200_a240.{method}_c100", arch="pyramidnet200_a240", dataset="cifar-100", method=method,
                 top1_err=top1, top5_err=top5, err_source=source, original_path=path, layout="trainpy",
                 num_params=_NUM_PARAMS["pyramidnet200_a240"], **more)


def _shapes(method: str, top1: float, top5: float, sha256: str) -> Entry:
    return Entry(name=f"pyramidnet20_a48.{method}_shapes", arch="pyramidnet20_a48", dataset="shapes-10", method=method,
                 top1_err=top1, top5_err=top5, err_source="measured: best epoch on the Shapes-10 test split, cutmix_zoo.train",
                 original_path=None, layout="bundled", sha256=sha256, bundled=True, num_params=_NUM_PARAMS["pyramidnet20_a48"],
                 notes="Trained by the bundled trainer on Shapes-10 (generated, no download) and shipped inside the package.")


ENTRIES: dict[str, Entry] = _table([
    _in1k("resnet50", "baseline", top1=23.68, top5=7.05, source="paper, Table 3", path="sh/phwbbrtadrclpnx/AAA9QUW9G_xvBdI-mDiIzP_Ha"),
    _in1k("resnet50", "cutmix", top1=21.40, top5=5.92, source="paper, Table 3", path="sh/w8dvfgdc3eirivf/AABnGcTO9wao9xVGWwqsXRala"),
    _in1k("resnet50", "feature_cutmix", top1=21.80, top5=6.06, source="paper, Table 3", path="sh/zj1wptsg0hwqf0k/AABRNzvjFmIS7_vOEQkqb6T4a"),
    _in1k("resnet50", "mixup", top1=22.58, top5=6.40, source="paper, Table 3", path="sh/g64c8bda61n12if/AACyaTZnku_Sgibc9UvOSblNa"),
    _in1k("resnet50", "manifold_mixup", top1=22.50, top5=6.21, source="paper, Table 3", path="sh/bjardjje11pti0g/AABFGW0gNrNE8o8TqUf4-SYSa"),
    _in1k("resnet50", "cutout", top1=22.93, top5=6.66, source="paper, Table 3", path="sh/ln8zk2z7zt2h1en/AAA7z8xTBlzz7Ofbd5L7oTnTa"),
    _in1k("resnet101", "cutmix", top1=20.17, top5=5.24, source="paper, Table 4", path="sh/1z4xnp9nwdmpzb5/AACQX4KU8XkTN0JSTfjkCktNa"),
    _in1k("resnet152", "cutmix", top1=19.20, top5=None, source="README (single best run)",
          path="s/6vq1mzy27z8qxko/resnet152_cutmix_acc_80_80.pth", layout="bare",
          notes="Top-1 from the original README only; the paper reports no ResNet-152 result and no top-5 error."),
    _in1k("resnext101_32x4d", "cutmix", top1=19.47, top5=5.03, source="paper, Table 4", path="s/maysvgopsi17qi0/resnext_cutmix.pth.tar",
          layout="module"),
    _c100("baseline", top1=16.45, top5=3.69, path="sh/6rfew3lr761jq6c/AADrdQOXNx5tWmgOSnAw9NEVa"),
    _c100("cutmix", top1=14.23, top5=None, path="sh/o68qbvayptt2rz5/AACy3o779BxoRqw6_GQf_QFQa",
          source="original README (this file's best epoch)",
          paper_top1_err=14.47, paper_top5_err=2.97, paper_err_source="paper, Table 5 (mean of 3 runs)",
          notes="The linked file is the original README's single best run (14.23 top-1 error; the README gives no "
                "top-5 error); the paper's Table 5 reports the mean of three runs, 14.47 / 2.97."),
    _c100("mixup", top1=15.63, top5=3.99, path="sh/g55jnsv62v0n59s/AAC9LPg-LjlnBn4ttKs6vr7Ka"),
    _c100("manifold_mixup", top1=16.14, top5=4.07, path="sh/nngw7hhk1e8msbr/AABkdCsP0ABnQJDBX7LQVj4la"),
    _c100("cutout", top1=16.53, top5=3.65, path="sh/ajjz4q8c8t6qva9/AAAeBGb2Q4TnJMW0JAzeVSpfa"),
    _c100("dropblock", top1=15.73, top5=3.26, path="sh/vefjo960gyrsx2i/AACYA5wOJ_yroNjIjdsN1Dz2a"),
    _c100("cutout_ls", top1=15.61, top5=3.88, path="sh/1mur0kjcfxdn7jn/AADmghqrj0dXAG0qY1v3Csb6a"),
    _c100("dropblock_ls", top1=15.16, top5=3.86, path="sh/n1dn6ggyxjcoogc/AADpSSNzvaraSCqWtHBE0qMca"),
    _c100("cutout_mixup", top1=15.46, top5=3.42, path="sh/5run1sx8oy0v9oi/AACiR_wEBQVp2HMZFx6lGl3ka"),
    _shapes("cutmix", top1=0.35, top5=0.0, sha256="f23fc2f43fd6924018001bc9823358e3602e363587d9c48af3ca1e618104a85d"),
    _shapes("baseline", top1=0.45, top5=0.0, sha256="576dfad467606ad7bf87330ed0e507d533372229534800171fa3fae72e6c184f"),
], "entry")

DEFAULT_TAGS: dict[str, str] = {
    "resnet50": "cutmix_in1k",
    "resnet101": "cutmix_in1k",
    "resnet152": "cutmix_in1k",
    "resnext101_32x4d": "cutmix_in1k",
    "pyramidnet200_a240": "cutmix_c100",
    "pyramidnet20_a48": "cutmix_shapes",
}


@contextlib.contextmanager
def registered(*items: Architecture | Entry) -> Iterator[None]:
    """Add architectures and entries for the duration of a block (tests, local experiments); a taken name is refused."""
    added: list[tuple[dict[str, Any], str]] = []
    try:
        for item in items:
            table: dict[str, Any] = ARCHITECTURES if isinstance(item, Architecture) else ENTRIES
            if item.name in table:
                raise ValueError(f"{item.name!r} is already in the registry.")
            if isinstance(item, Entry) and item.arch not in ARCHITECTURES:
                raise ValueError(f"{item.name!r} names the architecture {item.arch!r}, which is not registered.")
            table[item.name] = item
            added.append((table, item.name))
        yield
    finally:
        for table, name in added:
            del table[name]


def default_names() -> set[str]:
    """The full names that the bare architecture names stand for (``resnet50.cutmix_in1k``, ...)."""
    return {f"{arch}.{tag}" for arch, tag in DEFAULT_TAGS.items()}


def format_err(value: float | None) -> str:
    """An error rate as tables show it: two decimals, ``-`` where the source gives none."""
    return "-" if value is None else f"{value:.2f}"


def list_models(pattern: str | Sequence[str] = "*", architectures: bool = False,
                exclude_filters: str | Sequence[str] = (), pretrained: bool = False) -> list[str]:
    """Registry names matching fnmatch patterns (``"resnet50.*"``, ``["*c100", "resnet*"]``), sorted, as timm's ``list_models``.

    ``exclude_filters`` drops names matching any of its patterns; ``pretrained=True`` keeps names with weights
    (every entry has them; it is there so timm code runs unchanged). With ``architectures=True`` the bare
    architecture names are listed instead of full names.
    """
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    excluded = [exclude_filters] if isinstance(exclude_filters, str) else list(exclude_filters)
    names = sorted(DEFAULT_TAGS) if architectures else sorted(ENTRIES)
    return [n for n in names if any(fnmatch.fnmatchcase(n, p or "*") for p in patterns)
            and not any(fnmatch.fnmatchcase(n, p) for p in excluded)]


def is_registry_name(name: str) -> bool:
    """Whether ``name`` is a full registry name or a bare architecture."""
    return name in ENTRIES or name in DEFAULT_TAGS


def get_entry(name: str) -> Entry:
    """The registry entry for ``arch.tag`` or a bare ``arch`` (its CutMix weights)."""
    if name in ENTRIES:
        return ENTRIES[name]
    if name in DEFAULT_TAGS:
        return ENTRIES[f"{name}.{DEFAULT_TAGS[name]}"]
    candidates = list(ENTRIES) + list(DEFAULT_TAGS)
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    close += [c for c in candidates if name and name.split(".")[0] in c and c not in close][: 3 - len(close)]
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else " Run `cutmix-zoo list` to see them."
    raise UnknownModelError(f"Unknown model {name!r}: it is not in the cutmix_zoo registry.{hint}")


def model_info(name: str) -> dict[str, Any]:
    """Everything the registry knows about a model: errors, data config, source, license, citation."""
    return get_entry(name).as_dict()
