"""The command line as a user runs it: real processes, real exit codes and messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.transport.broker import known_types
from {{ cookiecutter.package_name }}.transport.broker.embedded import free_port

PACKAGE = "{{ cookiecutter.package_name }}"


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", PACKAGE, *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def assert_one_clear_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    for fragment in fragments:
        assert fragment in last, last


def test_unknown_broker_type_is_one_sentence(tmp_path: Path) -> None:
    result = cli("serve", "saver" if "saver" in _roles() else "all", cwd=tmp_path,
                 env={"BROKER_TYPE": "kafka"})
    assert_one_clear_error(result, "unknown broker type 'kafka'", *known_types())


def test_bad_config_file_is_one_sentence(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("broker:\n  type: memory\n  adress: typo\n")
    result = cli("--config", str(bad), "dev", cwd=tmp_path)
    assert_one_clear_error(result, "unknown setting 'broker.adress'")
    bad.write_text("broker: [unclosed\n")
    assert_one_clear_error(cli("--config", str(bad), "dev", cwd=tmp_path), "not valid YAML")
    missing = tmp_path / "nope.yaml"
    assert_one_clear_error(cli("--config", str(missing), "dev", cwd=tmp_path), "does not exist")


def test_bad_database_url_is_one_sentence(tmp_path: Path) -> None:
    result = cli("dev", cwd=tmp_path, env={"DATABASE_URL": "not a url"})
    assert_one_clear_error(result, "database.url", "not a database URL")
    result = cli("dev", cwd=tmp_path, env={"DATABASE_URL": "sqlite:///sync-driver.db"})
    assert_one_clear_error(result, "async driver")
    # a shipped driver skips SQLAlchemy at load, but a broken URL is still caught there
    result = cli("dev", cwd=tmp_path, env={"DATABASE_URL": "postgresql+asyncpg://u@h:port/db"})
    assert_one_clear_error(result, "database.url", "not a database URL")


def _roles() -> list[str]:
    from {{ cookiecutter.package_name }}.containers import ROLES

    return list(ROLES)
{%- if cookiecutter.include_sample %}


def test_demo_on_the_memory_broker_saves_every_report(tmp_path: Path) -> None:
    result = cli("demo", "--broker", "memory", "--count", "300", "--workdir",
                 str(tmp_path / "demo"), cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reports posted: 300" in result.stdout
    assert "rows saved:     300" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("broker_type", [t for t in known_types() if t != "memory"])
def test_pair_across_processes_over_a_real_broker(tmp_path: Path, broker_type: str) -> None:
    """Embedded broker, `serve saver` and `serve report` as separate processes; 2,000 reports."""
    result = cli("demo", "--broker", broker_type, "--count", "2000", "--workdir",
                 str(tmp_path / "demo"), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reports posted: 2000" in result.stdout
    assert "rows saved:     2000" in result.stdout
{%- endif %}


@pytest.mark.parametrize("broker_type", [t for t in known_types() if t != "memory"])
def test_unreachable_broker_gives_up_after_bounded_retries(
    tmp_path: Path, broker_type: str
) -> None:
    env = {
        "BROKER_TYPE": broker_type,
        "BROKER_ADDRESS": f"127.0.0.1:{free_port()}",  # nothing listens there
        "{{ cookiecutter.package_name.upper() }}__BROKER__CONNECT_ATTEMPTS": "2",
        # short client timeouts, so that the test does not wait the production defaults
        "{{ cookiecutter.package_name.upper() }}__BROKER__PULSAR__OPERATION_TIMEOUT": "3",
        "{{ cookiecutter.package_name.upper() }}__BROKER__NATS__CONNECT_TIMEOUT": "2",
    }
    result = cli("serve", "all", cwd=tmp_path, env=env, timeout=120)
    assert_one_clear_error(result, f"cannot connect to the {broker_type} broker", "2 attempts")


TLS_FILE_SETTINGS = {
    "nats": ("NATS_TLS_CA_FILE", "broker.nats.tls.ca_file"),
    "jetstream": ("NATS_TLS_CA_FILE", "broker.nats.tls.ca_file"),
    "pulsar": ("PULSAR_TLS_TRUST_CERTS_FILE", "broker.pulsar.tls.ca_file"),
}


@pytest.mark.parametrize("broker_type", [t for t in known_types() if t in TLS_FILE_SETTINGS])
def test_missing_tls_file_is_one_sentence(tmp_path: Path, broker_type: str) -> None:
    env_name, setting = TLS_FILE_SETTINGS[broker_type]
    env = {"BROKER_TYPE": broker_type, env_name: str(tmp_path / "missing-ca.pem")}
    result = cli("serve", "all", cwd=tmp_path, env=env)
    assert_one_clear_error(result, setting, "missing-ca.pem", "does not exist")
