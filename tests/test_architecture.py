"""The package's shape: no import cycles in ``src/durable_ir``, counting module-level,
``TYPE_CHECKING`` and function-level imports (what grimp, the graph under import-linter, sees).
The layers themselves are import-linter contracts in pyproject.toml (``lint-imports`` in
.ci/run)."""

from __future__ import annotations

import grimp


def strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every set of modules that import each other round (Tarjan), largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:
        # Iterative, so a deep import chain cannot hit the recursion limit.
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            module, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append(
                        (target, iter(sorted(graph.find_modules_directly_imported_by(target))))
                    )
                    break
                if target in on_stack:
                    low[module] = min(low[module], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[module])
                if low[module] == index[module]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == module:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return sorted(found, key=len, reverse=True)


def describe(graph: grimp.ImportGraph, component: list[str]) -> str:
    members = set(component)
    lines = []
    for module in component:
        for target in sorted(graph.find_modules_directly_imported_by(module) & members):
            for detail in graph.get_import_details(importer=module, imported=target):
                lines.append(
                    f"  {module} -> {target} (line {detail['line_number']}: "
                    f"{detail['line_contents'].strip()})"
                )
    return "\n".join(lines)


def test_the_package_has_no_import_cycles() -> None:
    graph = grimp.build_graph(
        "durable_ir", include_external_packages=False, exclude_type_checking_imports=False
    )
    assert len(graph.modules) > 100  # the whole package was read
    cycles = strongly_connected(graph)
    assert cycles == [], "import cycles:\n" + "\n\n".join(describe(graph, c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above can fail: a graph with a cycle is reported."""
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b", line_number=1, line_contents="import b")
    graph.add_import(importer="pkg.b", imported="pkg.c", line_number=1, line_contents="import c")
    graph.add_import(importer="pkg.c", imported="pkg.a", line_number=3, line_contents="import a")
    graph.add_import(importer="pkg.c", imported="pkg.d", line_number=4, line_contents="import d")
    assert strongly_connected(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert "pkg.c -> pkg.a (line 3: import a)" in describe(graph, ["pkg.a", "pkg.b", "pkg.c"])
