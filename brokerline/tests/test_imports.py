"""Only the broker that is used loads its client library (each comes with its own extra).

Each check runs in a fresh interpreter: this process has every client loaded already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

#: what a service imports whatever its broker: none of it may load a client library
BROKER_NEUTRAL = [
    "brokerline",
    "brokerline.core",
    "brokerline.config",
    "brokerline.memory",
    "brokerline.pulsar",
    "brokerline.pulsar.settings",
    "brokerline.nats",
    "brokerline.nats.settings",
    "brokerline.jetstream",
    "brokerline.jetstream.settings",
    "brokerline.kafka",
    "brokerline.kafka.settings",
]
CLIENTS = ("pulsar", "_pulsar", "nats", "aiokafka")

#: makes a module uninstalled for this interpreter, as `pip uninstall` would: `import` raises
#: ModuleNotFoundError and `importlib.util.find_spec` answers None (a `None` entry in
#: sys.modules is Python's documented way to refuse an import)
HIDE = "import sys\nfor name in {hidden!r}:\n    sys.modules[name] = None\n"


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)


def test_importing_the_broker_neutral_modules_loads_no_client_library() -> None:
    code = textwrap.dedent(f"""
        import importlib, json, sys
        for name in {BROKER_NEUTRAL!r}:
            importlib.import_module(name)
        print(json.dumps(sorted(m for m in {CLIENTS!r} if m in sys.modules)))
    """)
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [], "client libraries loaded by a broker-neutral import"


def test_a_plugin_loads_its_client_only_when_asked_for() -> None:
    """Proof that the check above can fail: asking for the Pulsar plugin loads `pulsar`."""
    code = textwrap.dedent("""
        import json, sys
        from brokerline.core.registry import plugin_factory
        plugin_factory("pulsar")
        print(json.dumps(["pulsar" in sys.modules, "nats" in sys.modules]))
    """)
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [True, False]


@pytest.mark.parametrize(("type_name", "hidden", "extra"), [
    ("pulsar", ["pulsar", "_pulsar"], "pulsar"),
    ("nats", ["nats"], "nats"),
    ("jetstream", ["nats"], "jetstream"),
    ("kafka", ["aiokafka"], "kafka"),
])
def test_a_plugin_whose_client_is_missing_names_the_extra_to_install(
    type_name: str, hidden: list[str], extra: str
) -> None:
    code = HIDE.format(hidden=hidden) + textwrap.dedent(f"""
        import json
        from brokerline.core import UnknownBrokerType, known_types
        from brokerline.core.registry import plugin_factory
        try:
            plugin_factory({type_name!r})
        except UnknownBrokerType as exc:
            print(json.dumps([str(exc), known_types()]))
    """)
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    message, known = json.loads(result.stdout)
    assert type_name not in known
    assert message == (
        f"broker type {type_name!r} needs its client library, which is not installed; "
        f"install brokerline[{extra}] or set the broker type to one of: {', '.join(known)}"
    )
    assert "\n" not in message
