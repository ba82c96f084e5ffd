"""Property: every set of answers either stops in pre_gen with a clear message, or yields a
project that compiles, passes ruff and passes its core tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import generate, junit_args, run

project_names = st.from_regex(r"[A-Za-z][A-Za-z0-9 _!é-]{0,24}", fullmatch=True)
package_names = st.one_of(
    st.just(""),  # empty: the default, derived from the slug
    st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True),
    st.sampled_from(["class", "match", "9lives", "my-pkg", "Caps", "ünï", "a b"]),
)
broker_lists = st.lists(
    st.sampled_from(["pulsar", "nats", "jetstream", "kafka", "NATS"]), min_size=1, max_size=3
).map(",".join)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    project_name=project_names,
    package_name=package_names,
    brokers=broker_lists,
    database=st.sampled_from(["sqlite", "postgresql", "oracle"]),
    python_version=st.sampled_from(["3.11", "3.12", "3.13", "3.9", "3.x"]),
    include_sample=st.sampled_from(["yes", "no"]),
)
def test_answers_fail_clearly_or_make_a_working_project(
    tmp_path_factory: pytest.TempPathFactory,
    default_project: tuple[Path, Path],
    project_name: str,
    package_name: str,
    brokers: str,
    database: str,
    python_version: str,
    include_sample: str,
) -> None:
    out = tmp_path_factory.mktemp("answers")
    answers = {
        "project_name": project_name, "brokers": brokers, "database": database,
        "python_version": python_version, "include_sample": include_sample,
    }
    if package_name:
        answers["package_name"] = package_name
    result = generate(out, **answers)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
        assert errors, f"failed without a clear message:\n{result.stdout}\n{result.stderr}"
        assert all(line.rstrip().endswith((")", "'", ".", "newer", "postgresql", "lowercase",
                                            "once", "comma-separated", "another name"))
                   for line in errors), errors
        assert not any(out.iterdir()), "files were generated from a refused answer"
        return
    [project] = [p for p in out.iterdir() if p.is_dir()]
    _default, python = default_project
    bin_dir = python.parent
    run([str(python), "-m", "compileall", "-q", "src", "tests"], cwd=project)
    run([str(bin_dir / "ruff"), "check", "src", "tests"], cwd=project)
    # the service's own wiring under its answers: config, container and catalog (AsyncAPI);
    # the broker plugins are the library's, tested once by `make test`
    core_tests = ["tests/test_asyncapi.py"]
    if include_sample == "yes":
        core_tests.insert(1, "tests/test_report_saver.py")
    run([str(bin_dir / "pytest"), "-q", "-x", "-p", "no:cacheprovider", *core_tests,
         *junit_args(f"generated-answers-{out.name}")],
        cwd=project, env={"PYTHONPATH": str(project / "src")}, timeout=600)
