"""Generate projects over the option matrix, install each, and run its own tests.

Each case is a user's path: cookiecutter with answers, a fresh venv, `pip install -e .[dev]`,
then the project's pytest (which starts real nats-server / pulsar-lite processes itself).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .conftest import generate_ok, install, junit_args, run

PACKAGE = "src/report_pipeline"
BROKERS = ("pulsar", "nats", "jetstream")
#: plugin module -> the brokers that need it (JetStream builds on the NATS core plugin)
BROKER_MODULES = {
    "pulsar.py": {"pulsar"},
    "nats.py": {"nats", "jetstream"},
    "jetstream.py": {"jetstream"},
}

CASES = {
    "defaults": {},
    "nats-postgresql": {"brokers": "nats", "database": "postgresql"},
    "jetstream-no-sample": {"brokers": "jetstream", "include_sample": "no"},
    "pulsar-only": {"brokers": "pulsar"},
    "postgresql": {"database": "postgresql"},
}
#: which of its tests a case runs (default: all but the slow ones): the slow end-to-end and
#: reliability tests run once, on the project with every broker; the slow ones that need the
#: PostgreSQL driver (a private server each) on the project with every broker and PostgreSQL
SELECTION = {
    "defaults": [],
    "postgresql": ["tests/test_database_outage.py", "tests/test_poison_events.py"],
}


def _brokers(answers: dict[str, str]) -> list[str]:
    return answers.get("brokers", "pulsar,nats,jetstream").split(",")


@pytest.mark.parametrize("case", sorted(CASES))
def test_generated_project_installs_and_passes_its_tests(
    case: str, out: Path, request: pytest.FixtureRequest
) -> None:
    answers = CASES[case]
    if case == "defaults":  # shared with the other tests that need an installed project
        project, python = request.getfixturevalue("default_project")
    else:
        project = generate_ok(out, **answers)
        python = None
    broker_dir = project / PACKAGE / "transport/broker"
    chosen = _brokers(answers)
    for module, needed_by in BROKER_MODULES.items():
        assert (broker_dir / module).exists() == bool(needed_by & set(chosen)), f"{module} pruning"
    registry = (broker_dir / "registry.py").read_text()
    for broker in BROKERS:
        assert (f'"{broker}":' in registry) == (broker in chosen)
    sample = answers.get("include_sample", "yes") == "yes"
    assert (project / PACKAGE / "service/report.py").exists() == sample
    assert (project / PACKAGE / "biz/report_rules.py").exists() == sample
    assert (project / PACKAGE / "api/report/v1/report_pb2_grpc.py").exists() == sample
    pyproject = (project / "pyproject.toml").read_text()
    assert ("asyncpg" in pyproject) == (answers.get("database") == "postgresql")

    python = python or install(project)
    bin_dir = python.parent
    add_two_subscribers(bin_dir / "report-pipeline", project, sample)
    run([str(bin_dir / "ruff"), "check", "src", "tests"], cwd=project)
    run([str(bin_dir / "mypy"), "src", "tests"], cwd=project, timeout=600)
    selection = SELECTION.get(case, ["-m", "not slow"])
    run([str(bin_dir / "pytest"), "-q", "-x", "-p", "no:cacheprovider", *selection,
         *junit_args(f"generated-{case}")], cwd=project, timeout=1500)
    help_text = run([str(bin_dir / "report-pipeline"), "--help"], cwd=project).stdout
    assert "serve" in help_text and ("publish" in help_text) == sample


def add_two_subscribers(cli: Path, project: Path, sample: bool) -> None:
    """`add-subscriber` twice (a pydantic stub, then a protobuf or bytes message); the ruff
    and pytest runs that follow check what it wrote. A second run for a topic is refused."""
    run([str(cli), "add-subscriber", "events.orders-created", "OrderCreatedHandler"], cwd=project)
    message = "events.v1.UserReportData" if sample else "bytes"
    run([str(cli), "add-subscriber", "events.audit-reports", "AuditHandler", "--message", message,
         "--group", "audit"], cwd=project)
    assert (project / PACKAGE / "service/order_created_handler.py").exists()
    assert (project / "tests/test_audit_handler.py").exists()
    subscribers = (project / PACKAGE / "server/subscribers.py").read_text()
    registration = 'server.register("events.audit-reports", AuditHandler().handle, group="audit")'
    assert registration in subscribers
    again = subprocess.run([str(cli), "add-subscriber", "events.orders-created", "Other"],
                           cwd=project, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 2 and "already registered" in again.stderr


def test_python_version_answer_reaches_the_project(out: Path) -> None:
    project = generate_ok(out, python_version="3.13", brokers="nats")
    pyproject = (project / "pyproject.toml").read_text()
    assert 'requires-python = ">=3.13"' in pyproject
    assert 'python_version = "3.13"' in pyproject
