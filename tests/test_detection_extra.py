"""The detection extra: pycocotools declared in pyproject and a one-sentence error naming the extra when it is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import tomllib

from cutmix_zoo.detection.pycoco import coco_api
from cutmix_zoo.errors import ZooError

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_pycocotools_is_the_detection_extra_and_a_test_dependency():
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("pycocotools>=") for r in extras["detection"])
    assert set(extras["detection"]) <= set(extras["test"])


def test_missing_pycocotools_is_one_sentence_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)
    with pytest.raises(ZooError, match=r"not installed: pip install 'cutmix-zoo\[detection\]'\.$"):
        coco_api()
