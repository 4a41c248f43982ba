"""The package's layers hold: no import cycle, no import from a lower layer to a higher one.

The graph is read from the code (:mod:`import_graph`, every ``import`` including those inside
functions); ``doc/architecture.md`` shows it and must show the current one.
"""

from __future__ import annotations

import ast
from pathlib import Path
import sys

sys.path.insert(0, str(Path(__file__).resolve().parent))

import import_graph  # noqa: E402, I100

REPO = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 80
LONG_FUNCTIONS_ALLOWED: set[tuple[str, str]] = set()   # (file, function) allowed over 80


def test_every_module_has_a_layer():
    for module in import_graph.module_graph():
        if module != 'depth_node':
            import_graph.layer_of(module)   # KeyError names the module


def test_no_import_cycle_between_modules_or_packages():
    graph = import_graph.module_graph()
    assert import_graph.cycles(graph) == []
    assert import_graph.cycles(import_graph.unit_graph(graph)) == []


def test_no_import_from_a_lower_layer_to_a_higher_one():
    assert import_graph.upward_imports() == []


def test_the_checks_can_fail():
    graph = {'depth_node.models.card': {'depth_node.runner'},
             'depth_node.runner': {'depth_node.models.card'}}
    assert import_graph.upward_imports(graph) == ['depth_node.models.card -> depth_node.runner']
    assert import_graph.cycles(import_graph.unit_graph(graph)) == [['models', 'runner']]


def test_library_code_does_not_import_the_tools():
    tools = set(import_graph.LAYERS[-1][1])
    for module, deps in import_graph.module_graph().items():
        if import_graph.unit_of(module) not in tools and module != 'depth_node':
            assert not {import_graph.unit_of(d) for d in deps} & tools, module


def test_doc_shows_the_current_graph():
    doc = (REPO / 'doc' / 'architecture.md').read_text(encoding='utf-8')
    assert import_graph.mermaid() in doc, (
        'doc/architecture.md shows an old import graph: paste the output of '
        '`python test/import_graph.py` into it')


def _long_functions() -> list[tuple[str, str, int]]:
    found = []
    for path in sorted((REPO / 'depth_node').rglob('*.py')):
        rel = path.relative_to(REPO).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and (rel, node.name) not in LONG_FUNCTIONS_ALLOWED:
                    found.append((rel, node.name, lines))
    return found


def test_no_function_over_80_lines():
    assert _long_functions() == []
