"""Moves this service to another brokerline wheel: `make upgrade-brokerline WHEEL=path`.

Replaces the wheel in vendor/ and the `brokerline[...]==<version>` pins of pyproject.toml, so
the change is one reviewable diff (the wheel and the pins); `make install` then installs it.
A bad argument ends with one sentence and exit code 2, changing nothing.
"""

from __future__ import annotations

import re
import shutil
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "vendor"
PYPROJECT = ROOT / "pyproject.toml"
#: a pin as pyproject.toml writes it: "brokerline[extras]==1.2.3"
PIN = re.compile(r'("brokerline(?:\[[^\]]*\])?==)([^";\s]+)(")')


class UpgradeError(Exception):
    """A reason the upgrade cannot be made, worded for the user."""


def wheel_version(wheel: Path) -> str:
    """The version a brokerline wheel holds, read from its metadata (not trusted from the name)."""
    if not wheel.is_file():
        raise UpgradeError(f"{wheel} is not a file; give "
                           "WHEEL=path/to/brokerline-X.Y.Z-py3-none-any.whl")
    if not wheel.name.startswith("brokerline-") or wheel.suffix != ".whl":
        raise UpgradeError(f"{wheel.name} is not a brokerline wheel (brokerline-X.Y.Z-*.whl); "
                           "build one with `pip wheel --no-deps -w DIR path/to/brokerline`")
    try:
        with zipfile.ZipFile(wheel) as archive:
            [metadata] = [n for n in archive.namelist()
                          if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
            headers = HeaderParser().parsestr(archive.read(metadata).decode("utf-8"))
    except (zipfile.BadZipFile, ValueError, UnicodeDecodeError) as exc:
        raise UpgradeError(f"{wheel.name} is not a readable wheel ({exc}); rebuild it") from exc
    if headers.get("Name", "").lower() != "brokerline" or not headers.get("Version"):
        raise UpgradeError(f"{wheel.name} does not hold the brokerline distribution; "
                           "give the wheel built from the brokerline library")
    return str(headers["Version"])


def upgrade(wheel: Path) -> tuple[str, str]:
    """Put `wheel` in vendor/ in place of the current one and pin its version; (old, new)."""
    new = wheel_version(wheel)
    text = PYPROJECT.read_text(encoding="utf-8")
    pinned = {match.group(2) for match in PIN.finditer(text)}
    if len(pinned) != 1:
        raise UpgradeError("pyproject.toml should pin brokerline to one exact version "
                           f"(found {sorted(pinned) or 'none'}); fix the pins by hand first")
    [old] = pinned
    if new == old:
        raise UpgradeError(f"the service already pins brokerline {old}; a changed library "
                           "needs a new version number, so the pin says which code runs")
    VENDOR.mkdir(exist_ok=True)
    if wheel.parent != VENDOR:
        shutil.copy2(wheel, VENDOR / wheel.name)
    for stale in VENDOR.glob("brokerline-*.whl"):
        if stale.name != wheel.name:
            stale.unlink()
    PYPROJECT.write_text(PIN.sub(lambda m: m.group(1) + new + m.group(3), text),
                         encoding="utf-8")
    return old, new


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0]:
        print("give the wheel to move to: make upgrade-brokerline "
              "WHEEL=path/to/brokerline-X.Y.Z-py3-none-any.whl", file=sys.stderr)
        return 2
    try:
        old, new = upgrade(Path(argv[0]).expanduser().resolve())
    except UpgradeError as exc:
        print(f"upgrade-brokerline: {exc}", file=sys.stderr)
        return 2
    print(f"brokerline {old} -> {new}: vendor/ and pyproject.toml updated; "
          "review and commit both (git add vendor pyproject.toml)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
