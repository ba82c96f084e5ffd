"""Validates the template answers before anything is generated.

A bad answer stops generation with one sentence that names the answer and how to fix it.
"""

import keyword
import re
import sys

KNOWN_BROKERS = ("pulsar", "nats", "jetstream", "kafka")
KNOWN_DATABASES = ("sqlite", "postgresql")
SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
PYTHON_VERSION = re.compile(r"^3\.(1[1-9])$")

answers = {
    "project_name": """{{ cookiecutter.project_name }}""",
    "project_slug": """{{ cookiecutter.project_slug }}""",
    "package_name": """{{ cookiecutter.package_name }}""",
    "python_version": """{{ cookiecutter.python_version }}""",
    "brokers": """{{ cookiecutter.brokers }}""",
    "database": """{{ cookiecutter.database }}""",
}


def problems(a: dict[str, str]) -> list[str]:
    found = []
    if not a["project_name"].strip():
        found.append("project_name is empty; give the project a name, e.g. 'Report Pipeline'")
    slug = a["project_slug"]
    if not SLUG.match(slug):
        found.append(
            f"project_slug {slug!r} is not a valid slug; use lowercase letters, digits and "
            "single dashes, starting with a letter, e.g. 'report-pipeline'"
        )
    package = a["package_name"]
    if not package.isidentifier() or not package.isascii():
        found.append(
            f"package_name {package!r} is not a Python identifier; use lowercase letters, "
            "digits and underscores, starting with a letter, e.g. 'report_pipeline'"
        )
    elif keyword.iskeyword(package) or keyword.issoftkeyword(package):
        found.append(f"package_name {package!r} is a Python keyword; choose another name")
    elif package != package.lower():
        found.append(f"package_name {package!r} has capitals; Python packages are lowercase")
    if not PYTHON_VERSION.match(a["python_version"]):
        found.append(
            f"python_version {a['python_version']!r} is not supported; choose 3.11 or newer"
        )
    # read as the templates read it (spaces dropped, split on commas), so an answer this
    # accepts renders the same broker list in every file (pyproject extras, compose, config)
    chosen = [b for b in a["brokers"].replace(" ", "").split(",") if b]
    unknown = [b for b in chosen if b not in KNOWN_BROKERS]
    if not chosen:
        # memory alone cannot carry events between processes: no `serve report` + `serve
        # saver`, no workers, no compose file; a service needs one real broker
        found.append(
            "brokers is empty; choose at least one of "
            f"{', '.join(KNOWN_BROKERS)}, comma-separated (the in-memory broker, always "
            "included, only works within one process)"
        )
    elif unknown:
        found.append(
            f"brokers has unknown broker(s) {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(KNOWN_BROKERS)}, comma-separated"
        )
    elif len(set(chosen)) != len(chosen):
        found.append(f"brokers {a['brokers']!r} names a broker twice; list each once")
    if a["database"] not in KNOWN_DATABASES:
        found.append(
            f"database {a['database']!r} is not supported; choose {' or '.join(KNOWN_DATABASES)}"
        )
    return found


if __name__ == "__main__":
    errors = problems(answers)
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    if errors:
        sys.exit(1)
