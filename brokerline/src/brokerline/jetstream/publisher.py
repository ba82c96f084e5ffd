"""JetStream publishes with their acknowledgements pipelined.

nats-py's `js.publish()` is a request: per message a random token, a future, a timeout task,
and the caller waits for the server's acknowledgement before sending the next one. Here each
message goes out with a reply subject under one inbox subscription and gets a future that the
server's acknowledgement (or refusal) resolves, so `publish_batch` keeps up to a window of
messages in flight and collects the acknowledgements as they come back, like the Go client's
`PublishAsync`. A message counts as published only once its acknowledgement arrived.

Resending. In a cluster a stream is briefly without a leader when the node that led it dies:
publishes are answered "no responders" (503) until the others elect a new one, and a
publish the dead leader took may never be acknowledged. Such a message is resent as it was,
with the same `Nats-Msg-Id`, until `publish_retry_for` has passed: if the first copy was
stored after all, the stream drops the second one as a duplicate (the retry window is kept
inside the stream's duplicate window) and acknowledges it, so the caller is told "published"
exactly when the message is on the stream, once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass
from typing import Any

import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as ClientSubscription

#: the status a reply carries when no stream captures the subject
NO_RESPONDERS = "503"
#: seconds between resends of a message the stream refused for now (doubling up to the cap)
RESEND_WAIT = 0.25
RESEND_WAIT_MAX = 1.0


@dataclass(slots=True)
class Outgoing:
    """One message until the stream acknowledged it; every resend is the same bytes and id."""

    topic: str
    subject: str
    payload: bytes
    headers: dict[str, str]
    deadline: float  # monotonic time after which it is not resent any more
    ack: asyncio.Future[dict[str, Any]] | None = None
    resends: int = 0

    def resend_wait(self) -> float:
        return min(RESEND_WAIT * 2 ** self.resends, RESEND_WAIT_MAX)


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether a NATS subject pattern (`*` one token, `>` the rest) matches `subject`."""
    wanted, given = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(given) > index
        if index >= len(given) or (token != "*" and token != given[index]):
            return False
    return len(wanted) == len(given)


class AckedPublisher:
    """Sends messages with a reply subject and resolves their futures from the replies."""

    def __init__(self) -> None:
        self._prefix = ""
        self._tokens = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._sub: ClientSubscription | None = None

    async def start(self, client: NatsClient) -> None:
        self._prefix = client.new_inbox() + "."
        self._sub = await client.subscribe(self._prefix + "*", cb=self._on_reply)

    async def send(self, client: NatsClient, message: Outgoing) -> None:
        """Publish (or resend) one message; `message.ack` resolves with the server's answer."""
        token = str(next(self._tokens))
        ack: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[token] = ack
        try:
            await client.publish(
                message.subject, message.payload, reply=self._prefix + token,
                headers=message.headers,
            )
        except BaseException:
            del self._waiting[token]
            raise
        message.ack = ack

    def forget_settled(self) -> None:
        """Drop the futures nobody waits for any more (they timed out and were cancelled)."""
        self._waiting = {t: f for t, f in self._waiting.items() if not f.done()}

    async def _on_reply(self, msg: Msg) -> None:
        ack = self._waiting.pop(msg.subject[len(self._prefix):], None)
        if ack is None or ack.done():
            return
        status = msg.headers.get("Status") if msg.headers else None
        if status == NO_RESPONDERS:
            ack.set_exception(nats.js.errors.NoStreamResponseError())
            return
        try:
            reply = json.loads(msg.data) if msg.data else {}
        except ValueError:
            reply = {}
        if status or "error" in reply or "stream" not in reply:
            error = reply.get("error") or {"code": status, "description": "no acknowledgement"}
            ack.set_exception(nats.js.errors.APIError(
                code=error.get("code"), description=error.get("description"),
                err_code=error.get("err_code"),
            ))
            return
        ack.set_result(reply)
