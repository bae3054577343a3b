"""Load-time benchmark: cutmix_zoo.load against timm and torchvision, measured in the same run.

    python benchmarks/load.py [--repeat 9]

ResNet-50 with random weights from a warm local file. Prints median milliseconds and ratios for
timm (features_only, pretrained_cfg_overlay=file), torchvision (resnet50() + torch.load +
load_state_dict) and cutmix_zoo.load(features_only=True) from a local file, from the Hub cache
(after a first download from a loopback olah server) and from the converted-original cache (after
a first download from a loopback HTTP server); then the import overhead of cutmix_zoo over
``import torch, torchvision`` and the peak memory of a load over the import baseline.
Targets: load at most 0.1x timm, import overhead at most 0.3 s, peak memory at most
1.2x the weights.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the loopback servers used by the tests


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: first-call imports and file-system caches
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def in_subprocess(code: str, env: dict[str, str] | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


IMPORT_CODE = """
import json, time
import torch, torchvision
start = time.perf_counter()
import cutmix_zoo
print(json.dumps({"s": time.perf_counter() - start}))
"""

MEMORY_CODE = """
import gc, json, sys
import torch, torchvision, cutmix_zoo
kind, path = sys.argv[1], sys.argv[2]
if kind == "timm":
    import timm

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])

gc.collect()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak resident size (VmHWM) to the current one
before = status("VmRSS:")
if kind == "cutmix_zoo":
    model = cutmix_zoo.load("resnet50", weights=path, features_only=True)
elif kind == "timm":
    model = timm.create_model("resnet50", pretrained=True, features_only=True, pretrained_cfg_overlay=dict(file=path))
else:
    model = torchvision.models.resnet50()
    model.load_state_dict(torch.load(path, weights_only=True))
print(json.dumps({"peak_kib": status("VmHWM:") - before}))
"""


def peak_memory_mib(kind: str, path: Path) -> float:
    code = MEMORY_CODE.replace("sys.argv[1], sys.argv[2]", f"{kind!r}, {str(path)!r}")
    return in_subprocess(code)["peak_kib"] / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()

    import timm
    import torch
    import torchvision
    from safetensors.torch import save, save_file

    import cutmix_zoo

    from servers import OlahServer, http_file_server, make_hub_repo

    work = Path(tempfile.mkdtemp(prefix="cutmix-zoo-bench-"))
    os.environ.update(CUTMIX_ZOO_CACHE=str(work / "zoo"), HF_HOME=str(work / "hf"), CUTMIX_ZOO_HUB_ORG="bench")
    state = torchvision.models.resnet50().state_dict()
    file = work / "resnet50.safetensors"
    save_file(state, file)
    pth = work / "resnet50.pth"
    torch.save(state, pth)
    weights_mib = file.stat().st_size / 2**20

    def tv_load() -> None:
        model = torchvision.models.resnet50()
        model.load_state_dict(torch.load(pth, weights_only=True))

    results = {
        "timm.create_model(features_only, file)": median_ms(
            lambda: timm.create_model("resnet50", pretrained=True, features_only=True, pretrained_cfg_overlay=dict(file=str(file))), args.repeat),
        "torchvision resnet50() + torch.load": median_ms(tv_load, args.repeat),
        "cutmix_zoo.load(features_only, weights=file)": median_ms(
            lambda: cutmix_zoo.load("resnet50", weights=file, features_only=True), args.repeat),
    }

    with OlahServer(work / "olah") as hub:
        os.environ["HF_ENDPOINT"] = hub.endpoint
        make_hub_repo(hub.mirrors, "bench/resnet50.cutmix_in1k", {"model.safetensors": save(state)})
        cutmix_zoo.load("resnet50", features_only=True, progress=False)  # the first download
        results["cutmix_zoo.load(features_only), Hub cache"] = median_ms(
            lambda: cutmix_zoo.load("resnet50", features_only=True), args.repeat)

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("model_best.pth.tar", pth.read_bytes())
    entry = cutmix_zoo.get_entry("resnet50.baseline_in1k")
    with http_file_server({"/" + entry.original_path: buffer.getvalue()}) as dropbox:
        os.environ["CUTMIX_ZOO_ORIGINAL_URL"] = dropbox.url + "/"
        os.environ["HF_ENDPOINT"] = dropbox.url  # no Hub repo there: the original release is used
        start = time.perf_counter()
        cutmix_zoo.load(entry.name, features_only=True, progress=False)
        first_original = (time.perf_counter() - start) * 1000
        results["cutmix_zoo.load(features_only), original-release cache"] = median_ms(
            lambda: cutmix_zoo.load(entry.name, features_only=True), args.repeat)
        # The cache check inside those loads: a stamp compare when unchanged, a full sha256 after a change.
        from cutmix_zoo.hub.cache import trusted
        from cutmix_zoo.hub.fetch import fetch_weights

        cached = fetch_weights(entry, progress=False)
        check_warm = median_ms(lambda: trusted(entry, cached), args.repeat)
        check_full = median_ms(lambda: trusted(entry, cached, full=True), args.repeat)

    timm_ms = results["timm.create_model(features_only, file)"]
    print(f"ResNet-50 load, median of {args.repeat} after a warm-up ({os.cpu_count()} CPUs, torch {torch.__version__}, timm {timm.__version__})")
    print(f"{'':58} {'ms':>8} {'x timm':>8}")
    for name, ms in results.items():
        print(f"{name:58} {ms:8.1f} {ms / timm_ms:8.3f}")
    print(f"(first load from the original release: download, unzip, convert: {first_original:.0f} ms)")
    print(f"(cache check inside a warm load: {check_warm:.2f} ms; re-hashing the {weights_mib:.0f} MiB file after a change: "
          f"{check_full:.0f} ms)")

    imports = sorted(in_subprocess(IMPORT_CODE)["s"] for _ in range(5))
    print(f"\nimport cutmix_zoo after import torch, torchvision: {imports[2] * 1000:.0f} ms (median of 5; target <= 300 ms)")

    print(f"\npeak memory of a load over the import baseline (weights: {weights_mib:.1f} MiB)")
    for kind, path in [("cutmix_zoo", file), ("timm", file), ("torchvision", pth)]:
        mib = peak_memory_mib(kind, path)
        print(f"{kind:12} {mib:8.1f} MiB {mib / weights_mib:6.2f}x the weights")
    zoo_ratio = results["cutmix_zoo.load(features_only), Hub cache"] / timm_ms
    print(f"\nHub-cache load / timm: {zoo_ratio:.3f} (target <= 0.1)")


if __name__ == "__main__":
    main()
