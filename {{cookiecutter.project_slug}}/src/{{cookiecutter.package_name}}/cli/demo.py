"""The demo: an embedded broker, `serve saver` and `serve report` as separate processes, then
N reports over gRPC, and the count of posted vs saved."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from brokerline.config import DatabaseConfig
from brokerline.core.embedded import EmbeddedBroker, free_port, start_embedded, wait_for_port

from ..conf import load_config
from .sample_client import count_rows, post_reports

PACKAGE = "{{ cookiecutter.package_name }}"


def _spawn(role: str, env: dict[str, str], log_dir: Path) -> subprocess.Popen[bytes]:
    log = open(log_dir / f"{role}.log", "wb")  # lives as long as the process
    return subprocess.Popen(
        [sys.executable, "-m", PACKAGE, "serve", role] if role != "dev"
        else [sys.executable, "-m", PACKAGE, "dev", "--broker", "memory"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def run_demo(broker_type: str | None, count: int, workdir: str) -> int:
    config = load_config()
    broker_type = broker_type or config.broker.type
    work = Path(workdir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    db_url = f"sqlite+aiosqlite:///{work / 'demo.db'}"
    grpc_address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "BROKER_TYPE": broker_type, "DATABASE_URL": db_url,
           "GRPC_ADDRESS": grpc_address, "HTTP_ADDRESS": f"127.0.0.1:{free_port()}",
           "LOG_LEVEL": "WARNING"}
    embedded: EmbeddedBroker | None = None
    processes: list[subprocess.Popen[bytes]] = []
    try:
        if broker_type == "memory":  # one process: the memory broker cannot cross processes
            roles = ["dev"]
        else:
            embedded = start_embedded(broker_type, store=work / "broker")
            env["BROKER_ADDRESS"] = embedded.url
            roles = ["saver", "report"]
            print(f"{broker_type} broker (embedded) at {embedded.url}")
        # the saver serves /readyz once it has subscribed: reports posted before that would
        # be lost on NATS core (no stored stream), and `serve report` starts faster
        saver_port = free_port()
        saver_env = {**env, "OTEL_EXPORTER_PROMETHEUS_PORT": str(saver_port)}
        for role in roles:
            processes.append(_spawn(role, saver_env if role == "saver" else env, work))
            print(f"started {role} (pid {processes[-1].pid}, log {work / (role + '.log')})")
        if "saver" in roles:
            wait_for_port(saver_port, 60, processes[0], what="the saver service (see its log)")
        port = int(grpc_address.rsplit(":", 1)[1])
        wait_for_port(port, 60, processes[-1], what=f"the {roles[-1]} service (see its log)")
        started = time.perf_counter()
        posted = asyncio.run(post_reports(grpc_address, count, 32, show_progress=True))
        saved = asyncio.run(count_rows(DatabaseConfig(url=db_url), expect=posted, timeout=60))
        elapsed = time.perf_counter() - started
        print(f"\nreports posted: {posted}\nrows saved:     {saved}\n"
              f"({'equal' if posted == saved else 'NOT EQUAL'}; {elapsed:.1f}s end to end "
              f"over {broker_type})")
        return 0 if posted == saved == count else 1
    finally:
        _stop(processes)
        if embedded:
            embedded.cleanup()
