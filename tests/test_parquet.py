"""A Hugging Face image dataset's Parquet files (written by ``datasets`` as the Hub stores them) as training data: the
class names from its features, the rows streamed as shards, a run that trains on them, and the failures."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cutmix_zoo.train import train_main
from cutmix_zoo.train.dataspec import DataError
from cutmix_zoo.train.parquet import parquet_rows, parquet_source

datasets = pytest.importorskip("datasets")

CLASSES = ["red", "blue"]
RUN = ["--model", "pyramidnet", "--depth", "10", "--alpha", "12", "--no-bottleneck", "--dataset", "folder", "--input-size", "32",
       "--batch-size", "8", "--device", "cpu", "--quiet", "--no-export", "--workers", "1"]


def _jpeg(colour: tuple[int, int, int], rng: np.random.Generator) -> bytes:
    pixels = np.clip(np.array(colour) + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory) -> Path:
    """data/train-0000{0,1}-of-00002.parquet (24 rows) and data/validation-00000-of-00001.parquet (8 rows), written by
    ``datasets`` with an Image column and a ClassLabel column."""
    root = tmp_path_factory.mktemp("parquet")
    rng = np.random.default_rng(0)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)})
    colours = [(200, 40, 40), (40, 40, 200)]
    for split, parts, rows in (("train", 2, 12), ("validation", 1, 8)):
        for part in range(parts):
            labels = [i % 2 for i in range(rows)]
            images = [{"bytes": _jpeg(colours[k], rng), "path": None} for k in labels]
            table = datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)
            (root / "data").mkdir(exist_ok=True)
            table.to_parquet(str(root / "data" / f"{split}-{part:05d}-of-{parts:05d}.parquet"))
    return root


def test_the_folder_reads_as_shards_with_the_class_names_of_its_features(hub_folder):
    source = parquet_source(str(hub_folder))
    assert source.classes == CLASSES
    assert [s.count for s in source.train] == [12, 12] and [s.count for s in source.val] == [8]
    rows = list(parquet_rows(source.train[0].url))
    assert [label for _, _, label in rows] == [i % 2 for i in range(12)]
    assert all(data[:2] == b"\xff\xd8" for _, data, _ in rows) and len({key for key, _, _ in rows}) == 12


@pytest.mark.slow
def test_a_run_trains_on_the_parquet_files(hub_folder, tmp_path):
    assert train_main([*RUN, "--data", str(hub_folder), "--epochs", "2", "--output", str(tmp_path)]) == 0
    epochs = [r for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines()) if r["event"] == "epoch"]
    assert [e["train_samples"] for e in epochs] == [24, 24]
    assert epochs[-1]["val_top1_err"] < 50  # two colours: learnt (chance is 50%)


@pytest.mark.slow
def test_val_split_holds_out_of_the_training_files_alone(hub_folder, tmp_path):
    train_only = tmp_path / "train-only"
    (train_only / "data").mkdir(parents=True)
    for path in (hub_folder / "data").glob("train-*.parquet"):
        (train_only / "data" / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "run"
    assert train_main([*RUN, "--data", str(train_only), "--val-split", "0.25", "--epochs", "1", "--output", str(out)]) == 0
    (epoch,) = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["event"] == "epoch"]
    assert epoch["train_samples"] == 16  # 24 rows, a quarter of each class held out (6), in whole batches of 8


def test_a_folder_without_validation_files_or_labels_is_one_sentence(hub_folder, tmp_path):
    (tmp_path / "data").mkdir()
    train = next((hub_folder / "data").glob("train-*.parquet"))
    (tmp_path / "data" / train.name).write_bytes(train.read_bytes())
    with pytest.raises(DataError, match="holds no validation, val or test Parquet files") as e:
        parquet_source(str(tmp_path))
    assert "\n" not in str(e.value)
    plain = datasets.Dataset.from_dict({"image": [{"bytes": b"x", "path": None}], "label": [0]},
                                       features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}))
    plain.to_parquet(str(tmp_path / "data" / "validation-00000-of-00001.parquet"))
    (tmp_path / "data" / train.name).unlink()
    plain.to_parquet(str(tmp_path / "data" / train.name))
    with pytest.raises(DataError, match="has no ClassLabel column") as e:
        parquet_source(str(tmp_path))
    assert "\n" not in str(e.value)
