"""JWT token authentication on a real Apache Pulsar (pulsar-lite accepts any token).

A second standalone of this module's own, with `authenticationEnabled` and the token provider;
the secret key and the tokens are made here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from brokerline.core import BrokerError, MessageContext
from brokerline.pulsar.broker import PulsarBroker
from brokerline.pulsar.settings import PulsarSettings
from brokerline.testing.apache_pulsar import ApachePulsarServer, apache_pulsar_standalone
from brokerline.testing.apache_pulsar.jwt import secret_key, token, token_auth_settings
from brokerline.testing.brokers import connected_brokers, eventually, unique


@pytest.fixture(scope="module")
def secured(
    apache_pulsar_server: ApachePulsarServer,
) -> Iterator[tuple[ApachePulsarServer, bytes]]:
    """An Apache Pulsar that requires a token signed with the yielded key.

    Asks for the session's server first, so Java and Maven are checked the same way.
    """
    key = secret_key()
    superuser = token(key, "admin")
    server = apache_pulsar_standalone(
        settings=token_auth_settings(key, superuser), admin_token=superuser
    )
    with server:
        yield server.start(), key


def settings_for(server: ApachePulsarServer, jwt: str | None) -> PulsarSettings:
    return PulsarSettings(
        service_urls=[server.url], jwt_token=jwt, operation_timeout=5, connection_timeout=2
    )


async def test_a_token_signed_with_the_key_is_accepted(
    secured: tuple[ApachePulsarServer, bytes],
) -> None:
    server, key = secured
    seen: list[bytes] = []

    async def handler(msg: bytes, ctx: MessageContext) -> None:
        seen.append(msg)

    settings = settings_for(server, token(key, "report-pipeline"))
    async with connected_brokers(lambda: PulsarBroker(settings)) as connect:
        broker = await connect()
        topic = unique("authed")
        await broker.subscribe(topic, handler, group=unique("g"))
        await broker.publish(topic, b"signed in")
        await eventually(lambda: seen == [b"signed in"])


@pytest.mark.parametrize("credential", ["other key", "garbage", "none"])
async def test_a_wrong_or_missing_token_is_refused(
    secured: tuple[ApachePulsarServer, bytes], credential: str
) -> None:
    server, _ = secured
    jwt = {
        "other key": token(secret_key(), "report-pipeline"),
        "garbage": "not-a-valid-token",
        "none": None,
    }[credential]
    # the refusal is the first connection attempt's: no need to wait out the default budget
    broker = PulsarBroker(settings_for(server, jwt).model_copy(update={"connect_timeout": 2}))
    with pytest.raises(BrokerError) as refused:
        await broker.connect()
        await broker.publish(unique("refused"), b"x")
    await broker.close(timeout=2)
    # the broker drops the connection (the client only sees it not answer) or says why
    assert "PULSAR_JWT_TOKEN" in str(refused.value) or jwt is None
