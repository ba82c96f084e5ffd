"""The HTTP/JSON server: the proto's google.api.http routes over the gRPC servicers.

The servicers are the same instances the gRPC server serves (one implementation, two
transports); each annotated method appears at its route with no route written here.
"""

from __future__ import annotations

from brokerline.server.http import HttpServer{% if cookiecutter.include_sample %}, HttpService{% endif %}
from brokerline.telemetry import service_version

{% if cookiecutter.include_sample -%}
from ..api.report.v1 import report_pb2
{% endif -%}
from ..conf import AppConfig
{%- if cookiecutter.include_sample %}
from ..service.report import ReportService

IDEMPOTENCY_HELP = ("a client's key for this report (as request_id): a retry with the same "
                    "key answers the same eventId and stores one row")
{%- endif %}


{% if cookiecutter.include_sample -%}
def new_http_server(config: AppConfig, report: ReportService) -> HttpServer:
    services = [HttpService(report_pb2.DESCRIPTOR.services_by_name["ReportService"], report,
                            headers={"PostReport": [("Idempotency-Key", IDEMPOTENCY_HELP)]})]
    return HttpServer(config.http, services, title=config.name, version=_version(config))
{%- else -%}
def new_http_server(config: AppConfig) -> HttpServer:
    # HttpService(my_pb2.DESCRIPTOR.services_by_name["MyService"], servicer)
    return HttpServer(config.http, [], title=config.name, version=_version(config))
{%- endif %}


def _version(config: AppConfig) -> str:
    """The OpenAPI document's version: the service's (telemetry.service_version or installed)."""
    return service_version(config.telemetry, "{{ cookiecutter.project_slug }}")
