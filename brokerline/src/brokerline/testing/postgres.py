"""A private PostgreSQL server for one test: its own data directory, port and sockets.

A test that stops the database (an outage) cannot share the server other tests use, so it
starts one from the Debian server binaries (`/usr/lib/postgresql/<version>/bin`): `initdb`
into a temp directory, `pg_ctl start` on a free loopback port with the unix sockets in that
directory, trust authentication, `fsync=off` (only a crash of the machine, which no test
makes, would need it). PostgreSQL refuses to run as root: as root the server runs as `nobody`.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from brokerline.core.embedded import free_port
from brokerline.testing.brokers import cannot_run

BINARY_ROOT = Path("/usr/lib/postgresql")
#: the user the server runs as when the tests run as root (initdb refuses root)
UNPRIVILEGED_USER = "nobody"
SUPERUSER = "postgres"
MISSING = (
    "the PostgreSQL server binaries (initdb, pg_ctl) are not under "
    f"{BINARY_ROOT}/<version>/bin; install them with `apt-get install postgresql`"
)


def server_binaries() -> Path | None:
    """The `bin` directory of the newest PostgreSQL server installed, if any."""
    found = [p.parent for p in BINARY_ROOT.glob("*/bin/initdb") if (p.parent / "pg_ctl").exists()]
    return max(found, key=_version, default=None)


def _version(bin_dir: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", bin_dir.parent.name)) or (0,)


def require_server_binaries() -> Path:
    """The server binaries, or a skip naming what to install (a failure in CI, CI=true)."""
    bin_dir = server_binaries()
    if bin_dir is None:
        cannot_run(MISSING)
    return bin_dir


@dataclass
class PostgresServer:
    """One PostgreSQL server; `start()`, `stop_immediate()` and `start()` again keep its port
    and data, as a database host that crashes and comes back does."""

    bin_dir: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="test-postgres-")))
    port: int = field(default_factory=free_port)
    _user: str | None = None

    def __post_init__(self) -> None:
        if os.geteuid() == 0:
            self._user = UNPRIVILEGED_USER
            entry = pwd.getpwnam(UNPRIVILEGED_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        command = [str(self.bin_dir / tool), *args]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        done = subprocess.run(command, cwd=self.root, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if done.returncode != 0:
            log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({done.returncode}):\n"
                               f"{done.stdout}{done.stderr}{log[-2000:]}")

    def start(self) -> PostgresServer:
        if not self.data_dir.exists():
            self._run("initdb", "--pgdata", str(self.data_dir), "--username", SUPERUSER,
                      "--auth", "trust", "--encoding", "UTF8", "--no-instructions")
        # fsync and full-page writes guard against a crash of the machine, which a test does
        # not make; synchronous_commit stays on: `stop_immediate` is a crash of the server,
        # and without it commits already answered would be lost with its WAL buffers
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.root} -c fsync=off -c full_page_writes=off")
        self._run("pg_ctl", "start", "--wait", "--timeout", "60", "--pgdata", str(self.data_dir),
                  "--log", str(self.log_path), "-o", options, timeout=90)
        return self

    def stop_immediate(self) -> None:
        """Stop at once: every connection drops, no checkpoint (a crash, as far as clients see)."""
        self._run("pg_ctl", "stop", "--wait", "--mode", "immediate", "--pgdata",
                  str(self.data_dir))

    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()

    def create_database(self, name: str) -> str:
        """Create `name` (as the superuser, over TCP) and return its asyncpg URL."""
        self._run("createdb", "--host", "127.0.0.1", "--port", str(self.port),
                  "--username", SUPERUSER, name)
        return self.url(name)

    def cleanup(self) -> None:
        if self.running():
            try:
                self._run("pg_ctl", "stop", "--wait", "--mode", "fast", "--pgdata",
                          str(self.data_dir))
            except (RuntimeError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "stop", "--mode", "immediate", "--pgdata", str(self.data_dir))
        shutil.rmtree(self.root, ignore_errors=True)
