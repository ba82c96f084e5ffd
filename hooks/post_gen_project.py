"""Shapes the generated project: prunes what was not selected, compiles the protos."""

import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE = "{{ cookiecutter.package_name }}"
SLUG = "{{ cookiecutter.project_slug }}"
BROKERS = [b.strip() for b in "{{ cookiecutter.brokers }}".split(",") if b.strip()]
INCLUDE_SAMPLE = "{{ cookiecutter.include_sample }}" == "True"

ROOT = Path.cwd()
SRC = ROOT / "src" / PACKAGE

# file patterns -> the broker types that need them (kept when any of them was chosen);
# patterns are relative to the package (src/<package>/) or, for tests/ and docs/, to the
# project. tests/test_variants.py checks that every pattern matches a template file and that
# no generated variant keeps a module nothing imports.
BROKER_FILES = {
    "transport/broker/pulsar*.py": {"pulsar"},
    "tests/test_pulsar*.py": {"pulsar"},
    "docs/pulsar.md": {"pulsar"},
    "transport/broker/nats.py": {"nats", "jetstream"},  # JetStreamBroker builds on it
    "transport/broker/jetstream*.py": {"jetstream"},
    "transport/broker/_jetstream*.py": {"jetstream"},  # its pull consumer and publisher
    "tests/test_jetstream*.py": {"jetstream"},
    "tests/nats_cluster.py": {"jetstream"},  # the cluster test's three nats-servers
    "tests/test_workers.py": {"jetstream"},  # N savers in one group: run over JetStream
    "transport/broker/_nats*.py": {"nats", "jetstream"},
    "tests/test_nats*.py": {"nats", "jetstream"},
}
SAMPLE_FILES = [
    "service/report.py",
    "service/saver.py",
    "data/repo.py",
    "data/publisher.py",
    "biz/report_rules.py",
    "sample_client.py",
    "demo.py",
]
SAMPLE_TESTS = [
    "tests/test_report_saver.py",
    "tests/test_batch_writer.py",
    "tests/test_report_rules.py",
    "tests/test_poison_events.py",
    "tests/test_reliability.py",
    "tests/test_workers.py",
    "tests/test_jetstream_cluster.py",
    "tests/nats_cluster.py",
    "tests/processes.py",
    "tests/accounting.py",
    "tests/test_accounting.py",
    "tests/test_database_outage.py",
]


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def prune() -> None:
    for pattern, needed_by in BROKER_FILES.items():
        if needed_by.isdisjoint(BROKERS):
            base = ROOT if pattern.startswith(("tests/", "docs/")) else SRC
            for path in base.glob(pattern):
                remove(path)
    if not INCLUDE_SAMPLE:
        remove(ROOT / "proto")
        for name in SAMPLE_FILES:
            remove(SRC / name)
        for name in SAMPLE_TESTS:
            remove(ROOT / name)


def compile_protos() -> bool:
    if not (ROOT / "proto").is_dir():
        return True
    result = subprocess.run(
        [sys.executable, "tools/compile_protos.py"], cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode != 0:
        print(
            "NOTE: the protos were not compiled here (" + result.stderr.strip().splitlines()[-1]
            + "); run `make install` in the project, which compiles them."
        )
        return False
    return True


def main() -> None:
    prune()
    compile_protos()
    print(f"""
Generated {SLUG}. Next steps:

    cd {SLUG}
    make install      # venv, dependencies, compiled protos
    make test         # the service's own tests
    make dev          # report + saver in one process, embedded defaults
""")


main()
