"""``cutmix-zoo publish``: export a model (or take an exported folder) and upload it to a Hugging Face Hub repo."""

from __future__ import annotations

import argparse
import os

from ..errors import InvalidArgumentError, ZooError
from .common import Subparsers, export_folder

NAME = "publish"
HELP = "upload a model to the Hugging Face Hub"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Add ``publish`` to the ``cutmix-zoo`` parser."""
    p = subparsers.add_parser(NAME, help=HELP,
                              description="Export a model (or take an exported folder) and upload it to a Hub repo; "
                                          "the token comes from HF_TOKEN or `hf auth login`.")
    p.add_argument("name", help="registry name, bare architecture, or exported folder")
    p.add_argument("--repo-id", required=True, help="target repo, e.g. cutmix-zoo/resnet50.cutmix_in1k")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--dry-run", action="store_true", help="list what would be uploaded and upload nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def upload_files(folder: str) -> list[str]:
    """The names of the regular files directly in ``folder`` (hidden ones left out): what publish uploads. A symbolic link
    there is refused, naming it, since its bytes may lie anywhere outside the folder; subfolders are not uploaded."""
    names = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_symlink():
            raise InvalidArgumentError(f"{entry.path} is a symbolic link, and publish uploads only the regular files of {folder} itself: "
                                       "replace the link with a copy of the file or remove it.")
        if entry.is_file(follow_symlinks=False):
            names.append(entry.name)
    return names


def run(args: argparse.Namespace) -> int:
    """Upload the folder (or with ``--dry-run`` list what would be uploaded); a failed upload is one error line."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cutmix-zoo-publish-") as tmp:
        folder = args.name if os.path.isdir(args.name) else export_folder(args.name, tmp, progress=not args.quiet, repo_id=args.repo_id)
        files = upload_files(folder)
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
