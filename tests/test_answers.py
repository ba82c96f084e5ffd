"""Bad template answers stop generation with one clear sentence; nothing is generated."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import generate

EMPTY_BROKERS = "brokers is empty; choose at least one of pulsar, nats, jetstream, kafka"


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"package_name": "class"}, "package_name 'class' is a Python keyword"),
        ({"package_name": "9lives"}, "package_name '9lives' is not a Python identifier"),
        ({"package_name": "my-service"}, "package_name 'my-service' is not a Python identifier"),
        ({"project_slug": "My Service"}, "project_slug 'My Service' is not a valid slug"),
        ({"brokers": "pulsar,rabbitmq"}, "brokers has unknown broker(s) 'rabbitmq'"),
        ({"brokers": "nats,nats"}, "names a broker twice"),
        ({"brokers": ""}, EMPTY_BROKERS),
        ({"brokers": " , "}, EMPTY_BROKERS),
        # the templates drop spaces only: any other blank would reach them as part of a name
        ({"brokers": "\tnats"}, "brokers has unknown broker(s) '\\tnats'"),
        ({"python_version": "3.9"}, "python_version '3.9' is not supported"),
        ({"python_version": "3.x"}, "python_version '3.x' is not supported"),
        ({"database": "oracle"}, "database 'oracle' is not supported; choose sqlite or postgresql"),
    ],
)
def test_bad_answer_fails_with_its_message(
    out: Path, answers: dict[str, str], message: str
) -> None:
    result = generate(out, **answers)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr.split("ERROR:")[0]
    assert not any(out.iterdir()), "a project was generated from a bad answer"


@pytest.mark.parametrize("answers", [{"project_slug": ""}, {"project_name": "  "}])
def test_empty_project_directory_name_is_refused(out: Path, answers: dict[str, str]) -> None:
    # cookiecutter itself refuses an empty directory name, before the hooks run
    result = generate(out, **answers)
    assert result.returncode != 0
    assert "already exists" in result.stdout + result.stderr
    assert not any(out.iterdir())
