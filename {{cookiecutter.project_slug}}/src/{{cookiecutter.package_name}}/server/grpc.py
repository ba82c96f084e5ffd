"""The gRPC server and the servicers it serves."""

from __future__ import annotations

from brokerline.server.grpc import GrpcServer{% if cookiecutter.include_sample %}, GrpcService{% endif %}

{% if cookiecutter.include_sample -%}
from ..api.report.v1 import report_pb2_grpc
{% endif -%}
from ..conf import AppConfig
{%- if cookiecutter.include_sample %}
from ..service.report import ReportService
{%- endif %}


{% if cookiecutter.include_sample -%}
def new_grpc_server(config: AppConfig, report: ReportService) -> GrpcServer:
    services = [
        GrpcService(
            "report.v1.ReportService", report, report_pb2_grpc.add_ReportServiceServicer_to_server
        ),
    ]
    return GrpcServer(config.grpc.address, services, config.grpc.max_message_bytes,
                      config.grpc.reuse_port)
{%- else -%}
def new_grpc_server(config: AppConfig) -> GrpcServer:
    # GrpcService("my.v1.MyService", servicer, my_pb2_grpc.add_MyServiceServicer_to_server)
    return GrpcServer(config.grpc.address, [], config.grpc.max_message_bytes,
                      config.grpc.reuse_port)
{%- endif %}
