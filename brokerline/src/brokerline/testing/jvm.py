"""What the JVM test brokers (Apache Pulsar, Apache Kafka) share: jars from Maven Central.

Each broker's package holds a checked-in `pom.xml` (and the `settings.xml` that keeps Maven on
Central); `MavenProject.resolve_classpath()` runs `mvn dependency:build-classpath` on it once.
Maven keeps the jars in ~/.m2; the classpath it prints is cached beside a copy of the POM
under ~/.cache/brokerline/<name>/<pom digest>/, so later sessions start without Maven.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from brokerline.core.errors import BrokerError

#: how long the first resolve may take (Pulsar: about 300 jars, 250 MB)
RESOLVE_TIMEOUT = 900.0
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


class JvmBroker(Protocol):
    """What the test plugin reads of a JVM broker it starts."""

    version: str
    started_in: float | None  # seconds from launch to ready

    def start(self, timeout: float = ...) -> Any: ...

    def rss_mb(self) -> float | None: ...


def missing_tools(what: str) -> str | None:
    """One sentence naming what to install for `what`'s tests, or None when Java and Maven
    are both there."""
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if not missing:
        return None
    return (
        f"{what} tests need {' and '.join(missing)} on PATH: install Java 17 and Maven "
        "(Debian: apt-get install openjdk-17-jre-headless maven)"
    )


def rss_mb(pid: int) -> float | None:
    """A process's resident memory in MiB (Linux /proc; None elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cached_classpath(path: Path) -> str | None:
    if not path.is_file():
        return None
    classpath = path.read_text().strip()
    jars = classpath.split(os.pathsep)
    return classpath if jars and all(Path(jar).is_file() for jar in jars) else None


@dataclass(frozen=True)
class MavenProject:
    """The POM of one JVM broker: `package` holds pom.xml and settings.xml."""

    package: str  # e.g. "brokerline.testing.apache_pulsar"
    name: str  # the cache directory's name, e.g. "apache-pulsar"
    title: str  # for messages, e.g. "Apache Pulsar"
    version_property: str  # the POM property that pins the broker's version

    def project_file(self, name: str) -> bytes:
        return (resources.files(self.package) / name).read_bytes()

    def version(self) -> str:
        """The broker version the POM pins."""
        root = ET.fromstring(self.project_file("pom.xml"))
        version = root.findtext(f"m:properties/m:{self.version_property}", namespaces=_POM_NS)
        assert version, f"pom.xml has no {self.version_property} property"
        return version

    def cache_dir(self) -> Path:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        digest = hashlib.sha256(
            self.project_file("pom.xml") + self.project_file("settings.xml")
        ).hexdigest()
        return Path(base) / "brokerline" / self.name / digest[:16]

    def resolve_classpath(self) -> str:
        """The broker's classpath; runs Maven only when no cached one is complete.

        One resolve at a time per machine (a file lock): two test sessions side by side (as
        `make test` runs them) would otherwise write the same jars into ~/.m2 at once.
        """
        directory = self.cache_dir()
        output = directory / "classpath.txt"
        classpath = cached_classpath(output)
        if classpath is not None:
            return classpath
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory.parent.parent / "maven.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            return cached_classpath(output) or self._run_maven(directory, output)

    def _run_maven(self, directory: Path, output: Path) -> str:
        for name in ("pom.xml", "settings.xml"):
            (directory / name).write_bytes(self.project_file(name))
        argv = [
            "mvn", "--batch-mode", "--quiet", "--settings", str(directory / "settings.xml"),
            "--file", str(directory / "pom.xml"), "dependency:build-classpath",
            f"-Dmdep.outputFile={output}",
        ]
        what = f"{self.title} {self.version()}"
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=RESOLVE_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            raise BrokerError(
                f"Maven did not resolve {what} within {RESOLVE_TIMEOUT:.0f}s; check that "
                "Maven Central is reachable"
            ) from None
        classpath = cached_classpath(output)
        if result.returncode != 0 or classpath is None:
            errors = [line for line in result.stdout.splitlines() if "[ERROR]" in line][:3]
            raise BrokerError(
                f"Maven could not resolve {what} (exit {result.returncode}); check that Maven "
                "Central is reachable: " + (" ".join(errors) or result.stderr.strip()[-500:])
            )
        return classpath
