"""One brokerline version everywhere: the template's answer, the library's metadata and code,
and what a generated project pins and vendors.

A release bumps them together; a mismatch would make `make install` look for a wheel that
post_gen never built, or run a library whose `__version__` lies.
"""

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path

from .conftest import TEMPLATE, generate_ok

LIBRARY = TEMPLATE / "brokerline"
PIN = re.compile(r'"brokerline(?:\[[^\]]*\])?==([^"]+)"')


def template_version() -> str:
    answers = json.loads((TEMPLATE / "cookiecutter.json").read_text(encoding="utf-8"))
    return str(answers["_brokerline_version"])


def code_version() -> str:
    """`brokerline.__version__`, read from the source (the library's dependencies are not
    installed in the template's venv)."""
    init = LIBRARY / "src" / "brokerline" / "__init__.py"
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            return str(ast.literal_eval(node.value))
    raise AssertionError(f"{init} sets no __version__")


def test_template_library_metadata_and_code_agree() -> None:
    metadata = tomllib.loads((LIBRARY / "pyproject.toml").read_text(encoding="utf-8"))
    versions = {
        "cookiecutter.json _brokerline_version": template_version(),
        "brokerline/pyproject.toml": metadata["project"]["version"],
        "brokerline.__version__": code_version(),
    }
    assert len(set(versions.values())) == 1, f"brokerline versions disagree: {versions}"


def test_generated_project_pins_and_vendors_that_version(out: Path) -> None:
    version = template_version()
    project = generate_ok(out, brokers="nats")
    pins = PIN.findall((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pins and set(pins) == {version}, f"pins {pins}, template says {version}"
    wheels = [p.name for p in (project / "vendor").glob("*.whl")]
    assert wheels == [f"brokerline-{version}-py3-none-any.whl"]
