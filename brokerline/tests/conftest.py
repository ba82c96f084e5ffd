"""A plugin's own test modules need its client library (its extra): without it they are not
collected, and the header says so. In CI (CI=true) a missing client is an error instead: the
library's suite must run on every broker there."""

from __future__ import annotations

import pytest

from brokerline.core import known_types
from brokerline.core.registry import PLUGINS
from brokerline.testing.brokers import in_ci

#: test modules -> the broker type whose client library they import
NEEDS = {
    "test_nats*.py": "nats", "test_jetstream*.py": "jetstream", "test_pulsar*.py": "pulsar",
    "test_kafka*.py": "kafka",
}
MISSING = sorted(set(PLUGINS) - set(known_types()))
collect_ignore_glob = [pattern for pattern, type_name in NEEDS.items() if type_name in MISSING]


def extras(type_names: list[str]) -> str:
    return ", ".join(f"brokerline[{PLUGINS[name][2]}]" for name in type_names)


def pytest_report_header(config: pytest.Config) -> str:
    header = f"brokerline: broker types under test: {', '.join(known_types())}"
    if MISSING:
        header += f" (not installed, their tests left out: {extras(MISSING)})"
    return header


def pytest_configure(config: pytest.Config) -> None:
    if MISSING and in_ci():
        raise pytest.UsageError(
            f"the client libraries of {', '.join(MISSING)} are not installed, so their tests "
            f"would not run; install {extras(MISSING)} (make test does)"
        )
