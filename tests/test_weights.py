"""Weights from the Hub (olah on loopback, real huggingface_hub client) and from the original release
(http.server on loopback): every path loads exactly, every failure is one sentence and leaves a clean cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

import cutmix_zoo
from cutmix_zoo import registry
from cutmix_zoo.cli import main as cli_main

import tiny
from servers import OlahServer, Reply, make_hub_repo

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def zoo_files(root: Path) -> list[str]:
    """Every file in the zoo cache, lock files and verification markers (``.verified/``) excluded."""
    cache = root / "zoo-cache"
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*")
                  if p.is_file() and not p.name.endswith(".lock") and p.parent.name != ".verified") if cache.exists() else []


def assert_same_logits(model, state):
    with torch.no_grad():
        assert torch.equal(model(X), tiny.logits(state, X))


# ---------------------------------------------------------------- the Hub


def test_load_from_the_hub(env, hub, isolated_env):
    state = tiny.state_dict(1)
    make_hub_repo(hub.mirrors, f"{env}/{tiny.FOLDER_ENTRY}", {"model.safetensors": save(state), "config.json": b"{}"})
    model = cutmix_zoo.load(tiny.FOLDER_ENTRY, progress=False)
    assert_same_logits(model, state)
    assert str(isolated_env / "hf-home" / "hub") in model.pretrained_cfg["source"]
    assert zoo_files(isolated_env) == []


def test_pinned_revision(env, hub):
    old, new = tiny.state_dict(1), tiny.state_dict(2)
    repo = f"{env}/{tiny.FOLDER_ENTRY}"
    first = make_hub_repo(hub.mirrors, repo, {"model.safetensors": save(old)})
    make_hub_repo(hub.mirrors, repo, {"model.safetensors": save(new)})
    assert_same_logits(cutmix_zoo.load(tiny.FOLDER_ENTRY, revision=first, progress=False), old)
    assert_same_logits(cutmix_zoo.load(tiny.FOLDER_ENTRY, progress=False), new)
    assert_same_logits(cutmix_zoo.load(tiny.FOLDER_ENTRY, revision=first[:10], progress=False), old)
    with pytest.raises(cutmix_zoo.DownloadError, match="revision 'no-such-branch'"):
        cutmix_zoo.load(tiny.FOLDER_ENTRY, revision="no-such-branch", progress=False)


def test_cached_hub_file_loads_after_the_server_stops(tiny_registry, tmp_path, monkeypatch, isolated_env):
    state = tiny.state_dict(3)
    with OlahServer(tmp_path / "olah") as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        make_hub_repo(server.mirrors, f"cutmix-zoo/{tiny.FOLDER_ENTRY}", {"model.safetensors": save(state)})
        cutmix_zoo.load(tiny.FOLDER_ENTRY, progress=False)
    assert_same_logits(cutmix_zoo.load(tiny.FOLDER_ENTRY), state)  # server gone: no network call was needed
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert_same_logits(cutmix_zoo.load(tiny.FOLDER_ENTRY), state)
    with pytest.raises(cutmix_zoo.DownloadError) as e:
        cutmix_zoo.load(tiny.FILE_ENTRY)
    message = str(e.value)
    assert tiny.FILE_ENTRY in message and "model.safetensors" in message
    assert f"cutmix-zoo download {tiny.FILE_ENTRY}" in message and "\n" not in message


# ---------------------------------------------------------------- the original release


def test_folder_zip_with_a_trainpy_checkpoint(dropbox, isolated_env):
    model = cutmix_zoo.load(tiny.FOLDER_ENTRY, progress=False)
    assert_same_logits(model, dropbox.states["folder"])
    assert dropbox.hits("/" + tiny.FOLDER_PATH) == 1
    assert zoo_files(isolated_env) == [f"{tiny.FOLDER_ENTRY}/model.safetensors", f"{tiny.FOLDER_ENTRY}/source.json"]
    record = json.loads((isolated_env / "zoo-cache" / tiny.FOLDER_ENTRY / "source.json").read_text())
    import hashlib

    zip_bytes = dropbox._routes["/" + tiny.FOLDER_PATH][0].body
    assert record["sha256"] == hashlib.sha256(zip_bytes).hexdigest()
    assert record["layout"] == "trainpy" and record["epoch"] == 300 and record["best_err1"] == 14.23
    assert record["url"].endswith(tiny.FOLDER_PATH + "?dl=1")
    assert_same_logits(cutmix_zoo.load(tiny.FOLDER_ENTRY), dropbox.states["folder"])
    assert dropbox.hits("/" + tiny.FOLDER_PATH) == 1  # the second load used the cache
    from safetensors import safe_open

    with safe_open(isolated_env / "zoo-cache" / tiny.FOLDER_ENTRY / "model.safetensors", "pt") as f:
        meta = f.metadata()
    assert meta["name"] == tiny.FOLDER_ENTRY and meta["source_sha256"] == record["sha256"]


def test_info_shows_the_recorded_sha256(dropbox, capsys):
    cutmix_zoo.load(tiny.FOLDER_ENTRY, progress=False)
    capsys.readouterr()
    assert cli_main(["info", tiny.FOLDER_ENTRY, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert len(info["downloaded_sha256"]) == 64 and info["cached_file"].endswith("model.safetensors")


def test_single_bare_file(dropbox, isolated_env):
    features = cutmix_zoo.load(tiny.FILE_ENTRY, features_only=True, progress=False)
    assert len(features(X)) == 4
    assert_same_logits(cutmix_zoo.load(tiny.FILE_ENTRY), dropbox.states["file"])
    assert dropbox.hits("/" + tiny.FILE_PATH) == 1
    record = json.loads((isolated_env / "zoo-cache" / tiny.FILE_ENTRY / "source.json").read_text())
    assert record["layout"] == "bare"


def test_a_hub_repo_wins_over_the_original(dropbox, hub, env):
    state = tiny.state_dict(9)
    make_hub_repo(hub.mirrors, f"{env}/{tiny.FILE_ENTRY}", {"model.safetensors": save(state)})
    assert_same_logits(cutmix_zoo.load(tiny.FILE_ENTRY, progress=False), state)
    assert dropbox.hits("/" + tiny.FILE_PATH) == 0


# ---------------------------------------------------------------- failures leave a clean cache


def test_http_error(dropbox, isolated_env):
    dropbox.set_route("/" + tiny.FILE_PATH, Reply(b"gone", status=500))
    with pytest.raises(cutmix_zoo.DownloadError, match="HTTP 500"):
        cutmix_zoo.load(tiny.FILE_ENTRY, progress=False)
    assert zoo_files(isolated_env) == []


def test_truncated_download_then_a_retry_succeeds(dropbox, isolated_env):
    good = tiny.save_bytes(dropbox.states["file"])
    dropbox.set_route("/" + tiny.FILE_PATH, [Reply(good, truncate_to=len(good) // 2), Reply(good)])
    with pytest.raises(cutmix_zoo.DownloadError) as e:
        cutmix_zoo.load(tiny.FILE_ENTRY, progress=False)
    assert tiny.FILE_PATH in str(e.value) and "\n" not in str(e.value)
    assert zoo_files(isolated_env) == []
    assert_same_logits(cutmix_zoo.load(tiny.FILE_ENTRY, progress=False), dropbox.states["file"])


def test_fewer_bytes_than_announced(dropbox, isolated_env):
    good = tiny.save_bytes(dropbox.states["file"])
    dropbox.set_route("/" + tiny.FILE_PATH, Reply(good[:1000], headers={"Content-Length": str(len(good))}))
    with pytest.raises(cutmix_zoo.DownloadError):
        cutmix_zoo.load(tiny.FILE_ENTRY, progress=False)
    assert zoo_files(isolated_env) == []


def test_wrong_sha256(dropbox, isolated_env):
    pinned = registry.dataclasses.replace(registry.ENTRIES[tiny.FILE_ENTRY], name=f"{tiny.ARCH}.pinned_c10", sha256="0" * 64)
    with registry.registered(pinned), pytest.raises(cutmix_zoo.DownloadError, match="sha256 .* not the registry's 0000.*deleted"):
        cutmix_zoo.load(pinned.name, progress=False)
    assert zoo_files(isolated_env) == []


def test_zip_without_a_checkpoint(dropbox, isolated_env):
    dropbox.set_route("/" + tiny.FOLDER_PATH, tiny.folder_zip({"readme.txt": b"nothing here"}))
    with pytest.raises(cutmix_zoo.DownloadError, match="holds no checkpoint.*readme.txt"):
        cutmix_zoo.load(tiny.FOLDER_ENTRY, progress=False)
    assert zoo_files(isolated_env) == []


def test_original_of_another_architecture_is_refused(dropbox, isolated_env):
    from cutmix_zoo.models import build_model

    other = build_model("pyramidnet", {"depth": 11, "alpha": 12, "bottleneck": True}, 10).state_dict()
    dropbox.set_route("/" + tiny.FILE_PATH, tiny.save_bytes(other))
    with pytest.raises(cutmix_zoo.WeightsError, match="do not fit .*missing keys"):
        cutmix_zoo.load(tiny.FILE_ENTRY, progress=False)
    assert zoo_files(isolated_env) == []


# ---------------------------------------------------------------- crafted pickles


def test_crafted_pickle_as_weights_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth.tar"
    path.write_bytes(tiny.malicious_bytes(marker))
    with pytest.raises(cutmix_zoo.WeightsError, match="Refused to load .*could run code"):
        cutmix_zoo.load("resnet50", weights=path)
    assert not marker.exists()


def test_crafted_pickle_served_as_the_original_is_refused(dropbox, tmp_path, isolated_env):
    marker = tmp_path / "pwned-by-download"
    dropbox.set_route("/" + tiny.FILE_PATH, tiny.malicious_bytes(marker))
    with pytest.raises(cutmix_zoo.WeightsError, match="Refused"):
        cutmix_zoo.load(tiny.FILE_ENTRY, progress=False)
    assert not marker.exists()
    assert zoo_files(isolated_env) == []


# ---------------------------------------------------------------- two processes at once


@pytest.mark.slow
def test_two_processes_download_once(dropbox, isolated_env):
    body = dropbox._routes["/" + tiny.FOLDER_PATH][0].body
    dropbox.set_route("/" + tiny.FOLDER_PATH, Reply(body, delay=1.5))
    script = (
        "import sys, torch; sys.path.insert(0, sys.argv[1]); import tiny; tiny.register(); import cutmix_zoo; "
        "m = cutmix_zoo.load(tiny.FOLDER_ENTRY, progress=False); "
        "print(float(m(torch.ones(1, 3, 32, 32)).sum()))"
    )
    tests_dir = str(Path(__file__).parent)
    procs = [subprocess.Popen([sys.executable, "-c", script, tests_dir], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=dict(os.environ)) for _ in range(2)]
    outputs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert outputs[0][0] == outputs[1][0]
    assert dropbox.hits("/" + tiny.FOLDER_PATH) == 1
    assert zoo_files(isolated_env) == [f"{tiny.FOLDER_ENTRY}/model.safetensors", f"{tiny.FOLDER_ENTRY}/source.json"]


# ---------------------------------------------------------------- converter and cache commands


@pytest.mark.parametrize("layout", ["trainpy", "module", "bare", "trainpy-legacy"])
def test_convert_every_layout(tiny_registry, layout, tmp_path, monkeypatch, capsys):
    state = tiny.state_dict(6)
    data = {
        "trainpy": lambda: tiny.trainpy_bytes(state),
        "trainpy-legacy": lambda: tiny.trainpy_bytes(state, legacy=True),
        "module": lambda: tiny.save_bytes({f"module.{k}": v for k, v in state.items()}),
        "bare": lambda: tiny.save_bytes(state),
    }[layout]()
    source = tmp_path / "ckpt.pth.tar"
    source.write_bytes(data)
    out = tmp_path / "out.safetensors"
    assert cli_main(["convert", str(source), "--model", tiny.FILE_ENTRY, "-o", str(out)]) == 0
    assert f"{layout.split('-')[0]} layout" in capsys.readouterr().out
    assert_same_logits(cutmix_zoo.load(tiny.FILE_ENTRY, weights=out), state)
    assert_same_logits(cutmix_zoo.load(tiny.FILE_ENTRY, weights=source), state)  # originals load directly too


def test_convert_names_the_mismatch(tiny_registry, tmp_path, monkeypatch, capsys):
    state = tiny.state_dict(6)
    state["fc.weight"] = torch.zeros(100, state["fc.weight"].shape[1])
    source = tmp_path / "c100.pth"
    source.write_bytes(tiny.save_bytes(state))
    assert cli_main(["convert", str(source), "--model", tiny.FILE_ENTRY, "-o", str(tmp_path / "o.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "fc.weight (100, 28) vs (10, 28)" in err and str(source) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.safetensors").exists()


def test_download_verify_and_cache_commands(dropbox, isolated_env, monkeypatch, capsys):
    assert cli_main(["download", tiny.FOLDER_ENTRY, tiny.FILE_ENTRY, "--quiet"]) == 0
    assert dropbox.hits("/" + tiny.FOLDER_PATH) == 1 and dropbox.hits("/" + tiny.FILE_PATH) == 1
    capsys.readouterr()
    assert cli_main(["cache", "--json"]) == 0
    cache = json.loads(capsys.readouterr().out)
    assert {m["name"] for m in cache["models"]} == {tiny.FOLDER_ENTRY, tiny.FILE_ENTRY}
    assert cache["total_bytes"] == sum(m["bytes"] for m in cache["models"]) > 0
    assert cli_main(["verify"]) == 0
    assert capsys.readouterr().out.count("ok ") == 2
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert_same_logits(cutmix_zoo.load(tiny.FILE_ENTRY), dropbox.states["file"])
    cached = isolated_env / "zoo-cache" / tiny.FILE_ENTRY / "model.safetensors"
    cached.write_bytes(cached.read_bytes()[:-10] + b"0123456789")
    assert cli_main(["verify"]) == 1
    captured = capsys.readouterr()
    assert f"BAD {tiny.FILE_ENTRY}" in captured.out and "failed verification" in captured.err


# --- a cache that changed under the zoo -------------------------------------------------------

def _cached(entry: str) -> Path:
    return Path(cutmix_zoo.load(entry, progress=False).pretrained_cfg["source"])


def test_a_flipped_bit_in_a_cached_file_is_one_sentence_not_a_silent_load(dropbox, isolated_env):
    path = _cached(tiny.FILE_ENTRY)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10  # inside the last tensor's bytes: safetensors would load it silently
    path.write_bytes(bytes(data))
    with pytest.raises(cutmix_zoo.WeightsError, match="changed or corrupted; run `cutmix-zoo download --force"):
        cutmix_zoo.load(tiny.FILE_ENTRY, progress=False)


def test_another_file_of_the_same_shapes_in_its_place_is_refused(dropbox, isolated_env, tmp_path):
    from safetensors.torch import save_file

    path = _cached(tiny.FILE_ENTRY)
    other = tmp_path / "other.safetensors"
    save_file(tiny.state_dict(99), other)
    os.replace(other, path)
    with pytest.raises(cutmix_zoo.WeightsError, match="not the file that was written"):
        cutmix_zoo.load(tiny.FILE_ENTRY, progress=False)


def test_an_unchanged_cache_loads_without_hashing(dropbox, isolated_env, monkeypatch):
    _cached(tiny.FILE_ENTRY)
    from cutmix_zoo.hub import cache

    monkeypatch.setattr(cache, "sha256_file", lambda p: pytest.fail("a warm load hashed the file"))
    assert_same_logits(cutmix_zoo.load(tiny.FILE_ENTRY, progress=False), dropbox.states["file"])


def test_download_without_force_does_not_report_a_corrupt_file_as_done(dropbox, isolated_env, capsys):
    from cutmix_zoo.cli import main as cli_main

    path = _cached(tiny.FILE_ENTRY)
    marker_stamp = path.stat()
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10
    path.write_bytes(bytes(data))
    os.utime(path, ns=(marker_stamp.st_atime_ns, marker_stamp.st_mtime_ns))  # bit rot that keeps the mtime
    assert cli_main(["download", tiny.FILE_ENTRY, "--quiet"]) == 1
    assert "changed or corrupted" in capsys.readouterr().err
    assert cli_main(["download", "--force", tiny.FILE_ENTRY, "--quiet"]) == 0  # the repair verify recommends
    assert_same_logits(cutmix_zoo.load(tiny.FILE_ENTRY, progress=False), dropbox.states["file"])


def test_verify_does_not_call_a_file_without_its_record_ok(dropbox, isolated_env, capsys):
    from cutmix_zoo.cli import main as cli_main

    path = _cached(tiny.FILE_ENTRY)
    (path.parent / "source.json").unlink()
    assert cli_main(["verify"]) == 1
    assert "no conversion record" in capsys.readouterr().out


def test_force_download_of_a_model_not_on_the_hub_falls_back_to_the_original(dropbox, isolated_env, capsys):
    from cutmix_zoo.cli import main as cli_main

    assert cli_main(["download", tiny.FILE_ENTRY, "--quiet"]) == 0
    assert cli_main(["download", "--force", tiny.FILE_ENTRY, "--quiet"]) == 0, capsys.readouterr().err


def test_a_hub_load_also_fetches_config_json(env, hub, isolated_env):
    """The Hub counts a model's downloads by its config.json, so a load fetches it (and checks it) beside the weights."""
    from huggingface_hub import try_to_load_from_cache

    from cutmix_zoo.builder import resolve_config

    state = tiny.state_dict(1)
    config = resolve_config(tiny.FOLDER_ENTRY).to_dict()
    make_hub_repo(hub.mirrors, f"{env}/{tiny.FOLDER_ENTRY}", {"model.safetensors": save(state), "config.json": json.dumps(config).encode()})
    assert_same_logits(cutmix_zoo.load(tiny.FOLDER_ENTRY, progress=False), state)
    cached = try_to_load_from_cache(f"{env}/{tiny.FOLDER_ENTRY}", "config.json", cache_dir=str(isolated_env / "hf-home" / "hub"))
    assert isinstance(cached, str) and json.loads(Path(cached).read_text())["family"] == "pyramidnet"
