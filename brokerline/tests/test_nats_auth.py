"""NATS connection options against real nats-server processes with token, user/password and
TLS: right credentials work, wrong ones fail with one clear sentence and never show the secret.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from brokerline.core import (
    BrokerError,
    BrokerUnavailable,
    MessageContext,
)
from brokerline.core.embedded import EmbeddedBroker, free_port
from brokerline.nats.broker import NatsBroker
from brokerline.nats.embedded import nats_server
from brokerline.testing.brokers import eventually, nats_test_settings, unique

TOKEN = "s3cret-token-value"
PASSWORD = "pa55-word-value"


@pytest.fixture(scope="module")
def token_server() -> Iterator[EmbeddedBroker]:
    with nats_server(jetstream=False, extra_args=["--auth", TOKEN]) as server:
        yield server.start()


@pytest.fixture(scope="module")
def password_server() -> Iterator[EmbeddedBroker]:
    with nats_server(jetstream=False, extra_args=["--user", "svc", "--pass", PASSWORD]) as server:
        yield server.start()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed CA and a server certificate for 127.0.0.1 that it signed."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    d = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem", cwd=d)
    return {name: d / f"{name}.pem" for name in ("ca", "server")} | {"key": d / "server.key"}


@pytest.fixture(scope="module")
def tls_server(tls_files: dict[str, Path]) -> Iterator[EmbeddedBroker]:
    args = ["--tls", "--tlscert", str(tls_files["server"]), "--tlskey", str(tls_files["key"])]
    with nats_server(jetstream=False, extra_args=args) as server:
        yield server.start()


async def _round_trip(broker: NatsBroker) -> None:
    topic, got = unique("auth"), []

    async def handler(msg: bytes, ctx: MessageContext) -> None:
        got.append(msg)

    await broker.subscribe(topic, handler)
    await broker.publish(topic, b"hello")
    await eventually(lambda: got == [b"hello"])


async def _connects(url: str, **settings: Any) -> None:
    broker = NatsBroker(nats_test_settings(url, **settings))
    await broker.connect()
    try:
        await _round_trip(broker)
    finally:
        await broker.close(timeout=5)


async def _refused(url: str, **settings: Any) -> BrokerError:
    broker = NatsBroker(nats_test_settings(url, **settings))
    with pytest.raises(BrokerError) as caught:
        await broker.connect()
    return caught.value


def _no_secret_in(caplog: pytest.LogCaptureFixture, error: BaseException, *secrets: str) -> None:
    shown = str(error) + "\n".join(r.getMessage() for r in caplog.records)
    for secret in secrets:
        assert secret not in shown


async def test_token_auth(token_server: EmbeddedBroker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await _connects(token_server.url, token=TOKEN)
    error = await _refused(token_server.url, token="wrong-token")
    assert "rejected the connection with a token of 11 characters" in str(error)
    assert "NATS_TOKEN" in str(error)
    assert f"token of {len(TOKEN)} characters" in caplog.text  # its length is logged, not it
    _no_secret_in(caplog, error, TOKEN, "wrong-token")
    missing = await _refused(token_server.url)
    assert "rejected the connection with no credentials" in str(missing)


async def test_user_password_auth(
    password_server: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await _connects(password_server.url, user="svc", password=PASSWORD)
    error = await _refused(password_server.url, user="svc", password="not-the-password")
    assert "rejected the connection with user 'svc' with a password" in str(error)
    assert "NATS_PASSWORD" in str(error)
    _no_secret_in(caplog, error, PASSWORD, "not-the-password")


async def test_tls_with_ca_file(tls_server: EmbeddedBroker, tls_files: dict[str, Path]) -> None:
    url = f"tls://127.0.0.1:{tls_server.port}"
    await _connects(url, tls={"ca_file": str(tls_files["ca"])})
    error = await _refused(url)  # the system trust store does not know the test CA
    assert "TLS handshake" in str(error) and "ca_file" in str(error)


async def test_plain_client_against_tls_server_fails_clearly(tls_server: EmbeddedBroker) -> None:
    error = await _refused(tls_server.url)
    assert "TLS" in str(error)


async def test_unreachable_server_fails_within_the_connect_timeout() -> None:
    error = await _refused(f"nats://127.0.0.1:{free_port()}", connect_timeout=1)
    assert isinstance(error, BrokerUnavailable)
    assert "cannot reach NATS" in str(error) and "NATS_SERVER_URL" in str(error)


async def test_comma_separated_urls_and_credentials_in_urls_are_not_shown() -> None:
    dead = f"nats://admin:hunter2@127.0.0.1:{free_port()}"
    error = await _refused(f"{dead},127.0.0.1:{free_port()}", connect_timeout=1)
    assert "hunter2" not in str(error)
    assert "nats://***@127.0.0.1" in str(error)


async def test_comma_separated_urls_reach_the_live_server(token_server: EmbeddedBroker) -> None:
    dead = f"nats://127.0.0.1:{free_port()}"
    await _connects(f"{dead},{token_server.url}", token=TOKEN, connect_timeout=3)


def _user_seed_file(directory: Path, name: str) -> tuple[Path, str]:
    """A new NKey user seed in a file, and its public key."""
    import os

    import nkeys

    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    path = directory / f"{name}.nk"
    path.write_bytes(seed + b"\n")
    return path, nkeys.from_seed(bytearray(seed)).public_key.decode()


async def test_nkey_seed_auth(tmp_path: Path) -> None:
    seed_file, public_key = _user_seed_file(tmp_path, "svc")
    stranger_file, _ = _user_seed_file(tmp_path, "stranger")
    config = tmp_path / "nkeys.conf"
    config.write_text('authorization { users = [ { nkey: "' + public_key + '" } ] }\n')
    with nats_server(jetstream=False, extra_args=["-c", str(config)]) as server:
        server.start()
        await _connects(server.url, nkey_seed=str(seed_file))
        error = await _refused(server.url, nkey_seed=str(stranger_file))
        assert "rejected the connection with an NKey seed (NATS_NKEY_SEED)" in str(error)


async def test_credentials_in_the_url_connect_and_reconnect_readably(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The user and password of nats://svc:pass@host are used (percent-decoded); after a
    server restart the reconnect line shows a plain, redacted URL, never `ParseResult(...)`."""
    caplog.set_level(logging.INFO)
    password = PASSWORD + "/@"
    with nats_server(jetstream=False, extra_args=["--user", "svc", "--pass", password]) as server:
        server.start()
        url = f"nats://svc:{quote(password, safe='')}@127.0.0.1:{server.port}"
        broker = NatsBroker(nats_test_settings(url, reconnect_wait=0.2))
        await broker.connect()
        try:
            await _round_trip(broker)
            server.restart()
            await eventually(lambda: "reconnected to NATS" in caplog.text, timeout=15)
            await _round_trip(broker)
        finally:
            await broker.close(timeout=5)
    assert f"reconnected to NATS at nats://127.0.0.1:{server.port}" in caplog.text
    assert "ParseResult" not in caplog.text
    assert "user 'svc' with a password from the server URL" in caplog.text
    assert password not in caplog.text and quote(password, safe="") not in caplog.text
