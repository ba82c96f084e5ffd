"""Which modules of a generated project its entry points reach, read from the source (AST).

A module counts as reached when an `import` names it (at any depth: in functions, under
`TYPE_CHECKING`) or when a string such as `".server.grpc:GrpcServer"` names it: the
containers' `lazy(...)` providers and the broker registry import their targets by such
`module:attr` strings, relative to the package that holds the string.
"""

from __future__ import annotations

import ast
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

#: "module:attr" as `lazy()` and the broker registry write them, relative ("."), or absolute
TARGET = re.compile(r"^(\.*)([A-Za-z_][\w.]*)?:[A-Za-z_]\w*$")


@dataclass
class Graph:
    """The modules of one package under `src/` and the imports between them."""

    src: Path
    package: str
    files: dict[str, Path] = field(default_factory=dict)  # dotted module name -> file
    edges: dict[str, set[str]] = field(default_factory=dict)  # module -> module names it names
    unresolved: dict[str, set[str]] = field(default_factory=dict)  # module -> missing targets

    @classmethod
    def of(cls, src: Path, package: str) -> Graph:
        graph = cls(src, package)
        for path in sorted((src / package).rglob("*.py")):
            graph.files[module_name(path.relative_to(src))] = path
        for module, path in graph.files.items():
            graph.add_edges(module, path, is_package=path.name == "__init__.py")
        return graph

    def add_edges(self, module: str, path: Path, is_package: bool) -> None:
        """Record what `module` (the file at `path`) imports; outside files use `module=""`."""
        here = module if is_package else module.rpartition(".")[0]
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = resolve(here, node.level, node.module)
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names
                             if f"{base}.{alias.name}" in self.files)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                match = TARGET.match(node.value)
                if match and (match.group(1) or (match.group(2) or "").startswith(self.package)):
                    names.add(resolve(here, len(match.group(1)), match.group(2)))
        own = {n for n in names if n == self.package or n.startswith(self.package + ".")}
        self.edges[module or str(path)] = {n for n in own if n in self.files}
        missing = own - set(self.files)
        if missing:
            self.unresolved[module or str(path)] = missing

    def reached_from(self, roots: set[str]) -> set[str]:
        """Every module reached from `roots`, with the packages (`__init__`) that hold them."""
        seen: set[str] = set()
        todo = list(roots)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            todo.extend(self.edges.get(name, ()))
            parent = name.rpartition(".")[0]
            while parent:
                todo.append(parent)
                parent = parent.rpartition(".")[0]
        return seen & set(self.files)


def module_name(relative: Path) -> str:
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(here: str, level: int, name: str | None) -> str:
    """The absolute module name of `from <level dots><name> import ...` inside package `here`."""
    if level == 0:
        return name or ""
    parts = here.split(".")
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, name] if name else base)


def entry_points(project: Path, package: str) -> set[str]:
    """The modules a user runs: the console scripts, `python -m <package>`, the package."""
    scripts = tomllib.loads((project / "pyproject.toml").read_text())["project"]["scripts"]
    return {target.partition(":")[0] for target in scripts.values()} | {
        package, f"{package}.__main__"
    }


def outside_roots(graph: Graph, project: Path, folders: tuple[str, ...]) -> set[str]:
    """The package modules that files run from outside `src/` import (e.g. Alembic's env)."""
    reached: set[str] = set()
    for folder in folders:
        for path in sorted((project / folder).rglob("*.py")):
            key = str(path)
            graph.add_edges("", path, is_package=False)
            reached |= graph.edges.pop(key, set())
    return reached
