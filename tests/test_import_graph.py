"""The package's import graph (read with ast, nothing imported): no cycle, no lower layer
importing a higher one, no function-local import of the package's own modules except the
few listed with their reason (docs/data-flow.md, "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fer_lightning"

#: Layers, lowest first: a module may import its own layer and the ones below. Matched by
#: the longest dotted prefix; ``__main__`` modules are commands wherever they live.
LAYERS: tuple[tuple[str, ...], ...] = (
    # ground floor: errors, checks, key sets, the landmark schema, plain helpers
    ("fer_lightning", "fer_lightning.errors", "fer_lightning.checks", "fer_lightning.keys",
     "fer_lightning.labels", "fer_lightning.slurm", "fer_lightning.runlog",
     "fer_lightning.provenance", "fer_lightning.losses", "fer_lightning.data.landmarks.schema",
     "fer_lightning.trust", "fer_lightning.conf", "fer_lightning.launch",
     "fer_lightning.speed", "fer_lightning.cli_help", "fer_lightning.handles",
     "fer_lightning.resolvers", "fer_lightning.signatures", "fer_lightning.lazy"),
    # data and nets (never each other), metrics, the checkpoint file format
    ("fer_lightning.data", "fer_lightning.nets", "fer_lightning.metrics",
     "fer_lightning.checkpoint", "fer_lightning.finetune"),
    # Lightning pieces
    ("fer_lightning.modules", "fer_lightning.callbacks", "fer_lightning.resume",
     "fer_lightning.budget", "fer_lightning.progress"),
    # config -> objects
    ("fer_lightning.build", "fer_lightning.config", "fer_lightning.config_checks",
     "fer_lightning.results", "fer_lightning.input_spec", "fer_lightning.fit"),
    # applying a trained net
    ("fer_lightning.inference", "fer_lightning.tta"),
    # the ablation report (reads run folders only)
    ("fer_lightning.report",),
    # commands
    ("fer_lightning.train", "fer_lightning.eval", "fer_lightning.predict",
     "fer_lightning.export", "fer_lightning.convert", "fer_lightning.cli",
     "fer_lightning.multirun",
     "fer_lightning.__main__"),
)
COMMAND_LAYER = len(LAYERS) - 1

#: Function-local imports of the package's own modules kept on purpose, with the reason.
LOCAL_IMPORTS_KEPT: dict[tuple[str, str], str] = {
    ("fer_lightning.report.__main__", "fer_lightning.report.outputs"):
        "start-up speed: --format json skips rich tables",
    ("fer_lightning.report.__main__", "fer_lightning.report.plots"):
        "start-up speed: matplotlib only when plots are written",
    **dict.fromkeys([
        ("fer_lightning.train", "fer_lightning.fit"),
        ("fer_lightning.config", "fer_lightning.nets.factory"),
        ("fer_lightning.data.__main__", "fer_lightning.build"),
        ("fer_lightning.data.__main__", "fer_lightning.data.dataset"),
        ("fer_lightning.data.__main__", "fer_lightning.data.preview"),
        ("fer_lightning.data.__main__", "fer_lightning.data.summary"),
        ("fer_lightning.eval", "fer_lightning.build"),
        ("fer_lightning.eval", "fer_lightning.checkpoint"),
        ("fer_lightning.eval", "fer_lightning.inference.tta"),
        ("fer_lightning.eval", "fer_lightning.results"),
        ("fer_lightning.export", "fer_lightning.inference.media"),
        ("fer_lightning.export", "fer_lightning.inference.onnx_export"),
        ("fer_lightning.predict", "fer_lightning.checkpoint"),
        ("fer_lightning.predict", "fer_lightning.inference.onnx_export"),
        ("fer_lightning.predict", "fer_lightning.inference.predictor"),
    ], "start-up speed: --help, a config error and a missing dataset answer before torch "
       "and Lightning are imported (tests/test_startup.py)"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING" or \
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _targets(node: ast.Import | ast.ImportFrom, known: set[str]) -> list[str]:
    """The package modules an import statement loads (``from a import b`` loads ``a.b``
    when ``b`` is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "fer_lightning"]
    if node.level or not node.module or node.module.split(".")[0] != "fer_lightning":
        return []
    found = [node.module]
    found += [f"{node.module}.{alias.name}" for alias in node.names
              if f"{node.module}.{alias.name}" in known]
    return found


def imports(path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """(modules imported at module level, modules imported inside functions), without
    ``if TYPE_CHECKING:`` blocks."""
    top, local = set(), set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                (local if in_function else top).update(_targets(child, known))
            visit(child, in_function or isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    visit(ast.parse(path.read_text()), False)
    return top, local


def layer(module: str) -> int:
    if module.endswith(".__main__"):
        return COMMAND_LAYER
    best, best_length = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    assert best is not None, f"{module} is in no layer of tests/test_import_graph.py"
    return best


@pytest.fixture(scope="module")
def graph() -> dict[str, tuple[set[str], set[str]]]:
    found = modules()
    return {name: imports(path, set(found)) for name, path in found.items()}


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle(graph):
    edges = {name: {t for t in top | local if t in graph and t != name and
                    not name.startswith(t + ".")}  # a package's __init__ runs first anyway
             for name, (top, local) in graph.items()}
    cycle = _cycle(edges)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_no_lower_layer_imports_a_higher_one(graph):
    upward = [f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)})"
              for name, (top, local) in graph.items() for target in top | local
              if target in graph and layer(target) > layer(name)]
    assert not upward, "\n".join(upward)


def test_data_and_nets_never_import_each_other(graph):
    crossing = [f"{name} imports {target}" for name, (top, local) in graph.items()
                for target in top | local
                for a, b in (("data", "nets"), ("nets", "data"))
                if name.startswith(f"fer_lightning.{a}") and
                target.startswith(f"fer_lightning.{b}")]
    assert not crossing, crossing


def test_function_local_self_imports_are_the_listed_ones(graph):
    local = {(name, target) for name, (_, targets) in graph.items() for target in targets
             if target in graph and not target.startswith(name + ".")}
    assert local == set(LOCAL_IMPORTS_KEPT), (
        f"unlisted: {sorted(local - set(LOCAL_IMPORTS_KEPT))}; "
        f"listed but gone: {sorted(set(LOCAL_IMPORTS_KEPT) - local)}")


def test_the_walk_sees_imports():
    """The checks above would pass on an empty graph: the walk must find real edges."""
    found = modules()
    top, _ = imports(found["fer_lightning.build"], set(found))
    assert {"fer_lightning.config", "fer_lightning.checkpoint"} <= top
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
