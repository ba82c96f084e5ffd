"""Secrets never reach logs or error messages: authenticated runs are captured and searched."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from brokerline.core import known_types
from brokerline.nats.embedded import nats_server
from brokerline.pulsar.embedded import pulsar_lite

from {{ cookiecutter.package_name }}.conf import load_config

from .service_process import Service

SECRET = "s3cr3t-Zq9-do-not-log"  # must never appear in any log


def run_saver_briefly(tmp_path: Path, env: dict[str, str], seconds: float = 3.0) -> str:
    """Start `serve saver` with DEBUG logs, let it connect, stop it; return its output."""
    full_env = {
        **os.environ,
        "LOG_LEVEL": "DEBUG",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        **env,
    }
    role = "{{ 'saver' if cookiecutter.include_sample else 'all' }}"
    service = Service(role, full_env, tmp_path).start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and service.alive() and "started" not in service.log():
        time.sleep(0.1)
    time.sleep(seconds)
    if service.alive():
        service.terminate()
    return service.log()


def test_config_never_shows_secrets() -> None:
    config = load_config(environ={"PULSAR_JWT_TOKEN": SECRET, "NATS_PASSWORD": SECRET,
                                  "NATS_TOKEN": SECRET, "NATS_JWT_TOKEN": SECRET})
    assert SECRET not in repr(config)
    assert SECRET not in str(config.model_dump())
    assert config.broker.pulsar.jwt_token is not None
    assert config.broker.pulsar.jwt_token.get_secret_value() == SECRET


@pytest.mark.skipif("pulsar" not in known_types(), reason="the pulsar plugin is not included")
def test_pulsar_token_is_not_logged(tmp_path: Path) -> None:
    with pulsar_lite(store=tmp_path / "broker").start() as server:  # accepts any token
        log = run_saver_briefly(tmp_path, {
            "BROKER_TYPE": "pulsar", "BROKER_ADDRESS": server.url, "PULSAR_JWT_TOKEN": SECRET,
        })
    assert "started" in log, log[-3000:]
    assert SECRET not in log


@pytest.mark.skipif(
    not {"nats", "jetstream"} & set(known_types()), reason="no NATS plugin is included"
)
def test_nats_password_is_not_logged_right_or_wrong(tmp_path: Path) -> None:
    broker_type = "jetstream" if "jetstream" in known_types() else "nats"
    server = nats_server(store=tmp_path / "broker", extra_args=["--user", "app", "--pass", SECRET])
    with server.start():
        env = {"BROKER_TYPE": broker_type, "BROKER_ADDRESS": server.url,
               "NATS_USERNAME": "app", "NATS_PASSWORD": SECRET}
        (tmp_path / "good").mkdir()
        (tmp_path / "bad").mkdir()
        good = run_saver_briefly(tmp_path / "good", env)
        bad = run_saver_briefly(tmp_path / "bad", {
            **env, "NATS_PASSWORD": SECRET[::-1],
            "{{ cookiecutter.package_name.upper() }}__BROKER__CONNECT_ATTEMPTS": "1",
        }, seconds=0)
    assert "started" in good, good[-3000:]
    assert SECRET not in good
    assert "error:" in bad and SECRET[::-1] not in bad and SECRET not in bad


@pytest.mark.skipif(
    not {"nats", "jetstream"} & set(known_types()), reason="no NATS plugin is included"
)
def test_credentials_in_the_nats_url_are_used_and_never_shown(tmp_path: Path) -> None:
    """MQ_NAME_SERVER=nats://user:pass@host and nothing else: it connects with them, and the
    password (percent-encoded in the URL, as a password with '@' or '/' must be) is in no
    log line; a wrong one fails with one sentence that does not show it either."""
    broker_type = "jetstream" if "jetstream" in known_types() else "nats"
    password = SECRET + "@/x"
    server = nats_server(
        store=tmp_path / "broker", extra_args=["--user", "app", "--pass", password]
    )
    with server.start():
        url = f"nats://app:{quote(password, safe='')}@127.0.0.1:{server.port}"
        (tmp_path / "good").mkdir()
        (tmp_path / "bad").mkdir()
        good = run_saver_briefly(tmp_path / "good", {"BROKER_TYPE": broker_type,
                                                     "MQ_NAME_SERVER": url}, seconds=0.5)
        wrong = url.replace(quote(password, safe=""), "Wr0ng-" + SECRET[::-1])
        bad = run_saver_briefly(tmp_path / "bad", {
            "BROKER_TYPE": broker_type, "MQ_NAME_SERVER": wrong,
            "{{ cookiecutter.package_name.upper() }}__BROKER__CONNECT_ATTEMPTS": "1",
        }, seconds=0)
    assert "started" in good, good[-3000:]
    assert "with user 'app' with a password from the server URL" in good
    for log in (good, bad):
        assert SECRET not in log and quote(password, safe="") not in log
        assert SECRET[::-1] not in log
    assert "error: " in bad and "rejected the connection" in bad and "Traceback" not in bad
    assert f"nats://***@127.0.0.1:{server.port}" in bad


@pytest.mark.skipif("pulsar" not in known_types(), reason="the pulsar plugin is not included")
def test_credentials_in_a_pulsar_url_are_refused_unshown(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.package_name }}", "asyncapi"], cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "BROKER_TYPE": "pulsar",
             "MQ_NAME_SERVER": f"pulsar://admin:{SECRET}@127.0.0.1:6650"},
    )
    assert result.returncode == 2
    assert SECRET not in result.stderr
    assert "PULSAR_JWT_TOKEN" in result.stderr and "pulsar://***@127.0.0.1:6650" in result.stderr

