"""The cutmix-zoo command: outputs, --json, --help everywhere, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

import cutmix_zoo
from cutmix_zoo import cli
from cutmix_zoo.cli import build_parser, main
from cutmix_zoo.cli.common import UsageError


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cutmix_zoo", *args], capture_output=True, text=True, timeout=300)


def test_list_prints_every_model(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in cutmix_zoo.list_models():
        assert name in out
    assert "resnet50.cutmix_in1k *" in out and "21.40" in out


def test_list_pattern_and_json(capsys):
    assert main(["list", "*_c100", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == cutmix_zoo.list_models("*_c100")
    assert sum(r["default"] for r in rows) == 1 and rows[0]["num_classes"] == 100


def test_info_json_has_the_entry_and_its_size(capsys):
    assert main(["info", "resnext101_32x4d", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "resnext101_32x4d.cutmix_in1k" and info["num_params"] == 44_177_704
    assert info["arch_args"] == {"layers": [3, 4, 23, 3], "groups": 32, "width_per_group": 4}


def test_info_text(capsys):
    assert main(["info", "resnet50.mixup_in1k"]) == 0
    out = capsys.readouterr().out
    assert "top1_err:" in out and "22.58" in out and "num_params:" in out and "25557032" in out


def test_bad_input_exits_2_with_one_line():
    for args in (["info", "resnet5"], ["list", "nothing*"]):
        result = run(*args)
        assert result.returncode == 2, result
        assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
        assert result.stderr.startswith("cutmix-zoo: error: ")
    assert "Did you mean 'resnet50'" in run("info", "resnet5").stderr


def _subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return list(action.choices)


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_has_help(command, capsys):
    """Through the dispatcher in this process (a fresh interpreter per command cost 3 s of imports each; the tests around
    this one run ``python -m cutmix_zoo`` itself)."""
    try:
        code = main([command, "--help"])
    except SystemExit as done:
        code = done.code
    captured = capsys.readouterr()
    assert code in (0, None), captured.err
    assert "usage:" in captured.out and ("cutmix-zoo" in captured.out)


def test_top_level_help_and_missing_command():
    assert run("--help").returncode == 0
    result = run()
    assert result.returncode == 2 and "COMMAND" in result.stderr


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_every_command_module_has_the_shape_and_is_listed_with_its_help(capsys):
    names = [c.NAME for c in cli.COMMANDS]
    assert len(set(names)) == len(names) == 20
    for command in cli.COMMANDS:
        assert isinstance(command.NAME, str) and isinstance(command.HELP, str) and command.HELP, command
        assert callable(command.add_parser) and callable(command.run), command
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    listing = _flat(capsys.readouterr().out)
    assert exit_info.value.code == 0
    for command in cli.COMMANDS:
        assert f" {command.NAME} {_flat(command.HELP)} " in listing, command.NAME
    # the listing is the same whichever command's sub-parser was built in full, all of them included
    assert {build_parser(only).format_help() for only in [None, "", *names]} == {build_parser("").format_help()}


def test_a_command_added_to_the_list_is_listed_parsed_and_run(monkeypatch, capsys):
    hello = types.ModuleType("hello")
    hello.NAME, hello.HELP = "hello", "say hello to someone"

    def add_parser(subparsers):
        p = subparsers.add_parser(hello.NAME, help=hello.HELP, description="Say hello.")
        p.add_argument("--to", default="world")
        return p

    def run(args):
        if args.to == "nobody":
            raise UsageError("--to needs somebody")
        print(f"hello {args.to} {args.argv}")
        return 0

    hello.add_parser, hello.run = add_parser, run
    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, hello))
    with pytest.raises(SystemExit):
        main(["--help"])
    assert " hello say hello to someone " in _flat(capsys.readouterr().out)
    assert main(["-v", "hello", "--to", "you"]) == 0
    assert capsys.readouterr().out == "hello you ['--to', 'you']\n"
    for argv, message in ((["hello", "--bogus"], "unrecognized arguments: --bogus"), (["hello", "--to", "nobody"], "--to needs somebody")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith("usage: cutmix-zoo hello") and f"cutmix-zoo hello: error: {message}\n" in err


def test_the_command_modules_and_list_do_not_import_torch():
    code = ("import sys, cutmix_zoo.cli as cli\n"
            "assert cli.main(['list', '--json']) == 0\n"
            "print(sorted(m for m in ('torch', 'numpy', 'PIL') if m in sys.modules), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr.strip() == "[]", done.stderr
