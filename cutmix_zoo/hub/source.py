"""Where a load's weights come from, decided once, before anything is read or fetched.

:func:`resolve_source` is to ``load`` what timm's ``_resolve_pretrained_source`` is to ``create_model``: a function of
the arguments that returns a :class:`Source` (the kind of source, the registry entry and the config it was decided
for, the file where there is one); :func:`.fetch.read_weights` then fetches or reads what it names, so nothing below
looks the name up again. :func:`entry_source` decides for a registry entry alone (``cutmix-zoo download``).

A Hub repo id (:func:`.repo.is_repo_id`) is the registry entry where it is the entry's own repo; any other repo is a
user's export, whose ``config.json`` is fetched here (the one network call of the resolver: the config decides the
network) and whose weights are fetched here too, through ``hf_hub_download``, where the load reads them.

The resolver makes no network call, reads no tensors and hashes nothing, but it does look at the local file system: at
whether a name is an exported folder, and at whether the Hub's cache or the zoo's cache already holds the entry's file
(``try_to_load_from_cache``, a file's existence). What is cached decides the source as surely as the arguments do
(a cached file is used with no network call), so the decision shows it. Whether a cached file is still the one that
was written, and whether its cached config.json describes this network, are checked when it is fetched, not here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from ..builder import read_config, resolve_name
from ..errors import InvalidArgumentError
from ..model_config import ModelConfig
from ..registry import Entry
from .cache import cached_hub_files, cached_original
from .repo import HubOptions, is_repo_id, registry_name_of, repo_config, repo_weights

SourceKind = Literal["meta", "none", "file", "folder", "bundled", "hub_cache", "original_cache", "hub"]


@dataclass(frozen=True)
class Source:
    """Where the weights of one load come from, and what they were decided for.

    ``kind`` is one of: ``"meta"`` (shapes only, on the meta device: nothing is read), ``"none"`` (``pretrained=False``:
    the network's own random initialisation), ``"file"`` (``weights=FILE``), ``"folder"`` (an exported folder's
    weights), ``"bundled"`` (the file shipped inside the package), ``"hub_cache"`` (the Hub's cached file, with its
    cached config.json in ``config`` where there is one), ``"original_cache"`` (the converted original in the zoo's
    cache) and ``"hub"`` (to be downloaded: the entry's Hub repo at ``revision``, else, with no revision pinned, the
    original release). ``cfg`` is the config of the name (the registry entry's or the folder's config.json), which the
    weights must match; ``entry`` is None for an exported folder (or a user's Hub repo, fetched as one); ``force``
    downloads again what is cached; ``hub`` holds the ``hf_hub_download`` options of the load.
    """

    kind: SourceKind
    cfg: ModelConfig
    entry: Entry | None = None
    file: str | os.PathLike | None = None
    config: Path | None = None
    revision: str | None = None
    force: bool = False
    hub: HubOptions = HubOptions()


def resolve_source(name: str | os.PathLike, pretrained: bool = True, weights: str | os.PathLike | None = None,
                   revision: str | None = None, device: torch.device | str | None = None,
                   hub: HubOptions | None = None) -> Source:
    """Where ``load(name, pretrained, weights=, revision=, device=)`` takes its weights from, with the name resolved once.

    The meta device reads nothing; a given ``weights`` file comes next (``pretrained=False`` with ``weights`` asks for
    two things at once and is refused in one sentence); then ``pretrained=False`` builds at random; an exported folder
    reads its own file, a user's Hub repo its downloaded snapshot; a registry entry (or its own Hub repo) is decided by
    :func:`entry_source`. An unknown name or an unreadable folder config is the error
    :func:`~cutmix_zoo.builder.resolve_name` raises.
    """
    if weights is not None and not pretrained:
        raise InvalidArgumentError("pretrained=False asks for random weights and weights= for the file's, which contradict each "
                                   "other: drop one of them.")
    hub = hub or HubOptions()
    if is_repo_id(name):
        registry_name = registry_name_of(str(name))
        if registry_name is None:
            return _repo_source(str(name), pretrained, weights, revision, device, hub)
        name = registry_name
    entry, cfg = resolve_name(name)
    early = _without_download(cfg, entry, pretrained, weights, device)
    if early is not None:
        return early
    if entry is None:
        return Source("folder", cfg, file=name)
    return entry_source(entry, cfg, revision, hub.force_download, hub)


def _without_download(cfg: ModelConfig, entry: Entry | None, pretrained: bool, weights: str | os.PathLike | None,
                      device: torch.device | str | None) -> Source | None:
    """The sources that fetch nothing (the meta device, a given file, random weights), else None."""
    if device is not None and torch.device(device).type == "meta":
        return Source("meta", cfg, entry)
    if weights is not None:
        return Source("file", cfg, entry, file=weights)
    if not pretrained:
        return Source("none", cfg, entry)
    return None


def _repo_source(repo_id: str, pretrained: bool, weights: str | os.PathLike | None, revision: str | None,
                 device: torch.device | str | None, hub: HubOptions) -> Source:
    """A user's Hub repo, read as an exported folder: its config.json, then (where the load reads them) its weights."""
    cfg = read_config(repo_config(repo_id, revision, hub))
    early = _without_download(cfg, None, pretrained, weights, device)
    return early or Source("folder", cfg, file=repo_weights(repo_id, revision, hub), revision=revision, hub=hub)


def entry_source(entry: Entry, cfg: ModelConfig, revision: str | None = None, force: bool = False,
                 hub: HubOptions | None = None) -> Source:
    """Where a registry entry's weights come from: the bundled file, else (unless ``force``) a cached file, the Hub's
    (in ``hub``'s cache folder) before the zoo's converted original (which answers no pinned ``revision``), else a
    download. A bundled model has one version only, so a ``revision`` for it is refused in one sentence rather than
    ignored."""
    hub = hub or HubOptions()
    if entry.bundled_file is not None:
        if revision is not None:
            raise InvalidArgumentError(f"{entry.name} is bundled with cutmix_zoo and has no Hub revisions, so revision={revision!r} "
                                       "cannot pin it: drop revision.")
        return Source("bundled", cfg, entry, file=entry.bundled_file)
    if not force:
        found = cached_hub_files(entry, revision, hub.cache())
        if found is not None:
            return Source("hub_cache", cfg, entry, file=found[0], config=found[1], revision=revision, hub=hub)
        original = cached_original(entry, revision)
        if original is not None:
            return Source("original_cache", cfg, entry, file=original)
    return Source("hub", cfg, entry, revision=revision, force=force, hub=hub)
