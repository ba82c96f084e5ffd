"""Run every benchmark pair in one process run and write bench/results/ (md, json, png).

Usage (from `make bench`): PYTHONPATH=<generated project>/src python bench/run.py --project DIR
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import batch_cases
import before_after
import ingest_cases
import nats_cases
import pulsar_cases
import saver_cases
from brokerline.nats import nats_server
from brokerline.pulsar import pulsar_lite
from common import Result, freeze_start_up_heap, skipped

RESULTS = Path(__file__).parent / "results"
GROUPS = ("core", "jetstream", "pulsar", "apache-pulsar", "before-after", "saver", "ingest",
          "kafka")

# (name, case, baseline side, compared side, target ratio, what is compared)
RATIOS = [
    ("NATS core e2e, framework batch / raw", "NATS core end to end", "raw nats-py",
     "framework (batch)", 0.8),
    ("Pulsar consume, framework batch / raw", "Pulsar consume+ack", "raw pulsar-client",
     "framework (batch)", 0.9),
    ("JetStream consume, framework batch / raw", "JetStream consume+ack", "raw nats-py",
     "framework (batch)", 0.9),
    ("JetStream consume, framework batch / FastStream batch", "JetStream consume+ack",
     "faststream (batch)", "framework (batch)", None),
    ("NATS core e2e, framework / raw", "NATS core end to end", "raw nats-py", "framework", 0.8),
    ("JetStream publish, framework / raw", "JetStream publish", "raw nats-py", "framework", 0.9),
    ("JetStream consume, framework / raw", "JetStream consume+ack", "raw nats-py", "framework",
     0.9),
    ("Pulsar produce, framework / raw", "Pulsar produce (batching)", "raw pulsar-client",
     "framework", 0.9),
    ("Pulsar consume, framework / raw", "Pulsar consume+ack", "raw pulsar-client", "framework",
     0.9),
    ("Apache Pulsar produce, framework / raw", "Pulsar produce (batching) (Apache Pulsar)",
     "raw pulsar-client", "framework", 0.9),
    ("Apache Pulsar consume, framework / raw", "Pulsar consume+ack (Apache Pulsar)",
     "raw pulsar-client", "framework", 0.9),
    ("Apache Pulsar consume, framework batch / raw", "Pulsar consume+ack (Apache Pulsar)",
     "raw pulsar-client", "framework (batch)", 0.9),
    ("Kafka produce, framework / raw", "Kafka produce", "raw aiokafka", "framework", 0.9),
    ("Kafka consume, framework / raw", "Kafka consume+commit", "raw aiokafka", "framework", 0.9),
    ("Kafka consume, framework batch / raw", "Kafka consume+commit", "raw aiokafka",
     "framework (batch)", 0.9),
    ("NATS core e2e, framework / FastStream", "NATS core end to end", "faststream", "framework",
     3.0),
    ("JetStream consume, framework / FastStream", "JetStream consume+ack", "faststream",
     "framework", 1.5),
    ("JetStream publish, framework / FastStream", "JetStream publish", "faststream", "framework",
     1.5),
    ("Kafka produce, framework / FastStream", "Kafka produce", "faststream", "framework", 1.5),
    ("Kafka consume, framework / FastStream", "Kafka consume+commit", "faststream", "framework",
     1.5),
]


def machine() -> dict[str, str]:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"nproc": str(os.cpu_count()), "cpu": model, "python": platform.python_version(),
            "platform": platform.platform()}


def find(results: list[Result], case: str, side: str) -> Result | None:
    return next((r for r in results if r.case == case and r.side == side), None)


def rate_of(results: list[Result], case: str, side: str) -> float | None:
    """The row's msgs/s; None if there is no such row or it has no rate (e.g. FAILED)."""
    found = find(results, case, side)
    return found.msgs_per_s if found else None


def ratio_rows(results: list[Result], raw_js_consume: float | None) -> list[dict]:
    rows = []
    for name, case, base, other, target in RATIOS:
        a, b = find(results, case, base), find(results, case, other)
        if a and b and a.msgs_per_s and b.msgs_per_s:
            rows.append(ratio(name, b.msgs_per_s / a.msgs_per_s, target))
    for transport in ("gRPC", "HTTP"):
        case = f"ingest over {transport} (reports/s)"
        for workers, plural in ((1, ""), (2, "es")):
            bare = find(results, case, f"bare server, {workers} process{plural}")
            served = find(results, case, f"serve report, {workers} worker{'s' if plural else ''}")
            if bare and served and bare.msgs_per_s and served.msgs_per_s:
                rows.append(ratio(f"ingest {transport}, serve report / bare server "
                                  f"({workers} process{plural})",
                                  served.msgs_per_s / bare.msgs_per_s, None))
        one = find(results, case, "serve report, 1 worker")
        two = find(results, case, "serve report, 2 workers")
        if one and two and one.msgs_per_s and two.msgs_per_s:
            rows.append(ratio(f"ingest {transport}, 2 workers / 1 worker",
                              two.msgs_per_s / one.msgs_per_s, None))
    for label in ("SQLite", "PostgreSQL"):
        case = f"saver vs insert ({label})"
        insert, one, two, drain, drain_two, drain_four = (rate_of(results, case, side) for side in (
            "raw SQLAlchemy insert", "saver, 1 worker", "saver, 2 workers",
            "saver drain, 1 worker", "saver drain, 2 workers", "saver drain, 4 workers"))
        slower = min(insert, raw_js_consume) if insert and raw_js_consume else None
        if slower and drain:
            rows.append(ratio(f"saver drain ({label}) / slower raw stage", drain / slower, 0.8))
        # end to end, the rows are stored as fast as the gRPC client posts them (it, not the
        # saver, bounds the figure): the ratio says whether the saver keeps up with ingest
        one_row = find(results, case, "saver, 1 worker")
        if one and one_row is not None and one_row.offered_per_s:
            rows.append(ratio(f"saver e2e ({label}) / its gRPC posting rate",
                              one / one_row.offered_per_s, None))
        if one and two:
            rows.append(ratio(f"saver e2e 2 workers / 1 worker ({label})", two / one, None))
        if drain and drain_two:
            rows.append(ratio(f"saver drain 2 workers / 1 worker ({label})", drain_two / drain,
                              None))
        if drain and drain_four:
            rows.append(ratio(f"saver drain 4 workers / 1 worker ({label})", drain_four / drain,
                              None))
    return rows


def cpu_rows(results: list[Result]) -> list[str]:
    """CPU microseconds per message, framework against raw, on each path (both measured)."""
    lines = ["", "| CPU per message (us, the side's own processes) | raw | framework | "
             "framework (batch) |", "|---|---:|---:|---:|"]
    for case, raw_side in (("NATS core end to end", "raw nats-py"),
                           ("JetStream publish", "raw nats-py"),
                           ("JetStream consume+ack", "raw nats-py"),
                           ("Pulsar produce (batching)", "raw pulsar-client"),
                           ("Pulsar consume+ack", "raw pulsar-client")):
        cells = [find(results, case, side) for side in (raw_side, "framework",
                                                         "framework (batch)")]
        lines.append(f"| {case} | " + " | ".join(fmt(c.cpu_us if c else None, 1)
                                                 for c in cells) + " |")
    raw_consume = find(results, "JetStream consume+ack", "raw nats-py")
    for label in ("SQLite", "PostgreSQL"):
        case = f"saver vs insert ({label})"
        insert = find(results, case, "raw SQLAlchemy insert")
        drains = [find(results, case, f"saver drain, {w} worker{'s' if w > 1 else ''}")
                  for w in (1, 2, 4)]
        if insert is None or not any(drains):
            continue
        raw_cpu = None  # the raw path: a raw JetStream consume plus a raw batch insert
        if raw_consume and raw_consume.cpu_us and insert.cpu_us:
            raw_cpu = raw_consume.cpu_us + insert.cpu_us
        workers = ", ".join(f"{fmt(d.cpu_us, 1)} ({w} worker{'s' if w > 1 else ''})"
                            for w, d in zip((1, 2, 4), drains, strict=True) if d and d.cpu_us)
        lines.append(f"| saver drain ({label}): raw consume + raw insert; the saver | "
                     f"{fmt(raw_cpu, 1)} | {workers} | |")
    return lines


def ratio(name: str, value: float, target: float | None) -> dict:
    row = {"ratio": name, "value": round(value, 3), "target": target}
    if target is not None:
        row["met"] = value >= target
        row["gap"] = "" if value >= target else f"{(1 - value / target) * 100:.0f}% short"
    return row


def fmt(x: float | None, digits: int = 0) -> str:
    return "" if x is None else f"{x:,.{digits}f}"


def markdown(results: list[Result], ratios: list[dict], meta: dict,
             single_before_after: dict | None = None) -> str:
    lines = ["# Benchmark results", "",
             (f"Machine: {meta['nproc']} CPU(s), {meta['cpu']}, Python {meta['python']} "
              f"({meta['platform']}). Run: {meta['when']}, {meta['seconds']:.0f} s; "
              f"{meta['messages']} messages per throughput run, latency at "
              f"{meta['rate']:.0f} msg/s offered (NATS core; half that on JetStream)."), "",
             "| case | side | msgs/s | p50 ms | p99 ms | CPU us/msg | note |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in results:
        lines.append(f"| {r.case} | {r.side} | {fmt(r.msgs_per_s)} | {fmt(r.p50_ms, 3)} | "
                     f"{fmt(r.p99_ms, 3)} | {fmt(r.cpu_us, 1)} | {r.note} |")
    lines += ["", "| ratio | value | target | met |", "|---|---:|---:|---|"]
    for row in ratios:
        met = "" if row["target"] is None else ("yes" if row["met"] else f"NO ({row['gap']})")
        target = "" if row["target"] is None else f">= {row['target']}x"
        lines.append(f"| {row['ratio']} | {row['value']:.2f}x | {target} | {met} |")
    lines += cpu_rows(results)
    lines += before_after.markdown(single_before_after or {})
    for note in meta.get("notes", []):
        lines.append(f"\n- {note}")
    return "\n".join(lines) + "\n"


def chart(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tput = [r for r in results if r.msgs_per_s]
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(tput) + 1.5))
    labels = [f"{r.case} - {r.side}" for r in tput]
    colors = ["tab:gray" if r.side.startswith(("raw", "bare")) else "tab:orange"
              if r.side.startswith("faststream") else "tab:blue" for r in tput]
    ax.barh(labels, [r.msgs_per_s for r in tput], color=colors)
    ax.invert_yaxis()
    ax.set_xlabel("messages / s (higher is better)")
    ax.set_title("framework (blue) vs raw clients (gray) and FastStream (orange)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


async def listed(result: Awaitable[Result]) -> list[Result]:
    """A case that makes one row, as `rounds` takes them."""
    return [await result]


async def rounds(repeat: int, cases: list) -> list[Result]:
    """Run the sides of a pair in turn, `repeat` times; keep each row's median run.

    Interleaving the sides spreads the machine's slow moments over all of them, and the
    median drops a run that hit one; on a 2-core machine single runs vary by 20-30%.
    """
    runs: dict[tuple[str, str, bool], list[Result]] = {}
    for i in range(repeat):
        for case in cases:
            print(f"-- round {i + 1}/{repeat}: {case.__defaults__[0].__name__}", flush=True)
            for r in await case():
                runs.setdefault((r.case, r.side, r.msgs_per_s is None), []).append(r)
    out = []
    for rows in runs.values():
        ordered = sorted(rows, key=lambda r: r.msgs_per_s if r.msgs_per_s else -(r.p50_ms or 0))
        median = ordered[len(ordered) // 2]
        if len(rows) > 1:
            median.note = (median.note + "; " if median.note else "") + f"median of {len(rows)}"
        out.append(median)
    return out


async def main(args: argparse.Namespace) -> None:
    started = time.time()
    n, rate, lat_n = args.messages, args.rate, int(args.rate * args.latency_seconds)
    results: list[Result] = []
    notes: list[str] = []
    comparison: dict = {}
    nats = nats_server().start()
    pulsar = pulsar_lite().start()
    try:
        if "core" in args.only:
            results += await rounds(args.repeat, [
                lambda c=case: c(nats.url, n, rate, lat_n)
                for case in (nats_cases.core_raw, nats_cases.core_framework,
                             batch_cases.core_framework_batch, nats_cases.core_faststream)])
        await nats_cases.ensure_stream(nats.url)
        if "jetstream" in args.only:
            results += await rounds(args.repeat, [
                lambda c=case: c(nats.url, n, rate / 2, lat_n // 2)
                for case in (nats_cases.js_raw, nats_cases.js_framework,
                             batch_cases.js_framework_batch, nats_cases.js_faststream,
                             nats_cases.js_faststream_batch)])
        if "pulsar" in args.only:
            results += await rounds(args.repeat, [
                lambda c=case: c(pulsar.url, n)
                for case in (pulsar_cases.pulsar_raw, pulsar_cases.pulsar_framework,
                             batch_cases.pulsar_framework_batch)])
        if "apache-pulsar" in args.only:
            with pulsar_cases.apache_pulsar(notes) as apache_url:
                if apache_url:
                    results += pulsar_cases.on_apache(await rounds(args.repeat, [
                        lambda c=case: c(apache_url, n)
                        for case in (pulsar_cases.pulsar_raw, pulsar_cases.pulsar_framework,
                                     batch_cases.pulsar_framework_batch)]))
        if args.libraries:
            comparison = await before_after.measure(args.libraries, args.repeat, nats.url,
                                                    pulsar.url, n, rate, lat_n)
        if "kafka" in args.only:
            import kafka_cases  # aiokafka and a JVM only where the Kafka group runs

            async with kafka_cases.apache_kafka(notes) as bootstrap:
                if bootstrap:
                    results += await rounds(args.repeat, [
                        lambda c=case: c(bootstrap, n) for case in kafka_cases.CASES])
        if "ingest" in args.only:
            missing = ingest_cases.h2load_missing()
            if missing:
                skipped(notes, missing)
            else:
                try:
                    results += await rounds(args.repeat, [
                        lambda c=ingest_cases.ingest: c(nats.url, args.project,
                                                        args.ingest_seconds)])
                except RuntimeError as exc:  # the load generator failed: say so, go on
                    notes.append(f"ingest skipped: {exc}".splitlines()[0])
                    print(exc, flush=True)
        if "saver" not in args.only:
            return await report(results, notes, meta_for(started, n, rate), args, comparison)
        databases = [("SQLite", f"sqlite+aiosqlite:///{args.workdir}/bench.db")]
        reason = await saver_cases.pg_reachable()
        if reason:
            skipped(notes, f"PostgreSQL skipped: {reason}")
        else:
            databases.append(("PostgreSQL", saver_cases.PG_URL))
        rss: list[float] = []
        for label, url in databases:
            print(f"-- saver ({label})", flush=True)
            for workers in (1, 2):
                result, idle = await saver_cases.saver_end_to_end(
                    nats.url, url, label, args.saver_messages, workers, args.project)
                results.append(result)
                rss.append(idle)
            # the raw insert and the drains in rounds, medians like the broker pairs: the
            # drain ratio is the saver's target, and one run of it varies as much as theirs
            drains = [
                lambda c=saver_cases.saver_drain, url=url, label=label, workers=workers: listed(
                    c(nats.url, url, label, args.saver_messages * 4, args.project, workers))
                for workers in args.drain_workers
            ]
            results += await rounds(args.repeat, [
                lambda c=saver_cases.raw_insert, url=url, label=label: listed(c(url, n, label)),
                *drains,
            ])
        notes.append(f"idle saver RSS: {max(rss):.0f} MB (target < 80 MB)")
    finally:
        nats.cleanup()
        pulsar.cleanup()
    await report(results, notes, meta_for(started, n, rate), args, comparison)


def meta_for(started: float, n: int, rate: float) -> dict:
    return {**machine(), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "started": started, "messages": n, "rate": rate}


async def report(results: list[Result], notes: list[str], meta: dict,
                 args: argparse.Namespace, comparison: dict) -> None:
    """Print the table; write bench/results/ only for a full run (the committed figures)."""
    raw_consume = find(results, "JetStream consume+ack", "raw nats-py")
    ratios = ratio_rows(results, raw_consume.msgs_per_s if raw_consume else None)
    meta = {**meta, "seconds": time.time() - meta.pop("started"), "notes": notes}
    text = markdown(results, ratios, meta, comparison)
    print(text)
    if set(args.only) != set(GROUPS):
        print("partial run (--only): bench/results/ left as it was")
        return
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "results.md").write_text(text)
    (RESULTS / "results.json").write_text(json.dumps(
        {"machine": meta, "results": [asdict(r) for r in results], "ratios": ratios,
         "single_handlers_before_after": comparison}, indent=2))
    chart(results, RESULTS / "results.png")
    print(f"wrote {RESULTS}/results.md, results.json, results.png")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--project", type=Path, required=True, help="the generated project's root")
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--saver-messages", type=int, default=5000)
    p.add_argument("--rate", type=float, default=2000.0, help="offered msg/s for latency")
    p.add_argument("--latency-seconds", type=float, default=2.0)
    p.add_argument("--ingest-seconds", type=float, default=5.0,
                   help="seconds of h2load load per ingest row (after 1 s of warm-up)")
    p.add_argument("--workdir", type=Path, default=Path("build/bench/work"))
    p.add_argument("--repeat", type=int, default=3,
                   help="rounds of each broker pair; the median is reported")
    p.add_argument("--drain-workers", type=int, nargs="+", default=[1, 2, 4],
                   help="the saver drain's worker counts")
    p.add_argument("--baseline", default=before_after.DEFAULT_BASELINE,
                   help="before-after: the git revision of the library to compare with the "
                        "working tree's (default: %(default)s, before the batch subscribers)")
    p.add_argument("--only", nargs="+", choices=GROUPS, default=list(GROUPS),
                   help="run only these groups (the results files are then not written)")
    args = p.parse_args()
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.libraries = None
    if "before-after" in args.only:  # a bad --baseline stops the run before any broker starts
        try:
            args.libraries = before_after.libraries(args.baseline, args.workdir)
        except before_after.BeforeAfterError as exc:
            print(f"before-after: {exc}", file=sys.stderr)
            sys.exit(2)
    freeze_start_up_heap()
    asyncio.run(main(args))
