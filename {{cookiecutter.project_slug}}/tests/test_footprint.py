"""An idle service imports only what its role and configuration use (that keeps it small).

Each role runs as a real `serve <role>` process (memory broker, SQLite); once it has started
it is stopped with SIGTERM and reports the modules it had imported. A module listed below
costs megabytes of resident memory in every process that loads it (gRPC alone ~15 MB,
Alembic ~11 MB, SQLAlchemy's ORM and async engine ~10 MB), so a role that does not use it
must not import it. The README ("What an idle service costs") has the measured figures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from brokerline.core import known_types
from brokerline.core.embedded import free_port

PACKAGE = "{{ cookiecutter.package_name }}"

#: imported by no serving role: the `db` commands' Alembic, the OTLP exporters (exporter
#: "none" by default) and every broker client library (the memory broker needs none)
NEVER = ("alembic", "mako", "opentelemetry.exporter.otlp", "nats", "pulsar")
GRPC = ("grpc", "grpc_health", "grpc_reflection", "opentelemetry.instrumentation.grpc")
HTTP = ("uvicorn", "httptools", "brokerline.server.http")  # the HTTP/JSON transport
#: SQLAlchemy and the drivers: the report role never opens the database (its URL is
#: checked at load without SQLAlchemy for the drivers the project ships)
DATABASE = ("sqlalchemy", "aiosqlite", "asyncpg")

#: role -> the modules its idle process must not have imported
UNUSED: dict[str, tuple[str, ...]] = {
{%- if cookiecutter.include_sample %}
    "saver": NEVER + GRPC + HTTP,
    "report": NEVER + DATABASE,
{%- endif %}
    "all": NEVER,
}

#: runs the CLI and, when it exits, writes the imported modules and the peak RSS as JSON
RUN_AND_REPORT = """
import atexit, json, sys
from pathlib import Path

def report():
    status = Path("/proc/self/status")
    peak = next((line.split()[1] for line in status.read_text().splitlines()
                 if line.startswith("VmHWM:")), "0") if status.exists() else "0"
    Path(sys.argv[1]).write_text(json.dumps({"modules": sorted(sys.modules),
                                             "peak_rss_kb": int(peak)}))

atexit.register(report)
from __PACKAGE__.cli import main
main(sys.argv[2:])
""".replace("__PACKAGE__", PACKAGE)


def imported(name: str, modules: list[str]) -> list[str]:
    return [m for m in modules if m == name or m.startswith(name + ".")]


def run_idle(role: str, tmp_path: Path) -> dict[str, object]:
    """Start `serve <role>`, wait until it has started, stop it; what it had imported."""
    out, log_path = tmp_path / f"{role}.json", tmp_path / f"{role}.log"
    env = {
        **os.environ,
        "BROKER_TYPE": "memory",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'footprint.db'}",
        "GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "HTTP_ADDRESS": f"127.0.0.1:{free_port()}",
        "LOG_LEVEL": "INFO",
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", RUN_AND_REPORT, str(out), "serve", role],
            env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while " started (" not in log_path.read_text(errors="replace"):
            assert process.poll() is None, f"serve {role} exited:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"no start:\n{log_path.read_text()}"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    report: dict[str, object] = json.loads(out.read_text())
    return report


@pytest.mark.parametrize("role", sorted(UNUSED))
def test_an_idle_role_imports_only_what_it_uses(role: str, tmp_path: Path) -> None:
    report = run_idle(role, tmp_path)
    modules = report["modules"]
    assert isinstance(modules, list)
    loaded = {name: imported(name, modules)[:3] for name in UNUSED[role]}
    assert not {n: m for n, m in loaded.items() if m}, (
        f"serve {role} imported modules it does not use (peak RSS "
        f"{int(str(report['peak_rss_kb'])) / 1024:.0f} MB); import them where they are used"
    )


@pytest.mark.parametrize("type_name", [t for t in known_types() if t != "memory"])
def test_serve_does_not_import_the_local_brokers(type_name: str, tmp_path: Path) -> None:
    """`serve` with an (unreachable) address fails to connect, and never loaded pulsar-lite."""
    out = tmp_path / "modules.json"
    env = {
        **os.environ,
        "BROKER_TYPE": type_name,
        "BROKER_ADDRESS": f"127.0.0.1:{free_port()}",  # nothing listens there
        "GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "HTTP_ADDRESS": f"127.0.0.1:{free_port()}",
        PACKAGE.upper() + "__BROKER__CONNECT_ATTEMPTS": "1",
        PACKAGE.upper() + "__BROKER__NATS__CONNECT_TIMEOUT": "1",
        PACKAGE.upper() + "__BROKER__PULSAR__CONNECT_TIMEOUT": "1",
    }
    result = subprocess.run([sys.executable, "-c", RUN_AND_REPORT, str(out), "serve", "all"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "cannot connect" in result.stderr, result.stderr
    modules = json.loads(out.read_text())["modules"]
    assert not imported("pulsar_lite", modules), "serve imported pulsar-lite"
    assert "local" not in result.stderr, result.stderr


@pytest.mark.parametrize("type_name", [t for t in known_types() if t != "memory"])
def test_a_broker_type_imports_only_its_own_client(type_name: str) -> None:
    clients = {"nats": "nats", "jetstream": "nats", "pulsar": "pulsar"}
    others = {lib for t, lib in clients.items() if lib != clients[type_name]}
    code = (
        "import json, sys\n"
        f"from {PACKAGE}.cli import parser\n"
        "from brokerline.core.registry import plugin_factory\n"
        f"plugin_factory({type_name!r})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    modules = json.loads(subprocess.run([sys.executable, "-c", code], check=True,
                                         capture_output=True, text=True).stdout)
    assert imported(clients[type_name], modules), "the plugin's own client was not imported"
    for lib in others:
        assert not imported(lib, modules), f"broker type {type_name} imported {lib}"
