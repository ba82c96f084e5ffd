"""Single handlers before and after the batch work, in one run on the same brokers.

The library at `--baseline` (default: the commit before the batch subscribers) is extracted
from the repo with `git archive`; the working tree's `brokerline/src` is the other side. Both
are put first on PYTHONPATH of a process of their own (single_handlers.py), with the bench
venv's dependencies, one process per library, broker group and round, so the two libraries
never share an interpreter. Rounds alternate the order (before, after; then after, before;
...) so that a drift of the machine's load favours neither side; each figure is the median
of its rounds.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common import Result
from single_handlers import GROUPS, MARK
from streams import empty_stream

DEFAULT_BASELINE = "0f05356^"  # the parent of "core: batch subscribers (BatchOptions, ...)"
REPO = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "single_handlers.py"
CHILD_TIMEOUT = 600.0  # seconds one side of one group may take (its cases time out sooner)
JS_SUBJECT = "bench.js.fw.tput"  # a subject of the BENCH stream the JetStream cases use


class BeforeAfterError(Exception):
    """The group cannot run (a bad --baseline, a library that does not import): one sentence."""


@dataclass(frozen=True)
class Library:
    label: str  # "before" or "after"
    revision: str  # what the table calls it: a commit, or the working tree
    src: Path  # the directory holding the `brokerline` package


def git(*argv: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", "-C", str(REPO), *argv], capture_output=True, check=False)
    except OSError as exc:
        raise BeforeAfterError(f"git does not run ({exc.strerror}): the before/after group "
                               f"reads the older library from the repo with git; install it "
                               f"or leave the group out (--only)") from None


def resolve(rev: str) -> str:
    """The full commit id of `rev` in the repo, or BeforeAfterError naming the fix."""
    found = git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if found.returncode:
        raise BeforeAfterError(f"--baseline {rev} is not a commit of {REPO}; name one that "
                               f"`git log` shows (default {DEFAULT_BASELINE})")
    return found.stdout.decode().strip()


def extract(commit: str, workdir: Path) -> Path:
    """`brokerline/src` at `commit`, extracted once into `workdir` (reused by later runs)."""
    dest = workdir / f"brokerline-{commit[:12]}"
    src = dest / "brokerline" / "src"
    if (src / "brokerline" / "__init__.py").exists():
        return src
    archive = git("archive", "--format=tar", commit, "brokerline/src")
    if archive.returncode:
        raise BeforeAfterError(f"git archive of brokerline/src at {commit[:12]} failed "
                               f"({archive.stderr.decode().strip()}); is it a commit that has "
                               f"brokerline/src?")
    staging = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=workdir))
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(staging, filter="data")
    staging.rename(dest)  # whole or not at all: a run stopped half way leaves no half copy
    return src


def child_env(lib: Library) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(lib.src), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def check_imports(lib: Library) -> None:
    """The library and its NATS, JetStream and Pulsar plugins import from `lib.src`."""
    probe = ("import brokerline, brokerline.nats, brokerline.jetstream, brokerline.pulsar; "
             "print(brokerline.__file__)")
    done = subprocess.run([sys.executable, "-c", probe], env=child_env(lib), capture_output=True,
                          text=True, check=False)
    lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
    if done.returncode:
        raise BeforeAfterError(f"brokerline at {lib.revision} does not import with the bench "
                               f"venv's packages: {lines[-1]}")
    imported = Path(done.stdout.strip()).resolve()
    if not imported.is_relative_to(lib.src.resolve()):
        raise BeforeAfterError(f"brokerline at {lib.revision} was imported from {imported}, "
                               f"not {lib.src}: PYTHONPATH does not come first")


def libraries(baseline: str, workdir: Path) -> tuple[Library, Library]:
    """The library at `baseline` and the working tree's, each checked to import."""
    commit = resolve(baseline)
    head = resolve("HEAD")
    dirty = git("status", "--porcelain", "--", "brokerline/src").stdout.strip()
    after = f"working tree ({head[:12]}{' + changes' if dirty else ''})"
    libs = (Library("before", f"{commit[:12]} ({baseline})", extract(commit, workdir)),
            Library("after", after, REPO / "brokerline" / "src"))
    for lib in libs:
        check_imports(lib)
    return libs


async def run_side(lib: Library, group: str, nats_url: str, pulsar_url: str, n: int,
                   rate: float, lat_n: int) -> list[Result]:
    """One library's single-handler cases of one group, in a process of their own."""
    if group == "jetstream":  # both libraries make their own durables on an empty stream
        await empty_stream(nats_url, JS_SUBJECT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), "--group", group, "--library", str(lib.src),
        "--nats", nats_url, "--pulsar", pulsar_url, "--messages", str(n), "--rate", str(rate),
        "--lat-n", str(lat_n), env=child_env(lib), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CHILD_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"the {lib.label} side of {group} took over {CHILD_TIMEOUT:.0f} s") \
            from None
    line = next((x for x in out.decode().splitlines() if x.startswith(MARK)), None)
    tail = err.decode().strip().splitlines()[-1:] or ["no output"]
    if line is None:
        raise RuntimeError(f"the {lib.label} side of {group} failed (exit {proc.returncode}): "
                           f"{tail[0]}")
    if proc.returncode:  # measured and reported, then failed on the way out (pulsar-client
        # 3.13 was seen aborting in its own threads at interpreter exit): keep the figures
        print(f"-- the {lib.label} side of {group} reported, then exited with "
              f"{proc.returncode}: {tail[0]}", flush=True)
    return [Result(**row) for row in json.loads(line[len(MARK):])["results"]]


#: per row kind, the figures compared: (metric name, Result attribute)
THROUGHPUT = (("msgs/s", "msgs_per_s"), ("CPU us/msg", "cpu_us"))
LATENCY = (("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"))


async def measure(libs: tuple[Library, Library], repeat: int, nats_url: str, pulsar_url: str,
                  n: int, rate: float, lat_n: int) -> dict:
    """Alternating rounds of both libraries (from `libraries()`); medians, after / before."""
    before, after = libs
    values: dict[tuple[str, str], dict[str, list[float]]] = {}
    for i in range(repeat):
        order = (before, after) if i % 2 == 0 else (after, before)
        for group in GROUPS:
            for lib in order:
                print(f"-- before/after round {i + 1}/{repeat}: {group}, {lib.label}",
                      flush=True)
                # the JetStream cases pace their latency phase at half the rate, as run.py does
                js = group == "jetstream"
                for r in await run_side(lib, group, nats_url, pulsar_url, n,
                                        rate / 2 if js else rate, lat_n // 2 if js else lat_n):
                    for metric, attr in THROUGHPUT if r.msgs_per_s else LATENCY:
                        value = getattr(r, attr)
                        if value is not None:
                            values.setdefault((r.case, metric), {}).setdefault(
                                lib.label, []).append(value)
    rows = []
    for (case, metric), sides in values.items():
        old, new = (statistics.median(sides[s]) if sides.get(s) else None
                    for s in ("before", "after"))
        rows.append({"case": case, "metric": metric, "before": old, "after": new,
                     "ratio": new / old if old and new else None, "rounds": sides})
    return {"before": before.revision, "after": after.revision, "repeat": repeat, "rows": rows}


def markdown(table: dict) -> list[str]:
    """The before/after table for results.md (nothing if the group did not run)."""
    if not table:
        return []
    lines = ["", f"Single handlers, before and after the batch work, same run: before = "
             f"brokerline at {table['before']}, after = the {table['after']}; each side in a "
             f"process of its own, rounds alternating, medians of {table['repeat']}. "
             f"msgs/s: higher is better; CPU and latency: lower is better.", "",
             "| single handlers (framework side) | metric | before | after | after / before |",
             "|---|---|---:|---:|---:|"]
    for row in table["rows"]:
        digits = 0 if row["metric"] == "msgs/s" else (1 if row["metric"].startswith("CPU")
                                                      else 3)
        cells = ["" if row[k] is None else f"{row[k]:,.{digits}f}" for k in ("before", "after")]
        ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        lines.append(f"| {row['case']} | {row['metric']} | {cells[0]} | {cells[1]} | {ratio} |")
    return lines
