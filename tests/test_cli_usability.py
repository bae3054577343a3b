"""The command line as a first-time user meets it: no arguments, a command's --help, an output folder it cannot make."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cutmix_zoo.cli import COMMANDS
from cutmix_zoo.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "cutmix_zoo", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=120)


def test_no_arguments_lists_every_command():
    done = _cli()
    assert done.returncode == 2 and done.stdout == ""
    listed = " ".join(done.stderr.split())  # argparse wraps the help lines
    assert "usage: cutmix-zoo" in listed and "Traceback" not in listed
    for command in COMMANDS:
        assert f" {command.NAME} {command.HELP}" in listed, command.NAME


def test_demo_help_begins_with_plain_text():
    done = _cli("demo", "--help")
    assert done.returncode == 0
    description = done.stdout.split("\n\n")[1]
    assert description.startswith("cutmix-zoo demo: what a CutMix backbone buys") and "`" not in done.stdout


def test_export_to_a_folder_that_cannot_be_made_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert cli_main(["export", "pyramidnet20_a48.cutmix_shapes", "-o", str(blocker / "out"), "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"cutmix-zoo: error: Could not write {blocker / 'out'} (")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
