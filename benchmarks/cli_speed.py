"""CLI start-up benchmark: commands that need no tensor against ``python -c "import torch"``, same run.

    python benchmarks/cli_speed.py [--repeat 7] [--json] [--check]

Times whole processes, as a user waits for them: ``cutmix-zoo list``, ``cutmix-zoo --help``,
``cutmix-zoo info resnet50 --json`` and ``cutmix-zoo cache``, and ``python -c "import torch"``.
Each is run once to warm the file-system cache, then ``--repeat`` times, the commands interleaved
round by round so that a slow moment of the machine costs every command alike; the median of each
is divided by the median of ``import torch``. Target: at most 0.25 for every command (they should
answer without importing torch). The caches are empty temporary folders and the Hub is offline, so
what is measured does not depend on this machine's caches or network. Each command is also run once
with ``PYTHONPROFILEIMPORTTIME`` to report whether it imports torch at all.

``--check`` exits 1 when a ratio is over the target; without it the script only reports.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 0.25
COMMANDS = {
    "cutmix-zoo list": ["list"],
    "cutmix-zoo --help": ["--help"],
    "cutmix-zoo info resnet50 --json": ["info", "resnet50", "--json"],
    "cutmix-zoo cache": ["cache"],
}
BASELINE = "python -c 'import torch'"


def cli_prefix(module: bool) -> list[str]:
    """The installed ``cutmix-zoo`` script beside this Python, else ``python -m cutmix_zoo``."""
    script = Path(sys.executable).parent / "cutmix-zoo"
    if not module and script.is_file():
        return [str(script)]
    found = None if module else shutil.which("cutmix-zoo")
    return [found] if found else [sys.executable, "-m", "cutmix_zoo"]


def run_once(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return elapsed


def imports_torch(cmd: list[str], env: dict[str, str]) -> bool:
    """Whether the process imports torch, from its own import-time profile."""
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env=dict(env, PYTHONPROFILEIMPORTTIME="1"))
    return any(line.rsplit("|", 1)[-1].strip() == "torch" for line in proc.stderr.splitlines() if line.startswith("import time:"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed runs of each command after one warm-up (default 7)")
    parser.add_argument("--module", action="store_true", help="run `python -m cutmix_zoo` instead of the cutmix-zoo script")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--check", action="store_true", help=f"exit 1 when a command takes more than {TARGET} of `import torch`")
    args = parser.parse_args(argv)

    prefix = cli_prefix(args.module)
    commands = {BASELINE: [sys.executable, "-c", "import torch"]}
    commands.update({label: prefix + rest for label, rest in COMMANDS.items()})
    with tempfile.TemporaryDirectory(prefix="cli-speed-") as tmp:
        env = dict(os.environ, CUTMIX_ZOO_CACHE=os.path.join(tmp, "zoo"), HF_HOME=os.path.join(tmp, "hf"),
                   HF_HUB_OFFLINE="1")
        env.pop("HF_HUB_CACHE", None)
        for cmd in commands.values():
            run_once(cmd, env)  # warm-up
        times: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(args.repeat):
            for label, cmd in commands.items():
                times[label].append(run_once(cmd, env))
        torch_used = {label: imports_torch(cmd, env) for label, cmd in commands.items() if label != BASELINE}

    base = statistics.median(times[BASELINE])
    results = {
        "baseline": {"command": BASELINE, "median_s": round(base, 4)},
        "target_ratio": TARGET,
        "repeat": args.repeat,
        "cli": " ".join(prefix),
        "commands": {
            label: {"median_s": round(statistics.median(times[label]), 4),
                    "ratio": round(statistics.median(times[label]) / base, 3),
                    "imports_torch": torch_used[label]}
            for label in COMMANDS
        },
    }
    over = [label for label, r in results["commands"].items() if r["ratio"] > TARGET]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"Wall time of whole processes, median of {args.repeat} interleaved runs ({os.cpu_count()} CPUs, Python {sys.version.split()[0]})")
        print(f"  {BASELINE:<36} {base:7.3f} s")
        for label, r in results["commands"].items():
            verdict = "ok" if r["ratio"] <= TARGET else "over"
            torch_note = "imports torch" if r["imports_torch"] else "no torch"
            print(f"  {label:<36} {r['median_s']:7.3f} s  {r['ratio']:5.2f}x import torch  "
                  f"(target <= {TARGET}: {verdict}; {torch_note})")
    return 1 if args.check and over else 0


if __name__ == "__main__":
    sys.exit(main())
