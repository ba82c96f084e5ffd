"""The shared commands refuse bad arguments while parsing: one line, exit code 2."""

from __future__ import annotations

import pytest

from brokerline.cli.arguments import OneLineParser
from brokerline.cli.health import add_health_command
from brokerline.config import ServiceConfig


def health_parser() -> OneLineParser:
    parser = OneLineParser(prog="svc")
    add_health_command(parser.add_subparsers(dest="command", required=True),
                       lambda _path: ServiceConfig())
    return parser


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:9464/readyz", "127.0.0.1:9464/readyz",
                                 "http://", "file:///etc/passwd"])
def test_health_refuses_a_url_that_is_not_http(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        health_parser().parse_args(["health", "--url", url])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not an HTTP URL" in err and "Traceback" not in err


@pytest.mark.parametrize("timeout", ["0", "-1", "soon"])
def test_health_refuses_a_timeout_that_is_not_positive(
    timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        health_parser().parse_args(["health", "--timeout", timeout])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: svc health: argument --timeout")


def test_health_takes_an_https_url() -> None:
    args = health_parser().parse_args(["health", "--url", "https://svc.internal:9464/readyz"])
    assert args.url == "https://svc.internal:9464/readyz"
