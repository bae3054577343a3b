"""Bad input, round two: each case is one sentence (a ZooError from the API; one ``cutmix-zoo: error:`` line and a non-zero
exit status from the CLI), no traceback, nothing half-written, in bounded time."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch

import cutmix_zoo
from cutmix_zoo.cli import main
from cutmix_zoo.errors import InvalidArgumentError, WeightsError, exit_code
from cutmix_zoo.shapes import write_folder

import tiny

EMBEDDED = "pyramidnet20_a48"
CUTMIX = "pyramidnet20_a48.cutmix_shapes"
TESTS = str(Path(__file__).parent)

pytestmark = pytest.mark.usefixtures("one_thread")


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The command's stderr, checked to be one ``cutmix-zoo: error:`` line with no traceback; returned for its words."""
    err = capsys.readouterr().err
    assert err.startswith("cutmix-zoo: error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def files_under(folder: Path) -> list[str]:
    """Every file and folder under ``folder`` (nothing when it does not exist), relative to it."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# ---------------------------------------------------------------- load() and the weights it is given

@pytest.mark.parametrize("kwargs, says", [
    ({"num_classes": 10**15}, "more classes than a classifier here can hold"),
    ({"weights": 123}, "weights must be the path of a weights file"),
])
def test_load_refuses_arguments_it_cannot_use_in_one_sentence(kwargs, says):
    with pytest.raises(InvalidArgumentError, match=says) as e:
        cutmix_zoo.load(EMBEDDED, **kwargs)
    assert "\n" not in str(e.value) and exit_code(e.value) == 2


def test_weights_that_link_to_a_text_file_are_one_sentence_for_load_and_convert(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("these are not weights")
    for name in ("w.safetensors", "w.pth"):
        os.symlink(tmp_path / "notes.txt", tmp_path / name)
    with pytest.raises(WeightsError) as e:
        cutmix_zoo.load(EMBEDDED, weights=tmp_path / "w.safetensors")
    assert "\n" not in str(e.value)
    out = tmp_path / "out.safetensors"
    assert main(["convert", "--model", EMBEDDED, str(tmp_path / "w.pth"), "-o", str(out)]) == 1
    assert "is a text file, not a PyTorch checkpoint" in one_error_line(capsys)
    assert not out.exists()


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """An exported folder of the embedded model, copied by each test that spoils its config."""
    return cutmix_zoo.save_pretrained(cutmix_zoo.load(CUTMIX), tmp_path_factory.mktemp("export") / "folder")


@pytest.mark.parametrize("change, says", [
    (lambda c: c["arch_args"].update(bogus=1), "arch_args 'bogus' is not an argument of the pyramidnet builder"),
    (lambda c: c.update(input_size=[3, 0, 0]), "input_size [3, 0, 0] has a side of no pixels"),
])
def test_a_folder_config_the_builder_cannot_take_is_one_sentence_for_load_and_train(export, tmp_path, capsys, change, says):
    folder = Path(shutil.copytree(export, tmp_path / "folder"))
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match=r"config\.json does not describe a cutmix_zoo model") as e:
        cutmix_zoo.load(folder)
    assert says in str(e.value) and "\n" not in str(e.value)
    out = tmp_path / "run"
    assert main(["train", "--init", str(folder), "--dataset", "shapes", "--epochs", "1", "--output", str(out)]) == 1
    assert says in one_error_line(capsys) and not out.exists()


# ---------------------------------------------------------------- where convert and export write

def _converted_input(tmp_path: Path) -> Path:
    """An original-layout (bare state dict) file of the embedded model, for convert."""
    path = tmp_path / "original.pth"
    torch.save(cutmix_zoo.load(EMBEDDED).state_dict(), path)
    return path


def _blocked_output(tmp_path: Path, where: str) -> Path:
    """An output path that cannot be written, of the given kind."""
    (tmp_path / "a-file").write_text("in the way")
    if where == "under a file":
        return tmp_path / "a-file" / "out"
    if where == "onto a file":
        return tmp_path / "a-file"
    if where == "onto a folder":
        (tmp_path / "a-folder").mkdir()
        return tmp_path / "a-folder"
    (tmp_path / "locked").mkdir(mode=0o555)  # "in a 0555 folder"
    return tmp_path / "locked" / "out"


ROOT_WRITES_0555 = pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0555 folder")


@pytest.mark.parametrize("command, where", [
    ("convert", "under a file"), ("convert", "onto a folder"), pytest.param("convert", "in a 0555 folder", marks=ROOT_WRITES_0555),
    ("export", "under a file"), ("export", "onto a file"), pytest.param("export", "in a 0555 folder", marks=ROOT_WRITES_0555),
])  # convert writes a file (--force replaces one), export a folder (into an existing one)
def test_an_output_that_cannot_be_written_is_one_sentence(tmp_path, capsys, command, where):
    work = tmp_path / "work"
    work.mkdir()
    out = _blocked_output(work, where)
    if command == "convert":
        argv = ["convert", "--model", EMBEDDED, str(_converted_input(work)), "-o", str(out), "--force"]
    else:
        argv = ["export", EMBEDDED, "-o", str(out), "--quiet"]
    before = files_under(work)
    assert main(argv) == 1
    assert f"Could not write {out}" in one_error_line(capsys)
    assert files_under(work) == before  # no temporary file, no half-made folder


def _cli(argv: list[str], limit_bytes: int | None = None, env: dict[str, str] | None = None,
         prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    """``python -m cutmix_zoo ARGV`` in a subprocess (after ``prefix``, e.g. unshare), files it writes limited to
    ``limit_bytes`` each (RLIMIT_FSIZE with SIGXFSZ ignored, so a write past it fails with EFBIG, as on a full disk),
    with the tiny registry entries registered."""
    def limit() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    code = "import sys, tiny; tiny.register(); from cutmix_zoo.cli import main; sys.exit(main(sys.argv[1:]))"
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, *sys.path]), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([*(prefix or []), sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120,
                          env=environ, preexec_fn=limit if limit_bytes else None)


def _one_line(result: subprocess.CompletedProcess) -> str:
    assert result.stderr.startswith("cutmix-zoo: error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", ["convert", "export"])
def test_a_full_disk_under_the_output_is_one_sentence(tmp_path, command):
    out = tmp_path / "out" / ("model.safetensors" if command == "convert" else "folder")
    argv = (["convert", "--model", EMBEDDED, str(_converted_input(tmp_path)), "-o", str(out)] if command == "convert"
            else ["export", EMBEDDED, "-o", str(out), "--quiet"])
    result = _cli(argv, limit_bytes=64 * 1024)  # the weights are some 700 KB
    assert result.returncode == 1 and "File too large" in _one_line(result)
    assert [p for p in files_under(tmp_path / "out") if p.endswith(".tmp") or p.endswith("model.safetensors")] == []


@pytest.mark.slow
def test_a_full_disk_under_the_trainers_output_is_one_sentence(tmp_path):
    out = tmp_path / "run"
    result = _cli(["train", "--model", "pyramidnet", "--depth", "8", "--alpha", "12", "--no-bottleneck", "--dataset", "cifar10",
                   "--synthetic-size", "32", "--batch-size", "16", "--epochs", "1", "--workers", "0", "--device", "cpu",
                   "--quiet", "--output", str(out)], limit_bytes=16 * 1024)
    assert result.returncode == 1 and "Could not write" in _one_line(result) and "--resume" in result.stderr
    assert not [p for p in files_under(out) if p.endswith(".tmp")]


@pytest.mark.slow
def test_a_full_disk_under_the_zoo_cache_is_one_sentence_and_leaves_nothing(tmp_path):
    from servers import Reply, http_file_server

    routes = {f"/{tiny.FILE_PATH}": Reply(tiny.save_bytes(tiny.state_dict(0)))}
    with http_file_server(routes) as server:
        cache = tmp_path / "cache"
        result = _cli(["download", tiny.FILE_ENTRY, "--quiet"], limit_bytes=16 * 1024,
                      env={"CUTMIX_ZOO_CACHE": str(cache), "CUTMIX_ZOO_ORIGINAL_URL": server.url + "/"})
    assert result.returncode == 1 and f"could not be written into the cache {cache / tiny.FILE_ENTRY}" in _one_line(result)
    assert [p for p in files_under(cache) if not p.startswith((".locks", ".verified"))] == []


@pytest.mark.slow
def test_a_read_only_file_system_under_the_output_is_one_sentence(tmp_path):
    """A read-only bind mount in a mount namespace of its own; skipped where the system allows none (not root, no unshare)."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("no mount namespace can be made here")
    folder = tmp_path / "read-only"
    folder.mkdir()
    mount = f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} && exec \"$0\" \"$@\""
    result = _cli(["export", EMBEDDED, "-o", str(folder / "out"), "--quiet"], prefix=["unshare", "-rm", "sh", "-c", mount])
    if "mount:" in result.stderr:
        pytest.skip(f"the bind mount was refused: {result.stderr.strip()}")
    assert result.returncode == 1 and "Read-only file system" in _one_line(result)


# ---------------------------------------------------------------- eval's flags, info's record, the environment

@pytest.mark.parametrize("flags, says", [
    (["--batch-size", "0"], "--batch-size) must be a whole number of at least 1, not 0"),
    (["--workers", "-1"], "--workers) must be 0 or more, not -1"),
    (["--device", "bogus"], "--device 'bogus' is not a torch device"),
])
def test_eval_refuses_flags_that_cannot_work(capsys, flags, says):
    assert main(["eval", EMBEDDED, "--data", "shapes", *flags]) == 2
    assert says in one_error_line(capsys)


def test_info_with_a_torn_conversion_record_shows_the_model(tiny_registry, isolated_env, capsys):
    folder = isolated_env / "zoo-cache" / tiny.FILE_ENTRY
    folder.mkdir(parents=True)
    (folder / "source.json").write_text('{"sha256": "ab')
    assert main(["info", tiny.FILE_ENTRY, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["name"] == tiny.FILE_ENTRY and "downloaded_sha256" not in json.dumps(shown)


@pytest.mark.parametrize("value", ["../../x", "a b"])
def test_a_hub_organisation_the_hub_cannot_name_is_one_sentence(tiny_registry, isolated_env, monkeypatch, capsys, value):
    monkeypatch.setenv("CUTMIX_ZOO_HUB_ORG", value)
    assert main(["download", tiny.FILE_ENTRY, "--quiet"]) == 2
    assert f"CUTMIX_ZOO_HUB_ORG={value!r} is not a Hub organisation name" in one_error_line(capsys)
    assert files_under(isolated_env / "zoo-cache") == []


@pytest.mark.slow
def test_an_hf_endpoint_that_is_no_url_is_one_sentence(tmp_path):
    """In a subprocess: huggingface_hub reads HF_ENDPOINT once, when it is first imported."""
    result = _cli(["download", tiny.FILE_ENTRY, "--quiet"], env={"HF_ENDPOINT": "http://[::1", "CUTMIX_ZOO_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 2 and "HF_ENDPOINT='http://[::1' is not a URL" in _one_line(result)
    assert files_under(tmp_path / "cache") == []


def _bad_deflate_zip(path: Path) -> None:
    """A folder zip whose checkpoint member's deflate stream is damaged (its headers and sizes intact)."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("run/model_best.pth.tar", os.urandom(4096))  # incompressible: within the ratio the unpacker allows
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack_from("<HH", data, 26)
    start = 30 + name_length + extra_length
    data[start:start + 16] = b"\xff" * 16  # an invalid block type, reserved in deflate
    path.write_bytes(bytes(data))


def test_a_folder_zip_with_bad_deflate_data_is_one_sentence_and_leaves_nothing(tmp_path):
    from cutmix_zoo.errors import DownloadError
    from cutmix_zoo.hub.original import _checkpoint_in_zip

    archive = tmp_path / "folder.zip"
    _bad_deflate_zip(archive)
    with pytest.raises(DownloadError, match="is damaged") as e:
        _checkpoint_in_zip(archive, tmp_path / "out.pth.tar", "https://example.invalid/sh/x?dl=1")
    assert "\n" not in str(e.value) and not (tmp_path / "out.pth.tar").exists()


# ---------------------------------------------------------------- the trainer's --resume, --init and --input-size

def _not_a_checkpoint(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"file.{kind}"
    if kind == "pt":
        torch.save({"weights": torch.zeros(2)}, path)
    else:
        from safetensors.torch import save_file

        save_file({"weights": torch.zeros(2)}, path)
    return path


@pytest.mark.parametrize("kind", ["pt", "safetensors"])
def test_resume_of_a_file_that_holds_no_run_is_one_sentence(tmp_path, capsys, kind):
    assert main(["train", "--resume", str(_not_a_checkpoint(tmp_path, kind))]) == 1
    assert "not a checkpoint that cutmix_zoo.train wrote" in one_error_line(capsys)


@pytest.mark.parametrize("flags, says", [
    (["--init", ""], "--init needs a registry name, an exported folder or a weights file, not an empty string"),
    (["--init", CUTMIX, "--input-size", "100000"], "--input-size must be at most 4096 pixels"),
])
def test_the_trainer_refuses_init_and_input_size_it_cannot_use(tmp_path, capsys, flags, says):
    assert main(["train", *flags, "--data", str(tmp_path), "--epochs", "1", "--output", str(tmp_path / "run")]) == 2
    assert says in one_error_line(capsys) and not (tmp_path / "run").exists()


# ---------------------------------------------------------------- the images of transfer, robustness and localize

def _bomb_png(path: Path) -> Path:
    """A PNG of 20000 x 10000 pixels in a few bytes: past Pillow's decompression-bomb limit."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 20000, 10000, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def _broken_link(path: Path) -> Path:
    os.symlink(path.parent / "gone.png", path)
    return path


BAD_IMAGES = [pytest.param(_bomb_png, "is too large to decode safely", id="decompression-bomb"),
              pytest.param(_broken_link, "gone.png", id="broken-link")]


@pytest.fixture(scope="module")
def novel(tmp_path_factory) -> Path:
    """Novel-Shapes, 3 training and 2 validation images a class."""
    return write_folder(tmp_path_factory.mktemp("novel") / "data", 3, 2, novel=True, seed=0)


def _two_classes(novel: Path, root: Path, per_class: int = 3) -> Path:
    for split in ("train", "val"):
        for name in ("star", "crescent"):
            (root / split / name).mkdir(parents=True)
            for image in sorted((novel / split / name).iterdir())[:per_class]:
                shutil.copy(image, root / split / name)
    return root


def _transfer(data: Path, tmp_path: Path, cache: Path | None = None) -> int:
    return main(["transfer", "--data", str(data), "--models", CUTMIX, "-o", str(tmp_path / "out"),
                 "--cache", str(cache or tmp_path / "cache"), "--no-plots", "--quiet"])


@pytest.mark.parametrize("make, says", BAD_IMAGES)
def test_transfer_refuses_an_image_it_cannot_read(novel, tmp_path, capsys, make, says):
    data = _two_classes(novel, tmp_path / "data")
    image = make(data / "val" / "star" / "bad.png")
    assert _transfer(data, tmp_path) == 2
    err = one_error_line(capsys)
    assert str(image) in err and (says in err or "No such file" in err)


@pytest.mark.parametrize("make, says", BAD_IMAGES)
def test_localize_refuses_an_image_it_cannot_read(tmp_path, capsys, make, says):
    image = make(tmp_path / "bad.png")
    assert main(["localize", CUTMIX, str(image), "-o", str(tmp_path / "out"), "--no-plots"]) == 2
    err = one_error_line(capsys)
    assert str(image) in err and (says in err or "does not exist" in err)


@pytest.mark.parametrize("make, says", BAD_IMAGES)
def test_robustness_refuses_an_image_it_cannot_read(tmp_path, capsys, make, says):
    from cutmix_zoo.cli.reporting import shapes_benchmark

    images, labels, classes, _ = shapes_benchmark(4)
    for k, (picture, label) in enumerate(zip(images, labels)):
        (tmp_path / "data" / "val" / classes[label]).mkdir(parents=True, exist_ok=True)
        picture.save(tmp_path / "data" / "val" / classes[label] / f"{k}.png")
    image = make(tmp_path / "data" / "val" / classes[labels[0]] / "bad.png")
    assert main(["robustness", "--data", str(tmp_path / "data"), "--models", CUTMIX, "-o", str(tmp_path / "out"), "--no-plots"]) == 2
    err = one_error_line(capsys)
    assert str(image) in err and (says in err or "does not exist" in err)


def test_transfer_refuses_one_training_image_per_class(novel, tmp_path, capsys):
    data = _two_classes(novel, tmp_path / "data", per_class=1)
    assert _transfer(data, tmp_path) == 2
    assert "has 1 training image" in one_error_line(capsys)
    assert files_under(tmp_path / "cache") == []  # refused before any feature was extracted


@pytest.mark.parametrize("spoil", [lambda f: f[:-1], lambda f: torch.full_like(f, float("nan"))], ids=["a-row-short", "all-nan"])
def test_a_feature_cache_that_cannot_be_the_features_is_computed_again(novel, tmp_path, capsys, spoil):
    from safetensors import safe_open
    from safetensors.torch import save_file

    data = _two_classes(novel, tmp_path / "data")
    assert _transfer(data, tmp_path) == 0
    first = json.loads((tmp_path / "out" / "report.json").read_text())["models"][CUTMIX]
    (cached,) = (tmp_path / "cache").glob("*.safetensors")
    with safe_open(str(cached), framework="pt") as f:
        metadata, features = f.metadata(), f.get_tensor("features")
    save_file({"features": spoil(features).contiguous()}, str(cached), metadata=metadata)
    capsys.readouterr()
    assert _transfer(data, tmp_path) == 0
    again = json.loads((tmp_path / "out" / "report.json").read_text())["models"][CUTMIX]
    assert again["probe"]["top1_err"] == first["probe"]["top1_err"]
    with safe_open(str(cached), framework="pt") as f:
        assert torch.equal(f.get_tensor("features"), features)  # the spoilt file was replaced by the computed features


# ---------------------------------------------------------------- localize --boxes files

@pytest.mark.parametrize("name, content, says", [
    ("boxes.json", ("[" * 100_000 + "]" * 100_000).encode(), "nests its JSON deeper than a boxes file can"),
    ("boxes.csv", "image,left,top,right,bottom,label\ncafé.png,0,0,5,5,1\n".encode("latin-1"), "is not UTF-8 text"),
])
def test_a_boxes_file_it_cannot_read_is_one_sentence(tmp_path, capsys, name, content, says):
    from cutmix_zoo.cli.reporting import shapes_benchmark

    image = tmp_path / "café.png"
    shapes_benchmark(1)[0][0].save(image)
    (tmp_path / name).write_bytes(content)
    assert main(["localize", CUTMIX, str(image), "--boxes", str(tmp_path / name), "-o", str(tmp_path / "out"), "--no-plots"]) == 2
    assert says in one_error_line(capsys)


# ---------------------------------------------------------------- shapes

@pytest.mark.parametrize("flags, says", [
    ([], "exists and is not a folder"),
    (["--train-per-class", "10000000"], "take at most 10,000 images a class"),
])
def test_shapes_refuses_a_folder_or_a_size_it_cannot_write(tmp_path, capsys, flags, says):
    target = tmp_path / "a-file"
    target.write_text("in the way")
    if flags:
        target = tmp_path / "new"
    assert main(["shapes", str(target), *flags]) == 2
    assert says in one_error_line(capsys)
    assert files_under(tmp_path) == ["a-file"]

