"""Where the service's migrations are: `alembic.ini` and `alembic/` of the project."""

from pathlib import Path

from brokerline.sql.migrations import Project

#: the project directory (src/<package>/ is two levels below it) for an editable install;
#: elsewhere (the Docker image) alembic.ini is found in the working directory
PROJECT = Project("{{ cookiecutter.project_slug }}", Path(__file__).resolve().parents[2])
