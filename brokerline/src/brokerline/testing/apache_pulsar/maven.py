"""The Apache Pulsar jars: resolved from Maven Central by the checked-in `pom.xml`, once.

Maven keeps the jars in ~/.m2; the classpath it prints is cached beside a copy of the POM
under ~/.cache/brokerline/apache-pulsar/<pom digest>/, so later sessions start without Maven.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path

from brokerline.core.errors import BrokerError

#: how long the first resolve may take (about 300 jars, 250 MB)
RESOLVE_TIMEOUT = 900.0
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def project_file(name: str) -> bytes:
    return (resources.files(__package__) / name).read_bytes()


def pulsar_version() -> str:
    """The Pulsar version the POM pins."""
    root = ET.fromstring(project_file("pom.xml"))
    version = root.findtext("m:properties/m:pulsar.version", namespaces=_POM_NS)
    assert version, "pom.xml has no pulsar.version property"
    return version


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    digest = hashlib.sha256(project_file("pom.xml") + project_file("settings.xml")).hexdigest()
    return Path(base) / "brokerline" / "apache-pulsar" / digest[:16]


def missing_tools() -> str | None:
    """One sentence naming what to install, or None when Java and Maven are both there."""
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if not missing:
        return None
    return (
        f"Apache Pulsar tests need {' and '.join(missing)} on PATH: install Java 17 and Maven "
        "(Debian: apt-get install openjdk-17-jre-headless maven)"
    )


def cached_classpath(path: Path) -> str | None:
    if not path.is_file():
        return None
    classpath = path.read_text().strip()
    jars = classpath.split(os.pathsep)
    return classpath if jars and all(Path(jar).is_file() for jar in jars) else None


def resolve_classpath() -> str:
    """The standalone broker's classpath; runs Maven only when no cached one is complete."""
    directory = cache_dir()
    output = directory / "classpath.txt"
    classpath = cached_classpath(output)
    if classpath is not None:
        return classpath
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("pom.xml", "settings.xml"):
        (directory / name).write_bytes(project_file(name))
    argv = [
        "mvn", "--batch-mode", "--quiet", "--settings", str(directory / "settings.xml"),
        "--file", str(directory / "pom.xml"), "dependency:build-classpath",
        f"-Dmdep.outputFile={output}",
    ]
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=RESOLVE_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise BrokerError(
            f"Maven did not resolve Apache Pulsar {pulsar_version()} within "
            f"{RESOLVE_TIMEOUT:.0f}s; check that Maven Central is reachable"
        ) from None
    classpath = cached_classpath(output)
    if result.returncode != 0 or classpath is None:
        errors = [line for line in result.stdout.splitlines() if "[ERROR]" in line][:3]
        raise BrokerError(
            f"Maven could not resolve Apache Pulsar {pulsar_version()} (exit "
            f"{result.returncode}); check that Maven Central is reachable: "
            + (" ".join(errors) or result.stderr.strip()[-500:])
        )
    return classpath
