"""The module graph: no import cycles anywhere in ``inference``, and planning without torch.

The graph is read from the source (``ast``): every import statement at module level, including
those under ``if TYPE_CHECKING:`` (a cycle a type checker walks is still a knot in the design);
imports inside functions are deferred on purpose and left out.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "inference"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(tree: ast.Module) -> list[ast.stmt]:
    """Import statements at module level, also inside module-level ``if``/``try`` blocks."""
    found, pending = [], list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, (ast.If, ast.Try)):
            pending += node.body + node.orelse + getattr(node, "handlers", []) + getattr(node, "finalbody", [])
        elif isinstance(node, ast.ExceptHandler):
            pending += node.body
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in _top_level_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: up from the importing package
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # ``from pkg import mod`` names a module when pkg.mod is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_graph_sees_the_imports_it_should():
    graph = _graph()
    assert "inference.planning.types" in graph["inference.planning.fit"]
    assert "inference.planning.types" in graph["inference.executors.base"]  # under TYPE_CHECKING
    assert {"inference.planning.types", "inference.planning.shapes"} <= set(graph)


def test_no_module_of_inference_imports_itself_in_a_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_catalogue_and_planner_plan_a_registered_model_without_torch_or_transformers():
    done = _fresh(
        "import sys\n"
        "from inference import catalogue, planner\n"
        "from inference.hardware import PRESETS\n"
        "plan = catalogue.preview('vibevoice-1.5b', PRESETS['laptop-4050-6g'])[0]\n"
        "entries = catalogue.models(check_cache=False)\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print(plan.level, len(entries), heavy)\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["codec-cpu", "4", "[]"]  # test_planner.EXPECTED


def test_the_plan_command_for_a_registered_model_imports_no_torch():
    done = _fresh(
        "import sys\n"
        "from inference.cli import main\n"
        "code = main(['plan', '--model', 'csm-1b', '--hardware', 'gtx1650-4g', '--json'])\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules, code, file=sys.stderr)\n")
    assert done.returncode == 0, done.stderr
    assert done.stderr.split()[-3:] == ["False", "False", "0"]
