"""One side of the before/after group: the single-handler framework cases of one broker group,
on whichever brokerline is first on PYTHONPATH; prints the results as one JSON line.

Run by before_after.py in a process of its own per library and round, so the library before
the batch work and today's never meet in one interpreter. It imports only names that library
has (nats_cases and pulsar_cases import no batch names).

    PYTHONPATH=<brokerline/src>:bench python bench/single_handlers.py --group core \\
        --library <brokerline/src> --nats URL --pulsar URL --messages N --rate R --lat-n L
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path

import brokerline

GROUPS = ("core", "jetstream", "pulsar")
MARK = "RESULTS "  # the line before/after reads; anything else on stdout is the cases' progress


async def run(args: argparse.Namespace) -> list[dict]:
    import nats_cases
    import pulsar_cases

    if args.group == "core":
        results = await nats_cases.core_framework(args.nats, args.messages, args.rate, args.lat_n)
    elif args.group == "jetstream":
        results = await nats_cases.js_framework(args.nats, args.messages, args.rate,
                                                args.lat_n)
    else:
        results = await pulsar_cases.pulsar_framework(args.pulsar, args.messages)
    return [asdict(r) for r in results]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--group", choices=GROUPS, required=True)
    p.add_argument("--library", type=Path, required=True,
                   help="the brokerline/src this process must import brokerline from")
    p.add_argument("--nats", required=True, help="nats-server URL (JetStream on)")
    p.add_argument("--pulsar", required=True, help="Pulsar service URL")
    p.add_argument("--messages", type=int, required=True)
    p.add_argument("--rate", type=float, required=True, help="offered msg/s for latency")
    p.add_argument("--lat-n", type=int, required=True, help="messages of the latency phase")
    args = p.parse_args()
    imported = Path(brokerline.__file__).resolve()
    if not imported.is_relative_to(args.library.resolve()):
        sys.exit(f"brokerline was imported from {imported}, not from {args.library}: put "
                 f"{args.library} first on PYTHONPATH")
    import nats_cases  # noqa: F401  # imported before the freeze, as run.py's cases are
    import pulsar_cases  # noqa: F401
    from common import freeze_start_up_heap

    freeze_start_up_heap()  # as in run.py: the same for both libraries
    print(MARK + json.dumps({"library": str(imported.parent), "results": asyncio.run(run(args))}),
          flush=True)


if __name__ == "__main__":
    main()
