"""The package's module import graph, read from the code, and its layers.

``python test/import_graph.py`` prints the graph as the Mermaid block of
``doc/architecture.md``; ``--write`` puts it there (between the ``import-graph`` markers).
``test_architecture.py`` checks the graph against :data:`LAYERS`. Every ``import`` counts,
including those inside functions (a deferred import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path
import sys

PACKAGE = Path(__file__).resolve().parents[1] / 'depth_node'

# lowest first; a module may import only from its own layer or lower ones
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ('foundation', ('errors', 'ratelimit', 'messages', 'parameters', 'device')),
    ('data', ('camera', 'calibration', 'distortion', 'images', 'clouds', 'sync', 'metric',
              'diagnostics')),
    ('model description', ('models',)),
    ('backends', ('backends',)),
    ('runner', ('runner',)),
    ('pipeline', ('pipeline',)),
    ('node', ('node', 'dds')),
    ('tools', ('cli', 'tools', 'bag', 'bag_options', 'bag_rosbag', 'bag_folders', 'bag_summary',
               'bagio', 'bagjoin', 'evaluate')),
]


def unit_of(module: str) -> str:
    """``depth_node.models.card`` -> ``models``; ``depth_node.camera`` -> ``camera``."""
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else parts[0]


def layer_of(module: str) -> int:
    """Index in :data:`LAYERS` of a module's unit; KeyError names an unplaced module."""
    unit = unit_of(module)
    for index, (_, units) in enumerate(LAYERS):
        if unit in units:
            return index
    raise KeyError(f'{module}: add {unit!r} to a layer in test/import_graph.py')


def module_name(path: Path) -> str:
    """Dotted module name of a file in the package."""
    rel = path.relative_to(PACKAGE.parent).with_suffix('')
    parts = list(rel.parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def _imported(node: ast.AST, current: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ''
    if node.level:
        parts = current.split('.')
        keep = len(parts) - node.level + (1 if is_package else 0)
        base = '.'.join(parts[:keep] + ([base] if base else []))
    # ``from depth_node.models import zoo`` imports the submodule zoo
    return [f'{base}.{alias.name}' for alias in node.names] + [base]


def module_graph() -> dict[str, set[str]]:
    """Return ``{module: {imported depth_node modules}}`` for every module of the package."""
    files = sorted(PACKAGE.rglob('*.py'))
    known = {module_name(f) for f in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        name = module_name(path)
        tree = ast.parse(path.read_text(encoding='utf-8'), str(path))
        deps: set[str] = set()
        for node in ast.walk(tree):
            for target in _imported(node, name, path.name == '__init__.py'):
                if target in known and target != name and target != 'depth_node':
                    deps.add(target)
        graph[name] = deps
    return graph


def unit_graph(graph: dict[str, set[str]] | None = None) -> dict[str, set[str]]:
    """Return the graph between units (top-level modules and subpackages)."""
    graph = module_graph() if graph is None else graph
    units: dict[str, set[str]] = {}
    for module, deps in graph.items():
        if module == 'depth_node':
            continue
        edges = units.setdefault(unit_of(module), set())
        edges.update(unit_of(d) for d in deps if unit_of(d) != unit_of(module))
    return units


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def upward_imports(graph: dict[str, set[str]] | None = None) -> list[str]:
    """Every import from a lower layer to a higher one, as ``'a -> b'`` lines."""
    graph = module_graph() if graph is None else graph
    return [f'{m} -> {d}' for m, deps in sorted(graph.items()) if m != 'depth_node'
            for d in sorted(deps) if layer_of(d) > layer_of(m)]


def mermaid() -> str:
    """Return the unit graph as a Mermaid flowchart, layers as subgraphs (top = highest)."""
    units = unit_graph()
    lines = ['```mermaid', 'flowchart TD']
    for index in range(len(LAYERS) - 1, -1, -1):
        title, members = LAYERS[index]
        present = [u for u in members if u in units]
        lines.append(f'  subgraph L{index}["{index}: {title}"]')
        lines.extend(f'    {u}' for u in present)
        lines.append('  end')
    for unit in sorted(units):
        lines.extend(f'  {unit} --> {dep}' for dep in sorted(units[unit]))
    lines.append('```')
    return '\n'.join(lines)


MARKERS = ('<!-- import-graph: generated by python test/import_graph.py --write -->',
           '<!-- end of import-graph -->')


def write_doc(path: Path = PACKAGE.parent / 'doc' / 'architecture.md') -> None:
    """Replace the graph between :data:`MARKERS` in ``doc/architecture.md``."""
    text = path.read_text(encoding='utf-8')
    start = text.index(MARKERS[0]) + len(MARKERS[0])
    end = text.index(MARKERS[1])
    path.write_text(text[:start] + '\n' + mermaid() + '\n' + text[end:], encoding='utf-8')


if __name__ == '__main__':
    if '--write' in sys.argv[1:]:
        write_doc()
    else:
        sys.stdout.write(mermaid() + '\n')
