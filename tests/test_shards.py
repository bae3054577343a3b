"""WebDataset shards: ``cutmix-zoo shard`` read back by webdataset itself, the epoch's split over ranks and workers
(every sample once, uneven shards, resumed at any step), training from local, HTTP and ``pipe:`` shards, two gloo
ranks, exact resume, and each failure in one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from cutmix_zoo.cli import main as cli_main
from cutmix_zoo.errors import InvalidArgumentError
from cutmix_zoo.train import streams, train_main
from cutmix_zoo.train.checkpoint import load_checkpoint
from cutmix_zoo.train.config import EXIT_INTERRUPTED
from cutmix_zoo.train.dataspec import DataError
from cutmix_zoo.train.shard_writer import write_shards
from cutmix_zoo.train.shards import INDEX_NAME, Shard, pattern_shards, read_index, tar_samples
from cutmix_zoo.train.streams import ShardStream, open_source

from servers import free_port, http_file_server

wds = pytest.importorskip("webdataset")

REPO = Path(__file__).resolve().parents[1]
TRAIN, VAL = 32, 8  # images per split, two classes
RUN = ["--model", "pyramidnet", "--depth", "10", "--alpha", "12", "--no-bottleneck", "--dataset", "folder", "--input-size", "32",
       "--batch-size", "8", "--device", "cpu", "--quiet", "--no-export", "--deterministic", "--log-interval", "2"]


def _records(output: Path, event: str) -> list[dict]:
    return [r for r in map(json.loads, (output / "metrics.jsonl").read_text().splitlines()) if r["event"] == event]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """train/ and val/ of two colour classes, 32x32, every fifth image a PNG."""
    root = tmp_path_factory.mktemp("tree")
    rng = np.random.default_rng(0)
    for split, count in (("train", TRAIN), ("val", VAL)):
        for c, colour in enumerate([(200, 40, 40), (40, 40, 200)]):
            (root / split / f"class{c}").mkdir(parents=True)
            for i in range(count // 2):
                pixels = np.clip(np.array(colour) + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / f"class{c}" / f"{i:02d}.{'png' if i % 5 == 0 else 'jpg'}")
    return root


@pytest.fixture(scope="module")
def shards(tree, tmp_path_factory) -> Path:
    """The tree as shards of about 8 kB: several uneven training shards, two validation ones (the command line's)."""
    out = tmp_path_factory.mktemp("shards")
    assert cli_main(["shard", str(tree), "--output", str(out), "--shard-size", "8KB"]) == 0
    return out


def _index(folder: Path) -> dict:
    return json.loads((folder / INDEX_NAME).read_text())


def test_shards_read_back_by_webdataset_hold_every_file_as_it_was(tree, shards):
    index = _index(shards)
    assert index["classes"] == ["class0", "class1"]
    for split, count in (("train", TRAIN), ("val", VAL)):
        entries = index["splits"][split]["shards"]
        assert index["splits"][split]["count"] == count and len(entries) >= 2
        assert [e["name"] for e in entries] == [f"{split}-{k:06d}.tar" for k in range(len(entries))]
        samples = list(wds.WebDataset([str(shards / e["name"]) for e in entries], shardshuffle=False, empty_check=False))
        assert len({s["__key__"] for s in samples}) == count
        read = sorted((int(s["cls"]), s.get("jpg", s.get("png"))) for s in samples)
        files = sorted((c, p.read_bytes()) for c in (0, 1) for p in (tree / split / f"class{c}").iterdir())
        assert read == files  # the bytes as they were, each with its class
        assert sum("png" in s for s in samples) == sum(p.suffix == ".png" for p in (tree / split).rglob("*"))
        assert len({int(s["cls"]) for s in samples[:count // 2]}) == 2  # shuffled: classes mixed within the first half
        labels = [k for e in entries for k in e["labels"]]  # the index lists each sample's class, in shard order
        assert labels == [int(s["cls"]) for s in samples]
    counts = [e["count"] for e in index["splits"]["train"]["shards"]]
    assert len(set(counts)) > 1  # uneven shards, which the split must handle


def test_an_interrupted_shard_run_leaves_no_index_and_a_rerun_finishes(tree, tmp_path, monkeypatch):
    from cutmix_zoo.train import shard_writer

    original = shard_writer.write_split

    def stop_at_val(samples, output, split, size):
        if split == "val":
            raise KeyboardInterrupt
        return original(samples, output, split, size)

    with monkeypatch.context() as patch:
        patch.setattr(shard_writer, "write_split", stop_at_val)
        with pytest.raises(KeyboardInterrupt):
            write_shards(tree, tmp_path, 8_000)
    assert not (tmp_path / INDEX_NAME).exists() and list(tmp_path.glob("train-*.tar"))
    with pytest.raises(DataError, match="holds no dataset.json") as e:
        read_index(str(tmp_path))
    assert "\n" not in str(e.value)
    write_shards(tree, tmp_path, 8_000)
    assert _index(tmp_path)["splits"]["val"]["count"] == VAL


# --- the epoch's split ----------------------------------------------------------------------

def _fake(counts: list[int], train: bool = True) -> ShardStream:
    """A stream over fake shards of ``counts`` samples that yields each sample's index in the shards' natural order."""
    return ShardStream([Shard(f"s{k}:{n}", n) for k, n in enumerate(counts)], _fake_reader, _index_of, seed=3, train=train)


def _fake_reader(url: str):
    n = int(url.split(":")[1])
    yield from ((f"{url}/{m}", b"", 0) for m in range(n))


def _index_of(shard, key, data, label, epoch, index):
    return index


def _loader_order(stream: ShardStream, workers: int, monkeypatch) -> list[list[int]]:
    """The batches a DataLoader takes from ``workers`` workers in turn (skipping exhausted ones), as sample indices."""
    per_worker = []
    for w in range(max(workers, 1)):
        monkeypatch.setattr(streams, "get_worker_info", lambda w=w: SimpleNamespace(id=w) if workers else None)
        items = list(stream)
        per_worker.append([items[i:i + stream.batch] for i in range(0, len(items), stream.batch)])
    order, turn = [], 0
    while any(per_worker):
        if per_worker[turn % len(per_worker)]:
            order.append(per_worker[turn % len(per_worker)].pop(0))
        turn += 1
    return order


@pytest.mark.parametrize("world, workers", [(1, 0), (2, 3), (3, 2), (2, 4)])
def test_an_epoch_takes_every_sample_once_over_ranks_and_workers(world, workers, monkeypatch):
    counts = [13, 15, 4, 9, 7]  # 48 samples in uneven shards
    batch = 48 // world // 4  # four batches per rank
    seen = []
    for rank in range(world):
        stream = _fake(counts)
        stream.split(world, rank, batch, workers)
        stream.set_position(1)
        order = _loader_order(stream, workers, monkeypatch)
        assert len(order) == 4 and all(len(b) == batch for b in order) and len(stream) == 4 * batch
        seen += [i for b in order for i in b]
    assert sorted(seen) == list(range(48))


def test_uneven_totals_pad_as_the_distributed_sampler_and_validation_takes_each_once(monkeypatch):
    counts = [13, 15, 4]  # 32 samples over 3 ranks: 11 per rank, batches of 5
    train = []
    for rank in range(3):
        stream = _fake(counts)
        stream.split(3, rank, 5, 2)
        train += [i for b in _loader_order(stream, 2, monkeypatch) for i in b]
    assert len(train) == 30 and len(set(train)) == 30  # two whole batches per rank; none twice
    val = []
    for rank in range(3):
        stream = _fake(counts, train=False)
        stream.split(3, rank, 5, 2)
        val += [i for b in _loader_order(stream, 2, monkeypatch) for i in b]
    assert sorted(val) == list(range(32))


@pytest.mark.parametrize("workers", [0, 3])
def test_a_resumed_epoch_continues_at_the_next_batch(workers, monkeypatch):
    def order(start: int, epoch: int = 2) -> list[list[int]]:
        stream = _fake([600, 350, 250])
        stream.split(2, 1, 50, workers)
        stream.set_position(epoch, start * 50)
        return _loader_order(stream, workers, monkeypatch)

    whole = order(0)
    assert len(whole) == 12 and whole != order(0, epoch=3)  # another epoch, another order
    for step in (1, 4, 5, 11):
        assert order(step) == whole[step:]


@pytest.mark.slow
def test_a_real_dataloader_takes_the_batches_in_the_emulated_order(monkeypatch):
    from torch.utils.data import DataLoader

    stream = _fake([13, 15, 4, 9, 7])
    stream.split(1, 0, 4, 2)
    stream.set_position(1, 5 * 4)  # resumed at step 5: the first batch is the second worker's
    real = [b.tolist() for b in DataLoader(stream, batch_size=4, num_workers=2, drop_last=True)]
    assert real == _loader_order(stream, 2, monkeypatch) and len(real) == 48 // 4 - 5


def test_val_split_holds_a_share_of_each_class_out_of_the_training_shards(shards):
    from cutmix_zoo.train.streams import held_out

    source = open_source(str(shards), None)
    split = held_out(source, 0.25, 4, str(shards))
    whole = [(s.url, m) for s in source.train for m in range(s.count)]
    train = [(s.url, m) for s in split.train for m in s.members]
    val = [(s.url, m) for s in split.val for m in s.members]
    assert sorted(train + val) == sorted(whole) and not set(train) & set(val)
    labels = {(s.url, m): s.labels[m] for s in source.train for m in range(s.count)}
    assert sorted(labels[k] for k in val) == [0, 0, 0, 0, 1, 1, 1, 1]  # a quarter of each class's 16
    stream = ShardStream(split.val, tar_samples, lambda shard, key, *rest: (shard, key), 4, train=False)
    keys = {(shard, key) for shard, key in stream}
    assert len(keys) == len(val) == 8
    assert held_out(source, 0.25, 5, str(shards)).val != split.val  # another seed, another draw


# --- training ---------------------------------------------------------------------------------

def _resumable(shards: Path) -> list[str]:
    """Two epochs on the local shard folder, two loader workers, with every source of randomness the trainer has."""
    return [*RUN, "--data", str(shards), "--epochs", "2", "--workers", "2", "--mix-layers", "random", "--dropblock", "0.1"]


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory) -> Path:
    """A whole run of :func:`_resumable`."""
    out = tmp_path_factory.mktemp("run")
    assert train_main([*_resumable(shards), "--output", str(out)]) == 0
    return out


@pytest.mark.slow
def test_training_on_local_shards_takes_every_image_each_epoch(trained):
    epochs = _records(trained, "epoch")
    assert [e["train_samples"] for e in epochs] == [TRAIN, TRAIN]
    assert epochs[-1]["val_top1_err"] < 50  # two colours: learnt (chance is 50%)


@pytest.mark.slow
def test_a_folder_run_records_its_train_samples(tree, tmp_path):
    assert train_main([*RUN, "--data", str(tree), "--epochs", "1", "--workers", "0", "--output", str(tmp_path)]) == 0
    assert _records(tmp_path, "epoch")[0]["train_samples"] == TRAIN


def _pattern(base: str, split: str, count: int) -> str:
    return f"{base}/{split}-{{000000..{count - 1:06d}}}.tar"


@pytest.mark.slow
def test_training_streams_shards_over_http(shards, tmp_path):
    index = _index(shards)
    routes = {f"/d/{p.name}": p.read_bytes() for p in shards.iterdir()}
    with http_file_server(routes) as server:
        base = f"{server.url}/d"
        n_train, n_val = (len(index["splits"][s]["shards"]) for s in ("train", "val"))
        assert train_main([*RUN, "--data", _pattern(base, "train", n_train), "--val-data", _pattern(base, "val", n_val),
                           "--epochs", "1", "--workers", "1", "--output", str(tmp_path)]) == 0
        assert server.hits("/d/train-000000.tar") >= 1 and server.hits(f"/d/{INDEX_NAME}") >= 1
    epoch = _records(tmp_path, "epoch")[0]
    assert epoch["train_samples"] == TRAIN and 0 <= epoch["val_top1_err"] <= 100


def test_pipe_shards_without_an_index_are_counted_and_read_as_local_ones(shards, tmp_path):
    for p in shards.glob("train-*.tar"):
        shutil.copy(p, tmp_path / p.name)  # no dataset.json beside them
    n = len(list(tmp_path.glob("train-*.tar")))
    found, classes = pattern_shards(f"pipe:cat {_pattern(str(tmp_path), 'train', n)}")
    assert classes is None and sum(s.count for s in found) == TRAIN and {k for s in found for k in s.labels} == {0, 1}
    local = [sample for k in range(n) for sample in tar_samples(str(shards / f"train-{k:06d}.tar"))]
    piped = [sample for s in found for sample in tar_samples(s.url)]
    assert piped == local
    indexed, classes = pattern_shards(f"pipe:cat {_pattern(str(shards), 'train', n)}")  # the command fetches dataset.json too
    assert classes == ["class0", "class1"] and [s.count for s in indexed] == [s.count for s in found]


def _keys_script(tmp_path: Path) -> Path:
    """A trainer entry point that records each training sample's (epoch, shard, key) it decodes, one file per process."""
    script = tmp_path / "train_logging_keys.py"
    script.write_text(
        "import os, sys\n"
        "from cutmix_zoo.train import streams, train_main\n"
        "original = streams.PilSamples.__call__\n"
        "def logged(self, shard, key, data, label, epoch, index):\n"
        "    if self.train:\n"
        f"        with open(os.path.join({str(tmp_path)!r}, f'keys-{{os.getpid()}}.txt'), 'a') as f:\n"
        "            f.write(f'{epoch} {shard} {key}\\n')\n"
        "    return original(self, shard, key, data, label, epoch, index)\n"
        "streams.PilSamples.__call__ = logged\n"
        "sys.exit(train_main(sys.argv[1:]))\n")
    return script


@pytest.mark.slow
def test_two_gloo_ranks_take_every_sample_once_per_epoch(shards, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), str(_keys_script(tmp_path)), *RUN, "--batch-size", "16", "--data", str(shards),
           "--epochs", "2", "--workers", "1", "--output", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [e["train_samples"] for e in _records(out, "epoch")] == [TRAIN, TRAIN]
    lines = [line.split() for f in tmp_path.glob("keys-*.txt") for line in f.read_text().splitlines()]
    for epoch in ("0", "1"):
        keys = [(shard, key) for e, shard, key in lines if e == epoch]
        assert len(keys) == TRAIN and len(set(keys)) == TRAIN  # every sample, once, over both ranks
    end = _records(out, "end")[0]
    assert len(set(end["final_weights_sha256"])) == 1


def _stop_at(monkeypatch, step: int) -> None:
    """SIGTERM during the training loop's ``step``-th optimisation step."""
    import signal

    from cutmix_zoo.train import loop

    calls = {"n": 0}
    original = loop.BatchMixer.loss

    def loss(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(loop.BatchMixer, "loss", loss)


@pytest.mark.slow
def test_a_run_stopped_mid_epoch_on_shards_resumes_bit_identical(trained, shards, tmp_path, monkeypatch):
    whole, stopped = trained, tmp_path / "stopped"
    with monkeypatch.context() as patch:
        _stop_at(patch, 7)  # epoch 2 (4 steps an epoch), step 3: the next batch is the second worker's
        assert train_main([*_resumable(shards), "--output", str(stopped)]) == EXIT_INTERRUPTED
    assert (load_checkpoint(stopped)["epoch"], load_checkpoint(stopped)["step"]) == (1, 3)
    assert train_main(["--resume", str(stopped), "--quiet"]) == 0
    expected, got = load_checkpoint(whole)["model"], load_checkpoint(stopped)["model"]
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    drop = ("images_per_s",)
    assert ([{k: v for k, v in r.items() if k not in drop} for r in _records(stopped, "epoch")]
            == [{k: v for k, v in r.items() if k not in drop} for r in _records(whole, "epoch")])


# --- failures ---------------------------------------------------------------------------------

def _copy(shards: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(shards, folder)
    return folder


def test_a_changed_or_missing_shard_is_refused_before_training(shards, tmp_path):
    folder = _copy(shards, tmp_path)
    (folder / "train-000001.tar").write_bytes((folder / "train-000001.tar").read_bytes()[:-1024])
    with pytest.raises(DataError, match="does not match the sha256") as e:
        train_main([*RUN, "--data", str(folder), "--epochs", "1", "--workers", "0", "--output", str(tmp_path / "out")])
    assert "train-000001.tar" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(InvalidArgumentError, match="--val-data goes with --data a pattern"):
        open_source(str(folder), str(folder))
    (folder / "train-000001.tar").unlink()
    with pytest.raises(DataError, match="listed in .*dataset.json, is missing") as e:
        open_source(str(folder), None)
    assert "train-000001.tar" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("damage, said", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "is cut short"),
    (lambda p: p.write_bytes(b"not a tar file at all\n" * 40), "is not a tar file"),
    (lambda p: p.unlink(), "is missing"),
])
def test_a_bad_shard_is_one_sentence_naming_it(shards, tmp_path, damage, said):
    folder = _copy(shards, tmp_path)
    count = _index(folder)["splits"]["train"]["shards"][1]["count"]
    damage(folder / "train-000001.tar")
    stream = ShardStream([Shard(str(folder / "train-000001.tar"), count)], tar_samples, _index_of, 3, train=False)
    with pytest.raises(DataError) as e:
        list(stream)
    assert str(e.value).startswith(f"The shard {folder / 'train-000001.tar'} {said}"), str(e.value)
    assert "\n" not in str(e.value)


def test_without_the_scale_extra_shards_and_parquet_say_how_to_get_it(shards, monkeypatch):
    from cutmix_zoo.train.parquet import columns

    monkeypatch.setitem(sys.modules, "webdataset", None)  # import webdataset now raises ImportError
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(InvalidArgumentError, match=r"needs the webdataset library: pip install 'cutmix-zoo\[scale\]'\.$"):
        list(tar_samples(str(shards / "train-000000.tar")))
    with pytest.raises(InvalidArgumentError, match=r"needs the datasets library: pip install 'cutmix-zoo\[scale\]'\.$"):
        columns("any.parquet")


def test_an_unreachable_shard_is_one_sentence_naming_it():
    with http_file_server({}) as server:
        url = f"{server.url}/gone/train-000000.tar"
        with pytest.raises(DataError) as e:
            pattern_shards(url)
    message = str(e.value)  # curl's failure, or the empty stream it leaves, whichever the reader sees first
    assert message.startswith(f"The shard {url} is ") and "unreachable" in message and "\n" not in message and "curl'," not in message


@pytest.mark.slow
def test_a_shard_cut_short_mid_run_stops_after_the_checkpoint(shards, tmp_path):
    folder = _copy(shards, tmp_path)
    index = _index(folder)
    names = [e["name"] for e in index["splits"]["train"]["shards"]]
    victim = folder / names[-1]
    victim.write_bytes(victim.read_bytes()[: len(victim.read_bytes()) // 2])
    n_val = len(index["splits"]["val"]["shards"])
    out = tmp_path / "out"
    with pytest.raises(DataError) as e:  # a pattern: counts from the index beside it, no sha256 check before training
        train_main([*RUN, "--data", _pattern(str(folder), "train", len(names)), "--val-data", _pattern(str(folder), "val", n_val),
                    "--epochs", "1", "--workers", "0", "--output", str(out)])
    message = str(e.value)
    assert message.startswith(f"The shard {victim} is cut short (truncated)") and "; the run stopped at epoch 1, step " in message
    assert "\n" not in message and (out / "checkpoint.pt").is_file()
    assert _records(out, "stopped")[0]["error"] == message


@pytest.mark.slow
def test_an_undecodable_image_stops_the_run_naming_its_key_and_shard(tree, tmp_path):
    broken = tmp_path / "tree"
    shutil.copytree(tree, broken)
    (broken / "train" / "class1" / "03.jpg").write_bytes(b"\xff\xd8 this is no jpeg")
    folder = tmp_path / "shards"
    write_shards(broken, folder, 8_000)
    names = [str(folder / e["name"]) for e in _index(folder)["splits"]["train"]["shards"]]
    key = next(s["__key__"] for s in wds.WebDataset(names, shardshuffle=False, empty_check=False) if s.get("jpg", b"").startswith(b"\xff\xd8 this"))
    out = tmp_path / "out"
    with pytest.raises(DataError) as e:
        train_main([*RUN, "--data", str(folder), "--epochs", "1", "--workers", "0", "--output", str(out)])
    message = str(e.value)
    assert message.startswith(f"The image {key} of the shard {folder}/train-") and "cannot be read" in message
    assert "\n" not in message and (out / "checkpoint.pt").is_file()


@pytest.mark.slow
def test_the_device_pipeline_trains_on_shards(shards, tmp_path, monkeypatch):
    """--decode gpu on the CPU (the cuda guard lifted): the workers send each sample's bytes and parameters, the device
    decodes and augments them, and the epoch still takes every image."""
    from cutmix_zoo.train import loop

    monkeypatch.setattr(loop, "check_gpu_decode", lambda *args: None)
    assert train_main([*RUN, "--data", str(shards), "--decode", "gpu", "--epochs", "1", "--workers", "1", "--output", str(tmp_path)]) == 0
    epoch = _records(tmp_path, "epoch")[0]
    assert epoch["train_samples"] == TRAIN and np.isfinite(epoch["train_loss"]) and 0 <= epoch["val_top1_err"] <= 100


def test_device_parameters_are_the_cpu_pipelines_draws(shards, monkeypatch):
    """A shard sample's parameters under --decode gpu are the draws the PIL pipeline makes for it (same seed, same objects)."""
    from cutmix_zoo.train.data import build_transforms

    train_tf, _ = build_transforms("imagenet", 32, (0.5,) * 3, (0.25,) * 3, 36, fit=True)
    url = str(shards / "train-000000.tar")
    key, data, label = next(iter(tar_samples(url)))
    _, params, name, got_label = streams.EncodedSamples(5, train_tf)(url, key, data, label, 2, 7)
    assert name == f"{key} of the shard {url}" and got_label == label
    crop = train_tf.transforms[0]
    seen, original = {}, type(crop).get_params
    monkeypatch.setattr(type(crop), "get_params", staticmethod(lambda img, scale, ratio: seen.setdefault("box", original(img, scale, ratio))))
    streams.PilSamples(train_tf, 5, train=True)(url, key, data, label, 2, 7)
    assert params["crop"].tolist() == list(seen["box"])
