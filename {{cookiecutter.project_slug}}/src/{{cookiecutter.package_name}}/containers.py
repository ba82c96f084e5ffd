"""The dependency-injector containers: how the layers are wired (Kratos' Wire, in Python).

The broker and the database are resources: initialised on first use, shut down in
`shutdown_resources()`. Tests override providers (e.g. `container.broker.override(...)`).
"""

from __future__ import annotations

from dependency_injector import containers, providers

{% if cookiecutter.include_sample -%}
from .api.report.v1 import report_pb2_grpc
{% endif -%}
from .broker_factory import broker_resource, subscribe_options
from .conf import AppConfig
from .data.db import database_resource
{%- if cookiecutter.include_sample %}
from .data.publisher import EventPublisher
from .data.repo import AcceptStatusRepo, RealtimeWarehousingRepo
{%- endif %}
from .server.broker import BrokerServer
from .server.grpc import GrpcServer{% if cookiecutter.include_sample %}, GrpcService{% endif %}
from .server.subscribers import register_subscribers
{%- if cookiecutter.include_sample %}
from .service.report import ReportService
from .service.saver import SaverService


def report_grpc_services(report: ReportService) -> list[GrpcService]:
    return [
        GrpcService(
            "report.v1.ReportService", report, report_pb2_grpc.add_ReportServiceServicer_to_server
        )
    ]
{%- endif %}


class Container(containers.DeclarativeContainer):
    config = providers.Dependency(instance_of=AppConfig)

    # data: resources
    broker = providers.Resource(broker_resource, config.provided.broker)
    database = providers.Resource(database_resource, config.provided.database)
{%- if cookiecutter.include_sample %}

    # data: repositories and the publisher
    realtime_repo = providers.Singleton(RealtimeWarehousingRepo, database)
    status_repo = providers.Singleton(AcceptStatusRepo, database)
    publisher = providers.Singleton(EventPublisher, broker, config.provided.topics)

    # service
    report_service = providers.Singleton(ReportService, publisher)
    saver_service = providers.Singleton(
        SaverService, realtime_repo, status_repo, config.provided.saver
    )

    # server
    grpc_server = providers.Singleton(
        GrpcServer,
        config.provided.grpc.address,
        providers.Callable(report_grpc_services, report_service),
        config.provided.grpc.max_message_bytes,
    )
    broker_server = providers.Singleton(
        register_subscribers,
        providers.Singleton(
            BrokerServer, broker, providers.Callable(subscribe_options, config.provided.broker)
        ),
        config,
        saver_service,
    )
{%- else %}

    # server
    grpc_server = providers.Singleton(GrpcServer, config.provided.grpc.address, [])
    broker_server = providers.Singleton(
        register_subscribers,
        providers.Singleton(
            BrokerServer, broker, providers.Callable(subscribe_options, config.provided.broker)
        ),
        config,
    )
{%- endif %}


#: the servers each role runs, in start order (stopped in reverse): subscribers come up
#: before the gRPC server accepts work, and gRPC stops taking calls before handlers drain
ROLES: dict[str, tuple[str, ...]] = {
{%- if cookiecutter.include_sample %}
    "report": ("grpc_server",),
    "saver": ("broker_server",),
    "all": ("broker_server", "grpc_server"),
{%- else %}
    "all": ("broker_server", "grpc_server"),
{%- endif %}
}
