"""Broker types of the user's own: registered in code or by an installed entry point."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from brokerline.config import BrokerConfig
from brokerline.core import UnknownBrokerType, known_types, register_plugin
from brokerline.core.registry import _registered, plugin_factory
from brokerline.factory import build_broker
from brokerline.memory.broker import MemoryBroker


class AddressedBroker(MemoryBroker):
    """A plugin of the user's own: it takes the configured addresses."""

    type_name = "addressed"

    def __init__(self, addresses: list[str]) -> None:
        super().__init__()
        self.addresses = addresses


@pytest.fixture
def addressed_type():  # type: ignore[no-untyped-def]
    register_plugin("addressed", f"{__name__}:AddressedBroker")
    yield "addressed"
    _registered.pop("addressed", None)


def test_a_registered_type_is_known_and_built_from_config(addressed_type: str) -> None:
    assert addressed_type in known_types()
    broker = build_broker(BrokerConfig(type=addressed_type, address="a:1, b:2"))
    assert isinstance(broker, AddressedBroker)
    assert broker.addresses == ["a:1", "b:2"]
    assert broker.middleware, "the tracing, metrics and logging middleware were not added"


def test_a_built_in_type_cannot_be_replaced() -> None:
    with pytest.raises(ValueError, match="built in"):
        register_plugin("pulsar", f"{__name__}:AddressedBroker")


def test_an_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(UnknownBrokerType, match=r"unknown broker type 'nope'.*memory"):
        plugin_factory("nope")


def test_a_type_whose_client_is_missing_says_what_to_install() -> None:
    register_plugin("needs-client", f"{__name__}:AddressedBroker", client="no_such_client_lib")
    try:
        assert "needs-client" not in known_types()
        with pytest.raises(UnknownBrokerType, match="needs its client library"):
            plugin_factory("needs-client")
    finally:
        _registered.pop("needs-client", None)


def test_an_installed_entry_point_adds_a_type(tmp_path: Path) -> None:
    """A distribution that declares `[brokerline.brokers]` adds its type without any code
    of the service calling register_plugin."""
    (tmp_path / "relay_plugin.py").write_text(textwrap.dedent("""
        from brokerline.memory.broker import MemoryBroker

        class RelayBroker(MemoryBroker):
            type_name = "relay"

            def __init__(self, addresses):
                super().__init__()
                self.addresses = addresses
    """))
    info = tmp_path / "relay_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: relay-plugin\nVersion: 1.0\n")
    entry_points = "[brokerline.brokers]\nrelay = relay_plugin:RelayBroker\n"
    (info / "entry_points.txt").write_text(entry_points)
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from brokerline.config import BrokerConfig
        from brokerline.core import known_types
        from brokerline.factory import build_broker
        assert "relay" in known_types(), known_types()
        broker = build_broker(BrokerConfig(type="relay", address="r:1"))
        print(type(broker).__name__, broker.addresses)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "RelayBroker ['r:1']"
