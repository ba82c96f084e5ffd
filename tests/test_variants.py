"""Every generated variant holds only code it uses, and every module of it imports.

For each broker choice (each one, each pair, all three; Kafka alone and with all), with and
without the sample: generate the project, import every module of `src/<package>/` with the
default project's venv (it has every option's dependencies, so no install of its own), and
walk the imports from the entry points: a file none of them reaches is dead code that pruning
left behind. A helper module in `tests/` that no test imports is dead the same way. Only the
service's own modules are walked: the framework and the broker plugins are the brokerline
library's, chosen by its extras and tested by its own suite. The compose file of every variant
depends only on services it defines. The prune table of the post-generation hook must name
only files the template has.
"""

from __future__ import annotations

import ast
import itertools
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import TEMPLATE, generate_ok
from .import_graph import Graph, entry_points, outside_roots

PACKAGE = "report_pipeline"
BROKERS = ("pulsar", "nats", "jetstream")
#: every choice of the first three, and Kafka alone and with all of them (not every Kafka
#: pair: each variant costs a generation, and Kafka prunes only its docs page)
BROKER_CHOICES = [
    ",".join(combo) for n in (1, 2, 3) for combo in itertools.combinations(BROKERS, n)
] + ["kafka", "pulsar,nats,jetstream,kafka"]
VARIANTS = [(brokers, sample) for brokers in BROKER_CHOICES for sample in ("yes", "no")]
#: compiled from proto/ by tools/compile_protos.py, not copied from the template: generated
#: code whose unused parts (a `_pb2_grpc` of a proto without services) are not ours to prune
COMPILED = f"{PACKAGE}.api"
#: files outside src/ that run the package's code: Alembic's migration environment
#: (`db upgrade`) and the project's tools
OUTSIDE = ("alembic", "tools")

#: imports every module named on the command line; prints {module: error} for the failures
IMPORT_ALL = """
import importlib, json, sys
failed = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(failed))
"""


@pytest.mark.parametrize(("brokers", "sample"), VARIANTS,
                         ids=[f"{b}-{'sample' if s == 'yes' else 'bare'}" for b, s in VARIANTS])
def test_every_module_imports_and_is_reached(
    out: Path, default_project: tuple[Path, Path], brokers: str, sample: str
) -> None:
    project = generate_ok(out, brokers=brokers, include_sample=sample)
    src = project / "src"
    graph = Graph.of(src, PACKAGE)
    own = {m for m in graph.files if m != COMPILED and not m.startswith(COMPILED + ".")}

    _default, python = default_project
    importable = sorted(m for m in graph.files if not m.endswith("__main__"))  # it runs main()
    result = subprocess.run([str(python), "-c", IMPORT_ALL, *importable], cwd=project,
                            env={"PYTHONPATH": str(src)}, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    failed = json.loads(result.stdout)
    assert not failed, f"modules that do not import: {failed}"

    roots = entry_points(project, PACKAGE) | outside_roots(graph, project, OUTSIDE)
    assert not graph.unresolved, f"imports of modules that were not generated: {graph.unresolved}"
    unreached = sorted(own - graph.reached_from(roots) - placeholders(graph))
    assert not unreached, f"no entry point reaches (dead code left by pruning): {unreached}"

    tests = Graph.of(project, "tests")
    assert not tests.unresolved, f"test imports of missing test modules: {tests.unresolved}"
    test_roots = {m for m in tests.files
                  if m.rpartition(".")[2].startswith("test_") or m.endswith("conftest")}
    unused_helpers = sorted(set(tests.files) - tests.reached_from(test_roots))
    assert not unused_helpers, f"test helpers no test imports: {unused_helpers}"
    assert_test_imports_resolve(project, graph)
    assert_compose_is_consistent(project, brokers.split(","))


def assert_compose_is_consistent(project: Path, brokers: list[str]) -> None:
    """docker-compose.yml names only services and volumes it defines, and runs a chosen broker
    (an undefined `depends_on` target makes `docker compose up` refuse the whole file)."""
    compose = yaml.safe_load((project / "docker-compose.yml").read_text(encoding="utf-8"))
    services: dict[str, dict[str, object]] = compose["services"]
    volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        needs = service.get("depends_on") or {}
        assert isinstance(needs, dict | list), f"{name}: depends_on {needs!r}"
        missing = sorted(set(needs) - set(services))
        assert not missing, f"compose service {name} depends on undefined services {missing}"
        mounts = service.get("volumes") or []
        assert isinstance(mounts, list), f"{name}: volumes {mounts!r}"
        named = {str(m).partition(":")[0] for m in mounts} - {""}
        undefined = sorted(v for v in named if not v.startswith((".", "/")) and v not in volumes)
        assert not undefined, f"compose service {name} mounts undefined volumes {undefined}"
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), f"{name}: environment {environment!r}"
        if "BROKER_TYPE" in environment:
            assert environment["BROKER_TYPE"] in brokers, f"{name}: {environment}"
            assert environment["BROKER_TYPE"] in services or (
                environment["BROKER_TYPE"] == "jetstream" and "nats" in services
            ), f"{name} uses broker {environment['BROKER_TYPE']}, which compose does not run"


def placeholders(graph: Graph) -> set[str]:
    """Packages whose `__init__` holds only a docstring: the places for the service's own code
    (`add-subscriber` writes its handlers into `service/`), not code of their own."""
    empty = set()
    for module, path in graph.files.items():
        if path.name == "__init__.py":
            body = ast.parse(path.read_text(encoding="utf-8")).body
            if all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body):
                empty.add(module)
    return empty


def assert_test_imports_resolve(project: Path, graph: Graph) -> None:
    """Every `<package>.x` a test imports was generated (else the test fails to collect)."""
    missing: dict[str, set[str]] = {}
    for path in sorted((project / "tests").rglob("*.py")):
        graph.add_edges("", path, is_package=False)
        graph.edges.pop(str(path), None)
        gone = graph.unresolved.pop(str(path), set())
        if gone:
            missing[path.name] = gone
    assert not missing, f"tests import modules that were not generated: {missing}"


def prune_table() -> dict[str, list[str]]:
    """The post-generation hook's file lists, read from its source (it runs on import)."""
    hook = ast.parse((TEMPLATE / "hooks" / "post_gen_project.py").read_text())
    tables: dict[str, list[str]] = {}
    for node in hook.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("BROKER_FILES", "SAMPLE_FILES", "SAMPLE_TESTS"):
                value = ast.literal_eval(node.value)
                tables[name] = list(value)  # a dict's keys: the patterns
    assert set(tables) == {"BROKER_FILES", "SAMPLE_FILES", "SAMPLE_TESTS"}, tables
    return tables


def test_every_prune_table_entry_names_a_template_file() -> None:
    project = TEMPLATE / "{{cookiecutter.project_slug}}"
    package = project / "src" / "{{cookiecutter.package_name}}"
    stale = []
    for table, patterns in prune_table().items():
        for pattern in patterns:
            # as the hook resolves them: tests/ and docs/ from the project, the rest from the
            # package; SAMPLE_TESTS are all project paths
            from_project = table == "SAMPLE_TESTS" or pattern.startswith(("tests/", "docs/"))
            base = project if from_project else package
            if not any(base.glob(pattern)):
                stale.append(f"{table}: {pattern}")
    assert not stale, f"prune-table entries that match no file in the template: {stale}"
