"""The second attacker round: crafted folders, cache files, second writers, broken weights and slow servers.

Each case made the zoo do something silently (upload a file outside the folder, count images twice, trust a changed
cache, mix two runs, load NaN weights, keep orphans) or without bound; each is now one sentence of a ZooError (the CLI:
one line on stderr and a non-zero exit), or repaired by the next run of its kind, in bounded time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save, save_file

import cutmix_zoo
from cutmix_zoo.cli import main as cli_main
from cutmix_zoo.errors import DownloadError, InvalidArgumentError, OutputError, TrainingError, WeightsError
from cutmix_zoo.reports import transfer
from cutmix_zoo.reports.folders import read_image_tree
from cutmix_zoo.shapes import write_folder
from cutmix_zoo.train import train_main
from cutmix_zoo.train.metrics_log import read_metrics

import tiny
from servers import make_hub_repo, serve_http

REPO = Path(__file__).resolve().parents[1]
CUTMIX, BASELINE = "pyramidnet20_a48.cutmix_shapes", "pyramidnet20_a48.baseline_shapes"
TINY = ["--model", "pyramidnet", "--depth", "8", "--alpha", "12", "--no-bottleneck", "--dataset", "cifar10",
        "--data", "synthetic", "--synthetic-size", "32", "--batch-size", "16", "--workers", "0", "--device", "cpu", "--quiet"]


def one_line(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err and err.strip().startswith("cutmix-zoo: error: ")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli_main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def env_with_this_checkout() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}


@contextmanager
def held(folder: Path, command: str = "cutmix-zoo holder"):
    """Another process holding ``folder``'s output lock for the block (the first of two writers)."""
    code = ("import sys; from cutmix_zoo.files import output_lock; from cutmix_zoo.hub.cache import output_locks\n"
            f"with output_lock({str(folder)!r}, {command!r}, output_locks()):\n    print('held', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=env_with_this_checkout())
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def killed_mid_write(target: Path) -> None:
    """A process that dies by SIGKILL inside :func:`cutmix_zoo.files.atomic_path` for ``target``, half a file written."""
    code = ("import os, signal; from cutmix_zoo.files import atomic_path\n"
            f"tmp = atomic_path({str(target)!r}).__enter__(); tmp.write_bytes(b'half a file'); os.kill(os.getpid(), signal.SIGKILL)")
    process = subprocess.run([sys.executable, "-c", code], env=env_with_this_checkout(), timeout=60)
    assert process.returncode == -signal.SIGKILL


def temporaries_of(target: Path) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.*.tmp"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished one-epoch run of a tiny PyramidNet on synthetic CIFAR (checkpoint, best weights, metrics, export)."""
    output = tmp_path_factory.mktemp("finished") / "run"
    assert train_main([*TINY, "--epochs", "1", "--output", str(output)]) == 0
    return output


@pytest.fixture
def run_copy(finished, tmp_path) -> Path:
    return Path(shutil.copytree(finished, tmp_path / "run"))


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    return cutmix_zoo.save_pretrained(cutmix_zoo.load(CUTMIX), tmp_path_factory.mktemp("export") / "cutmix")


def image(path: Path, width: int, height: int) -> Path:
    Image.new("RGB", (width, height), (200, 40, 40)).save(path)
    return path


# ---------------------------------------------------------------- security


def test_publish_refuses_a_link_to_a_file_outside_the_folder(export, tmp_path, capsys):
    folder = Path(shutil.copytree(export, tmp_path / "export"))
    secret = tmp_path / "secret.txt"
    secret.write_text("HF_TOKEN=hf_not_for_upload\n")
    (folder / "notes.txt").symlink_to(secret)
    code, out, err = run_cli(capsys, "publish", folder, "--repo-id", "someone/model", "--dry-run")
    assert code != 0 and one_line(err) and "notes.txt is a symbolic link" in err, err
    assert "notes.txt" not in out


def test_publish_lists_the_regular_files_of_the_folder_itself(export, tmp_path, capsys):
    folder = Path(shutil.copytree(export, tmp_path / "export"))
    (folder / "extra").mkdir()
    (folder / "extra" / "inside.bin").write_bytes(b"not uploaded")
    code, out, err = run_cli(capsys, "publish", folder, "--repo-id", "someone/model", "--dry-run")
    listed = [line.split()[0] for line in out.splitlines()[1:]]
    assert code == 0 and listed == ["README.md", "config.json", "model.safetensors"], out


@pytest.mark.parametrize("size", [(3000, 1), (1, 3000), (400, 20)])
def test_localize_refuses_an_image_of_extreme_shape_at_once(tmp_path, capsys, size):
    picture = image(tmp_path / "strip.png", *size)
    started = time.monotonic()
    code, _, err = run_cli(capsys, "localize", CUTMIX, picture, "-o", tmp_path / "out", "--no-plots")
    assert code == 2 and one_line(err) and f"is {size[0]}x{size[1]} pixels" in err, err
    assert time.monotonic() - started < 30 and not (tmp_path / "out").exists()
    with pytest.raises(InvalidArgumentError, match="crop it nearer to a square"):
        cutmix_zoo.localize(CUTMIX, picture)


# ---------------------------------------------------------------- silently wrong: folders and caches


def _tree(root: Path) -> Path:
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for k in range(2):
            image(root / name / f"{k}.png", 8, 8)
    return root


@pytest.mark.parametrize("link, target", [
    ("a/loop", "."),  # back into its own class folder: counted again and again
    ("a/up", ".."),  # up to the tree: every class counted under a
    ("a/other", "../b"),  # another class's images under a
    ("up", "."),  # a class that is the whole tree
])
def test_a_folder_link_that_loops_or_leaves_its_class_is_refused(tmp_path, link, target):
    root = _tree(tmp_path / "data")
    (root / link).symlink_to(target, target_is_directory=True)
    with pytest.raises(InvalidArgumentError) as e:
        read_image_tree(root)
    assert "\n" not in str(e.value) and str(root / link) in str(e.value)


def test_a_class_folder_that_is_a_link_and_links_to_files_still_read(tmp_path):
    root = _tree(tmp_path / "data")
    store = _tree(tmp_path / "store")
    (root / "c").symlink_to(store / "a", target_is_directory=True)
    (root / "b" / "9.png").symlink_to(store / "b" / "0.png")
    tree = read_image_tree(root)
    assert tree.classes == ["a", "b", "c"] and [len(paths) for paths in tree.images] == [2, 3, 2]


def _tamper_flip(features: torch.Tensor) -> torch.Tensor:
    return (features.view(torch.int32) ^ (1 << 30)).view(torch.float32)  # an exponent bit of every value


@pytest.mark.parametrize("tamper", [_tamper_flip, lambda f: f.T.contiguous(), lambda f: f[:-1].contiguous()],
                         ids=["flipped-exponent-bits", "transposed", "one-row-short"])
def test_a_feature_cache_changed_on_disk_is_computed_again(tmp_path, tamper):
    paths = write_folder(tmp_path / "data", 1, 1, novel=True, seed=0)
    images = read_image_tree(paths / "train").paths[:6]
    model = cutmix_zoo.load(CUTMIX, num_classes=0)
    first = transfer.extract_features({CUTMIX: model}, images, paths, tmp_path / "cache", batch_size=8)[CUTMIX]
    with safe_open(str(first.file), framework="pt") as reader:
        metadata = reader.metadata()
    save_file({"features": tamper(first.features)}, str(first.file), metadata=metadata)  # the key kept: it still matches
    again = transfer.extract_features({CUTMIX: model}, images, paths, tmp_path / "cache", batch_size=8)[CUTMIX]
    assert not again.cached and torch.equal(again.features, first.features)
    assert torch.equal(load_file(str(first.file))["features"], first.features)  # and the cache holds the right rows again


# ---------------------------------------------------------------- silently wrong: two writers of one folder


@pytest.mark.parametrize("command", [
    lambda out: ["train", *TINY, "--epochs", "1", "--output", out],
    lambda out: ["shapes", out, "--train-per-class", "1", "--val-per-class", "1"],
    lambda out: ["shapes", out, "--scenes", "--train-images", "1", "--val-images", "1"],
    lambda out: ["export", CUTMIX, "-o", out],
], ids=["train", "shapes", "shapes-scenes", "export"])
def test_a_second_writer_of_an_output_folder_is_refused_naming_the_first(tmp_path, capsys, command):
    out = tmp_path / "out"
    with held(out, "cutmix-zoo first-writer") as pid:
        code, _, err = run_cli(capsys, *command(out))
        assert not out.exists()  # nothing of the second writer's
    assert code == 1 and one_line(err), err
    assert f"being written by another cutmix-zoo first-writer (process {pid}," in err


def test_the_lock_is_the_api_s_error_and_is_free_again_after_its_holder(tmp_path):
    from cutmix_zoo.files import output_lock
    from cutmix_zoo.hub.cache import output_locks

    with held(tmp_path / "out"), pytest.raises(OutputError, match="another cutmix-zoo holder"):
        with output_lock(tmp_path / "out", "second", output_locks()):
            pass
    out, link = tmp_path / "out", tmp_path / "link"
    out.mkdir()
    link.symlink_to(out)
    with output_lock(out, "third", output_locks()), pytest.raises(OutputError, match="another third"):
        with output_lock(link, "fourth", output_locks()):  # another spelling of the same folder
            pass
    with output_lock(link, "fifth", output_locks()):  # free again
        pass
    assert list((tmp_path / "out").iterdir()) == []  # the folder holds no lock file


# ---------------------------------------------------------------- silently wrong: weights and arguments


def _broken_weights(tmp_path: Path, value: float) -> Path:
    state = cutmix_zoo.load(CUTMIX).state_dict()
    state["fc.weight"][0, 0] = value
    path = tmp_path / "broken.safetensors"
    save_file(state, str(path))
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("kwargs", [{}, {"features_only": True}, {"num_classes": 0}])
def test_weights_holding_nan_or_infinity_are_refused(tmp_path, value, kwargs):
    with pytest.raises(WeightsError, match="non-finite values .* in fc.weight") as e:
        cutmix_zoo.load(CUTMIX, weights=_broken_weights(tmp_path, value), **kwargs)
    assert "\n" not in str(e.value) and "not loaded" in str(e.value)


def test_a_weights_file_fixed_in_place_loads_again(tmp_path):
    path = _broken_weights(tmp_path, float("nan"))
    with pytest.raises(WeightsError):
        cutmix_zoo.load(CUTMIX, weights=path)
    save_file(cutmix_zoo.load(CUTMIX).state_dict(), str(path))
    assert torch.isfinite(cutmix_zoo.load(CUTMIX, weights=path).fc.weight).all()


@pytest.mark.slow
def test_a_hub_copy_holding_nan_is_refused_from_the_download_and_from_the_cache(env, hub):
    state = tiny.state_dict(1)
    state["fc.bias"][3] = float("nan")
    make_hub_repo(hub.mirrors, f"{env}/{tiny.FOLDER_ENTRY}", {"model.safetensors": save(state)})
    for _ in range(2):  # downloaded, then cached
        with pytest.raises(WeightsError, match="non-finite values .* in fc.bias") as e:
            cutmix_zoo.load(tiny.FOLDER_ENTRY, progress=False)
        assert "\n" not in str(e.value) and f"cutmix-zoo download --force {tiny.FOLDER_ENTRY}" in str(e.value)


@pytest.mark.parametrize("kwargs, says", [
    ({"pretrained": False, "weights": "WEIGHTS"}, "pretrained=False asks for random weights and weights= for the file's"),
    ({"revision": "main"}, "is bundled with cutmix_zoo and has no Hub revisions"),
    ({"revision": "0123456789abcdef0123456789abcdef01234567", "features_only": True}, "has no Hub revisions"),
])
def test_arguments_that_were_ignored_are_one_sentence(export, kwargs, says):
    kwargs = {k: (export / "model.safetensors" if v == "WEIGHTS" else v) for k, v in kwargs.items()}
    with pytest.raises(InvalidArgumentError, match=says) as e:
        cutmix_zoo.load(CUTMIX, **kwargs)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("alpha", ["-5", "0", "nan", "inf"])
def test_train_refuses_an_alpha_that_is_no_widening(tmp_path, alpha):
    flags = [*TINY, "--output", str(tmp_path / "out")]
    flags[flags.index("--alpha") + 1] = alpha
    with pytest.raises(InvalidArgumentError, match="--alpha is how much wider the network grows") as e:
        train_main(flags)
    assert "\n" not in str(e.value) and not (tmp_path / "out").exists()


@pytest.mark.parametrize("measures", [",", " , ,", ""])
def test_robustness_refuses_measures_that_name_none(tmp_path, capsys, measures):
    code, _, err = run_cli(capsys, "robustness", "--data", "shapes", "--models", CUTMIX, "-o", tmp_path / "out", "--measures",
                           measures, "--no-plots", "--limit", "8")
    assert code == 2 and one_line(err) and "names no measure" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("box, says", [
    ([40, 40, 60, 60], "reaches beyond its 32x32 image"),  # wholly outside
    ([0, 0, 64, 64], "reaches beyond its 32x32 image"),  # larger than the image
    ([True, 0, 10, 10], "a box is four numbers"),  # JSON true is no coordinate
    ([0, False, 10, 10], "a box is four numbers"),
])
def test_localize_refuses_a_true_box_that_cannot_be_measured(tmp_path, capsys, box, says):
    picture = image(tmp_path / "a.png", 32, 32)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"image": "a.png", "box": box, "label": 0}]))
    code, _, err = run_cli(capsys, "localize", CUTMIX, picture, "--boxes", boxes, "-o", tmp_path / "out", "--no-plots")
    assert code == 2 and one_line(err) and says in err, err
    assert not (tmp_path / "out").exists()


def test_export_over_another_model_s_export_needs_force(export, tmp_path, capsys):
    out = Path(shutil.copytree(export, tmp_path / "out"))
    before = (out / "model.safetensors").read_bytes()
    code, _, err = run_cli(capsys, "export", BASELINE, "-o", out)
    assert code == 2 and one_line(err) and f"holds the export of {CUTMIX}: pass --force" in err, err
    assert (out / "model.safetensors").read_bytes() == before
    assert run_cli(capsys, "export", CUTMIX, "-o", out)[0] == 0  # the same model again: nothing is lost
    assert run_cli(capsys, "export", BASELINE, "-o", out, "--force")[0] == 0
    assert json.loads((out / "config.json").read_text())["name"] == BASELINE


# ---------------------------------------------------------------- data lost


def test_a_new_run_over_a_finished_run_needs_force_or_resume(run_copy):
    checkpoint = (run_copy / "checkpoint.pt").read_bytes()
    with pytest.raises(TrainingError, match=r"holds another run \(checkpoint.pt, best.safetensors, export, metrics.jsonl\)") as e:
        train_main([*TINY, "--epochs", "1", "--seed", "7", "--output", str(run_copy)])
    assert "\n" not in str(e.value) and f"--resume {run_copy}" in str(e.value)
    assert (run_copy / "checkpoint.pt").read_bytes() == checkpoint
    assert train_main([*TINY, "--epochs", "1", "--seed", "7", "--output", str(run_copy), "--force"]) == 0
    records = read_metrics(run_copy / "metrics.jsonl")
    assert [r["event"] for r in records].count("start") == 1 and records[-1]["event"] == "end"  # the new run's log alone


@pytest.mark.parametrize("written", ["checkpoint.pt", "best.safetensors", "export/model.safetensors"])
def test_a_train_run_removes_what_a_killed_write_left(run_copy, written):
    killed_mid_write(run_copy / written)
    assert len(temporaries_of(run_copy / written)) == 1
    assert train_main(["--resume", str(run_copy), "--epochs", "2"]) == 0
    assert temporaries_of(run_copy / written) == []


def test_feature_extraction_removes_what_a_killed_cache_write_left(tmp_path):
    paths = write_folder(tmp_path / "data", 1, 1, novel=True, seed=0)
    images = read_image_tree(paths / "train").paths[:4]
    model = cutmix_zoo.load(CUTMIX, num_classes=0)
    first = transfer.extract_features({CUTMIX: model}, images, paths, tmp_path / "cache", batch_size=8)[CUTMIX]
    killed_mid_write(first.file)
    assert len(temporaries_of(first.file)) == 1
    again = transfer.extract_features({CUTMIX: model}, images, paths, tmp_path / "cache", batch_size=8)[CUTMIX]
    assert again.cached and temporaries_of(first.file) == []


def test_a_temporary_a_live_process_is_writing_is_left_alone(tmp_path):
    from cutmix_zoo.files import atomic_path, sweep_temporaries

    with atomic_path(tmp_path / "file.bin") as tmp:
        tmp.write_bytes(b"being written")
        assert sweep_temporaries(tmp_path) == [] and tmp.exists()
    assert (tmp_path / "file.bin").read_bytes() == b"being written"


def test_a_torn_last_metrics_line_is_skipped_and_repaired_by_the_next_writer(run_copy):
    metrics = run_copy / "metrics.jsonl"
    whole = read_metrics(metrics)
    with open(metrics, "a") as f:
        f.write('{"event": "epoch", "epo')  # a kill inside the append
    assert read_metrics(metrics) == whole
    assert train_main(["--resume", str(run_copy), "--epochs", "2"]) == 0
    lines = metrics.read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines][-1] == "end" and len(lines) > len(whole)


@pytest.mark.slow
def test_a_stale_incomplete_file_is_removed_after_a_successful_download(env, hub, isolated_env):
    from cutmix_zoo.cli import main

    state = tiny.state_dict(1)
    make_hub_repo(hub.mirrors, f"{env}/{tiny.FOLDER_ENTRY}", {"model.safetensors": save(state)})
    pointer = Path(cutmix_zoo.load(tiny.FOLDER_ENTRY, progress=False).pretrained_cfg["source"])
    blob = pointer.resolve()
    pointer.unlink()
    blob.unlink()
    stale = [blob.with_name(blob.name + ".incomplete"), blob.with_name(blob.name + ".0badf00d.incomplete")]
    for path in stale:
        path.touch()  # what a try killed before its first byte leaves
    assert main(["download", tiny.FOLDER_ENTRY, "--quiet"]) == 0
    assert blob.is_file() and not any(path.exists() for path in stale)


# ---------------------------------------------------------------- unbounded


@contextmanager
def header_trickler():
    """A server that answers with a status line and then a header line of about 100 bytes every 0.5 s, for ever: each
    read gets its bytes well within the per-read timeout, so only the overall deadline can end the download."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                while not stop.is_set():
                    self.wfile.write(b"X-Padding: " + b"a" * 86 + b"\r\n")
                    self.wfile.flush()
                    stop.wait(0.5)
            except OSError:
                pass

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serve_http(Handler) as url:
        try:
            yield url
        finally:
            stop.set()


def test_a_server_trickling_its_headers_meets_the_overall_deadline(tiny_registry, isolated_env, monkeypatch):
    from cutmix_zoo.hub.cache import download_lock
    from cutmix_zoo.registry import get_entry

    monkeypatch.setenv("CUTMIX_ZOO_DOWNLOAD_TIMEOUT", "2")
    with header_trickler() as url:
        monkeypatch.setenv("CUTMIX_ZOO_ORIGINAL_URL", url + "/")
        started = time.monotonic()
        with pytest.raises(DownloadError) as e:
            cutmix_zoo.load(tiny.FILE_ENTRY, progress=False)
        assert time.monotonic() - started < 10  # the deadline is 2 s; the server would trickle for ever
        with download_lock(get_entry(tiny.FILE_ENTRY), wait=0.5, progress=False):
            pass  # the lock is free again
    assert "\n" not in str(e.value) and "did not arrive within 2 s (CUTMIX_ZOO_DOWNLOAD_TIMEOUT)" in str(e.value)
