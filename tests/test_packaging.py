"""The distributions: what the sdist and the wheel hold, the license, the declared floors, ``--version``.

The sdist and the wheel are built once per session from a copy of the checkout, offline, with the
setuptools installed here (``python -m build --no-isolation``, the wheel built from the sdist, so a
file the sdist forgets is missing from the wheel too).
"""

from __future__ import annotations

import email
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import cutmix_zoo

REPO = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache",
                              "runs", ".mypy_cache", ".ruff_cache")

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")


def pyproject() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def floors() -> dict[str, tuple[int, ...]]:
    """``{"torch": (2, 5), ...}``: the ``>=`` bound of every runtime dependency."""
    out = {}
    for req in pyproject()["project"]["dependencies"]:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", req.split(";")[0].strip())
        assert m, f"dependency {req!r} has no plain >= floor"
        out[m.group(1).lower().replace("-", "_")] = tuple(int(p) for p in m.group(2).split("."))
    return out


def package_source() -> str:
    return "\n".join(p.read_text() for p in sorted((REPO / "cutmix_zoo").rglob("*.py")))


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    pytest.importorskip("build", reason="the test extra installs build")
    root = tmp_path_factory.mktemp("packaging")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=SKIP, symlinks=True)
    out = root / "dist"
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    (sdist,), (wheel,) = out.glob("*.tar.gz"), out.glob("*.whl")
    return sdist, wheel


@pytest.fixture(scope="session")
def sdist_files(dists) -> set[str]:
    with tarfile.open(dists[0]) as tf:
        names = [m.name for m in tf.getmembers() if m.isfile()]
    prefix = names[0].split("/", 1)[0] + "/"
    return {n[len(prefix):] for n in names}


@pytest.fixture(scope="session")
def wheel_files(dists) -> set[str]:
    with zipfile.ZipFile(dists[1]) as zf:
        return set(zf.namelist())


def _repo_files(pattern: str) -> set[str]:
    return {p.relative_to(REPO).as_posix() for p in REPO.glob(pattern) if "__pycache__" not in p.parts}


def test_license_holds_both_mit_notices():
    text = (REPO / "LICENSE").read_text()
    assert text.count("Permission is hereby granted, free of charge") == 2
    assert "Copyright (c) 2019-present NAVER Corp." in text and "cutmix-zoo authors" in text


def test_sdist_holds_what_the_tests_need(sdist_files):
    needed = {"LICENSE", "README.md", "pyproject.toml", "hubconf.py", ".ci/run", "docs/ARCHITECTURE.md",
              "tests/conftest.py", "tests/servers.py", "tests/tiny.py"}
    needed |= _repo_files("tests/*.py") | _repo_files("model_cards/*.md") | _repo_files("benchmarks/*.py")
    needed |= _repo_files("cutmix_zoo/**/*.py") | _repo_files("cutmix_zoo/data/*.safetensors") | {"cutmix_zoo/py.typed"}
    assert not needed - sdist_files, f"missing from the sdist: {sorted(needed - sdist_files)}"
    assert not [n for n in sdist_files if "__pycache__" in n or n.endswith(".pyc") or n.startswith(".venv/")]


def test_wheel_holds_the_package_its_data_and_the_license(wheel_files):
    needed = _repo_files("cutmix_zoo/**/*.py") | _repo_files("cutmix_zoo/data/*.safetensors") | {"cutmix_zoo/py.typed"}
    assert len(_repo_files("cutmix_zoo/data/*.safetensors")) >= 2
    assert not needed - wheel_files, f"missing from the wheel: {sorted(needed - wheel_files)}"
    assert {n.split("/", 1)[0] for n in wheel_files} == {"cutmix_zoo", "cutmix_zoo-0.1.0.dist-info"}
    assert "cutmix_zoo-0.1.0.dist-info/licenses/LICENSE" in wheel_files


def test_wheel_metadata(dists):
    with zipfile.ZipFile(dists[1]) as zf:
        meta = email.message_from_bytes(zf.read("cutmix_zoo-0.1.0.dist-info/METADATA"))
        entry_points = zf.read("cutmix_zoo-0.1.0.dist-info/entry_points.txt").decode()
    assert meta["Name"] == "cutmix-zoo" and meta["Version"] == cutmix_zoo.__version__
    assert meta["License-Expression"] == "MIT" and meta.get_all("License-File") == ["LICENSE"]
    assert "Typing :: Typed" in meta.get_all("Classifier")
    assert not [c for c in meta.get_all("Classifier") if c.startswith("License ::")]  # PEP 639: the expression says it
    requires = meta.get_all("Requires-Dist")
    assert "torch>=2.5" in requires and "huggingface_hub>=0.25" in requires
    assert "cutmix-zoo = cutmix_zoo.cli:main" in entry_points


@pytest.mark.slow
def test_installed_wheel_loads_its_embedded_model(dists, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--target", str(target),
                    str(dists[1])], check=True, timeout=300)
    code = ("import cutmix_zoo, importlib.metadata as md; m = cutmix_zoo.load('pyramidnet20_a48');"
            "print(cutmix_zoo.__file__); print(m.pretrained_cfg['source']); print(md.version('cutmix-zoo'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    module, source, version = proc.stdout.split()
    assert module.startswith(str(target)) and source.startswith(str(target)) and source.endswith(".safetensors")
    assert version == cutmix_zoo.__version__


def test_build_system_setuptools_floor_builds_the_pyproject():
    data = pyproject()
    (req,) = [r for r in data["build-system"]["requires"] if r.startswith("setuptools")]
    floor = tuple(int(p) for p in req.split(">=")[1].split("."))
    if isinstance(data["project"]["license"], str) or "license-files" in data["project"]:
        assert floor >= (77,), "a PEP 639 license string (and license-files) needs setuptools 77"
    test_extra = data["project"]["optional-dependencies"]["test"]
    assert any(r.startswith("build") for r in test_extra) and req in test_extra


# (package, floor, why): an API the package uses, found in its source by the pattern, that needs at least that release.
API_FLOORS = [
    ("torch", (2, 5), r"torch\.serialization\.safe_globals\(", "torch.serialization.safe_globals (torch 2.4 had only add_safe_globals)"),
    ("torch", (2, 1), r"assign=True", "load_state_dict(assign=True)"),
    ("huggingface_hub", (0, 25), r"from huggingface_hub\.errors import \(?[^)]*EntryNotFoundError",
     "EntryNotFoundError in huggingface_hub.errors (0.24's errors module lacks it)"),
    ("safetensors", (0, 4), r"from safetensors import SafetensorError", "SafetensorError at the top level"),
]


@pytest.mark.parametrize("package,floor,pattern,why", API_FLOORS, ids=[f"{p}-{w.split()[0]}" for p, _, _, w in API_FLOORS])
def test_declared_floor_covers_the_apis_used(package, floor, pattern, why):
    if not re.search(pattern, package_source()):
        pytest.skip(f"the package no longer uses {why}")
    assert floors()[package] >= floor, f"{package} is used for {why}, which needs {package}>={'.'.join(map(str, floor))}"


def test_torchvision_floor_is_the_pair_of_the_torch_floor():
    f = floors()
    assert f["torchvision"][:2] == (0, f["torch"][1] + 15), "torchvision 0.(N+15) is built for torch 2.N"


def test_python_classifiers_start_at_requires_python():
    project = pyproject()["project"]
    lowest = min(tuple(map(int, c.rsplit(" ", 1)[1].split("."))) for c in project["classifiers"]
                 if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c))
    assert project["requires-python"] == ">=" + ".".join(map(str, lowest))


def test_version_matches_the_distribution():
    import importlib.metadata

    assert cutmix_zoo.__version__ == pyproject()["project"]["version"] == importlib.metadata.version("cutmix-zoo")


def test_cli_version():
    proc = subprocess.run([sys.executable, "-m", "cutmix_zoo", "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"cutmix-zoo {cutmix_zoo.__version__}"
