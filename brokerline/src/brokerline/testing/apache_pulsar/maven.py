"""The Apache Pulsar jars: resolved from Maven Central by the checked-in `pom.xml`, once
(see `brokerline.testing.jvm`; cached under ~/.cache/brokerline/apache-pulsar/)."""

from __future__ import annotations

from brokerline.testing import jvm

PROJECT = jvm.MavenProject(
    __package__ or "brokerline.testing.apache_pulsar", "apache-pulsar", "Apache Pulsar",
    "pulsar.version",
)


def pulsar_version() -> str:
    """The Pulsar version the POM pins."""
    return PROJECT.version()


def missing_tools() -> str | None:
    """One sentence naming what to install, or None when Java and Maven are both there."""
    return jvm.missing_tools("Apache Pulsar")


def resolve_classpath() -> str:
    """The standalone broker's classpath; runs Maven only when no cached one is complete."""
    return PROJECT.resolve_classpath()
