"""The ``cutmix-zoo`` command: list, inspect, fetch, convert, export and train zoo models.

Every subcommand has ``--help``; data-producing ones take ``--json``. Exit codes: 0 success,
1 a failure while doing the work (download, file, training), 2 bad input (unknown name, bad
argument), 130 interrupted. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .. import registry
from ..errors import EXIT_FAILURE, InvalidArgumentError, ZooError
from .common import print_table, run_command


def cmd_list(args: argparse.Namespace) -> int:
    names = registry.list_models(args.pattern)
    if not names:
        raise InvalidArgumentError(f"No model matches the pattern {args.pattern!r}; `cutmix-zoo list` shows them all.")
    defaults = registry.default_names()
    if args.markdown:
        from ..hub.cards import model_table

        print(model_table(), end="")
        return 0
    if args.json:
        print(json.dumps([dict(registry.model_info(n), default=n in defaults) for n in names], indent=2))
        return 0
    rows = []
    for n in names:
        e = registry.get_entry(n)
        rows.append([n + (" *" if n in defaults else ""), e.dataset, e.method, registry.format_err(e.top1_err), registry.format_err(e.top5_err)])
    print_table(rows, ["name (* = default of its architecture)", "dataset", "method", "top-1 err %", "top-5 err %"])
    return 0


def info_dict(name: str) -> dict[str, Any]:
    """model_info plus what is only known at run time: parameter count and cached files."""
    from ..hub.cache import cache_status

    info = registry.model_info(name)
    if info["num_params"] is None:  # an entry added at run time: count on the meta device
        from ..api import count_parameters

        info["num_params"] = count_parameters(name)
    info.update(cache_status(registry.get_entry(name)))
    return info


def cmd_info(args: argparse.Namespace) -> int:
    info = info_dict(args.name)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key, value in info.items():
        if key == "citation":
            continue
        print(f"{key + ':':<16} {value}")
    return 0


def _entries(names: list[str], all_: bool) -> list[registry.Entry]:
    if all_:
        return [registry.get_entry(n) for n in registry.list_models()]
    if not names:
        raise InvalidArgumentError("Name at least one model, or pass --all.")
    return [registry.get_entry(n) for n in names]


def cmd_download(args: argparse.Namespace) -> int:
    from ..hub.fetch import fetch_weights

    results = []
    for entry in _entries(args.names, args.all):
        path = fetch_weights(entry, revision=args.revision, progress=not args.quiet, force=args.force, verify=True)
        results.append({"name": entry.name, "file": str(path)})
        if not args.json:
            print(f"{entry.name}: {path}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..files import sha256_file
    from ..hub.convert import load_original, write_converted
    from ..model_config import ModelConfig

    entry = registry.get_entry(args.model)
    source = Path(args.input)
    if not source.is_file():
        raise InvalidArgumentError(f"The checkpoint {source} does not exist.")
    out = Path(args.output) if args.output else source.with_name(source.name.split(".")[0] + ".safetensors")
    if out.exists() and not args.force:
        raise InvalidArgumentError(f"{out} already exists; pass --force to overwrite it, or -o to write elsewhere.")
    state, meta = load_original(source)
    write_converted(ModelConfig.from_entry(entry), state, out, source_url=args.source_url, source_sha256=sha256_file(source), label=str(source))
    print(f"{source} ({meta['layout']} layout, {len(state)} tensors) -> {out} as {entry.name}")
    return 0


def _cached_files() -> list[dict[str, Any]]:
    """Every cached weights file with its size, origin and the sha256 it was written with (files are not read)."""
    from ..hub.cache import SOURCE_NAME, cache_dir, cached_file, recorded_sha256

    rows = []
    for name in registry.list_models():
        entry = registry.get_entry(name)
        path = cached_file(entry)
        if path is None:
            continue
        original = path.parent == cache_dir() / name
        rows.append({"name": name, "file": str(path), "bytes": path.stat().st_size, "expected_sha256": recorded_sha256(entry, path),
                     "origin": "original release" if original else "hub",
                     "record": str(cache_dir() / name / SOURCE_NAME) if original else None})
    return rows


def cmd_cache(args: argparse.Namespace) -> int:
    from ..hub.cache import cache_dir, hub_cache_dir

    rows = _cached_files()
    summary = {"zoo_cache": str(cache_dir()), "hub_cache": hub_cache_dir() or "huggingface_hub default",
               "models": [{k: r[k] for k in ("name", "file", "bytes", "origin")} for r in rows],
               "total_bytes": sum(r["bytes"] for r in rows)}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"zoo cache: {summary['zoo_cache']}\nhub cache: {summary['hub_cache']}")
    for r in rows:
        print(f"  {r['name']:<40} {r['bytes'] / 2**20:8.1f} MiB  {r['origin']:<16} {r['file']}")
    print(f"{len(rows)} models, {summary['total_bytes'] / 2**20:.1f} MiB")
    if any(r["origin"] == "original release" for r in rows):
        print("A Hub copy, once cached, is used before an original-release one: `cutmix-zoo download --force NAME` fetches it.")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from safetensors import safe_open

    from ..files import sha256_file

    rows = _cached_files()
    bad = 0
    for r in rows:
        r["sha256"] = sha256_file(r["file"])
        if r["expected_sha256"] is not None:
            ok, why = r["expected_sha256"] == r["sha256"], f"expected {r['expected_sha256']}"
        elif r["origin"] == "hub":
            ok, why = True, ""  # a Hub file stored as a plain blob: no sha256 to compare, readability is checked below
        else:
            ok, why = False, f"no conversion record ({r['record']} is missing or unreadable)"
        try:
            with safe_open(r["file"], framework="pt") as f:
                f.keys()
        except Exception:
            ok, why = False, why or "not a readable safetensors file"
        r["ok"] = ok
        bad += not ok
        if not args.json:
            print(f"{'ok ' if ok else 'BAD'} {r['name']}: sha256 {r['sha256']}" + ("" if ok else f" ({why})"))
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("Nothing is cached.")
    if bad:
        print(f"cutmix-zoo: error: {bad} cached file(s) failed verification; delete them or run `cutmix-zoo download --force NAME`.", file=sys.stderr)
    return EXIT_FAILURE if bad else 0


def cmd_cards(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..hub.cards import render_card, write_cards

    if args.check:
        stale = [n for n in registry.list_models()
                 if not (Path(args.output) / f"{n}.md").is_file() or (Path(args.output) / f"{n}.md").read_text() != render_card(n)]
        if stale:
            raise ZooError(f"{len(stale)} model cards in {args.output} differ from the registry ({', '.join(stale[:3])}); run `cutmix-zoo cards`.")
        print(f"All {len(registry.list_models())} model cards in {args.output} match the registry.")
        return 0
    paths = write_cards(args.output)
    print(f"Wrote {len(paths)} model cards to {args.output}.")
    return 0


def export_folder(name: str, out: str, revision: str | None = None, progress: bool = True) -> str:
    """Write the Hub folder (model.safetensors, config.json, README.md) of a registry model or exported folder."""
    from ..api import load
    from ..hub.cards import render_card
    from ..hub.export import save_pretrained
    from ..model_config import pretrained_cfg_of

    model = load(name, revision=revision, progress=progress)
    save_pretrained(model, out, card=render_card(pretrained_cfg_of(model)))
    return out


def cmd_export(args: argparse.Namespace) -> int:
    out = export_folder(args.name, args.output, args.revision, not args.quiet)
    print(f"Exported {args.name} to {out}: model.safetensors, config.json, README.md")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    import os
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cutmix-zoo-publish-") as tmp:
        folder = args.name if os.path.isdir(args.name) else export_folder(args.name, tmp, progress=not args.quiet)
        files = sorted(f for f in os.listdir(folder) if not f.startswith("."))
        listing = [{"file": f, "bytes": os.path.getsize(os.path.join(folder, f))} for f in files]
        if args.dry_run:
            print(f"Would create {args.repo_id} (private: {args.private}) and upload:")
            for item in listing:
                print(f"  {item['file']:<20} {item['bytes']:>12,} bytes")
            return 0
        from huggingface_hub import HfApi

        api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None)
        try:
            api.create_repo(args.repo_id, private=args.private, exist_ok=True)
            commit = api.upload_folder(folder_path=folder, repo_id=args.repo_id, allow_patterns=files,
                                       commit_message=f"Upload {args.name} with cutmix_zoo")
        except Exception as e:  # huggingface_hub raises many kinds (HTTP, auth, validation): one line each
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ZooError(f"Publishing to {args.repo_id} failed: {reason}.") from None
        print(f"Published {args.name} to {args.repo_id}: {getattr(commit, 'commit_url', commit)}")
    return 0


def cmd_shapes(args: argparse.Namespace) -> int:
    from ..train.shapes import write_folder

    if args.train_per_class < 1 or args.val_per_class < 1:
        raise InvalidArgumentError("--train-per-class and --val-per-class must be at least 1.")
    if args.output.exists() and any(args.output.iterdir()):
        raise InvalidArgumentError(f"{args.output} is not empty: choose a new folder for the generated images.")
    try:
        root = write_folder(args.output, args.train_per_class, args.val_per_class, novel=not args.shapes10, seed=args.seed)
    except OSError as e:
        raise ZooError(f"Could not write the images into {args.output} ({e.strerror or e}).") from None
    classes = sorted(p.name for p in (root / "train").iterdir())
    print(f"wrote {root}/train and {root}/val: {len(classes)} classes, {args.train_per_class} training and "
          f"{args.val_per_class} validation images each")
    return 0


def _version() -> str:
    """The installed distribution's version, else the package's own (a checkout that was never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cutmix-zoo")
    except PackageNotFoundError:
        from .. import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cutmix-zoo",
        description="The CutMix-pretrained ResNet/ResNeXt/PyramidNet weights (Yun et al., ICCV 2019) as a model zoo.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log which source each model came from (first, before COMMAND)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list the registry's models", description="List registry models matching an fnmatch pattern.")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'resnet50.*' or '*_c100' (default: all)")
    p.add_argument("--json", action="store_true", help="print the full entries as JSON")
    p.add_argument("--markdown", action="store_true", help="print the README's model table (every model)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="show everything known about one model", description="Show a model's registry entry, size and cache state.")
    p.add_argument("name", help="registry name (arch.tag) or bare architecture")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("download", help="fill the cache ahead of time",
                       description="Download (and convert, for original-release files) models into the cache.")
    p.add_argument("names", nargs="*", metavar="NAME", help="registry names or architectures")
    p.add_argument("--all", action="store_true", help="every model in the registry")
    p.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    p.add_argument("--force", action="store_true", help="download again even if cached")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the cached files as JSON")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("convert", help="convert an original checkpoint to safetensors",
                       description="Convert an original-release checkpoint (train.py dict, module. dict or bare state dict) "
                                   "to a checked safetensors file.")
    p.add_argument("input", help="the original .pth or .pth.tar file")
    p.add_argument("--model", required=True, help="registry name whose architecture the file holds")
    p.add_argument("-o", "--output", help="output .safetensors path (default: beside the input)")
    p.add_argument("--source-url", help="URL to record in the file's metadata")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("cache", help="show where the cache is and what it holds",
                       description="Show the cache folders, cached models and their sizes.")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("verify", help="re-hash the cached files",
                       description="Re-hash every cached weights file and check it against its recorded sha256.")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("cards", help="write the model cards from the registry", description="Write model_cards/<name>.md for every registry entry.")
    p.add_argument("-o", "--output", default="model_cards", help="folder to write (default: model_cards)")
    p.add_argument("--check", action="store_true", help="only check that the cards in the folder match the registry")
    p.set_defaults(func=cmd_cards)

    p = sub.add_parser("export", help="write a model's Hub folder",
                       description="Write model.safetensors, config.json and README.md of a model into a folder.")
    p.add_argument("name", help="registry name, bare architecture, or exported folder")
    p.add_argument("-o", "--output", required=True, help="folder to write")
    p.add_argument("--revision", help="Hub revision to export")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("publish", help="upload a model to the Hugging Face Hub",
                       description="Export a model (or take an exported folder) and upload it to a Hub repo; "
                                   "the token comes from HF_TOKEN or `hf auth login`.")
    p.add_argument("name", help="registry name, bare architecture, or exported folder")
    p.add_argument("--repo-id", required=True, help="target repo, e.g. cutmix-zoo/resnet50.cutmix_in1k")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--dry-run", action="store_true", help="list what would be uploaded and upload nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("shapes", help="write generated images as an ImageFolder tree (data to try train --init and transfer on)",
                       description="Write Novel-Shapes (ten shapes the embedded models never saw; --shapes10: Shapes-10) as "
                                   "DIR/train/<class>/*.png and DIR/val/<class>/*.png, generated from a seed, offline.")
    p.add_argument("output", type=Path, metavar="DIR", help="folder to create (must be new or empty)")
    p.add_argument("--train-per-class", type=int, default=20, help="training images per class (default 20: a small-data task)")
    p.add_argument("--val-per-class", type=int, default=50, help="validation images per class (default 50)")
    p.add_argument("--shapes10", action="store_true", help="Shapes-10 (the embedded models' own classes) instead of Novel-Shapes")
    p.add_argument("--seed", type=int, default=0, help="which draw (default 0)")
    p.set_defaults(func=cmd_shapes)

    for name, (_module, _func, text) in DELEGATED.items():
        sub.add_parser(name, help=text, add_help=False)  # listed here, parsed by its own module (see main)
    return parser


DELEGATED: dict[str, tuple[str, str, str]] = {
    "train": ("cutmix_zoo.train", "train_main", "train a model with an original recipe (see `cutmix-zoo train --help`)"),
    "eval": ("cutmix_zoo.train", "eval_main", "evaluate a zoo model on an ImageFolder or CIFAR folder"),
    "demo": ("cutmix_zoo.cli.demo", "demo_main", "train, export, load and evaluate the embedded model, offline, in a minute"),
    "predict": ("cutmix_zoo.cli.images", "predict_main", "top-k classes of images, with class names"),
    "cam": ("cutmix_zoo.cli.images", "cam_main", "class activation map of an image, written as a PNG"),
    "robustness": ("cutmix_zoo.cli.reports", "robustness_main",
                   "occlusion, in-between samples, FGSM and OOD detection on your validation images"),
    "localize": ("cutmix_zoo.cli.reports", "localize_main", "CAM bounding boxes of images, and localization accuracy against true boxes"),
    "transfer": ("cutmix_zoo.cli.transfer", "transfer_main", "linear probe (and fine-tune) of pretrained backbones on your own images"),
}


def _run(argv: list[str]) -> int:
    if argv and argv[0] in DELEGATED:
        import importlib

        module, func, _ = DELEGATED[argv[0]]
        return getattr(importlib.import_module(module), func)(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cutmix-zoo`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-v"], ["--verbose"]):  # the library's log lines (logging.getLogger("cutmix_zoo.*")) on stderr
        import logging

        logging.basicConfig(format="cutmix-zoo: %(message)s")
        logging.getLogger("cutmix_zoo").setLevel(logging.INFO)
        argv = argv[1:]
    return run_command(_run, argv)


if __name__ == "__main__":
    sys.exit(main())
