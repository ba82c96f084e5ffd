"""brokerline.config: the YAML file, the environment and overrides, in that order of strength.

Every test loads through `load_config` with an explicit environment mapping (never the
process's) and a file in its own temporary directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from brokerline.cli.serve import serve_workers
from brokerline.config import ENVIRONMENT, ConfigError, ServiceConfig, load_config
from brokerline.core import InitialPosition, MessageContext, SubscribeOptions, SubscriptionType
from brokerline.factory import subscribe_options, subscription_overrides
from brokerline.memory.broker import MemoryBroker
from brokerline.server.broker import BrokerServer

PREFIX = "EXAMPLE__"
SECRET = "s3cr3t-Kq7-never-shown"


class TopicsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    report: str = Field("events.report", min_length=1)


class ExampleConfig(ServiceConfig):
    """A service's configuration: its own section and defaults, as a generated conf.py has."""

    name: str = "example"
    topics: TopicsConfig = Field(default_factory=TopicsConfig)


def load(
    tmp_path: Path,
    yaml_text: str | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> ExampleConfig:
    path = None
    if yaml_text is not None:
        path = tmp_path / "config.yaml"
        path.write_text(yaml_text, encoding="utf-8")
    return load_config(ExampleConfig, path, environ or {}, overrides, env_prefix=PREFIX)


def error_of(tmp_path: Path, yaml_text: str | None = None, **environ: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, yaml_text, environ)
    message = str(caught.value)
    assert "\n" not in message, "one sentence, one line"
    return message


@pytest.fixture(autouse=True)
def _no_default_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """configs/config.yaml is looked up in the working directory: an empty one here."""
    monkeypatch.chdir(tmp_path)


# precedence


def test_each_source_overrides_the_weaker_ones(tmp_path: Path) -> None:
    yaml_text = "broker:\n  type: nats\n  address: nats://file:4222\n  group: from-file\n"
    assert load(tmp_path).broker.address == ""  # the default
    assert load(tmp_path, yaml_text).broker.address == "nats://file:4222"
    environ = {"BROKER_ADDRESS": "nats://well-known:4222"}
    assert load(tmp_path, yaml_text, environ).broker.address == "nats://well-known:4222"
    environ[f"{PREFIX}BROKER__ADDRESS"] = "nats://generic:4222"
    assert load(tmp_path, yaml_text, environ).broker.address == "nats://generic:4222"
    config = load(tmp_path, yaml_text, environ, {"broker": {"address": "nats://override:4222"}})
    assert config.broker.address == "nats://override:4222"
    # the layers merge key by key: what a stronger source does not set, a weaker one gives
    assert config.broker.type == "nats" and config.broker.group == "from-file"


def test_the_result_is_the_services_own_model_with_its_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "topics:\n  report: events.other\n")
    assert type(config) is ExampleConfig
    assert config.name == "example" and config.topics.report == "events.other"
    assert load(tmp_path, environ={f"{PREFIX}TOPICS__REPORT": "events.env"}).topics.report == (
        "events.env"
    )


def test_overrides_merge_into_the_sections_below_them(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "broker:\n  subscriber:\n    concurrency: 4\n",
        overrides={"broker": {"subscriber": {"max_deliveries": 9}}},
    )
    assert config.broker.subscriber.concurrency == 4
    assert config.broker.subscriber.max_deliveries == 9


def test_config_file_selects_the_file_and_a_missing_one_means_none(tmp_path: Path) -> None:
    chosen = tmp_path / "chosen.yaml"
    chosen.write_text("log_level: debug\n", encoding="utf-8")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "config.yaml").write_text("log_level: error\n", encoding="utf-8")
    assert load(tmp_path).log_level == "ERROR"  # the default file, in the working directory
    assert load(tmp_path, environ={"CONFIG_FILE": str(chosen)}).log_level == "DEBUG"
    # a deployment may set CONFIG_FILE to a file it does not ship: the environment alone counts
    missing = {"CONFIG_FILE": str(tmp_path / "absent.yaml"), "LOG_LEVEL": "warning"}
    assert load(tmp_path, environ=missing).log_level == "WARNING"


def test_a_path_may_start_with_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "service.yaml").write_text("name: from-home\n", encoding="utf-8")
    assert load_config(ExampleConfig, "~/service.yaml", {}, env_prefix=PREFIX).name == "from-home"
    environ = {"CONFIG_FILE": "~/service.yaml"}
    assert load_config(ExampleConfig, None, environ, env_prefix=PREFIX).name == "from-home"


def test_an_explicit_path_must_exist_and_be_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absent\.yaml does not exist; pass an existing file"):
        load_config(ExampleConfig, tmp_path / "absent.yaml", {}, env_prefix=PREFIX)
    with pytest.raises(ConfigError, match="is a directory; pass a YAML file"):
        load_config(ExampleConfig, tmp_path, {}, env_prefix=PREFIX)


def test_the_given_environment_is_read_not_the_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_TYPE", "nats")
    monkeypatch.setenv(f"{PREFIX}TOPICS__REPORT", "events.process")
    assert load(tmp_path).broker.type == "memory"
    assert load(tmp_path).topics.report == "events.report"
    from_process = load_config(ExampleConfig, env_prefix=PREFIX)  # environ=None: os.environ
    assert from_process.broker.type == "nats"
    assert from_process.topics.report == "events.process"


def test_a_model_built_directly_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NAME", "name", "SHUTDOWN_TIMEOUT", "shutdown_timeout"):
        monkeypatch.setenv(name, "3" if "TIMEOUT" in name.upper() else "from-the-shell")
    config = ExampleConfig(log_level="DEBUG")
    assert config.name == "example" and config.shutdown_timeout == 15.0
    assert config.log_level == "DEBUG"


def test_empty_environment_values_are_unset(tmp_path: Path) -> None:
    config = load(tmp_path, "broker:\n  type: nats\n", {"BROKER_TYPE": "", f"{PREFIX}NAME": ""})
    assert config.broker.type == "nats" and config.name == "example"


# well-known names


def test_every_well_known_name_feeds_a_real_setting() -> None:
    for name, path in ENVIRONMENT.items():
        node: Any = ServiceConfig
        for part in path.split("."):
            assert isinstance(node, type) and issubclass(node, BaseModel), (name, path)
            assert part in node.model_fields, f"{name} feeds {path}, which is no setting"
            node = node.model_fields[part].annotation


def test_the_later_of_two_names_for_one_setting_wins(tmp_path: Path) -> None:
    seed = {"COZE_MQ_TYPE": "nats", "MQ_NAME_SERVER": "nats://seed:4222"}
    config = load(tmp_path, environ=seed)
    assert config.broker.type == "nats" and config.broker.address == "nats://seed:4222"
    config = load(tmp_path, environ={**seed, "BROKER_TYPE": "jetstream",
                                     "BROKER_ADDRESS": "nats://new:4222"})
    assert config.broker.type == "jetstream" and config.broker.address == "nats://new:4222"


def test_well_known_names_reach_nested_and_typed_settings(tmp_path: Path) -> None:
    config = load(tmp_path, environ={
        "NATS_STREAM_REPLICAS": "3", "NATS_STREAM_DUPLICATE_WINDOW": "300",
        "OTEL_EXPORTER_PROMETHEUS_PORT": "9464",
        "OTEL_TRACES_SAMPLER_ARG": "0.25", "BROKER_EMBEDDED": "true", "LOG_FORMAT": "JSON",
        "PULSAR_JWT_TOKEN": SECRET, "NATS_PASSWORD": SECRET,
        "PULSAR_TLS_CERT_FILE": "/certs/pulsar.crt", "PULSAR_TLS_KEY_FILE": "/certs/pulsar.key",
        "NATS_TLS_CERT_FILE": "/certs/nats.crt", "NATS_TLS_KEY_FILE": "/certs/nats.key",
    })
    pulsar_tls, nats_tls = config.broker.pulsar.tls, config.broker.nats.tls
    assert (pulsar_tls.cert_file, pulsar_tls.key_file) == ("/certs/pulsar.crt", "/certs/pulsar.key")
    assert (nats_tls.cert_file, nats_tls.key_file) == ("/certs/nats.crt", "/certs/nats.key")
    assert config.broker.nats.stream.replicas == 3
    assert config.broker.nats.stream.duplicate_window == 300
    assert config.telemetry.metrics_port == 9464 and config.telemetry.sampling_ratio == 0.25
    assert config.broker.embedded is True and config.telemetry.log_format == "json"
    assert config.broker.pulsar.jwt_token is not None
    assert config.broker.pulsar.jwt_token.get_secret_value() == SECRET
    assert SECRET not in repr(config) and SECRET not in str(config.model_dump())


@pytest.mark.parametrize(
    ("broker_type", "switch", "expected"),
    [
        ("nats", "true", "jetstream"),
        ("NATS", "1", "jetstream"),
        ("nats", "yes", "jetstream"),
        ("nats", "false", "nats"),
        ("nats", "", "nats"),
        ("pulsar", "true", "pulsar"),  # the switch turns NATS only
    ],
)
def test_nats_use_jetstream_turns_type_nats_into_jetstream(
    tmp_path: Path, broker_type: str, switch: str, expected: str
) -> None:
    environ = {"BROKER_TYPE": broker_type, "NATS_USE_JETSTREAM": switch}
    assert load(tmp_path, environ=environ).broker.type == expected


# lists


def test_a_list_takes_a_comma_separated_value(tmp_path: Path) -> None:
    config = load(tmp_path, environ={
        "NATS_SERVER_URL": " nats://a:4222, nats://b:4222,,",
        f"{PREFIX}BROKER__PULSAR__SERVICE_URLS": "pulsar://a:6650,pulsar://b:6650",
        f"{PREFIX}BROKER__NATS__STREAM__SUBJECTS": "events.>,audit.>",
    })
    assert config.broker.nats.servers == ["nats://a:4222", "nats://b:4222"]
    assert config.broker.pulsar.service_urls == ["pulsar://a:6650", "pulsar://b:6650"]
    assert config.broker.nats.stream.subjects == ["events.>", "audit.>"]


def test_a_list_also_takes_json_and_the_file_a_yaml_list(tmp_path: Path) -> None:
    environ = {f"{PREFIX}BROKER__NATS__SERVERS": '["nats://json:4222"]'}
    assert load(tmp_path, environ=environ).broker.nats.servers == ["nats://json:4222"]
    config = load(tmp_path, "broker:\n  nats:\n    servers: [nats://a:4222, nats://b:4222]\n")
    assert config.broker.nats.servers == ["nats://a:4222", "nats://b:4222"]


def test_generic_names_are_case_insensitive(tmp_path: Path) -> None:
    config = load(tmp_path, environ={"example__broker__subscriber__concurrency": "32"})
    assert config.broker.subscriber.concurrency == 32


# error messages


def test_an_unknown_key_in_the_file_is_named(tmp_path: Path) -> None:
    message = error_of(tmp_path, "broker:\n  tyep: nats\n")
    assert "unknown setting 'broker.tyep'" in message
    assert "check its spelling" in message and str(tmp_path / "config.yaml") in message
    assert "unknown setting 'Broker'" in error_of(tmp_path, "Broker:\n  type: nats\n")


def test_an_unknown_generic_name_is_named_not_ignored(tmp_path: Path) -> None:
    nested = error_of(tmp_path, **{f"{PREFIX}BROKER__SUBSCRIBER__CONCURENCY": "3"})
    assert "unknown setting 'broker.subscriber.concurency'" in nested
    top = error_of(tmp_path, **{f"{PREFIX}BORKER__TYPE": "nats"})
    assert "unknown setting 'borker'" in top


def test_a_bad_database_url_gets_an_example_that_reads_right(tmp_path: Path) -> None:
    message = error_of(tmp_path, DATABASE_URL="sqlite:data.db:x")
    assert message.endswith("use e.g. sqlite+aiosqlite:///data/app.db or "
                            "postgresql+asyncpg://db-host:5432/app")


def test_an_invalid_value_names_the_setting_its_names_and_the_value(tmp_path: Path) -> None:
    message = error_of(tmp_path, OTEL_EXPORTER_PROMETHEUS_PORT="99999")
    assert "setting 'telemetry.metrics_port' (OTEL_EXPORTER_PROMETHEUS_PORT) is invalid" in message
    assert "(got '99999')" in message and "less than or equal to 65535" in message
    assert "'log_level'" in error_of(tmp_path, "log_level: loud\n")


@pytest.mark.parametrize(
    "environ",
    [
        {"DATABASE_URL": f"postgresql://app:{SECRET}@db/app"},  # not an async driver
        {"DATABASE_URL": f"postgresql+asyncpg:app:{SECRET}@db/app"},  # no //: not redacted
        {"BROKER_TYPE": "nats", "BROKER_ADDRESS": f"http://app:{SECRET}@broker:4222"},
        {"NATS_SERVER_URL": f"http://app:{SECRET}@broker:4222"},
        {"BROKER_TYPE": "pulsar", "MQ_NAME_SERVER": f"pulsar://app:{SECRET}@broker:6650"},
        {f"{PREFIX}BROKER__NATS__TLS": SECRET},  # not JSON
        {f"{PREFIX}BROKER__NATS__SERVERS": f"[{SECRET}"},  # not JSON either
    ],
)
def test_a_secret_in_a_bad_value_is_never_echoed(tmp_path: Path, environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, environ=environ)
    assert SECRET not in str(caught.value) and "\n" not in str(caught.value)


def test_a_generic_value_that_is_not_json_names_the_variable(tmp_path: Path) -> None:
    message = error_of(tmp_path, **{f"{PREFIX}BROKER__NATS__TLS": "yes"})
    assert f"{PREFIX}BROKER" in message and "is not valid JSON" in message
    assert f"{PREFIX}BROKER__<KEY>" in message


def test_bad_yaml_is_one_sentence_with_the_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, "broker:\n  type: nats\n address: [oops\n")
    assert message.startswith(f"{tmp_path / 'config.yaml'} is not valid YAML (")
    assert "at line 3" in message and message.endswith("; fix its syntax")


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    assert "must hold a mapping of sections" in error_of(tmp_path, "- broker\n- database\n")
    assert "must hold a mapping of sections" in error_of(tmp_path, "just words\n")


def test_an_empty_file_is_the_defaults(tmp_path: Path) -> None:
    assert load(tmp_path, "# nothing set yet\n").broker.type == "memory"


def test_a_file_that_is_not_utf8_names_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    padding = "# " + "x" * 19_996 + "\n"  # past the reader's first buffer: 20000 bytes
    path.write_bytes((padding + "name: caf\u00e9\n").encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_config(ExampleConfig, path, {}, env_prefix=PREFIX)
    message = str(caught.value)
    assert message.startswith(f"{path} is not UTF-8 text (byte {len(padding) + 9}: ")
    assert message.endswith("; save it as UTF-8")


# -- subscription type and initial position -------------------------------------------------


def test_subscriptions_are_shared_from_the_earliest_message_by_default(tmp_path: Path) -> None:
    options = subscribe_options(load(tmp_path).broker)
    assert options.subscription_type is SubscriptionType.SHARED  # what --workers N needs
    assert options.initial_position is InitialPosition.EARLIEST


def test_subscription_type_and_initial_position_from_the_file_and_environment(
    tmp_path: Path,
) -> None:
    yaml_text = "broker:\n  subscriber:\n    subscription_type: Exclusive\n"
    environ = {"EXAMPLE__BROKER__SUBSCRIBER__INITIAL_POSITION": "LATEST"}
    options = subscribe_options(load(tmp_path, yaml_text, environ).broker)
    assert options.subscription_type is SubscriptionType.EXCLUSIVE
    assert options.initial_position is InitialPosition.LATEST


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("subscription_type", "round_robin", "'shared', 'exclusive', 'failover' or 'key_shared'"),
        ("initial_position", "beginning", "'earliest' or 'latest'"),
    ],
)
def test_a_bad_subscription_setting_names_it_and_the_choices(
    tmp_path: Path, key: str, value: str, allowed: str
) -> None:
    message = error_of(tmp_path, **{f"EXAMPLE__BROKER__SUBSCRIBER__{key.upper()}": value})
    assert f"'broker.subscriber.{key}'" in message
    assert repr(value) in message and allowed in message


def test_a_topic_overrides_the_subscriber_defaults(tmp_path: Path) -> None:
    yaml_text = (
        "broker:\n  subscriptions:\n"
        "    events.orders:\n      subscription_type: failover\n"
        "    events.audit:\n      initial_position: latest\n"
    )
    broker = load(tmp_path, yaml_text).broker
    server = BrokerServer(MemoryBroker(), subscribe_options(broker), subscription_overrides(broker))
    code_level = SubscribeOptions(concurrency=4)  # what a registration passes is kept
    server.register("events.orders", _handler, group="g", options=code_level)
    server.register("events.audit", _handler, group="g")
    server.register("events.other", _handler, group="g")
    orders, audit, other = (reg.options for reg in server.registrations)
    assert (orders.subscription_type, orders.initial_position, orders.concurrency) == (
        SubscriptionType.FAILOVER, InitialPosition.EARLIEST, 4
    )
    assert (audit.subscription_type, audit.initial_position) == (
        SubscriptionType.SHARED, InitialPosition.LATEST
    )
    assert other == server.default_options


async def test_an_override_of_a_topic_nobody_subscribes_is_named(tmp_path: Path) -> None:
    yaml_text = "broker:\n  subscriptions:\n    events.ordres:\n      subscription_type: failover\n"
    broker = load(tmp_path, yaml_text).broker
    server = BrokerServer(MemoryBroker(), subscribe_options(broker), subscription_overrides(broker))
    server.register("events.orders", _handler, group="g")
    with pytest.raises(ConfigError, match=r"'events.ordres'.*events.orders"):
        await server.start()


def test_an_override_takes_only_the_subscription_settings(tmp_path: Path) -> None:
    yaml_text = "broker:\n  subscriptions:\n    events.orders:\n      concurrency: 3\n"
    assert "unknown setting 'broker.subscriptions.events.orders.concurrency'" in error_of(
        tmp_path, yaml_text
    )


@pytest.mark.parametrize("broker_type", ["nats", "jetstream"])
def test_nats_refuses_a_subscription_type_it_does_not_have(
    tmp_path: Path, broker_type: str
) -> None:
    yaml_text = f"broker:\n  type: {broker_type}\n  subscriber:\n    subscription_type: failover\n"
    message = error_of(tmp_path, yaml_text)
    assert "broker.subscriber.subscription_type is failover" in message
    assert f"which {broker_type} does not have" in message and "set it to shared" in message


def test_cumulative_ack_is_refused_on_a_shared_subscription(tmp_path: Path) -> None:
    yaml_text = (
        "broker:\n  type: pulsar\n  pulsar:\n    cumulative_ack: true\n"
        "  subscriber:\n    subscription_type: exclusive\n"
        "  subscriptions:\n    events.orders:\n      subscription_type: key_shared\n"
    )
    message = error_of(tmp_path, yaml_text)
    assert "cumulative_ack needs exclusive or failover subscriptions" in message
    assert "broker.subscriptions.events.orders.subscription_type is key_shared" in message
    allowed = yaml_text.replace("key_shared", "failover")
    assert load(tmp_path, allowed).broker.pulsar.cumulative_ack


def test_workers_refuse_an_exclusive_subscription(tmp_path: Path) -> None:
    yaml_text = (
        "broker:\n  type: pulsar\n  address: pulsar://127.0.0.1:6650\n"
        "  subscriptions:\n    events.orders:\n      subscription_type: exclusive\n"
    )
    config = load(tmp_path, yaml_text)
    with pytest.raises(ConfigError, match=r"--workers 2 .*events\.orders\.subscription_type is "
                       r"exclusive"):
        serve_workers("example", None, "saver", 2, config)


async def _handler(msg: bytes, ctx: MessageContext) -> None:
    del msg, ctx
