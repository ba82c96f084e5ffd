"""A `serve <role>` child process, as a deployment runs it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "{{ cookiecutter.package_name }}"


@dataclass
class Service:
    """One `serve <role>` child process; its output goes to `<workdir>/<role>-<n>.log`."""

    role: str
    env: dict[str, str]
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.role}-{self.starts}.log"

    def start(self) -> Service:
        self.starts += 1
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", PACKAGE, "serve", self.role],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        return self

    def wait_started(self, timeout: float = 60) -> Service:
        """Wait until the service says it started (subscribed, listening); fail with its log
        if it exits first or takes longer than `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while f":{self.role} started" not in self.log():
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"serve {self.role} exited at start with code "
                                     f"{self.process.returncode}:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"serve {self.role} did not start within {timeout}s:\n"
                                     f"{self.log()[-3000:]}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as in a crash or an OOM kill."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM: the graceful stop; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
