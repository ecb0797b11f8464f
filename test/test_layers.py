"""The layer rule of docs/design.md, checked on every import in the package (function-local ones
included, since a lazy import is still a dependency) - and no import circle.

Why a test that walks the imports with ``ast`` rather than import-linter contracts: the rule is
written once, as the table in docs/design.md that this test reads, so the document and the check
cannot drift; it needs no extra dependency; and the same walk checks which files may import ROS
(rclpy and message packages), which is a rule about third-party imports.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "cct_surgical_seg"
DESIGN = ROOT / "docs" / "design.md"
BASE_MODULES = {"__init__", "io_utils", "metrics", "resources"}  # the "base" layer
ROS_MODULES = {"rclpy", "rosidl_runtime_py", "rcl_interfaces", "launch", "launch_ros", "builtin_interfaces"}


def _rule() -> tuple[dict[str, set[str]], list[str]]:
    """(layer -> layers it may import, files that may import ROS) from docs/design.md's block."""
    block = re.search(r"```text\n(LAYER .*?)```", DESIGN.read_text(), re.S)
    assert block, "docs/design.md has no layer table (a ```text block starting with LAYER)"
    allowed: dict[str, set[str]] = {}
    ros_users: list[str] = []
    for line in block.group(1).splitlines()[1:]:
        words = line.split("#")[0].split()
        if not words:
            continue
        if words[0] == "ROS:":
            ros_users = words[1:]
        else:
            allowed[words[0]] = {w for w in words[1:] if w != "-"}
    return allowed, ros_users


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(module: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """(imported module, line) of every import statement in ``path``, at any depth."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                base = parts[: len(parts) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub if sub in known else target), node.lineno


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or (len(parts) == 2 and parts[1] in BASE_MODULES):
        return "base"
    return parts[1]


def _edges() -> dict[str, set[str]]:
    modules = _modules()
    return {
        m: {t for t, _ in _imports(m, p, set(modules)) if t in modules and t != m} for m, p in modules.items()
    }


def test_every_layer_imports_only_the_layers_design_md_allows() -> None:
    allowed, _ = _rule()
    modules = _modules()
    assert {_layer(m) for m in modules} <= set(allowed), "a package layer is missing from docs/design.md"
    bad = []
    for module, path in modules.items():
        layer = _layer(module)
        for target, line in _imports(module, path, set(modules)):
            if target.split(".")[0] != PACKAGE or target == PACKAGE:
                continue
            other = _layer(target)
            if other != layer and other not in allowed[layer]:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {target} ({other})")
    assert not bad, "imports against the layer rule of docs/design.md:\n" + "\n".join(bad)


def _is_ros(name: str) -> bool:
    top = name.split(".")[0]
    return top in ROS_MODULES or top.endswith(("_msgs", "_srvs"))


def test_only_the_files_design_md_names_import_ros() -> None:
    _, ros_users = _rule()
    bad = []
    for module, path in _modules().items():
        rel = str(path.relative_to(ROOT / PACKAGE))
        if any(rel == user or (user.endswith("/") and rel.startswith(user)) for user in ros_users):
            continue
        bad += [f"{rel}:{line}: {name}" for name, line in _imports(module, path, set()) if _is_ros(name)]
    assert not bad, "ROS imports outside the files docs/design.md allows:\n" + "\n".join(bad)


def _cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle() -> None:
    assert _cycles(_edges()) == []


def test_the_walk_sees_function_local_and_relative_imports(tmp_path: Path) -> None:
    """What a layer slip usually looks like: a relative import inside a function."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from ..ros import qos\n    import rclpy\n")
    known = {f"{PACKAGE}.ros", f"{PACKAGE}.ros.qos"}
    found = [name for name, _ in _imports(f"{PACKAGE}.deploy.probe", probe, known)]
    assert found == [f"{PACKAGE}.ros.qos", "rclpy"]
    assert _layer(found[0]) == "ros" and _is_ros(found[1])
