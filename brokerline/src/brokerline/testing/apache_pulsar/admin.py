"""Apache Pulsar's admin REST API (`/admin/v2/...`), for tests: tenants, namespaces, topics,
their policies and stats."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from brokerline.testing.apache_pulsar.standalone import ApachePulsarServer


class AdminError(RuntimeError):
    """The admin API answered with an error status (the message says which and why)."""

    def __init__(self, method: str, path: str, status: int, reason: str) -> None:
        super().__init__(f"Pulsar admin {method} {path} answered {status}: {reason}")
        self.status = status


def admin(server: ApachePulsarServer, method: str, path: str, body: Any = None) -> Any:
    """Call `{method} /admin/v2/{path}` with a JSON body; returns the decoded JSON answer.

    `admin(server, "PUT", "persistent/public/default/orders/partitions", 4)` makes a
    partitioned topic of 4 partitions; an error status raises `AdminError`.
    """
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if server.admin_token:  # a standalone with authentication on
        headers["Authorization"] = f"Bearer {server.admin_token}"
    request = urllib.request.Request(
        f"{server.admin_url}/admin/v2/{path}", data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        reason = exc.read().decode(errors="replace").strip() or exc.reason
        raise AdminError(method, path, exc.code, reason) from None
    return json.loads(raw) if raw else None


def topic_path(topic: str) -> str:
    """The admin path of a full topic name: `persistent://t/ns/x` -> `persistent/t/ns/x`."""
    domain, _, rest = topic.partition("://")
    return f"{domain}/{rest}"


def namespace_without_delayed_delivery(server: ApachePulsarServer, name: str) -> str:
    """Creates `public/<name>` with the delayed-delivery namespace policy off (its topics
    deliver `deliver_after` messages at once, as a broker with `delayedDeliveryEnabled` off
    would) and returns `name`, for the paths a broker without delays takes."""
    admin(server, "PUT", f"namespaces/public/{name}")
    admin(server, "POST", f"namespaces/public/{name}/delayedDelivery",
          {"active": False, "tickTime": 100})
    return name
