"""The load path's one decision, where the weights come from (``hub.source``): which source each argument and each
cache state picks, decided with no network call, and what is fetched for it is checked against the config it was
decided for, not looked up again."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

import pytest
import torch

import cutmix_zoo
from cutmix_zoo import registry
from cutmix_zoo.errors import InvalidArgumentError
from cutmix_zoo.hub.cache import hub_cache_dir, original_file
from cutmix_zoo.hub.fetch import fetch_file
from cutmix_zoo.hub.source import Source, entry_source, resolve_source
from cutmix_zoo.model_config import ModelConfig

import tiny

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection or name lookup fails the test: the resolver must decide from the arguments and local files."""
    def refuse(*args, **kwargs):
        pytest.fail(f"the resolver touched the network: {args[1:] or kwargs}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def hub_snapshot(repo: str, files: dict[str, bytes], commit: str = COMMIT, ref: str | None = "main") -> Path:
    """Files laid out as huggingface_hub's cache holds a download of ``repo`` at ``commit`` (``ref`` pointing to it)."""
    folder = Path(hub_cache_dir() or "") / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    if ref is not None:
        (folder / "refs").mkdir(exist_ok=True)
        (folder / "refs" / ref).write_text(commit)
    return snapshot


def converted_original(name: str) -> Path:
    path = original_file(registry.get_entry(name))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"converted")
    return path


def test_the_meta_device_reads_nothing_whatever_else_is_asked(tmp_path):
    for device in ("meta", torch.device("meta")):
        source = resolve_source("resnet50", weights=tmp_path / "absent.safetensors", device=device)
        assert (source.kind, source.file) == ("meta", None)
    assert resolve_source("resnet50", pretrained=False, device="meta").kind == "meta"


def test_a_given_file_is_the_source_as_written_and_pretrained_false_beside_it_is_refused(tmp_path):
    given = str(tmp_path / "w.safetensors")
    source = resolve_source("resnet50", pretrained=True, weights=given, device="cpu")
    assert source.kind == "file" and source.file is given
    entry = registry.get_entry("resnet50")
    assert source.entry is entry and source.cfg == ModelConfig.from_entry(entry) and source.cfg.name == "resnet50.cutmix_in1k"
    with pytest.raises(InvalidArgumentError, match="pretrained=False asks for random weights"):  # two sources asked for at once
        resolve_source("resnet50", pretrained=False, weights=given, device="cpu")


def test_pretrained_false_builds_at_random():
    source = resolve_source("resnet101", pretrained=False)
    assert (source.kind, source.file, source.entry.name) == ("none", None, "resnet101.cutmix_in1k")


def test_an_exported_folder_reads_its_own_file_and_config(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    cfg = ModelConfig.from_entry(registry.get_entry("resnet50")).replace(name="my-finetune", num_classes=7)
    (folder / "config.json").write_text(json.dumps(cfg.to_dict()))
    source = resolve_source(folder)
    assert (source.kind, source.file, source.entry) == ("folder", folder, None)
    assert (source.cfg.name, source.cfg.num_classes) == ("my-finetune", 7)
    assert resolve_source(folder, pretrained=False).kind == "none"


def test_a_bundled_entry_uses_its_packaged_file_even_with_force_and_refuses_a_revision():
    entry = registry.get_entry("pyramidnet20_a48.cutmix_shapes")
    for source in (resolve_source(entry.name), entry_source(entry, ModelConfig.from_entry(entry), force=True)):
        assert (source.kind, source.file) == ("bundled", entry.bundled_file)
    with pytest.raises(InvalidArgumentError, match="bundled with cutmix_zoo and has no Hub revisions"):  # one version only
        resolve_source(entry.name, revision="v1")


def test_nothing_cached_means_a_download_from_the_hub_at_the_revision_asked(tiny_registry):
    source = resolve_source(tiny.FILE_ENTRY)
    assert (source.kind, source.revision, source.force, source.file) == ("hub", None, False, None)
    pinned = resolve_source(tiny.FILE_ENTRY, revision="v2")
    assert (pinned.kind, pinned.revision) == ("hub", "v2")


def test_a_cached_hub_file_is_used_with_its_cached_config(tiny_registry):
    entry = registry.get_entry(tiny.FOLDER_ENTRY)
    snapshot = hub_snapshot(entry.hub_repo, {"model.safetensors": b"weights", "config.json": b"{}"})
    source = resolve_source(tiny.FOLDER_ENTRY)
    assert (source.kind, source.file, source.config) == ("hub_cache", snapshot / "model.safetensors", snapshot / "config.json")
    other = registry.get_entry(tiny.FILE_ENTRY)
    weights_only = hub_snapshot(other.hub_repo, {"model.safetensors": b"weights"})
    assert resolve_source(tiny.FILE_ENTRY).config is None and resolve_source(tiny.FILE_ENTRY).file == weights_only / "model.safetensors"


def test_a_cached_hub_file_answers_only_its_own_revision(tiny_registry):
    entry = registry.get_entry(tiny.FOLDER_ENTRY)
    snapshot = hub_snapshot(entry.hub_repo, {"model.safetensors": b"weights"}, ref="v1")
    assert resolve_source(tiny.FOLDER_ENTRY, revision="v1").file == snapshot / "model.safetensors"
    assert resolve_source(tiny.FOLDER_ENTRY, revision=COMMIT).kind == "hub_cache"
    assert resolve_source(tiny.FOLDER_ENTRY, revision=OTHER_COMMIT).kind == "hub"
    assert resolve_source(tiny.FOLDER_ENTRY).kind == "hub"  # "main" was never downloaded


def test_a_cached_converted_original_is_used_unless_a_revision_is_pinned_or_the_hub_has_a_copy(tiny_registry):
    path = converted_original(tiny.FILE_ENTRY)
    source = resolve_source(tiny.FILE_ENTRY)
    assert (source.kind, source.file, source.config) == ("original_cache", path, None)
    assert resolve_source(tiny.FILE_ENTRY, revision="v1").kind == "hub"
    snapshot = hub_snapshot(registry.get_entry(tiny.FILE_ENTRY).hub_repo, {"model.safetensors": b"weights"})
    assert resolve_source(tiny.FILE_ENTRY).file == snapshot / "model.safetensors"


def test_force_skips_what_is_cached(tiny_registry):
    converted_original(tiny.FILE_ENTRY)
    entry = registry.get_entry(tiny.FILE_ENTRY)
    source = entry_source(entry, ModelConfig.from_entry(entry), force=True)
    assert (source.kind, source.force) == ("hub", True)


def test_an_unknown_name_is_the_registry_error_and_a_source_cannot_be_changed():
    with pytest.raises(cutmix_zoo.UnknownModelError, match="resnet5O"):
        resolve_source("resnet5O")
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolve_source("resnet50", pretrained=False).kind = "hub"  # type: ignore[misc]


def test_a_cached_config_is_checked_against_the_config_the_source_was_decided_for(tiny_registry):
    """The fetch takes the source's config as it is and never resolves the name again: a config.json that matches the
    registry but not the source's config is refused, naming the source's values."""
    entry = registry.get_entry(tiny.FOLDER_ENTRY)
    cfg = ModelConfig.from_entry(entry)
    hub_snapshot(entry.hub_repo, {"model.safetensors": b"weights", "config.json": json.dumps(cfg.to_dict()).encode()})
    source = resolve_source(tiny.FOLDER_ENTRY)
    moved = dataclasses.replace(source, cfg=cfg.replace(num_classes=3))
    with pytest.raises(cutmix_zoo.WeightsError, match=r"describes num_classes 10, not .*'s num_classes 3"):
        fetch_file(moved)


def test_sources_that_name_no_registry_file_are_not_fetched(tmp_path):
    for source in (resolve_source("resnet50", device="meta"), resolve_source("resnet50", pretrained=False),
                   Source("file", ModelConfig.from_entry(registry.get_entry("resnet50")), file=tmp_path / "w.safetensors")):
        with pytest.raises(ValueError, match="names no registry file"):
            fetch_file(source)
