"""The HTTP/JSON transport: the proto's `google.api.http` rules over the gRPC servicers.

`HttpServer(config.http, [HttpService(descriptor, servicer)])` serves every annotated method
of each service by calling the same servicer coroutine the gRPC server calls; see `rules`
(routes from the descriptors), `transcode` (proto3 JSON), `context` (the servicer's
`context`), `status` (gRPC status -> HTTP) and `app` (the ASGI application).
"""

from brokerline.server.http.app import HttpJsonApp, HttpService
from brokerline.server.http.rules import Route, RuleError, routes_of
from brokerline.server.http.server import HttpServer
from brokerline.server.http.status import HTTP_STATUS, http_status

__all__ = ["HTTP_STATUS", "HttpJsonApp", "HttpServer", "HttpService", "Route", "RuleError",
           "http_status", "routes_of"]
