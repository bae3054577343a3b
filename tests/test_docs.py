"""The code in README.md and on the documentation pages runs as written, and the site covers every page.

The ``python`` blocks of a page run in order in one namespace, as a reader pastes them, offline, in a
folder holding the files the pages name; random ResNet-50 weights in the Hugging Face cache stand in for the
released ones. A block whose first line is ``# needs: WHAT`` (a GPU, the published GitHub repository, your own
data) cannot run here and is skipped; ``MIN_RUN`` states how many blocks of each page must run, so a page
cannot have every block marked. Shell blocks are not run, but each ``cutmix-zoo COMMAND`` in them must be a
command that ``cutmix-zoo --help`` lists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import cutmix_zoo
from cutmix_zoo.files import sha256_file
from cutmix_zoo.hub.cards import model_table

from servers import set_hf_offline, use_hf_hub

REPO = Path(__file__).resolve().parents[1]
PAGES = ["README.md"] + sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))
NEEDS = "# needs:"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
SHELLS = {"bash", "sh", "shell", "console"}

# The python blocks of each page that must run here (pages without python blocks need none).
MIN_RUN = {
    "README.md": 2,
    "docs/index.md": 1,
    "docs/loading.md": 4,
    "docs/reports.md": 2,
    "docs/finetuning.md": 1,
}


def _blocks(page: str) -> list[tuple[str, int, str]]:
    """(language, line number, code) of each fenced block of ``page``."""
    text = (REPO / page).read_text()
    return [(m.group(1), text.count("\n", 0, m.start(2)) + 1, m.group(2)) for m in FENCE.finditer(text)]


def _link(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (a copy across file systems): the 98 MiB weights are not copied per test."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _hub_cache(hub_cache: Path, repo_id: str, folder: Path) -> None:
    """Put ``folder``'s files into a Hugging Face cache as ``repo_id`` at ``main``, in huggingface_hub's layout."""
    root = hub_cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    for file in folder.iterdir():
        blob = root / "blobs" / sha256_file(file)  # weights blobs are named by their sha256, as the Hub's LFS files are
        _link(file, blob)
        snapshot = root / "snapshots" / commit / file.name
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        snapshot.symlink_to(os.path.relpath(blob, snapshot.parent))


@pytest.fixture(scope="module")
def resnet50_export(tmp_path_factory, resnet50_file) -> Path:
    """The random ResNet-50 exported as a Hub repo's files (model.safetensors, config.json in timm's format, card)."""
    model = cutmix_zoo.load("resnet50", weights=resnet50_file)
    return cutmix_zoo.save_pretrained(model, tmp_path_factory.mktemp("docs") / "resnet50")


@pytest.fixture
def workspace(tmp_path, monkeypatch, resnet50_file, resnet50_export) -> Path:
    """A folder holding what the pages name (photo.jpg, my.safetensors, runs/train/export), offline, with
    ``cutmix-zoo/resnet50.cutmix_in1k`` in the Hugging Face cache."""
    hf_home = tmp_path / "hf-home"
    _hub_cache(hf_home / "hub", "cutmix-zoo/resnet50.cutmix_in1k", resnet50_export)
    use_hf_hub(monkeypatch, "http://127.0.0.1:9", hf_home)  # timm reads huggingface_hub's constants, not the environment
    set_hf_offline(monkeypatch, True)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    pixels = torch.rand(3, 240, 320, generator=torch.Generator().manual_seed(0)).mul(255).byte()
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(work / "photo.jpg")
    _link(resnet50_file, work / "my.safetensors")
    cutmix_zoo.save_pretrained(cutmix_zoo.load("pyramidnet20_a48.cutmix_shapes"), work / "runs" / "train" / "export")
    return work


def test_every_page_with_python_blocks_states_how_many_must_run():
    with_python = {page for page in PAGES if any(lang == "python" for lang, _, _ in _blocks(page))}
    assert with_python == set(MIN_RUN), "add the page to MIN_RUN (or remove it there)"
    assert all(n >= 1 for n in MIN_RUN.values())


@pytest.mark.parametrize("page", sorted(MIN_RUN))
def test_python_blocks_run_as_written(page, workspace, one_thread):
    scope: dict = {"__name__": "__docs__"}
    ran = 0
    for lang, line, code in _blocks(page):
        if lang != "python" or code.lstrip().startswith(NEEDS):
            continue
        exec(compile(code, f"{page}:{line}", "exec"), scope)  # noqa: S102 - the page's own code
        ran += 1
    assert ran >= MIN_RUN[page], f"{page}: {ran} python blocks ran, fewer than the {MIN_RUN[page]} stated"


def test_skipped_blocks_say_what_they_need():
    for page in PAGES:
        for lang, line, code in _blocks(page):
            first = code.lstrip().splitlines()[0] if code.strip() else ""
            if lang == "python" and first.startswith(NEEDS):
                assert len(first) > len(NEEDS) + 3, f"{page}:{line}: say what the block needs after {NEEDS!r}"


def _commands() -> set[str]:
    """The subcommands ``cutmix-zoo --help`` lists."""
    out = subprocess.run([sys.executable, "-m", "cutmix_zoo", "--help"], capture_output=True, text=True, timeout=60, check=True)
    section = out.stdout.split("positional arguments:", 1)[1].split("options:", 1)[0]
    return set(re.findall(r"^    ([a-z][\w-]*)\s", section, re.M))


def _named_commands(text: str) -> set[str]:
    """The COMMAND of every ``cutmix-zoo [-OPTION...] COMMAND`` on a line of ``text`` (options such as -v skipped)."""
    return set(re.findall(r"(?<![\w/.-])cutmix-zoo(?:[ \t]+-[-\w]+)*[ \t]+([a-z][\w-]*)", text))


def test_every_cutmix_zoo_command_in_a_shell_block_or_inline_code_exists():
    commands = _commands()
    assert {"list", "demo", "train"} <= commands and len(commands) >= 10
    named: dict[str, set[str]] = {}
    for page in PAGES:
        text = (REPO / page).read_text()
        shell = "\n".join(code for lang, _, code in _blocks(page) if lang in SHELLS)
        inline = "\n".join(re.findall(r"`([^`\n]+)`", FENCE.sub("", text)))
        for command in _named_commands(shell) | _named_commands(inline):
            named.setdefault(command, set()).add(page)
    assert {"demo", "train", "list", "cam"} <= set(named)  # the parsing finds the commands the pages name
    unknown = {command: sorted(pages) for command, pages in named.items() if command not in commands}
    assert not unknown, f"not a cutmix-zoo command: {unknown}"


def test_the_site_lists_every_page():
    nav = set(re.findall(r"^\s*- [^:\n]+: (\S+\.md)\s*$", (REPO / "mkdocs.yml").read_text(), re.M))
    assert nav == {p.removeprefix("docs/") for p in PAGES if p.startswith("docs/")}


def test_relative_links_of_the_readme_and_the_pages_exist():
    for page in PAGES:
        text = FENCE.sub("", (REPO / page).read_text())
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (REPO / page).parent / target.split("#", 1)[0]
            assert path.exists(), f"{page} links to {target}, which does not exist"


def test_the_models_page_table_is_current():
    assert model_table() in (REPO / "docs" / "models.md").read_text(), "paste `cutmix-zoo list --markdown` into docs/models.md"
