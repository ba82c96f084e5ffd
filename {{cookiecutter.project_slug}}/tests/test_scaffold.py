"""add-subscriber's planning: what it would write, and what it refuses (nothing is written here)."""

from __future__ import annotations

import pytest
from brokerline.scaffold import (
    REGISTRATION_MODULE,
    ScaffoldError,
    add_registration,
    plan_subscriber,
    snake_case,
)

from {{ cookiecutter.package_name }}.cli import PACKAGE

SUBSCRIBERS = '''\
from brokerline.core import Broker
from brokerline.server.broker import BrokerServer

from ..conf import AppConfig
from .other import helper


def new_broker_server(broker: Broker, config: AppConfig) -> BrokerServer:
    server = BrokerServer(broker)
    group = config.broker.group
    # server.register("events.something", my_service.handle_something, group=group)
    del group
    return server
'''


def test_registration_adds_a_sorted_import_and_one_line() -> None:
    source = add_registration(SUBSCRIBERS, "orders.created", "OrderHandler", "order_handler", None)
    imports = "from ..conf import AppConfig\nfrom ..service.order_handler import OrderHandler\n"
    assert imports in source
    assert '    server.register("orders.created", OrderHandler().handle, group=group)\n' in source
    assert "del group" not in source
    again = add_registration(source, "orders.paid", "PaidHandler", "paid_handler", "billing")
    assert 'server.register("orders.paid", PaidHandler().handle, group="billing")' in again
    assert again.index("order_handler import") < again.index("paid_handler import")


def test_a_topic_is_registered_once() -> None:
    source = add_registration(SUBSCRIBERS, "orders.created", "OrderHandler", "order_handler", None)
    with pytest.raises(ScaffoldError, match="already registered"):
        add_registration(source, "orders.created", "Other", "other", None)


@pytest.mark.parametrize(
    ("topic", "handler", "message", "problem"),
    [
        ("probe created", "ProbeHandler", "pydantic", "not a valid topic"),
        ("probe.created", "probe_handler", "pydantic", "not a class name"),
        ("probe.created", "ProbeHandler", "events.v9.Missing", "no protobuf message"),
        ("probe.created", "ProbeHandler", "not a type!", "neither"),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(
    topic: str, handler: str, message: str, problem: str
) -> None:
    with pytest.raises(ScaffoldError, match=problem):
        plan_subscriber(PACKAGE, topic, handler, message)


def test_the_plan_writes_a_handler_a_test_and_the_registration() -> None:
    plan = plan_subscriber(PACKAGE, "probe.created", "ScaffoldProbeHandler", "dict", group="probes")
    assert plan.handler_path.name == "scaffold_probe_handler.py"
    assert plan.test_path.name == "test_scaffold_probe_handler.py"
    assert "msg: dict[str, Any]" in plan.handler_source
    assert 'group="probes"' in plan.subscribers_source
    assert plan.subscribers_path == PACKAGE.directory / REGISTRATION_MODULE
    assert not plan.handler_path.exists()  # planning writes nothing


def test_the_service_broker_server_takes_a_registration() -> None:
    """The service's own server/broker.py is in the shape add-subscriber edits."""
    source = (PACKAGE.directory / REGISTRATION_MODULE).read_text()
    added = add_registration(source, "probe.created", "ProbeHandler", "probe_handler", None)
    assert "from ..service.probe_handler import ProbeHandler\n" in added
    assert 'server.register("probe.created", ProbeHandler().handle, group=group)' in added
    compile(added, REGISTRATION_MODULE, "exec")


def test_snake_case() -> None:
    assert snake_case("OrderCreatedHandler") == "order_created_handler"
    assert snake_case("HTTPEventHandler") == "http_event_handler"
