"""The command line as a user runs it: real processes, real exit codes and messages."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from brokerline.core import known_types
from brokerline.core.embedded import free_port

PACKAGE = "{{ cookiecutter.package_name }}"


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", PACKAGE, *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def assert_one_clear_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    for fragment in fragments:
        assert fragment in last, last


def test_unknown_broker_type_is_one_sentence(tmp_path: Path) -> None:
    result = cli("serve", "saver" if "saver" in _roles() else "all", cwd=tmp_path,
                 env={"BROKER_TYPE": "rabbitmq"})
    assert_one_clear_error(result, "unknown broker type 'rabbitmq'", *known_types())


def test_bad_config_file_is_one_sentence(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("broker:\n  type: memory\n  adress: typo\n")
    result = cli("--config", str(bad), "dev", cwd=tmp_path)
    assert_one_clear_error(result, "unknown setting 'broker.adress'")
    bad.write_text("broker: [unclosed\n")
    assert_one_clear_error(cli("--config", str(bad), "dev", cwd=tmp_path), "not valid YAML")
    missing = tmp_path / "nope.yaml"
    assert_one_clear_error(cli("--config", str(missing), "dev", cwd=tmp_path), "does not exist")


def test_bad_database_url_is_one_sentence(tmp_path: Path) -> None:
    result = cli("dev", cwd=tmp_path, env={"DATABASE_URL": "not a url"})
    assert_one_clear_error(result, "database.url", "not a database URL")
    result = cli("dev", cwd=tmp_path, env={"DATABASE_URL": "sqlite:///sync-driver.db"})
    assert_one_clear_error(result, "async driver")
    # a shipped driver skips SQLAlchemy at load, but a broken URL is still caught there
    result = cli("dev", cwd=tmp_path, env={"DATABASE_URL": "postgresql+asyncpg://u@h:port/db"})
    assert_one_clear_error(result, "database.url", "not a database URL")


def _roles() -> list[str]:
    from {{ cookiecutter.package_name }}.containers import ROLES

    return list(ROLES)
{%- if cookiecutter.include_sample %}


def test_demo_on_the_memory_broker_saves_every_report(tmp_path: Path) -> None:
    result = cli("demo", "--broker", "memory", "--count", "300", "--workdir",
                 str(tmp_path / "demo"), cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reports posted: 300" in result.stdout
    assert "rows saved:     300" in result.stdout


def test_count_that_never_reaches_expect_exits_non_zero(tmp_path: Path) -> None:
    """`count --expect N` in a script must not pass when fewer than N rows arrived in time."""
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"}
    result = cli("count", "--expect", "5", "--timeout", "0.5", cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.strip() == "0"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "0 of the 5 expected rows" in lines[0] and "--timeout" in lines[0], lines[0]
    assert cli("count", "--expect", "0", cwd=tmp_path, env=env).returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("broker_type", [t for t in known_types() if t != "memory"])
def test_pair_across_processes_over_a_real_broker(tmp_path: Path, broker_type: str) -> None:
    """Embedded broker, `serve saver` and `serve report` as separate processes; 2,000 reports."""
    result = cli("demo", "--broker", broker_type, "--count", "2000", "--workdir",
                 str(tmp_path / "demo"), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reports posted: 2000" in result.stdout
    assert "rows saved:     2000" in result.stdout
{%- endif %}


@pytest.mark.parametrize("broker_type", [t for t in known_types() if t != "memory"])
def test_unreachable_broker_gives_up_after_bounded_retries(
    tmp_path: Path, broker_type: str
) -> None:
    env = {
        "BROKER_TYPE": broker_type,
        "BROKER_ADDRESS": f"127.0.0.1:{free_port()}",  # nothing listens there
        "{{ cookiecutter.package_name.upper() }}__BROKER__CONNECT_ATTEMPTS": "2",
        # short client timeouts, so that the test does not wait the production defaults
        "{{ cookiecutter.package_name.upper() }}__BROKER__PULSAR__CONNECT_TIMEOUT": "2",
        "{{ cookiecutter.package_name.upper() }}__BROKER__NATS__CONNECT_TIMEOUT": "2",
    }
    result = cli("serve", "all", cwd=tmp_path, env=env, timeout=120)
    assert_one_clear_error(result, f"cannot connect to the {broker_type} broker", "2 attempts")


TLS_FILE_SETTINGS = {
    "nats": ("NATS_TLS_CA_FILE", "broker.nats.tls.ca_file"),
    "jetstream": ("NATS_TLS_CA_FILE", "broker.nats.tls.ca_file"),
    "pulsar": ("PULSAR_TLS_TRUST_CERTS_FILE", "broker.pulsar.tls.ca_file"),
    "kafka": ("KAFKA_TLS_CA_FILE", "broker.kafka.tls.ca_file"),
}


@pytest.mark.parametrize("broker_type", [t for t in known_types() if t in TLS_FILE_SETTINGS])
def test_missing_tls_file_is_one_sentence(tmp_path: Path, broker_type: str) -> None:
    env_name, setting = TLS_FILE_SETTINGS[broker_type]
    env = {"BROKER_TYPE": broker_type, env_name: str(tmp_path / "missing-ca.pem")}
    result = cli("serve", "all", cwd=tmp_path, env=env)
    assert_one_clear_error(result, setting, "missing-ca.pem", "does not exist")


#: per broker type, its own server-list setting that the refusal names beside broker.address
SERVER_SETTINGS = {
    "nats": "broker.nats.servers (NATS_SERVER_URL)",
    "jetstream": "broker.nats.servers (NATS_SERVER_URL)",
    "pulsar": "broker.pulsar.service_urls",
    "kafka": "broker.kafka.bootstrap_servers (KAFKA_BOOTSTRAP_SERVERS)",
}
#: no broker address from the environment of the test run either
NO_ADDRESS = {"BROKER_ADDRESS": "", "MQ_NAME_SERVER": "", "NATS_SERVER_URL": "",
              "KAFKA_BOOTSTRAP_SERVERS": "", "BROKER_EMBEDDED": ""}


@pytest.mark.parametrize("role", sorted(_roles()))
@pytest.mark.parametrize("broker_type", [t for t in known_types() if t != "memory"])
def test_serve_without_a_broker_address_is_refused(
    tmp_path: Path, broker_type: str, role: str
) -> None:
    """No silent private broker: in production each pod would keep its events to itself."""
    result = cli("serve", role, cwd=tmp_path, env={**NO_ADDRESS, "BROKER_TYPE": broker_type})
    assert_one_line_error(result, f"no {broker_type} broker address is configured",
                          "broker.address (BROKER_ADDRESS or MQ_NAME_SERVER)",
                          SERVER_SETTINGS[broker_type],
                          "broker.embedded: true (BROKER_EMBEDDED=true)")
    assert not (tmp_path / "data").exists(), "a resource was started before the refusal"


def read_stderr_until(
    process: subprocess.Popen[str], marker: str, timeout: float = 90.0
) -> str:
    """The process's stderr up to the first line holding `marker`. Past `timeout` the
    process is killed, so a line that never comes fails the test instead of hanging it."""
    assert process.stderr is not None
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    seen = ""
    try:
        while marker not in seen:
            line = process.stderr.readline()
            assert line, f"exited, or killed after {timeout}s, before {marker!r}:\n{seen[-3000:]}"
            seen += line
    finally:
        watchdog.cancel()
    return seen


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


@pytest.mark.parametrize("command", ["serve all", "dev"])
@pytest.mark.parametrize("broker_type", [t for t in known_types() if t != "memory"])
def test_a_local_broker_is_started_by_dev_or_when_asked_for(
    tmp_path: Path, broker_type: str, command: str
) -> None:
    """`dev --broker TYPE`, or `serve` with broker.embedded: true, start a local broker of
    that type; SIGTERM stops the service and its broker."""
    env = {**os.environ, **NO_ADDRESS, "BROKER_TYPE": broker_type,
           "GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
           "HTTP_ADDRESS": f"127.0.0.1:{free_port()}"}
    if command == "dev":
        args = ["dev", "--broker", broker_type]
    else:
        args = ["serve", "all"]
        env["BROKER_EMBEDDED"] = "true"
    process = subprocess.Popen([sys.executable, "-m", PACKAGE, *args], cwd=tmp_path, text=True,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        seen = read_stderr_until(process, " started (")
        marker = f"started a local {broker_type} broker at "
        assert marker in seen, seen
        port = int(seen.split(marker, 1)[1].split()[0].rsplit(":", 1)[1])
        assert _port_open(port)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, process.stderr.read() if process.stderr else ""
        assert not _port_open(port), "the local broker outlived the service"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit code 2 and exactly one line on stderr, `error: ...`, naming the problem and fix."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


ENV_PREFIX = "{{ cookiecutter.package_name.upper() }}__"
#: a bad value per setting -> what the one line must name (the setting and what it accepts)
BAD_SETTINGS: list[tuple[dict[str, str], tuple[str, ...]]] = [
    ({"LOG_LEVEL": "VERBOSE"}, ("'log_level' (LOG_LEVEL)", "'VERBOSE'", "'DEBUG', 'INFO'")),
    ({"NATS_STREAM_REPLICAS": "0"}, ("broker.nats.stream.replicas", "greater than or equal to 1")),
    ({"NATS_STREAM_REPLICAS": "7"}, ("broker.nats.stream.replicas", "less than or equal to 5")),
    ({ENV_PREFIX + "BROKER__NATS__STREAM__STORAGE": "floppy"},
     ("broker.nats.stream.storage", "'floppy'", "'file' or 'memory'")),
    ({ENV_PREFIX + "BROKER__NATS__RECONNECT_WAIT": "-1"},
     ("broker.nats.reconnect_wait", "greater than 0")),
    ({ENV_PREFIX + "BROKER__NATS__MAX_RECONNECT_ATTEMPTS": "-2"},
     ("broker.nats.max_reconnect_attempts", "greater than or equal to -1")),
    ({ENV_PREFIX + "BROKER__NATS__CONNECT_TIMEOUT": "0"},
     ("broker.nats.connect_timeout", "greater than 0")),
    ({"NATS_SERVER_URL": "http://127.0.0.1:4222"},
     ("broker.nats.servers", "is not a NATS URL", "nats://host:4222")),
    ({"BROKER_TYPE": "{{ 'jetstream' if 'jetstream' in cookiecutter.brokers else 'nats' }}",
      "MQ_NAME_SERVER": "http://127.0.0.1:4222"},
     ("broker.address", "is not a NATS URL", "nats://host:4222")),
    ({"BROKER_TYPE": "pulsar", "MQ_NAME_SERVER": "nats://127.0.0.1:6650"},
     ("broker.address", "is not a Pulsar URL", "pulsar://host:6650")),
    ({ENV_PREFIX + "BROKER__PULSAR__CONNECT_TIMEOUT": "-3"},
     ("broker.pulsar.connect_timeout", "greater than 0")),
    ({ENV_PREFIX + "BROKER__PULSAR__COMPRESSION": "lz5"},
     ("broker.pulsar.compression", "'none', 'lz4'")),
    ({ENV_PREFIX + "BROKER__PULSAR__DELAYED_DELIVERY": "maybe"},
     ("broker.pulsar.delayed_delivery", "'auto', 'on' or 'off'")),
    ({ENV_PREFIX + "BROKER__PULSAR__MAX_PENDING_MESSAGES": "0"},
     ("broker.pulsar.max_pending_messages", "greater than or equal to 1")),
    ({ENV_PREFIX + "BROKER__CONNECT_ATTEMPTS": "0"},
     ("broker.connect_attempts", "greater than or equal to 1")),
    ({ENV_PREFIX + "BROKER__SUBSCRIBER__CONCURRENCY": "0"},
     ("broker.subscriber.concurrency", "greater than or equal to 1")),
    ({"GRPC_ADDRESS": "9000"}, ("'grpc.address' (GRPC_ADDRESS)", "host:port")),
    ({"OTEL_EXPORTER_PROMETHEUS_PORT": "70000"},
     ("telemetry.metrics_port", "less than or equal to 65535")),
    ({"LOG_FORMAT": "xml"}, ("telemetry.log_format", "'text' or 'json'")),
]


@pytest.mark.parametrize(("env", "fragments"), BAD_SETTINGS, ids=lambda v: str(v)[:40])
def test_a_bad_setting_is_refused_at_load(
    tmp_path: Path, env: dict[str, str], fragments: tuple[str, ...]
) -> None:
    result = cli("asyncapi", cwd=tmp_path, env=env)  # loads the config, connects to nothing
    assert_one_line_error(result, "is invalid", *fragments)


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    result = cli("--config", str(config), "asyncapi", cwd=tmp_path)
    assert_one_line_error(result, str(config), "is not UTF-8", "save it as UTF-8")


BAD_ARGUMENTS: list[tuple[list[str], tuple[str, ...]]] = [
    (["serve", "{{ 'saver' if cookiecutter.include_sample else 'all' }}", "--workers", "0"],
     ("--workers", "0 is too small", "use 1 or more")),
    (["serve", "all", "--workers", "two"], ("--workers", "'two' is not a whole number")),
    (["health", "--timeout", "0"], ("--timeout", "use more than 0 seconds")),
{%- if cookiecutter.include_sample %}
    (["publish", "--count", "-5"], ("--count", "-5 is too small", "use 1 or more")),
    (["publish", "--concurrency", "0"], ("--concurrency", "0 is too small")),
    (["count", "--expect", "-1"], ("--expect", "use 0 or more")),
    (["count", "--timeout", "-1"], ("--timeout", "use more than 0 seconds")),
    (["demo", "--count", "0"], ("--count", "use 1 or more")),
{%- endif %}
    (["serve", "nosuchrole"], ("invalid choice: 'nosuchrole'",)),
]


@pytest.mark.parametrize(("args", "fragments"), BAD_ARGUMENTS, ids=lambda v: " ".join(v)[:40])
def test_a_bad_argument_is_one_line(
    tmp_path: Path, args: list[str], fragments: tuple[str, ...]
) -> None:
    assert_one_line_error(cli(*args, cwd=tmp_path), *fragments, "--help")
{%- if cookiecutter.include_sample and cookiecutter.database == 'postgresql' %}


def test_count_with_credentials_the_database_refuses_is_one_line(tmp_path: Path) -> None:
    """The test server trusts every password, so a role it does not know stands in for a
    wrong password: both are refused at connect, the same way."""
    from sqlalchemy.engine import make_url

    from .databases import POSTGRES_URL

    url = make_url(POSTGRES_URL).set(username="no_such_role", password="Wr0ng-pw-Zq")
    result = cli("count", cwd=tmp_path,
                 env={"DATABASE_URL": url.render_as_string(hide_password=False)})
    if "Connect call failed" in result.stderr:
        pytest.skip(f"no PostgreSQL server answers at {POSTGRES_URL}; set TEST_POSTGRES_URL")
    assert_one_line_error(result, "cannot open the database", "no_such_role",
                          "check database.url (DATABASE_URL)")
    assert "Wr0ng-pw-Zq" not in result.stderr
{%- endif %}


def _closed_port_env(broker_type: str) -> dict[str, str]:
    return {"BROKER_TYPE": broker_type, "BROKER_ADDRESS": f"127.0.0.1:{free_port()}"}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("broker_type", [t for t in known_types() if t != "memory"])
def test_a_signal_stops_start_up_retries_at_once(
    tmp_path: Path, broker_type: str, signum: signal.Signals
) -> None:
    """Without the fix the signal waited for all retries (30 s and more), then a traceback."""
    role = "{{ 'report' if cookiecutter.include_sample else 'all' }}"
    process = subprocess.Popen(
        [sys.executable, "-m", PACKAGE, "serve", role], cwd=tmp_path, text=True,
        env={**os.environ, **_closed_port_env(broker_type)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    before = _wait_for_retries(process)
    process.send_signal(signum)
    sent = time.monotonic()
    try:
        _, stderr = process.communicate(timeout=10)
        stderr = before + stderr
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        pytest.fail(f"{signum.name} did not stop start-up within 10s:\n{stderr[-2000:]}")
    assert time.monotonic() - sent < 3, stderr[-2000:]
    assert process.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr and "InvalidStateError" not in stderr
    assert f"start-up stopped by {signum.name}" in stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("broker_type", [t for t in known_types() if t != "memory"])
def test_a_signal_to_the_process_group_stops_dev_cleanly(
    tmp_path: Path, broker_type: str, signum: signal.Signals
) -> None:
    """A terminal's Ctrl-C (SIGINT) or systemd's stop (SIGTERM to the whole control group)
    reach the embedded broker too: it dies with the service, whose client then closes a lost
    connection. That was a traceback and exit code 2."""
    process = subprocess.Popen(
        [sys.executable, "-m", PACKAGE, "dev", "--broker", broker_type], cwd=tmp_path,
        text=True, env={**os.environ, "GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
                        "HTTP_ADDRESS": f"127.0.0.1:{free_port()}"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    read_stderr_until(process, ":all started (")  # the app's line, once every server runs
    os.killpg(process.pid, signum)
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
        pytest.fail(f"{signum.name} did not stop dev within 30s:\n{stderr[-2000:]}")
    assert process.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    assert not [line for line in stderr.splitlines() if line.startswith("error:")], stderr
    assert ":all stopped" in stderr, stderr[-2000:]


def test_ctrl_c_while_the_command_is_still_importing_exits_without_a_traceback(
    tmp_path: Path
) -> None:
    """Ctrl-C while the CLI's imports load (a second or so on a cold start): exit 130, never
    a KeyboardInterrupt traceback. `-X importtime` tells when the imports have begun.

    The signal is sent once a brokerline module has loaded; on a busy machine this test may
    read that line so late that the command (`asyncapi`, which prints its document) is done
    and the signal lands as it prints or as the interpreter exits (exit 130 or 0, or killed
    by SIGINT once Python has put the default handler back). Such a run is tried again: the
    one that counts is a signal that arrived while the command had printed nothing."""
    for _attempt in range(5):
        process = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", PACKAGE, "asyncapi"], cwd=tmp_path,
            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        assert process.stderr is not None
        for line in process.stderr:  # one line per module imported, as each one finishes
            if "brokerline" in line:  # the CLI's imports are loading
                break
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
        told = [line for line in stderr.splitlines() if not line.startswith("import time:")]
        assert not [line for line in told if "Traceback" in line], told[-20:]
        if stdout:  # the command had run to its end: the signal came too late to count
            assert process.returncode in (0, 130, -signal.SIGINT), (process.returncode, told[-20:])
            continue
        assert process.returncode == 130, (process.returncode, told[-20:])
        return
    pytest.fail("in 5 runs the signal never arrived before the command finished")


@pytest.mark.parametrize("broker_type", [t for t in known_types() if t != "memory"])
def test_ctrl_c_while_the_resources_initialise_stops_start_up_cleanly(
    tmp_path: Path, broker_type: str
) -> None:
    """Ctrl-C while the resources still initialise: the dependency-injector's callbacks then
    find their futures cancelled (InvalidStateError). That was a traceback on every run."""
    process = subprocess.Popen(
        [sys.executable, "-m", PACKAGE, "dev", "--broker", broker_type], cwd=tmp_path,
        text=True, env={**os.environ, "GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
                        "HTTP_ADDRESS": f"127.0.0.1:{free_port()}"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    # a resource is ready, another one still initialises
{%- if cookiecutter.include_sample %}
    read_stderr_until(process, "database ready at")  # the broker connects meanwhile
{%- else %}
    read_stderr_until(process, "started a local")  # its client connects meanwhile
{%- endif %}
    os.killpg(process.pid, signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
        pytest.fail(f"SIGINT did not stop dev within 30s:\n{stderr[-2000:]}")
    assert process.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr and "InvalidStateError" not in stderr, stderr[-3000:]


def _wait_for_retries(process: subprocess.Popen[str]) -> str:
    """The output up to the first connection attempt, then one second into the retries."""
    seen = read_stderr_until(process, "connecting to")
    time.sleep(1.0)
    assert process.poll() is None, "the service exited before the signal"
    return seen


@pytest.mark.skipif("pulsar" not in known_types(), reason="the pulsar plugin is not included")
def test_an_unreachable_pulsar_fails_within_its_connect_budget(tmp_path: Path) -> None:
    """Defaults but one attempt: broker.pulsar.connect_timeout (5 s), not the operation
    timeout the client retries a refused connection for (30 s; 157 s with the retries)."""
    env = {**_closed_port_env("pulsar"), ENV_PREFIX + "BROKER__CONNECT_ATTEMPTS": "1"}
    started = time.monotonic()
    result = cli("serve", "all", cwd=tmp_path, env=env, timeout=60)
    assert time.monotonic() - started < 15
    assert_one_clear_error(result, "cannot connect to the pulsar broker", "did not answer within "
                           "5s (broker.pulsar.connect_timeout)", "MQ_NAME_SERVER")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _listening_addresses(pid: int) -> set[str]:
    """host:port of every TCP socket `pid` listens on (from /proc; IPv4 only)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
            host_hex, port_hex = fields[1].split(":")
            host = socket.inet_ntoa(bytes.fromhex(host_hex)[::-1])
            found.add(f"{host}:{int(port_hex, 16)}")
    return found


#: one broker type per embedded server (nats and jetstream share nats-server)
EMBEDDED_TYPES = sorted(
    {"pulsar" if t == "pulsar" else "nats": t for t in known_types() if t != "memory"}.values()
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("broker_type", EMBEDDED_TYPES)
def test_broker_command_stops_its_child_and_removes_its_store_on_sigterm(
    tmp_path: Path, broker_type: str
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", PACKAGE, "broker", "--type", broker_type], cwd=tmp_path,
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert "listening at" in banner, banner + process.stderr.read() if process.stderr else ""
        store = Path(banner.split("(store ", 1)[1].split(";", 1)[0])
        assert store.is_dir()
        (child,) = _children(process.pid)
        # every port of the broker is on loopback (pulsar-lite's metrics: no 0.0.0.0:8080)
        listening = _listening_addresses(child)
        assert listening and all(a.startswith("127.0.0.1:") for a in listening), listening
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
    assert not Path(f"/proc/{child}").exists() or "zombie" in _state(child)
    assert not store.exists()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"
