"""Kafka settings: the seed's environment names select it; a bad value is one sentence."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from brokerline.config import ConfigError, ServiceConfig, load_config
from brokerline.core import BrokerError
from brokerline.core.embedded import embedded_broker
from brokerline.factory import build_broker, check_broker_config
from brokerline.kafka.broker import KafkaBroker
from brokerline.kafka.connection import client_keywords
from brokerline.kafka.settings import KafkaSettings


def config(environ: dict[str, str]) -> ServiceConfig:
    # CONFIG_FILE names a file that is not there: the environment alone configures
    environ = {"CONFIG_FILE": "/nonexistent/config.yaml", **environ}
    return load_config(ServiceConfig, None, environ, env_prefix="SVC__")


def test_the_seed_environment_names_select_kafka_and_its_bootstrap_servers() -> None:
    cfg = config({"COZE_MQ_TYPE": "kafka", "MQ_NAME_SERVER": "kafka-1:9092,kafka-2:9092"})
    check_broker_config(cfg.broker)
    broker = build_broker(cfg.broker)
    assert isinstance(broker, KafkaBroker)
    assert broker.settings.bootstrap_servers == ["kafka-1:9092", "kafka-2:9092"]
    assert [type(m).__name__ for m in broker.middleware] == [
        "TracingMiddleware", "MetricsMiddleware", "LoggingMiddleware",
    ]


def test_sasl_and_tls_settings_come_from_kafka_environment_names() -> None:
    cfg = config({
        "COZE_MQ_TYPE": "kafka", "KAFKA_BOOTSTRAP_SERVERS": "k:9093",
        "KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_USERNAME": "svc",
        "KAFKA_SASL_PASSWORD": "s3cret", "KAFKA_COMPRESSION": "LZ4",
        "KAFKA_GROUP_INSTANCE_ID": "saver-0",
    })
    kafka = cfg.broker.kafka
    assert kafka.group_instance_id == "saver-0"
    assert kafka.security_protocol == "SASL_SSL" and kafka.compression == "lz4"
    assert "s3cret" not in repr(kafka)  # a secret prints as stars
    keywords = client_keywords(kafka)
    assert keywords["sasl_plain_password"] == "s3cret"
    assert keywords["ssl_context"] is not None and keywords["bootstrap_servers"] == ["k:9093"]


@pytest.mark.parametrize(("fields", "words"), [
    ({"bootstrap_servers": ["pulsar://k:6650"]}, "write it as host:port"),
    ({"bootstrap_servers": ["k"]}, "write it as host:port"),
    ({"security_protocol": "SASL_PLAINTEXT"}, "needs broker.kafka.sasl_username"),
    ({"acks": "1"}, "enable_idempotence needs acks all"),
    ({"compression": "brotli"}, "'none', 'gzip', 'snappy', 'lz4' or 'zstd'"),
    ({"heartbeat_interval": 10, "session_timeout": 5}, "must be below session_timeout"),
])
def test_bad_kafka_settings_are_refused_with_the_fix(fields: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        KafkaSettings.model_validate(fields)


def test_a_scheme_in_the_address_or_a_pulsar_only_type_is_refused_at_load() -> None:
    with pytest.raises(ConfigError, match="not a Kafka bootstrap server"):
        config({"COZE_MQ_TYPE": "kafka", "MQ_NAME_SERVER": "nats://k:4222"})
    with pytest.raises(ConfigError, match="which kafka does not have"):
        config({"COZE_MQ_TYPE": "kafka", "MQ_NAME_SERVER": "k:9092",
                "SVC__BROKER__SUBSCRIBER__SUBSCRIPTION_TYPE": "exclusive"})


def test_no_address_is_one_sentence_unless_a_local_kafka_is_asked_for() -> None:
    with pytest.raises(ConfigError, match=r"no kafka broker address .*KAFKA_BOOTSTRAP_SERVERS"):
        check_broker_config(config({"COZE_MQ_TYPE": "kafka"}).broker)
    check_broker_config(config({"COZE_MQ_TYPE": "kafka", "BROKER_EMBEDDED": "true"}).broker)


def test_a_local_kafka_without_java_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # no java, no mvn
    with pytest.raises(BrokerError, match=r"a local Kafka needs java and mvn .*MQ_NAME_SERVER"):
        embedded_broker("kafka")


def test_a_missing_ca_file_is_named_before_connecting() -> None:
    cfg = config({"COZE_MQ_TYPE": "kafka", "MQ_NAME_SERVER": "k:9092",
                  "KAFKA_TLS_CA_FILE": "/nonexistent/ca.pem"})
    with pytest.raises(ConfigError, match=r"broker.kafka.tls.ca_file '/nonexistent/ca.pem'"):
        check_broker_config(cfg.broker)


def test_the_test_brokers_cluster_ids_never_look_like_an_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kafka-storage's parser takes an id starting with "-" for an option (1 start in 64)."""
    import uuid

    from brokerline.testing.apache_kafka import kraft

    # the first draw encodes to an id starting with "-" (0xf8 -> "-" in URL-safe base64)
    draws = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(int=1)])
    monkeypatch.setattr(kraft.uuid, "uuid4", lambda: next(draws))
    cluster_id = kraft.random_cluster_id()
    assert not cluster_id.startswith("-") and len(cluster_id) == 22
