"""The layers of the code base: imports point one way, and cited documentation exists.

cfenv (physics, environment, shared vocabulary) <- agents.models (torch modules) <- agents
(the zoo: protocol, registry, agents, how they learn) <- agents.lab (experiments) <- the CLIs.
Every import statement counts, including those inside functions.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cfenv", "agents")


def project_modules() -> dict[str, Path]:
    """Dotted module name -> file, for cfenv, agents and the two CLIs."""
    modules = {"train": ROOT / "train.py", "evaluate": ROOT / "evaluate.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules that ``path`` imports anywhere (module level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from pkg import mod`` imports the module pkg.mod; ``from pkg import name`` imports pkg
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                     for a in node.names]
        else:
            continue
        for name in names:
            if name in modules:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    graph = {}
    for name, path in modules.items():
        targets = imports_of(path, modules)
        # a package's __init__ importing its own submodules and a submodule naming its package's
        # submodule are ordinary; drop only self-edges
        graph[name] = {t for t in targets if t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def layer(module: str) -> int:
    """0 cfenv, 1 agents.models (and agents.specs, the circuits' torch-free description), 2 the zoo
    (agents, agents.learning), 3 agents.lab, 4 CLIs."""
    if module.startswith("cfenv"):
        return 0
    if module.startswith(("agents.models", "agents.specs")):
        return 1
    if module.startswith("agents.lab"):
        return 3
    if module.startswith("agents"):
        return 2
    return 4


def test_the_graph_sees_the_project():
    graph = import_graph()
    assert {"cfenv.rates", "agents.models.quantum.layer", "agents.lab.evaluation", "train"} <= set(graph)
    assert {"agents.learning", "agents.models"} <= graph["agents.neural"]
    assert "cfenv._kernels" in graph["cfenv.rates"]  # function-level ``from cfenv import _kernels``


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_dependencies_point_down_the_layers():
    upward = sorted(f"{source} -> {target}" for source, targets in import_graph().items() for target in targets
                    if layer(target) > layer(source))
    assert upward == []


def test_cfenv_never_imports_agents():
    graph = import_graph()
    assert not [(s, t) for s, ts in graph.items() if s.startswith("cfenv") for t in ts if t.startswith("agents")]


# ---------------------------------------------------------------- citations of docs/model.md
MODEL_DOC = ROOT / "docs" / "model.md"
CITATION = re.compile(r"docs/model\.md\s+(?:§\s?(?P<section>\d+(?:\.\d+)?)(?:-(?P<last>\d+(?:\.\d+)?))?"
                      r"|eqs?\.\s+\((?P<eq>\d+\.\d+)\))")


def cited_files() -> list[Path]:
    files = [ROOT / "README.md", *ROOT.glob("*.py")]
    for folder in ("cfenv", "agents", "benchmarks", "docs", "tests", "examples"):
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md") and p not in (MODEL_DOC, Path(__file__))]
    return files


def test_every_cited_section_and_equation_of_docs_model_exists():
    text = MODEL_DOC.read_text()
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)[. ]", text, re.M))
    equations = set(re.findall(r"\((\d+\.\d+)\)", text))
    citations, missing = 0, []
    for path in cited_files():
        for match in CITATION.finditer(path.read_text()):
            citations += 1
            wanted = [g for g in (match["section"], match["last"]) if g] or []
            missing += [f"{path.name}: §{w}" for w in wanted if w not in sections]
            if match["eq"] and match["eq"] not in equations:
                missing.append(f"{path.name}: eq. ({match['eq']})")
    assert citations >= 20, "the code should cite docs/model.md rather than an external spec"
    assert missing == []


def test_no_citation_of_the_external_spec():
    offenders = [p.name for p in cited_files() if re.search(r"\bSPEC\b(?!_)", p.read_text())]
    assert offenders == []


@pytest.mark.parametrize("bad", ["docs/model.md §9", "docs/model.md eq. (2.99)"])
def test_the_citation_check_catches_a_missing_target(bad):
    text = MODEL_DOC.read_text()
    match = CITATION.search(bad)
    assert match is not None
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)[. ]", text, re.M))
    equations = set(re.findall(r"\((\d+\.\d+)\)", text))
    assert (match["section"] and match["section"] not in sections) or (match["eq"] and match["eq"] not in equations)


MAX_MODULE_LINES = 800
"""no module of the project is longer (issue #26)"""
MAX_FUNCTION_LINES = 100
"""no function is longer, outside compiled (numba) kernels, whose loops are written out for speed"""


def _is_kernel(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Decorated with ``njit(...)`` / ``numba.njit`` / ``jit``."""
    return any("jit" in ast.unparse(d).split("(")[0] for d in node.decorator_list)


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``name (lines)`` of every non-kernel function of ``source`` longer than ``limit`` lines."""
    return [f"{node.name} ({node.end_lineno - node.lineno + 1})" for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _is_kernel(node)
            and node.end_lineno - node.lineno + 1 > limit]


def test_no_module_over_800_lines():
    long = {name: n for name, path in project_modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_over_100_lines_outside_kernels():
    long = {name: found for name, path in project_modules().items() if (found := long_functions(path.read_text()))}
    assert long == {}


def test_the_length_checks_catch_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    assert long_functions(f"def f():\n{body}\n") == [f"f ({MAX_FUNCTION_LINES + 1})"]
    assert long_functions(f"@njit(cache=True)\ndef f():\n{body}\n") == []
