"""The package layering, read from the source with `ast` (module-level, lazy and TYPE_CHECKING imports alike).

Bottom to top: toolkit (standard library only) -> modeling_allava (ships as remote code in checkpoints, so it
imports nothing else of the repo) -> hub -> dataset_scripts -> recipes; nothing imports a package above it, and
the module import graph has no cycle.
"""

import ast
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("toolkit", "modeling_allava", "hub", "dataset_scripts", "recipes")
# The repo's packages each package may import (itself included); anything else of the repo is a violation.
ALLOWED = {
    "toolkit": {"toolkit"},
    "modeling_allava": {"modeling_allava"},
    "hub": {"toolkit", "modeling_allava", "hub"},
    "dataset_scripts": {"toolkit", "modeling_allava", "hub", "dataset_scripts"},
    "recipes": {"toolkit", "modeling_allava", "hub", "dataset_scripts", "recipes"},
}
REPO_TOPS = {path.name for path in REPO.iterdir() if (path / "__init__.py").is_file()}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def find_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))}


MODULES = find_modules()


def imported_names(module: str, path: Path) -> list[tuple[str, int]]:
    """(absolute dotted name, line) of every import in the file, however deep in functions or `if` blocks. For
    `from X import y` both `X.y` and `X` are given; `resolve` keeps the longest that is a module."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names += [(f"{base}.{alias.name}" if base else alias.name, node.lineno) for alias in node.names]
    return names


def resolve(name: str) -> str | None:
    """The repo module an imported dotted name lands in (the longest prefix that is one), or None."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in MODULES:
            return ".".join(parts[:end])
    return None


def repo_imports(module: str) -> list[tuple[str, int]]:
    """(repo module or top-level repo name, line) that `module` imports."""
    found = []
    for name, line in imported_names(module, MODULES[module]):
        top = name.split(".")[0]
        if top in REPO_TOPS:
            found.append((resolve(name) or top, line))
    return found


def graph() -> dict[str, set[str]]:
    """Module -> the repo modules it imports (not itself)."""
    edges = {}
    for module in MODULES:
        edges[module] = {target for target, _ in repo_imports(module) if target in MODULES} - {module}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(edges):
        if root in state:
            continue
        path, stack = [root], [iter(sorted(edges[root]))]
        state[root] = 1
        while stack:
            following = next(stack[-1], None)
            if following is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(following) == 1:
                return path[path.index(following) :] + [following]
            elif following not in state:
                state[following] = 1
                path.append(following)
                stack.append(iter(sorted(edges.get(following, ()))))
    return None


def test_the_scan_sees_every_package_and_lazy_imports():
    assert {module.split(".")[0] for module in MODULES} == set(PACKAGES)
    # report.py reads parquet through a function-level import: lazy imports are seen too.
    lazy = imported_names("dataset_scripts.report", MODULES["dataset_scripts.report"])
    assert "pyarrow.parquet" in {name for name, _ in lazy}


def test_find_cycle_reports_the_loop():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_toolkit_uses_only_the_standard_library():
    outside = []
    for module, path in MODULES.items():
        if module.split(".")[0] == "toolkit":
            for name, line in imported_names(module, path):
                top = name.split(".")[0]
                if top != "toolkit" and (top in REPO_TOPS or top not in sys.stdlib_module_names):
                    outside.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert not outside, "\n".join(outside)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_imports_one_above_it(package):
    violations = [
        f"{MODULES[module].relative_to(REPO)}:{line} imports {target}"
        for module in MODULES
        if module.split(".")[0] == package
        for target, line in repo_imports(module)
        if target.split(".")[0] not in ALLOWED[package]
    ]
    assert not violations, "\n".join(violations)


def test_module_imports_have_no_cycle():
    edges, cycles = graph(), []
    while cycle := find_cycle(edges):
        cycles.append(" -> ".join(cycle))
        edges[cycle[0]].discard(cycle[1])  # so that the next search finds the next cycle
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
