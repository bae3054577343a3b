"""load("org/repo"): the registry's own repos and users' published exports, by repo id, with from_pretrained's
download arguments behaving as in hf_hub_download, against the olah hub on loopback."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import torch

import cutmix_zoo
from cutmix_zoo.hub.export import save_pretrained

import tiny
from servers import delaying_proxy, make_hub_repo

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(X)


def _one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and ". " not in message


def _publish(hub, tmp_path: Path, seed: int, repo_id: str | None = None) -> tuple[str, dict, str]:
    """A fine-tune exported as `cutmix-zoo publish` uploads it, committed to a fresh user repo: (repo id, state, sha)."""
    from safetensors.torch import save_file

    state = tiny.state_dict(seed)
    weights = tmp_path / f"w{seed}.safetensors"
    save_file(state, weights)
    folder = save_pretrained(cutmix_zoo.load(tiny.FILE_ENTRY, weights=weights), tmp_path / f"export{seed}")
    repo_id = repo_id or f"someone{uuid.uuid4().hex[:8]}/shapes-finetune"
    sha = make_hub_repo(hub.mirrors, repo_id, {p.name: p for p in folder.iterdir()})
    return repo_id, state, sha


def _registry_repo(hub, org: str, tmp_path: Path, seed: int) -> tuple[str, dict]:
    """The tiny entry's own Hub repo holding its export (weights and config.json), as the registry's repos do."""
    _, state, _ = _publish(hub, tmp_path, seed, repo_id=f"{org}/{tiny.FILE_ENTRY}")
    return f"{org}/{tiny.FILE_ENTRY}", state


def test_a_registry_repo_id_is_its_registry_entry(env, hub, tmp_path):
    _, state = _registry_repo(hub, env, tmp_path, 31)
    model = cutmix_zoo.load(f"{env}/{tiny.FILE_ENTRY}", progress=False)
    assert model.pretrained_cfg["name"] == tiny.FILE_ENTRY and model.pretrained_cfg["top1_err"] == 12.0
    assert torch.equal(_logits(model), tiny.logits(state, X))


def test_a_published_fine_tune_loads_by_repo_id(tiny_registry, hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    repo_id, state, _ = _publish(hub, tmp_path, seed=32)
    model = cutmix_zoo.load(repo_id, progress=False)
    assert torch.equal(_logits(model), tiny.logits(state, X)) and "hf-home" in model.pretrained_cfg["source"]
    assert len(cutmix_zoo.load(repo_id, features_only=True)(X)) == 4
    assert cutmix_zoo.load(repo_id, device="meta").fc.weight.is_meta


@pytest.mark.slow
def test_revision_pins_a_commit_of_a_users_repo(tiny_registry, hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    repo_id, first, sha = _publish(hub, tmp_path, seed=33)
    _, second, _ = _publish(hub, tmp_path, seed=34, repo_id=repo_id)
    assert torch.equal(_logits(cutmix_zoo.load(repo_id, revision=sha)), tiny.logits(first, X))
    assert torch.equal(_logits(cutmix_zoo.load(repo_id)), tiny.logits(second, X))
    with pytest.raises((cutmix_zoo.DownloadError, cutmix_zoo.UnknownModelError), match="revision 'no-such-branch'") as e:
        cutmix_zoo.load(repo_id, revision="no-such-branch")  # the Hub says "no such revision"; olah, "no such repo"
    assert _one_sentence(str(e.value))


@pytest.mark.slow
@pytest.mark.parametrize("registry_repo", [False, True], ids=["user-repo", "registry-repo"])
def test_cache_dir_local_files_only_and_force_download(env, hub, tmp_path, monkeypatch, registry_repo):
    if registry_repo:
        repo_id, state = _registry_repo(hub, env, tmp_path, 35)
    else:
        repo_id, state, _ = _publish(hub, tmp_path, seed=35)
    cache = tmp_path / "my-cache"
    with delaying_proxy(hub.endpoint) as proxy:
        monkeypatch.setenv("HF_ENDPOINT", proxy.url)
        with pytest.raises(cutmix_zoo.DownloadError, match="local_files_only") as e:
            cutmix_zoo.load(repo_id, cache_dir=cache, local_files_only=True)
        assert _one_sentence(str(e.value)) and proxy.requests == []  # nothing asked of the Hub
        model = cutmix_zoo.load(repo_id, cache_dir=cache, progress=False)
        assert str(cache) in model.pretrained_cfg["source"] and torch.equal(_logits(model), tiny.logits(state, X))
        assert not (tmp_path / "hf-home" / "hub").exists() or not any((tmp_path / "hf-home" / "hub").glob("models--*"))
        got = proxy.count("GET", "/model.safetensors")
        assert got >= 1
        cutmix_zoo.load(repo_id, cache_dir=cache, progress=False)
        assert proxy.count("GET", "/model.safetensors") == got  # cached: not downloaded again
        cutmix_zoo.load(repo_id, cache_dir=cache, force_download=True, progress=False)
        assert proxy.count("GET", "/model.safetensors") == 2 * got
        asked = len(proxy.requests)
        offline = cutmix_zoo.load(repo_id, cache_dir=cache, local_files_only=True)
        assert len(proxy.requests) == asked and torch.equal(_logits(offline), tiny.logits(state, X))


@pytest.mark.slow
def test_token_is_sent_as_hf_hub_download_sends_it(tiny_registry, hub, tmp_path, monkeypatch):
    repo_id, _, _ = _publish(hub, tmp_path, seed=36)
    monkeypatch.setenv("HF_TOKEN", "hf_from_the_environment")
    with delaying_proxy(hub.endpoint) as proxy:
        monkeypatch.setenv("HF_ENDPOINT", proxy.url)
        cutmix_zoo.load(repo_id, token="hf_given", progress=False, force_download=True)
        given = list(proxy.requests)
        cutmix_zoo.load(repo_id, token=False, progress=False, force_download=True)
        none = proxy.requests[len(given):]
    assert given and all("authorization: bearer hf_given" in r.lower() for r in given)
    assert none and not any("authorization" in r.lower() for r in none)


def test_a_repo_that_does_not_exist_is_one_sentence(tiny_registry, hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    with pytest.raises(cutmix_zoo.UnknownModelError, match="has no repo nobody/nothing-here") as e:
        cutmix_zoo.load("nobody/nothing-here")
    assert _one_sentence(str(e.value))


def test_an_existing_path_with_one_slash_is_a_folder_not_a_repo(tiny_registry, tmp_path, monkeypatch):
    folder = save_pretrained(cutmix_zoo.load(tiny.FILE_ENTRY, pretrained=False), tmp_path / "org" / "repo")
    monkeypatch.chdir(tmp_path)
    assert cutmix_zoo.load("org/repo").pretrained_cfg["source"] == "org/repo"
    assert folder.is_dir()


def test_an_unreachable_hub_fails_fast_or_serves_the_cached_snapshot(tiny_registry, hub, tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    repo_id, state, _ = _publish(hub, tmp_path, seed=37)
    cutmix_zoo.load(repo_id, progress=False)  # cached now
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    started = time.monotonic()
    model = cutmix_zoo.load(repo_id)  # the cached snapshot, as hf_hub_download falls back to it
    assert time.monotonic() - started < 3 and torch.equal(_logits(model), tiny.logits(state, X))
    started = time.monotonic()
    with pytest.raises(cutmix_zoo.DownloadError, match="could not be reached \\(the connection was refused\\)") as e:
        cutmix_zoo.load("someone/never-cached")
    assert time.monotonic() - started < 3 and _one_sentence(str(e.value))  # no half-minute of retries
