"""Where a NATS core subscriber's microseconds go: each step, on messages made in memory.

`python bench/nats_steps.py [--messages 20000] [--repeat 7]` (from the bench venv: after
`make bench`, `build/bench/report-pipeline/.venv/bin/python bench/nats_steps.py`). It starts
nats-server (the subscriptions need a connection), builds nats-py `Msg` objects with the
bench's report payloads, and times each step of the framework's receive path over them in
batches of 500 (one batch alive at a time, as in a subscriber), `--repeat` times (medians of
this process's CPU time; no network in the timed part):

- the raw callback's only work: the decode;
- the framework's batch path: `Delivery` made in the delivery callback, `process_batch`
  (decode, outcome per message), `settle`; and the single-handler `Dispatcher.process`;

first with the start-up heap as imports left it, then frozen as `serve` freezes it
(`freeze_start_up_heap`): the two columns show what the collector costs a batch subscriber,
which keeps hundreds of messages alive at once. A profile, not a ratio (bench/README).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from brokerline import BatchContext, BatchOptions, MessageContext
from brokerline.nats import NatsBroker, nats_server
from common import Report, make_reports
from nats.aio.msg import Msg
from nats_cases import settings

STEPS = ("raw: decode (pydantic validate_json)", "framework: Delivery (delivery callback)",
         "framework batch: process_batch (decode, outcome)", "framework batch: settle",
         "framework single: Dispatcher.process (decode, handler, outcome)")
BATCH = 500


async def measure(url: str, n: int, repeat: int) -> dict[str, list[float]]:
    broker = NatsBroker(settings(url))
    await broker.connect()
    try:
        async def batch_handler(batch: list[Report], ctx: BatchContext) -> None:
            return None

        async def handler(msg: Report, ctx: MessageContext) -> None:
            return None

        batched = await broker.subscribe_batch("steps.batch", batch_handler,
                                               batch=BatchOptions(BATCH, 0.002))
        single = await broker.subscribe("steps.single", handler)
        payloads = [r.model_dump_json().encode() for r in make_reports(n)]
        messages = [Msg(broker.client, subject="steps.batch", data=p) for p in payloads]
        validate = Report.__pydantic_validator__.validate_json
        clock = time.process_time
        timings: dict[str, list[float]] = {name: [] for name in STEPS}
        for _ in range(repeat):
            spent = dict.fromkeys(STEPS, 0.0)
            for i in range(0, n, BATCH):
                chunk = messages[i:i + BATCH]
                t0 = clock()
                for m in chunk:
                    validate(m.data)
                t1 = clock()
                items = [batched._take(m) for m in chunk]
                t2 = clock()
                outcomes = await batched._dispatcher.process_batch([it.delivery for it in items])
                t3 = clock()
                await batched.settle(items, outcomes)
                t4 = clock()
                for item in items:
                    await single._dispatcher.process(item.delivery)
                t5 = clock()
                for name, seconds in zip(STEPS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4),
                                         strict=True):
                    spent[name] += seconds
            for name in STEPS:
                timings[name].append(spent[name] / n * 1e6)
        for subscription in (batched, single):  # the steps ran by hand: nothing is left
            subscription._held = 0
            subscription._settled.set()
        return timings
    finally:
        await broker.close(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    server = nats_server().start()
    try:
        as_imported = asyncio.run(measure(server.url, args.messages, args.repeat))
        gc.collect()
        gc.freeze()  # what serve does before its App consumes
        frozen = asyncio.run(measure(server.url, args.messages, args.repeat))
    finally:
        server.stop()
    print("| step (NATS core) | CPU us/msg, heap as imported | CPU us/msg, start-up heap "
          "frozen |\n|---|---:|---:|")
    for name in STEPS:
        print(f"| {name} | {statistics.median(as_imported[name]):.2f} | "
              f"{statistics.median(frozen[name]):.2f} |")


if __name__ == "__main__":
    main()
