"""add-subscriber's planning: what it would write, and what it refuses (nothing is written here)."""

from __future__ import annotations

import pytest

from {{ cookiecutter.package_name }}.scaffold import (
    ScaffoldError,
    add_registration,
    plan_subscriber,
    snake_case,
)

SUBSCRIBERS = '''\
from ..conf import AppConfig
from .broker import BrokerServer


def register_subscribers(server: BrokerServer, config: AppConfig) -> BrokerServer:
    group = config.broker.group
    # server.register("events.something", my_service.handle_something, group=group)
    del group
    return server
'''


def test_registration_adds_a_sorted_import_and_one_line() -> None:
    source = add_registration(SUBSCRIBERS, "orders.created", "OrderHandler", "order_handler", None)
    assert "from ..service.order_handler import OrderHandler\nfrom .broker" in source
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
        plan_subscriber(topic, handler, message)


def test_the_plan_writes_a_handler_a_test_and_the_registration() -> None:
    plan = plan_subscriber("probe.created", "ScaffoldProbeHandler", "dict", group="probes")
    assert plan.handler_path.name == "scaffold_probe_handler.py"
    assert plan.test_path.name == "test_scaffold_probe_handler.py"
    assert "msg: dict[str, Any]" in plan.handler_source
    assert 'group="probes"' in plan.subscribers_source
    assert not plan.handler_path.exists()  # planning writes nothing


def test_snake_case() -> None:
    assert snake_case("OrderCreatedHandler") == "order_created_handler"
    assert snake_case("HTTPEventHandler") == "http_event_handler"
