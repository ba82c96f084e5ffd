"""Helpers that use the template the way a user does: cookiecutter, venv, pip, pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parent.parent
#: JUnit XML of every pytest run `make test` starts, the generated projects' included
REPORTS = TEMPLATE / "build" / "test-reports"


def junit_args(name: str) -> list[str]:
    """pytest arguments that write the run's JUnit XML report to build/test-reports/."""
    REPORTS.mkdir(parents=True, exist_ok=True)
    return [f"--junitxml={REPORTS / name}.xml", "-o", f"junit_suite_name={name}"]


def generate(output_dir: Path, **answers: str) -> subprocess.CompletedProcess[str]:
    """Run cookiecutter without prompts; answers override cookiecutter.json's defaults."""
    extra = [f"{key}={value}" for key, value in answers.items()]
    return subprocess.run(
        [sys.executable, "-m", "cookiecutter", "--no-input", "--output-dir", str(output_dir),
         str(TEMPLATE), *extra],
        capture_output=True, text=True, timeout=300,
    )


def generate_ok(output_dir: Path, **answers: str) -> Path:
    result = generate(output_dir, **answers)
    assert result.returncode == 0, f"generation failed:\n{result.stdout}\n{result.stderr}"
    [project] = [p for p in output_dir.iterdir() if p.is_dir()]
    return project


def install(project: Path) -> Path:
    """The project's README way: `make install` (its own venv, editable with dev extras,
    protos compiled by that venv's tools); returns the venv's python."""
    run(["make", "install", f"PYTHON={sys.executable}"], cwd=project, timeout=900)
    return project / ".venv" / "bin" / "python"


def run(
    cmd: list[str], cwd: Path, timeout: float = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, (
        f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-6000:]}\n"
        f"{result.stderr[-6000:]}"
    )
    return result


@pytest.fixture
def out(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def default_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The project generated with every default, installed: (project dir, its venv python).

    Its venv has the dependencies of every option (all brokers), so other generated projects'
    sources can be tested with it through PYTHONPATH without an install of their own.
    """
    project = generate_ok(tmp_path_factory.mktemp("default"))
    return project, install(project)
