"""Model cards: Hub-ready README.md files generated from the registry or from an exported config.

The YAML front matter is written by huggingface_hub's ModelCardData/EvalResult, so the Hub reads
the license, tags, datasets and the model-index (top-1/top-5 accuracy with the source of each
number). A registry card shows the release's numbers; an export's card shows only what its own
config says was measured (nothing for random, re-headed or feature-only weights, no model-index
for a run on synthetic data). Every snippet runs as written where the card is read: a registry card loads by name
and by the entry's Hub repo id, and shows torch.hub from a clone of the repository; an export's card loads the repo it
was published to (or, before that, the folder it was written to), and through timm where timm builds the network.
A headless export (``num_classes=0``, ``features_only``) is tagged ``image-feature-extraction``, the Hub's task for
backbones. ``cutmix-zoo cards`` writes one card per registry entry into ``model_cards/``; a test fails when a
committed card differs from what the registry generates.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

from .. import registry
from ..builder import config_of, count_parameters, is_exported_folder, meta_model, resolve_config
from ..model_config import ModelConfig
from ..models import FAMILIES
from ..recipes import recipe_for, recipe_text
from .cache import check_hub_endpoint
from .timm_names import timm_architecture

_GPUS = {"imagenet-1k": 4, "cifar-100": 2, "cifar-10": 2}


def _acc(err: float | None) -> float | None:
    return None if err is None else round(100 - err, 2)


def front_matter(cfg: ModelConfig, source_url: str | None = None, base_model: str | None = None) -> str:
    """The card's YAML front matter: license, library, tags, datasets and, where a result was measured on a Hub
    dataset, the model-index (``source_url`` names where the numbers come from)."""
    check_hub_endpoint()
    from huggingface_hub import EvalResult, ModelCardData

    data = registry.DATASETS.get(cfg.dataset)
    measured = registry.DATASETS.get(cfg.eval_dataset or "")
    results = []
    if measured is not None and measured.hf_id:
        for metric, err in (("top-1 accuracy", cfg.top1_err), ("top-5 accuracy", cfg.top5_err)):
            if err is not None:
                results.append(EvalResult(task_type="image-classification", dataset_type=measured.hf_id, dataset_name=measured.name,
                                           dataset_split="validation" if measured.name == "imagenet-1k" else "test",
                                           metric_type="accuracy", metric_name=metric, metric_value=_acc(err),
                                           source_name=cfg.err_source if source_url else None, source_url=source_url))
    task = "image-classification" if cfg.num_classes else "image-feature-extraction"  # a headless export is a backbone
    card = ModelCardData(
        license=cfg.license,
        library_name=registry.LIBRARY_NAME,
        tags=[task, "cutmix", cfg.family, "pytorch", "safetensors"],
        datasets=[data.hf_id] if data is not None and data.hf_id else None,
        base_model=base_model,
        pipeline_tag=task,
        model_name=cfg.name,
        eval_results=results or None,
    )
    return f"---\n{card.to_yaml()}\n---\n"


def _feature_line(cfg: ModelConfig) -> str:
    points = FAMILIES[cfg.family].feature_points(meta_model(cfg))
    return f"channels {[c for _, c, _ in points]} at reductions {[r for _, _, r in points]}"


def _results(entry: registry.Entry) -> str:
    rows = [f"| **{entry.name}** ({entry.method}) | {registry.format_err(entry.top1_err)} | "
            f"{registry.format_err(entry.top5_err)} | {entry.err_source} |"]
    if entry.paper_top1_err is not None:
        rows.append(f"| {entry.name}: the paper's figure ({entry.method}) | {registry.format_err(entry.paper_top1_err)} | "
                    f"{registry.format_err(entry.paper_top5_err)} | {entry.paper_err_source} |")
    baseline = registry.ENTRIES.get(f"{entry.arch}.baseline_{entry.tag.rsplit('_', 1)[1]}")
    if baseline is not None and baseline is not entry:
        rows.append(f"| {baseline.name} (baseline, same table) | {registry.format_err(baseline.top1_err)} | "
                    f"{registry.format_err(baseline.top5_err)} | {baseline.err_source} |")
    text = "| model | top-1 error % | top-5 error % | source |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"
    if baseline is None:
        text += "\nThe original release has no baseline file for this architecture, so no baseline is listed.\n"
    if entry.notes:
        text += f"\n{entry.notes}\n"
    return text


def regenerate_command(entry: registry.Entry) -> str:
    """The exact command that regenerates ``entry`` with the bundled trainer."""
    if entry.bundled:
        return (f"OMP_NUM_THREADS=1 cutmix-zoo train --recipe {entry.name} --device cpu --workers 0 --output runs/{entry.name}\n"
                f"cp runs/{entry.name}/export/model.safetensors cutmix_zoo/data/{entry.name}.safetensors")
    return f"torchrun --nproc-per-node {_GPUS[entry.dataset]} -m cutmix_zoo.train --recipe {entry.name} --data /path/to/{entry.data.key}"


def _training(entry: registry.Entry) -> str:
    recipe, _ = recipe_for(entry.name)
    where = "on a CPU" if entry.bundled else f"on {_GPUS[entry.dataset]} GPUs"
    origin = "Recipe" if entry.bundled else "Original recipe"
    return (f"{origin}: {recipe_text(recipe, where)}\n\nRegenerate it with the bundled trainer:\n\n"
            f"```bash\n{regenerate_command(entry)}\n```\n")


def _provenance(entry: registry.Entry) -> str:
    if entry.bundled:
        return (f"Not part of the original release: trained by cutmix_zoo's bundled trainer on Shapes-10, a dataset generated "
                f"from a seed (`cutmix_zoo.shapes`), and shipped inside the package as "
                f"`cutmix_zoo/data/{entry.name}.safetensors` (sha256 `{entry.sha256}`).\n")
    url = registry.ORIGINAL_BASE_URL + cast(str, entry.original_path) + "?dl=1"  # every entry not bundled has one
    kind = "a shared folder (downloaded as a zip holding `model_best.pth.tar`)" if entry.packaging == "folder_zip" else "a single file"
    layouts = {"trainpy": "train.py's checkpoint dict with DataParallel `module.` keys", "module": "a flat state dict with `module.` keys",
               "bare": "a bare torchvision state dict"}
    sha = f"`{entry.sha256}`" if entry.sha256 else "not yet recorded (cutmix_zoo records it on first download; `cutmix-zoo info` shows it)"
    return (
        f"- Original file: <{url}>, {kind}.\n- Layout: {layouts[entry.layout]}, read with `torch.load(weights_only=True)` "
        f"and converted once to safetensors.\n- sha256 of the original download: {sha}.\n"
        f"- Code of the original: <{registry.CODE_URL}>.\n"
    )


def _usage(target: str, cfg: ModelConfig, first: str = "", last: str = "") -> str:
    """The card's Usage section: ``first`` (lines before the loads of ``target``), the loads, then ``last``."""
    other = 5 if cfg.num_classes == 10 else 10  # a head size the model does not have, so the line shows a fresh head
    head = f"the {cfg.num_classes}-way classifier" if cfg.num_classes else "pooled embeddings (no classifier)"
    return ("## Usage\n\n```python\nimport torch, cutmix_zoo\n\n" + first
            + f'model = cutmix_zoo.load("{target}")                       # {head}\n'
            f'backbone = cutmix_zoo.load("{target}", features_only=True)  # list of feature maps\n'
            f'model = cutmix_zoo.load("{target}", num_classes={other})        # fresh {other}-way head, ready to fine-tune\n'
            f'embedder = cutmix_zoo.load("{target}", num_classes=0)     # pooled embeddings\n'
            f'preprocess = cutmix_zoo.transforms("{target}")\n'
            + last + "```\n\n"
            f"Feature maps (`features_only=True`): {_feature_line(cfg)}.\n")


def _registry_lines(entry: registry.Entry) -> tuple[str, str]:
    """The registry card's lines around the loads by name: the load by Hub repo id, and torch.hub from a clone."""
    by_repo = f'model = cutmix_zoo.load("{entry.hub_repo}")  # by its Hub repo id, as from_pretrained takes one\n'
    hub = ("# torch.hub, from the root of a clone of the cutmix_zoo repository (the folder holding hubconf.py):\n"
           f'model = torch.hub.load(".", "{entry.name.replace(".", "_")}", source="local", features_only=True)\n')
    return by_repo, hub


def _export_lines(cfg: ModelConfig, repo_id: str | None) -> str:
    """The export card's timm route: timm builds the ResNets from the published repo's config.json."""
    timm_name = timm_architecture(cfg)
    if repo_id is None or timm_name is None:
        return ""
    return ("\nimport timm\n\n"
            f'model = timm.create_model("hf-hub:{repo_id}", pretrained=True)  # timm\'s {timm_name}, the same weights\n')


def _preprocessing(cfg: ModelConfig) -> str:
    return (f"## Preprocessing\n\nResize the shorter side to {cfg.resize} ({cfg.interpolation}), centre-crop "
            f"{cfg.input_size[-1]}, scale to [0, 1], normalise with mean {tuple(round(m, 4) for m in cfg.mean)} and std "
            f"{tuple(round(s, 4) for s in cfg.std)}.\n")


def _license() -> str:
    return f"## License and citation\n\nMIT (the original release: Copyright (c) 2019-present NAVER Corp.).\n\n```bibtex\n{registry.CITATION}\n```\n"


def registry_card(name: str) -> str:
    """The card of a registry entry: the release's numbers beside its baseline, its recipe and provenance."""
    entry = registry.get_entry(name)
    cfg = ModelConfig.from_entry(entry)
    data = entry.data
    source_url = registry.PAPER_URL if entry.err_source.startswith("paper") else registry.CODE_URL
    parts = [
        front_matter(cfg, source_url),
        f"# {entry.name}\n\n{entry.architecture.description}, trained on {data.name} ({data.num_classes} classes) with {entry.method}. "
        f"From {registry.PAPER}, served by cutmix_zoo as safetensors weights that load into standard PyTorch modules.\n",
        "## Results\n\n" + _results(entry),
        _usage(entry.name, cfg, *_registry_lines(entry)),
        _preprocessing(cfg),
        "## Training\n\n" + _training(entry),
        "## Provenance\n\n" + _provenance(entry),
        _license(),
    ]
    return "\n".join(parts)


def export_card(cfg: ModelConfig, base_model: str | None = None, target: str = ".", repo_id: str | None = None) -> str:
    """The card of an exported folder: only what its config says (results it measured, the run's recipe). Its
    snippets load ``repo_id`` where the folder is published there, else ``target`` (the folder as it was written)."""
    arch = registry.ARCHITECTURES.get(cfg.architecture or "")
    what = arch.description if arch else f"{cfg.family} {cfg.arch_args}"
    data = registry.DATASETS.get(cfg.dataset)
    trained_on = f"{data.name} ({data.num_classes} classes)" if data else f"an ImageFolder dataset ({cfg.num_classes} classes)"
    if cfg.top1_err is not None:
        results = (f"| model | top-1 error % | top-5 error % | source |\n|---|---|---|---|\n"
                   f"| **{cfg.name}** | {registry.format_err(cfg.top1_err)} | {registry.format_err(cfg.top5_err)} | "
                   f"{cfg.err_source or 'not stated'} |\n")
    else:
        results = "No result was measured for these weights.\n"
    notes = []
    if cfg.family != "resnet":
        notes.append("This is a cutmix_zoo architecture: load it with `cutmix_zoo.load`; timm has no builder for it.")
    parts = [
        front_matter(cfg, None, base_model),
        f"# {cfg.name}\n\n{what}, {'trained on ' + trained_on if cfg.training else 'for inputs of ' + trained_on}"
        + (f" with {cfg.method}" if cfg.method and cfg.training else "") + ". Exported by cutmix_zoo.\n"
        + ("\n" + " ".join(notes) + "\n" if notes else ""),
        "## Results\n\n" + results,
        _usage(repo_id or target, cfg, "", _export_lines(cfg, repo_id)),
        _preprocessing(cfg),
        "## Training\n\n" + (cfg.training or "Not trained by cutmix_zoo's trainer; see config.json beside this card.\n"),
        f"## License and citation\n\nLicense: {cfg.license}. The architecture and training recipes follow {registry.PAPER}.\n\n"
        f"```bibtex\n{registry.CITATION}\n```\n",
    ]
    return "\n".join(parts)


def render_card(cfg_or_name: ModelConfig | dict[str, Any] | str | os.PathLike, target: str = ".",
                repo_id: str | None = None) -> str:
    """The card of a registry name, or of an exported model (a folder, its config, or a ``pretrained_cfg``), whose
    snippets load ``repo_id`` where it is published there, else the folder ``target``."""
    if isinstance(cfg_or_name, (str, os.PathLike)) and not is_exported_folder(cfg_or_name):
        return registry_card(str(cfg_or_name))
    cfg = resolve_config(cfg_or_name) if isinstance(cfg_or_name, (str, os.PathLike)) else config_of(cfg_or_name)
    return export_card(cfg, cfg.extra.get("base_model"), target, repo_id)


def write_cards(out_dir: str | Path = "model_cards") -> list[Path]:
    """Write ``<out_dir>/<name>.md`` for every registry entry; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in registry.list_models():
        path = out / f"{name}.md"
        path.write_text(registry_card(name))
        paths.append(path)
    return paths


def model_table() -> str:
    """The README's markdown table of every registry model (``cutmix-zoo list --markdown`` prints it)."""
    defaults = registry.default_names()
    lines = ["| name | dataset | method | top-1 err % | top-5 err % | params | numbers from |", "|---|---|---|---|---|---|---|"]
    for name in registry.list_models():
        e = registry.get_entry(name)
        shown = f"`{name}`" + (" (default)" if name in defaults else "")
        params = f"{count_parameters(resolve_config(name)) / 1e6:.1f}M"
        source = e.err_source
        if e.paper_top1_err is not None:
            source += f"; {e.paper_err_source}: {registry.format_err(e.paper_top1_err)} / {registry.format_err(e.paper_top5_err)}"
        lines.append(f"| {shown} | {e.dataset} | {e.method} | {registry.format_err(e.top1_err)} | {registry.format_err(e.top5_err)} | "
                     f"{params} | {source} |")
    return "\n".join(lines) + "\n"
