"""The layers of docs/architecture.md hold: import-linter's contracts (pyproject.toml), no import
cycle between any two modules, and no module reaching into another module's private names."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts: list[dict[str, object]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def _lint_imports(src: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports over the package found in ``src``, with the project's contracts."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_import_contracts_hold() -> None:
    result = _lint_imports(SRC)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout


def test_an_ml_module_importing_the_functions_layer_breaks_the_contracts(tmp_path: Path) -> None:
    """The contracts can fail: a copy of the package where search imports the functions layer."""
    copy = tmp_path / "src"
    shutil.copytree(SRC / "embedlake", copy / "embedlake", ignore=shutil.ignore_patterns("web"))
    searcher = copy / "embedlake" / "search" / "searcher.py"
    text = searcher.read_text(encoding="utf-8")
    anchor = "from embedlake.workspace import Workspace\n"
    assert anchor in text
    searcher.write_text(
        text.replace(anchor, anchor + "from embedlake.functions.context import Context\n"),
        encoding="utf-8",
    )
    result = _lint_imports(copy)
    assert result.returncode != 0
    assert "layers: face > flow > ML > data > base BROKEN" in " ".join(result.stdout.split())
    assert "embedlake.search.searcher -> embedlake.functions.context" in result.stdout


def test_every_top_level_module_has_a_layer() -> None:
    [layers] = [c for c in _contracts() if str(c["name"]).startswith("layers:")]
    named = {m.strip() for layer in layers["layers"] for m in str(layer).split(":")}  # type: ignore[attr-defined]
    package = SRC / "embedlake"
    found = {
        f"embedlake.{p.stem}"
        for p in package.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }
    assert found - named == set(), "give these modules a layer in pyproject.toml"
    assert named - found == set(), "these layer entries name no module"


def test_no_two_modules_import_each_other_even_indirectly() -> None:
    """Stricter than import-linter's acyclic_siblings (packages): no cycle between modules,
    counting imports inside functions and under TYPE_CHECKING."""
    graph = grimp.build_graph("embedlake", cache_dir=None)
    cycles = [c for c in _strongly_connected(graph) if len(c) > 1]
    assert cycles == []


def _strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's algorithm over the module graph (iterative: the graph is deep)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(sorted(component))
    return out


def test_no_module_imports_a_private_name_of_another_module() -> None:
    """``from embedlake.x import _name``: a private name is its module's own business."""
    offenders = []
    for path in sorted((SRC / "embedlake").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("embedlake"):
                private = [
                    a.name
                    for a in node.names
                    if a.name.startswith("_") and not a.name.endswith("__")
                ]
                if private:
                    offenders.append(f"{path.relative_to(SRC)}: {node.module} import {private}")
    assert offenders == []
