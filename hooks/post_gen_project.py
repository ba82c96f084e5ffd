"""Shapes the generated project: prunes what was not selected, compiles the protos."""

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = "{{ cookiecutter.package_name }}"
SLUG = "{{ cookiecutter.project_slug }}"
BROKERS = [b for b in "{{ cookiecutter.brokers }}".replace(" ", "").split(",") if b]  # as pre_gen
INCLUDE_SAMPLE = "{{ cookiecutter.include_sample }}" == "True"
TEMPLATE_REPO = Path("{{ template_root }}")  # absolute: local_extensions.py
LIBRARY_VERSION = "{{ cookiecutter._brokerline_version }}"

ROOT = Path.cwd()
SRC = ROOT / "src" / PACKAGE

# project files -> the broker types that need them (kept when any of them was chosen); the
# broker plugins themselves, and their tests, are in the brokerline library, chosen by its
# extras. Patterns are relative to the project. tests/test_variants.py checks that every
# pattern matches a template file and that no generated variant keeps a module nothing imports.
BROKER_FILES = {
    "docs/pulsar.md": {"pulsar"},
    "docs/kafka.md": {"kafka"},
    "tests/test_jetstream_cluster.py": {"jetstream"},  # the service through a leader's loss
    "tests/test_workers.py": {"jetstream", "pulsar", "kafka"},  # N savers in one group
}
SAMPLE_FILES = [
    "service/report.py",
    "service/saver.py",
    "data/repo.py",
    "data/publisher.py",
    "biz/report_rules.py",
    "biz/report.py",
    "cli/sample.py",
    "cli/sample_client.py",
    "cli/demo.py",
]
SAMPLE_TESTS = [
    "tests/test_report_saver.py",
    "tests/test_batch_writer.py",
    "tests/test_report_rules.py",
    "tests/test_report_service.py",
    "tests/test_saver_service.py",
    "tests/test_poison_events.py",
    "tests/test_reliability.py",
    "tests/test_workers.py",
    "tests/test_jetstream_cluster.py",
    "tests/processes.py",
    "tests/accounting.py",
    "tests/test_accounting.py",
    "tests/test_database_outage.py",
    "tests/test_http.py",
]


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def prune() -> None:
    for pattern, needed_by in BROKER_FILES.items():
        if needed_by.isdisjoint(BROKERS):
            for path in ROOT.glob(pattern):
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


def vendor_library() -> None:
    """Build the brokerline wheel into vendor/: the project installs it from there.

    Each service carries the exact library it was generated with, so it installs and builds
    (Docker included) with no path back to the template checkout; README: "The brokerline
    library" says how to move to a newer one.
    """
    source = TEMPLATE_REPO / "brokerline"
    if not (source / "pyproject.toml").is_file():
        sys.exit(f"ERROR: the template has no brokerline library at {source}; generate from a "
                 "complete checkout of the template repository")
    vendor = ROOT / "vendor"
    vendor.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="brokerline-build-") as build:
        # built from a copy: the build writes egg-info and build/ beside the sources, which
        # must not land in the template checkout (or race another generation)
        copy = Path(build) / "brokerline"
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns(
            "build", "*.egg-info", "__pycache__", ".pytest_cache", "tests"))
        command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                   "--wheel-dir", str(vendor), str(copy)]
        if importlib.util.find_spec("setuptools") is not None:
            command.insert(5, "--no-build-isolation")  # no setuptools download per project
        result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(vendor.glob(f"brokerline-{LIBRARY_VERSION}-*.whl"))
    if result.returncode != 0 or not wheels:
        last = (result.stderr.strip().splitlines() or ["no wheel was written"])[-1]
        sys.exit(f"ERROR: building the brokerline {LIBRARY_VERSION} wheel failed ({last}); "
                 "check that pip can reach PyPI (it fetches setuptools) and retry")


def main() -> None:
    prune()
    vendor_library()
    compile_protos()
    print(f"""
Generated {SLUG}. Next steps:

    cd {SLUG}
    make install      # venv, dependencies, compiled protos
    make test         # the service's own tests
    make dev          # report + saver in one process, embedded defaults
""")


main()
