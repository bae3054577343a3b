"""Model cards: Hub-ready README.md files generated from the registry (or from an exported config).

The YAML front matter is written by huggingface_hub's ModelCardData/EvalResult, so the Hub reads
the license, tags, datasets and the model-index (top-1/top-5 accuracy with the source of each
number). ``cutmix-zoo cards`` writes one card per registry entry into ``model_cards/``; a test
fails when a committed card differs from what the registry generates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import registry

HUB_REPO_PLACEHOLDER = "<owner>/cutmix-zoo"
_GPUS = {"imagenet-1k": 4, "cifar-100": 2, "cifar-10": 2}


def _acc(err: float | None) -> float | None:
    return None if err is None else round(100 - err, 2)


def _front_matter(cfg: dict[str, Any], entry: registry.Entry | None) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    data = registry.DATASETS[cfg["dataset"]]
    results = []
    top1, top5 = (entry.top1_err, entry.top5_err) if entry else (cfg.get("top1_err"), cfg.get("top5_err"))
    source = entry.err_source if entry else cfg.get("err_source", "measured by cutmix_zoo")
    source_url = registry.PAPER_URL if entry and entry.err_source.startswith("paper") else (registry.CODE_URL if entry else None)
    for metric, err in (("top-1 accuracy", top1), ("top-5 accuracy", top5)):
        if err is not None:
            results.append(EvalResult(task_type="image-classification", dataset_type=data.hf_id, dataset_name=data.name,
                                       dataset_split="validation" if data.name == "imagenet-1k" else "test",
                                       metric_type="accuracy", metric_name=metric, metric_value=_acc(err),
                                       source_name=source if source_url else None, source_url=source_url))
    family = cfg["family"]
    card = ModelCardData(
        license=registry.LICENSE,
        library_name="cutmix-zoo",
        tags=["image-classification", "cutmix", family, "pytorch", "safetensors"],
        datasets=[data.hf_id],
        pipeline_tag="image-classification",
        model_name=cfg["name"],
        eval_results=results or None,
    )
    return f"---\n{card.to_yaml()}\n---\n"


def _feature_line(cfg: dict[str, Any]) -> str:
    from .api import _build_on_meta
    from .models import FAMILIES

    points = FAMILIES[cfg["family"]].feature_points(_build_on_meta(cfg, cfg["num_classes"]))
    return f"channels {[c for _, c, _ in points]} at reductions {[r for _, _, r in points]}"


def _results(entry: registry.Entry) -> str:
    rows = [f"| **{entry.name}** ({entry.method}) | {registry.format_err(entry.top1_err)} | {registry.format_err(entry.top5_err)} | {entry.err_source} |"]
    if entry.paper_top1_err is not None:
        rows.append(f"| {entry.name}: the paper's figure ({entry.method}) | {registry.format_err(entry.paper_top1_err)} | "
                    f"{registry.format_err(entry.paper_top5_err)} | {entry.paper_err_source} |")
    baseline = registry.ENTRIES.get(f"{entry.arch}.baseline_{entry.tag.rsplit('_', 1)[1]}")
    if baseline is not None and baseline is not entry:
        rows.append(f"| {baseline.name} (baseline, same table) | {registry.format_err(baseline.top1_err)} | {registry.format_err(baseline.top5_err)} | {baseline.err_source} |")
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
    return f"torchrun --nproc-per-node {_GPUS[entry.dataset]} -m cutmix_zoo.train --recipe {entry.name} --data /path/to/{entry.data.hf_id}"


def _training(entry: registry.Entry) -> str:
    from .recipes import recipe_for

    recipe, _ = recipe_for(entry.name)
    where = "on a CPU" if entry.bundled else f"on {_GPUS[entry.dataset]} GPUs"
    schedule = f"x{recipe.lr_gamma} every {recipe.lr_step} epochs" if recipe.lr_step else \
        f"x{recipe.lr_gamma} at {', '.join(f'{int(m * 100)}%' for m in recipe.lr_milestones)} of training"
    if recipe.mix == "none":
        mixing = "none"
    elif recipe.mix == "cutout":
        mixing = f"cutout (a {recipe.cutout_size}-pixel square, probability {recipe.mix_prob})"
    else:
        mixing = f"{recipe.mix} (beta {recipe.beta}, probability {recipe.mix_prob}, applied at: {recipe.mix_layers})"
    extra = []
    if recipe.label_smoothing:
        extra.append(f"label smoothing {recipe.label_smoothing}")
    if recipe.dropblock:
        extra.append(f"DropBlock {recipe.dropblock} (block {recipe.dropblock_size})")
    origin = "Recipe" if entry.bundled else "Original recipe"
    return (
        f"{origin}: {recipe.epochs} epochs, global batch {recipe.batch_size} {where}, SGD with Nesterov momentum "
        f"{recipe.momentum}, weight decay {recipe.weight_decay}, learning rate {recipe.lr} ({schedule}); mixing: {mixing}"
        + (f"; {', '.join(extra)}" if extra else "") + ".\n\nRegenerate it with the bundled trainer:\n\n"
        f"```bash\n{regenerate_command(entry)}\n```\n"
    )


def _provenance(entry: registry.Entry) -> str:
    if entry.bundled:
        return (f"Not part of the original release: trained by cutmix_zoo's bundled trainer on Shapes-10, a dataset generated "
                f"from a seed (`cutmix_zoo.train.shapes`), and shipped inside the package as "
                f"`cutmix_zoo/data/{entry.name}.safetensors` (sha256 `{entry.sha256}`).\n")
    url = registry.ORIGINAL_BASE_URL + entry.original_path + "?dl=1"
    kind = "a shared folder (downloaded as a zip holding `model_best.pth.tar`)" if entry.packaging == "folder_zip" else "a single file"
    layouts = {"trainpy": "train.py's checkpoint dict with DataParallel `module.` keys", "module": "a flat state dict with `module.` keys",
               "bare": "a bare torchvision state dict"}
    sha = f"`{entry.sha256}`" if entry.sha256 else "not yet recorded (cutmix_zoo records it on first download; `cutmix-zoo info` shows it)"
    return (
        f"- Original file: <{url}>, {kind}.\n- Layout: {layouts[entry.layout]}, read with `torch.load(weights_only=True)` "
        f"and converted once to safetensors.\n- sha256 of the original download: {sha}.\n"
        f"- Code of the original: <{registry.CODE_URL}>.\n"
    )


def render_card(cfg_or_name: dict[str, Any] | str) -> str:
    """The model card of a registry name, or of an exported model's config (its ``pretrained_cfg``)."""
    if isinstance(cfg_or_name, str):
        from .api import resolve_config

        cfg = resolve_config(cfg_or_name)
    else:
        cfg = cfg_or_name
    # A trainer export (it carries its recipe) is described by its own run, even under a registry name.
    entry = None if "train_recipe" in cfg else registry.ENTRIES.get(cfg.get("name", ""))
    name = cfg["name"]
    data = registry.DATASETS[cfg["dataset"]]
    arch = registry.ARCHITECTURES.get(cfg.get("architecture") or "")
    what = arch.description if arch else f"{cfg['family']} {cfg['arch_args']}"
    target = name if entry else "path/to/this/folder"
    hub_line = f'model = torch.hub.load("{HUB_REPO_PLACEHOLDER}", "{name.replace(".", "_")}", features_only=True)\n' if entry else ""
    method = entry.method if entry else cfg.get("method", "the bundled trainer")
    parts = [
        _front_matter(cfg, entry),
        f"# {name}\n\n{what}, trained on {data.name} ({data.num_classes} classes) with {method}. "
        f"From {registry.PAPER}, served by cutmix_zoo as safetensors weights that load into standard PyTorch modules.\n",
        "## Results\n\n" + (_results(entry) if entry else
                            f"| model | top-1 error % | top-5 error % | source |\n|---|---|---|---|\n"
                            f"| **{name}** | {registry.format_err(cfg.get('top1_err'))} | {registry.format_err(cfg.get('top5_err'))} | {cfg.get('err_source', 'not evaluated')} |\n"),
        "## Usage\n\n```python\nimport torch, cutmix_zoo\n\n"
        f'model = cutmix_zoo.load("{target}")                       # the {data.num_classes}-way classifier\n'
        f'backbone = cutmix_zoo.load("{target}", features_only=True)  # list of feature maps\n'
        f'model = cutmix_zoo.load("{target}", num_classes=10)       # fresh head, ready to fine-tune\n'
        f'embedder = cutmix_zoo.load("{target}", num_classes=0)     # pooled embeddings\n'
        + hub_line + "```\n\n"
        f"Feature maps (`features_only=True`): {_feature_line(cfg)}.\n",
        f"## Preprocessing\n\nResize the shorter side to {cfg['resize']} ({cfg['interpolation']}), centre-crop "
        f"{cfg['input_size'][-1]}, scale to [0, 1], normalise with mean {tuple(round(m, 4) for m in cfg['mean'])} and std "
        f"{tuple(round(s, 4) for s in cfg['std'])}: `cutmix_zoo.transforms(\"{name}\")`.\n",
        "## Training\n\n" + (_training(entry) if entry else cfg.get("training", "See the config.json beside this card.\n")),
        "## Provenance\n\n" + (_provenance(entry) if entry else "Exported by cutmix_zoo from a model trained with its bundled trainer.\n"),
        f"## License and citation\n\nMIT (the original release: Copyright (c) 2019-present NAVER Corp.).\n\n```bibtex\n{registry.CITATION}\n```\n",
    ]
    return "\n".join(parts)


def write_cards(out_dir: str | Path = "model_cards") -> list[Path]:
    """Write ``<out_dir>/<name>.md`` for every registry entry; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in registry.list_models():
        path = out / f"{name}.md"
        path.write_text(render_card(name))
        paths.append(path)
    return paths


def model_table() -> str:
    """The README's markdown table of every registry model (``cutmix-zoo list --markdown`` prints it)."""
    from .api import count_parameters

    defaults = registry.default_names()
    lines = ["| name | dataset | method | top-1 err % | top-5 err % | params | numbers from |", "|---|---|---|---|---|---|---|"]
    for name in registry.list_models():
        e = registry.get_entry(name)
        shown = f"`{name}`" + (" (default)" if name in defaults else "")
        params = f"{count_parameters(name) / 1e6:.1f}M"
        source = e.err_source
        if e.paper_top1_err is not None:
            source += f"; {e.paper_err_source}: {registry.format_err(e.paper_top1_err)} / {registry.format_err(e.paper_top5_err)}"
        lines.append(f"| {shown} | {e.dataset} | {e.method} | {registry.format_err(e.top1_err)} | {registry.format_err(e.top5_err)} | {params} | {source} |")
    return "\n".join(lines) + "\n"
