"""The package's layering, as docs/ARCHITECTURE.md draws it: imports run one way, no cycles, no private names across modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cutmix_zoo"
# Bottom to top: a module may import its own layer or a lower one.
LAYERS = [
    ("facts", {"errors", "registry", "recipes", "categories", "files"}),
    ("parts", {"models", "model_config", "fastload", "features", "shapes"}),
    ("building", {"builder"}),
    ("hub", {"hub"}),
    ("load API", {"api", "entrypoints"}),
    ("reports", {"reports"}),
    ("detection", {"detection"}),
    ("package", {""}),
    ("trainer", {"train"}),
    ("commands", {"cli", "__main__", "train.__main__"}),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module: str) -> int:
    best = None
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            if module == member or (member and module.startswith(member + ".")):
                if best is None or len(member) > best[1]:
                    best = (index, len(member))
    assert best is not None, f"cutmix_zoo.{module} is in no layer of docs/ARCHITECTURE.md"
    return best[0]


def _imports_of(source: str, package: str) -> tuple[list[tuple[str, list[str]]], list[int]]:
    """The cutmix_zoo modules a module's source imports (with the names taken from each), function-level imports included,
    and the lines where it imports a module by a name computed at run time, an edge the checker cannot see."""
    found, hidden = [], []
    lazy = any(isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["_LAZY"] for node in ast.walk(ast.parse(source)))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module and node.module.startswith("cutmix_zoo"):
                target = node.module.removeprefix("cutmix_zoo").lstrip(".")
            else:
                continue
            names = [a.name for a in node.names]
            submodules = [f"{target}.{n}".lstrip(".") for n in names
                          if (PACKAGE / Path(*f"{target}.{n}".lstrip(".").split("."))).with_suffix(".py").exists()]
            plain = [n for n in names if f"{target}.{n}".lstrip(".") not in submodules]
            if plain or not submodules:
                found.append((target, plain))
            found.extend((s, []) for s in submodules)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("cutmix_zoo"):
                    found.append((alias.name.removeprefix("cutmix_zoo").lstrip("."), []))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args:
            spec = node.args[0]  # importlib.import_module("cutmix_zoo.x") or (".x", __name__) with a literal name
            if isinstance(spec, ast.Constant) and isinstance(spec.value, str):
                name = spec.value
                found.append((".".join(filter(None, [package, name.lstrip(".")])) if name.startswith(".")
                              else name.removeprefix("cutmix_zoo").lstrip("."), []))
            elif not lazy:  # a computed name is seen only through a _LAZY table beside it
                hidden.append(node.lineno)
        elif isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["_LAZY"]:
            # the package's lazy public names: name -> module, imported by __getattr__ on first use
            found.extend((value.value, []) for value in getattr(node.value, "values", []) if isinstance(value, ast.Constant))
    return found, hidden


def _imports() -> tuple[dict[str, list[tuple[str, list[str]]]], dict[str, list[int]]]:
    """cutmix_zoo module -> (imported cutmix_zoo module, names taken from it); and module -> lines of imports it cannot see."""
    graph: dict[str, list[tuple[str, list[str]]]] = {}
    hidden: dict[str, list[int]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        graph[module], lines = _imports_of(path.read_text(), package)
        if lines:
            hidden[module] = lines
    return graph, hidden


GRAPH, HIDDEN = _imports()


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_run_down_the_layers(module):
    upward = [target for target, _ in GRAPH[module] if target != module and _layer(target) > _layer(module)]
    assert not upward, f"cutmix_zoo.{module} ({LAYERS[_layer(module)][0]}) imports a higher layer: {upward}"


def test_every_import_is_one_the_checker_sees():
    """A module imported by a name computed at run time (importlib with a variable) would be an edge none of these tests see."""
    assert not HIDDEN, f"imports by computed names (write them as imports, or as literal names): {HIDDEN}"


def test_no_private_name_is_imported_across_modules():
    private = [(m, t, n) for m, found in GRAPH.items() for t, names in found for n in names if n.startswith("_") and not n.endswith("__") and t != m]
    assert not private


def test_no_import_cycles():
    edges = {m: {t for t, _ in found if t in GRAPH and t != m} for m, found in GRAPH.items()}
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        assert node not in path, f"import cycle: {' -> '.join(path[path.index(node):] + [node])}"
        if node in done:
            return
        for target in edges[node]:
            visit(target, path + [node])
        done.add(node)

    for module in edges:
        visit(module, [])


def test_the_checker_sees_what_it_checks():
    """The graph holds known edges, so an empty graph cannot pass the tests above."""
    assert ("files", ["CONFIG_NAME", "WEIGHTS_NAME", "sha256_file", "write_text_atomic"]) in GRAPH["hub.cache"]
    assert any(t == "registry" for t, _ in GRAPH["recipes"]) and _layer("train.loop") == 8 and _layer("train.__main__") == 9
    assert ("reports.cam", []) in GRAPH[""]  # the package's lazy names are edges too
    assert {"cli.listing", "cli.train", "cli.localize"} <= {t for t, _ in GRAPH["cli"]}  # the dispatcher's command modules
    assert ("train", ["train_main"]) in GRAPH["cli.train"]  # and what a command imports when it runs
    assert _imports_of("import importlib\nimportlib.import_module(name)\n", "cli") == ([], [2])  # a computed import is caught


def test_every_public_name_imports_from_the_package():
    """Every name in ``cutmix_zoo.__all__`` resolves (the lazy ones through their modules), and each lazy name is one
    the defining module really has, so a moved function cannot leave a dangling public name."""
    import cutmix_zoo

    names = {name: getattr(cutmix_zoo, name) for name in cutmix_zoo.__all__}
    assert all(callable(value) for value in names.values())
    lazy = GRAPH[""]
    assert {"reports.cam", "hub.export", "detection.export", "api"} <= {target for target, _ in lazy}
    assert {"load", "list_models", "model_info", "transforms", "cam", "predict", "localize", "detection_backbone",
            "load_detector", "save_pretrained", "ZooError"} <= set(names)
