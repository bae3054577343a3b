"""benchmarks/detection.py --quick on the CPU: the training loops' ratio, the evaluation throughput and the skipped GPU part."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_quick_benchmark_prints_the_ratio_and_the_evaluation_throughput():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "detection.py"), "--quick", "--json"], capture_output=True,
                         text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^ratio ours / reference: \d+\.\d\dx \(target >= 1\.0\)$", out.stdout, re.M), out.stdout
    assert re.search(r"^evaluation of 8 val images: predict [\d.]+ img/s, COCOeval [\d.]+ img/s", out.stdout, re.M), out.stdout
    assert "bf16 vs fp32 mAP: skipped" in out.stdout
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["ratio"] > 0 and result["ours_img_s"] > 0 and 0 <= result["eval"]["map"] <= 1
