"""Bad template answers stop generation with one clear sentence; nothing is generated."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import generate


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"package_name": "class"}, "package_name 'class' is a Python keyword"),
        ({"package_name": "9lives"}, "package_name '9lives' is not a Python identifier"),
        ({"package_name": "my-service"}, "package_name 'my-service' is not a Python identifier"),
        ({"project_slug": ""}, "project_slug '' is not a valid slug"),
        ({"project_slug": "My Service"}, "project_slug 'My Service' is not a valid slug"),
        ({"brokers": "pulsar,kafka"}, "brokers has unknown broker(s) 'kafka'"),
        ({"brokers": "nats,nats"}, "names a broker twice"),
        ({"python_version": "3.9"}, "python_version '3.9' is not supported"),
        ({"project_name": "  "}, "project_name is empty"),
    ],
)
def test_bad_answer_fails_with_its_message(out: Path, answers: dict[str, str], message: str) -> None:
    result = generate(out, **answers)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr.split("ERROR:")[0]
    assert not any(out.iterdir()), "a project was generated from a bad answer"


def test_unknown_database_choice_is_refused(out: Path) -> None:
    result = generate(out, database="oracle")
    assert result.returncode != 0
    assert "oracle" in (result.stdout + result.stderr)
    assert not any(out.iterdir())
