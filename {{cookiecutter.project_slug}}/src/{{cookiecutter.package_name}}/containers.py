"""The dependency-injector containers: how the layers are wired (Kratos' Wire, in Python).

The broker and the database are resources: initialised on first use, shut down in
`shutdown_resources()`. Tests override providers (e.g. `container.broker.override(...)`).

Each provider imports its class when it is first called (`lazy(...)`), so a role imports
only what it runs: `serve saver` loads no gRPC, `serve report` no database driver or ORM.
That keeps an idle service small (see "What an idle service costs" in the README).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any

from dependency_injector import containers, providers

from brokerline.factory import broker_resource, subscribe_options
from brokerline.config import DatabaseConfig
from .conf import AppConfig

if TYPE_CHECKING:
    from brokerline.sql.database import Database
{%- if cookiecutter.include_sample %}
    from brokerline.server.grpc import GrpcService
    from .service.report import ReportService
{%- endif %}


def lazy(target: str) -> Callable[..., Any]:
    """A factory for `module:attr` (`.x` relative to this package) that imports it when called."""
    module_name, _, attr = target.partition(":")

    def create(*args: Any, **kwargs: Any) -> Any:
        factory = getattr(importlib.import_module(module_name, __package__), attr)
        return factory(*args, **kwargs)

    create.__name__ = create.__qualname__ = attr
    create.__doc__ = f"{attr} from {module_name}, imported on first use."
    return create


async def database_resource(cfg: DatabaseConfig) -> AsyncGenerator[Database, None]:
    """The service's database (its tables: `data.models`), imported only by the roles that
    use one."""
    from brokerline.sql.database import database_resource as open_database

    from .data.models import Base

    resource = open_database(cfg, Base.metadata, "{{ cookiecutter.project_slug }}")
    try:
        yield await anext(resource)
    finally:
        await resource.aclose()  # disposes of the engine
{%- if cookiecutter.include_sample %}


def report_grpc_services(report: ReportService) -> list[GrpcService]:
    from .api.report.v1 import report_pb2_grpc
    from brokerline.server.grpc import GrpcService

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
    realtime_repo = providers.Singleton(lazy(".data.repo:RealtimeWarehousingRepo"), database)
    status_repo = providers.Singleton(lazy(".data.repo:AcceptStatusRepo"), database)
    publisher = providers.Singleton(
        lazy(".data.publisher:EventPublisher"), broker, config.provided.topics
    )

    # service
    report_service = providers.Singleton(lazy(".service.report:ReportService"), publisher)
    saver_service = providers.Singleton(
        lazy(".service.saver:SaverService"), realtime_repo, status_repo, config.provided.saver
    )

    # server
    grpc_server = providers.Singleton(
        lazy("brokerline.server.grpc:GrpcServer"),
        config.provided.grpc.address,
        providers.Callable(report_grpc_services, report_service),
        config.provided.grpc.max_message_bytes,
    )
    broker_server = providers.Singleton(
        lazy(".server.subscribers:register_subscribers"),
        providers.Singleton(
            lazy("brokerline.server.broker:BrokerServer"),
            broker,
            providers.Callable(subscribe_options, config.provided.broker),
        ),
        config,
        saver_service,
    )
{%- else %}

    # server
    grpc_server = providers.Singleton(
        lazy("brokerline.server.grpc:GrpcServer"), config.provided.grpc.address, []
    )
    broker_server = providers.Singleton(
        lazy(".server.subscribers:register_subscribers"),
        providers.Singleton(
            lazy("brokerline.server.broker:BrokerServer"),
            broker,
            providers.Callable(subscribe_options, config.provided.broker),
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
