"""Jinja extensions of the template (cookiecutter.json: `_extensions`).

`template_root` is the template checkout's absolute path. cookiecutter passes `_repo_dir` as
the user typed it (`cookiecutter .`), relative to where it was started, while the hooks run
in the generated project; the post-generation hook needs the real path to build the
brokerline wheel. This module is imported from the checkout at the start of a run, so its own
location is that path, whatever the working directory is later.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment
from jinja2.ext import Extension

TEMPLATE_ROOT = Path(__file__).resolve().parent


class TemplateRoot(Extension):
    """Adds the global `template_root`: the absolute path of this template checkout."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.globals["template_root"] = str(TEMPLATE_ROOT)
