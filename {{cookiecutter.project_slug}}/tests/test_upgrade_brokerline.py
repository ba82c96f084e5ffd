"""`make upgrade-brokerline WHEEL=...` (tools/upgrade_brokerline.py): the vendored wheel and
the pins move together, and a wrong wheel changes nothing.

Each case runs the tool on a copy of the project's pyproject.toml and vendor/.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
PIN = re.compile(r'"brokerline(?:\[[^\]]*\])?==([^"]+)"')


def pins(pyproject: Path) -> list[str]:
    return PIN.findall(pyproject.read_text(encoding="utf-8"))


def make_wheel(folder: Path, name: str, version: str, filename: str | None = None) -> Path:
    """A wheel holding only its metadata: what the tool reads."""
    path = folder / (filename or f"{name}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}-{version}.dist-info/METADATA",
                         f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return path


def junk_wheel(folder: Path) -> Path:
    path = folder / "brokerline-9.1.0-py3-none-any.whl"
    path.write_bytes(b"not a zip archive")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    (copy / "tools").mkdir(parents=True)
    shutil.copy2(PROJECT / "tools" / "upgrade_brokerline.py", copy / "tools")
    shutil.copy2(PROJECT / "pyproject.toml", copy)
    shutil.copytree(PROJECT / "vendor", copy / "vendor")
    return copy


def upgrade(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "tools/upgrade_brokerline.py", *args], cwd=project,
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_vendored_wheel_is_the_pinned_version() -> None:
    [pinned] = set(pins(PROJECT / "pyproject.toml"))
    wheels = sorted(p.name for p in (PROJECT / "vendor").glob("brokerline-*.whl"))
    assert wheels == [f"brokerline-{pinned}-py3-none-any.whl"]


def test_upgrade_replaces_the_wheel_and_every_pin(project: Path, tmp_path: Path) -> None:
    before = pins(project / "pyproject.toml")
    assert len(before) >= 2  # the service's dependency and the dev extras
    wheel = make_wheel(tmp_path, "brokerline", "9.1.0")
    result = upgrade(project, str(wheel))
    assert result.returncode == 0, result.stderr
    assert f"{before[0]} -> 9.1.0" in result.stdout
    assert pins(project / "pyproject.toml") == ["9.1.0"] * len(before)
    assert [p.name for p in (project / "vendor").iterdir()] == [wheel.name]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.whl", "is not a file"),
        (lambda d: make_wheel(d, "brokerline", "9.1.0", "tools-9.1.0-py3-none-any.whl"),
         "is not a brokerline wheel"),
        (lambda d: make_wheel(d, "otherlib", "9.1.0", "brokerline-9.1.0-py3-none-any.whl"),
         "does not hold the brokerline distribution"),
        (junk_wheel, "is not a readable wheel"),
        (lambda d: make_wheel(d, "brokerline", pins(PROJECT / "pyproject.toml")[0]),
         "already pins brokerline"),
    ],
    ids=["missing", "wrong-name", "other-distribution", "not-a-zip", "same-version"],
)
def test_a_wrong_wheel_is_refused_in_one_line_and_changes_nothing(
    project: Path, tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    wheel = make(tmp_path)
    pyproject_before = (project / "pyproject.toml").read_text(encoding="utf-8")
    vendor_before = sorted(p.name for p in (project / "vendor").iterdir())
    result = upgrade(project, str(wheel))
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert (project / "pyproject.toml").read_text(encoding="utf-8") == pyproject_before
    assert sorted(p.name for p in (project / "vendor").iterdir()) == vendor_before


def test_no_wheel_given_names_the_argument(project: Path) -> None:
    result = upgrade(project, "")
    assert result.returncode == 2 and "WHEEL=" in result.stderr
