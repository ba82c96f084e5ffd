"""Database migrations (Alembic): `db upgrade [REV]` and `db current` of the command line.

The migration scripts live in the project's `alembic/` beside `alembic.ini` (the Docker image
copies both to its working directory). The database URL is the app's `database.url`.
`Project` names the service's command (for the messages) and its source directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError

from brokerline.config import DatabaseConfig
from brokerline.sql.database import create_engine


@dataclass(frozen=True)
class Project:
    """Where a service's migrations are found, and the command that applies them."""

    program: str  # e.g. report-pipeline, for "run `report-pipeline db upgrade`"
    directory: Path  # the project checkout (alembic.ini, alembic/), for an editable install


class MigrationError(Exception):
    """A migration command failed; the message names what and what to do."""


@dataclass(frozen=True)
class Revisions:
    current: tuple[str, ...]  # applied to the database (empty: none yet)
    heads: tuple[str, ...]  # the newest in alembic/versions

    @property
    def up_to_date(self) -> bool:
        return set(self.current) == set(self.heads)


def find_alembic_ini(project: Project) -> Path:
    """alembic.ini in the working directory (or ALEMBIC_CONFIG), else in the project."""
    explicit = os.environ.get("ALEMBIC_CONFIG")
    candidates = (
        [Path(explicit)] if explicit else [Path("alembic.ini"), project.directory / "alembic.ini"]
    )
    for path in candidates:
        if path.is_file():
            return path.resolve()
    raise MigrationError(
        f"no alembic.ini in {Path.cwd()} or {project.directory}; run `{project.program} db` in "
        "the project "
        "directory (the Docker image's working directory has it), or set ALEMBIC_CONFIG"
    )


def alembic_config(project: Project, database_url: str) -> Config:
    ini = find_alembic_ini(project)
    cfg = Config(str(ini))
    cfg.set_main_option("script_location", str(ini.parent / "alembic"))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["configure_logging"] = False
    return cfg


def _safe(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparsable URL)"


def upgrade(project: Project, database: DatabaseConfig, revision: str = "head") -> None:
    """Apply the migrations up to `revision` (default: the newest)."""
    cfg = alembic_config(project, database.url)
    try:
        command.upgrade(cfg, revision)
    except CommandError as exc:
        raise MigrationError(f"cannot upgrade to {revision!r}: {exc}") from None
    except (SQLAlchemyError, OSError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MigrationError(
            f"cannot migrate the database at {_safe(database.url)} ({first_line}); check "
            "database.url (DATABASE_URL) and that the server runs"
        ) from None


def _current_heads(connection: Connection) -> tuple[str, ...]:
    return tuple(MigrationContext.configure(connection).get_current_heads())


async def revisions(project: Project, database: DatabaseConfig) -> Revisions:
    """The revisions applied to the database and the newest ones available."""
    heads = tuple(ScriptDirectory.from_config(alembic_config(project, database.url)).get_heads())
    engine = create_engine(database)
    try:
        async with engine.connect() as conn:
            current = await conn.run_sync(_current_heads)
    except (SQLAlchemyError, OSError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MigrationError(
            f"cannot read the database at {_safe(database.url)} ({first_line}); check "
            "database.url (DATABASE_URL) and that the server runs"
        ) from None
    finally:
        await engine.dispose()
    return Revisions(current, heads)


def describe(revs: Revisions, program: str) -> str:
    """One line for `db current`."""
    if not revs.current:
        newest = ", ".join(revs.heads)
        return f"no migration applied yet (newest: {newest}); run `{program} db upgrade`"
    state = "up to date" if revs.up_to_date else (
        f"behind the newest {', '.join(revs.heads)}: run `{program} db upgrade`"
    )
    return f"{', '.join(revs.current)} ({state})"

