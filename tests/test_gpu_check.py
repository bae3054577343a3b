"""benchmarks/gpu_check.py on the CPU with --quick: every section runs, agreement within tolerance, gloo DDP finishes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ["train_step", "decode", "forward", "eval", "decode_train", "ddp"]


@pytest.mark.slow
def test_quick_cpu_run_covers_every_section(tmp_path):
    out = tmp_path / "x.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")  # about 20 s alone; OpenMP spinning makes 2 threads 4x slower beside other jobs
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["device_type"] == "cpu" and report["quick"] and not report["compile"] and report["torch"]
    sections = report["sections"]
    assert list(sections) == SECTIONS
    for name, section in sections.items():
        assert section["error"] is None, f"{name}: {section['traceback']}"
        assert section["figures"] and section["wall_s"] > 0

    step = sections["train_step"]["figures"]
    assert all(step[loop]["img_s"] > 0 for loop in ("original", "timm", "ours", "ours, no mixing"))
    assert step["ours"]["vs_original"] > 0 and math.isfinite(step["CutMix share of our step % (ours - no mixing)"])
    assert sections["decode"]["figures"]["CPU decode+augment, 1 worker img/s"] > 0

    forward = {k: v for k, v in sections["forward"]["figures"].items() if isinstance(v, dict)}
    assert len(forward) == 4  # two architectures (one per family), channels_last fp32 and bf16 each
    evaluation = {k: v for k, v in sections["eval"]["figures"].items() if isinstance(v, dict)}
    assert sorted(evaluation) == ["pyramidnet20_a48.baseline_shapes", "pyramidnet20_a48.cutmix_shapes"]
    for name, row in {**forward, **evaluation}.items():
        assert math.isfinite(row["max_abs_diff"]) and row["rel_diff"] <= row["tolerance"] and row["within"], name

    train = sections["decode_train"]["figures"]
    assert train["finished"] and train["export loads back"] and math.isfinite(train["train loss"])
    ddp = sections["ddp"]["figures"]
    assert ddp["finished"] and ddp["backend"] == "gloo" and ddp["loss_finite"] and ddp["wall s (spawn, init, steps)"] > 0

    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows[0] == "| section | figure | value |"
    assert all(any(line.startswith(f"| {name} | ") for line in rows) for name in SECTIONS)
    assert "PASS: ddp finished" in done.stdout and "PASS: forward:" in done.stdout and "PASS: eval:" in done.stdout
