"""The package's shape, checked: imports point down the stages, no import cycle, small modules.

docs/architecture.md draws the same order. A new module goes into the stage that owns its job;
a module that needs something from a higher stage is in the wrong place.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "neon_ray"

STAGES = ("errors", "runtime", "data", "nets", "zoo", "deepcomp", "results", "pruning", "baselines",
          "agent", "tune", "pipeline", "bench", "cli")
"""Lowest first: a module may import its own stage and the stages before it, never one after."""

MAX_LINES = 400


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def project_imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("neon_ray"):
            names.update(f"{node.module}.{a.name}" for a in node.names)
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("neon_ray"))
    return names


def stage(module: str) -> int | None:
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) > 1 and parts[1] in STAGES else None


def test_imports_point_down_the_stages():
    upward = []
    for name, path in modules().items():
        mine = stage(name)
        for target in project_imports(path, top_level_only=False):
            theirs = stage(target)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{name} -> {target}")
    assert not upward, "imports against the stage order:\n" + "\n".join(sorted(upward))


def test_no_import_cycle_at_module_level():
    known = modules()
    graph = {name: {t for t in project_imports(path, top_level_only=True) if t in known and t != name}
             for name, path in known.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return trail + [node, nxt]
            if nxt not in state and (cycle := visit(nxt, trail + [node])):
                return cycle
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name, [])
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_is_over_the_size_limit():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_package_is_a_stage():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    top_modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert packages | top_modules <= set(STAGES)
