"""Apache Pulsar's admin REST API (`/admin/v2/...`), for tests that make tenants and namespaces."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from brokerline.testing.apache_pulsar.standalone import ApachePulsarServer


def admin(server: ApachePulsarServer, method: str, path: str, body: Any = None) -> Any:
    """One admin call (`admin(server, "PUT", "namespaces/public/ns")`): its JSON answer, or
    None for an empty one; an HTTP error status raises `urllib.error.HTTPError`."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if server.admin_token:
        headers["Authorization"] = f"Bearer {server.admin_token}"
    request = urllib.request.Request(
        f"{server.admin_url}/admin/v2/{path}", data=data, method=method, headers=headers
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None
