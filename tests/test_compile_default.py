"""Compiled by default where it pays: the rule (cuda runs with enough steps left), the flags that override it, and a
resume that keeps the run's choice unless told otherwise."""

from __future__ import annotations

import argparse

import pytest

from cutmix_zoo.train.config import COMPILE_MIN_STEPS, compile_step, resumed_args, train_parser


@pytest.mark.parametrize(("flag", "device", "steps", "expected"), [
    (None, "cuda", COMPILE_MIN_STEPS, True),
    (None, "cuda", COMPILE_MIN_STEPS - 1, False),  # a short run would spend more compiling than it saves
    (None, "cpu", 10 * COMPILE_MIN_STEPS, False),  # the CPU stays eager
    (True, "cpu", 1, True),  # --compile
    (False, "cuda", 10 * COMPILE_MIN_STEPS, False),  # --no-compile
])
def test_rule(flag, device, steps, expected):
    assert compile_step(flag, device, steps) is expected


def test_flags():
    parser = train_parser()
    assert parser.parse_args([]).compile is None
    assert parser.parse_args(["--compile"]).compile is True
    assert parser.parse_args(["--no-compile"]).compile is False


def test_resume_keeps_the_saved_choice_unless_a_flag_is_given(tmp_path):
    tiny = ["--model", "pyramidnet", "--depth", "8", "--alpha", "12", "--no-bottleneck", "--data", "synthetic", "--dataset", "cifar10"]
    saved = vars(train_parser().parse_args([*tiny, "--output", str(tmp_path)]))
    for saved_value, given, expected in ((None, [], None), (True, [], True), (None, ["--no-compile"], False),
                                         (False, ["--compile"], True)):
        given_args = train_parser().parse_args(["--resume", str(tmp_path), *given])
        merged = resumed_args({**saved, "compile": saved_value}, given_args)
        assert isinstance(merged, argparse.Namespace) and merged.compile is expected
