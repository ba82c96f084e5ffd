"""The composition root: how the layers are wired (Kratos' Wire, in Python), and the App.

`build_app(config, role)` is the one place a role's App is made (container -> servers ->
App): `serve`, `dev` and the tests all use it. The broker and the database are resources:
initialised on first use, closed when the App stops. Tests override providers before
building (e.g. `container.broker.override(...)`, then `build_app(config, role, container)`).

Each provider imports its class when it is first called (`lazy(...)`), so a role imports
only what it runs: `serve saver` loads no gRPC, `serve report` no database driver or ORM.
That keeps an idle service small (see "What an idle service costs" in the README).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any

from brokerline.app import App
from brokerline.cli.startup import provided
from brokerline.config import DatabaseConfig
from brokerline.factory import broker_resource
from brokerline.server.ops import ops_server_for
from dependency_injector import containers, providers

from .conf import AppConfig

if TYPE_CHECKING:
    from brokerline.sql.database import Database


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


class Container(containers.DeclarativeContainer):
    config = providers.Dependency(instance_of=AppConfig)

    # data: resources
    broker = providers.Resource(broker_resource, config.provided.broker)
    database = providers.Resource(database_resource, config.provided.database)
{%- if cookiecutter.include_sample %}

    # data: repositories and the publisher (they implement the biz protocols)
    realtime_repo = providers.Singleton(lazy(".data.repo:RealtimeWarehousingRepo"), database)
    status_repo = providers.Singleton(lazy(".data.repo:AcceptStatusRepo"), database)
    report_store = providers.Singleton(
        lazy(".data.repo:BatchedReportStore"), realtime_repo, status_repo
    )
    publisher = providers.Singleton(
        lazy(".data.publisher:EventPublisher"), broker, config.provided.topics
    )

    # biz: the use cases
    report_usecase = providers.Singleton(lazy(".biz.report:ReportUseCase"), publisher)
    saver_usecase = providers.Singleton(lazy(".biz.report:SaverUseCase"), report_store)

    # service: the gRPC servicer and the subscriber handlers
    report_service = providers.Singleton(lazy(".service.report:ReportService"), report_usecase)
    saver_service = providers.Singleton(lazy(".service.saver:SaverService"), saver_usecase)

    # server
    grpc_server = providers.Singleton(lazy(".server.grpc:new_grpc_server"), config, report_service)
    # the same servicer instance over HTTP/JSON (the proto's google.api.http routes)
    http_server = providers.Singleton(lazy(".server.http:new_http_server"), config, report_service)
    broker_server = providers.Singleton(
        lazy(".server.broker:new_broker_server"), broker, config, saver_service
    )
{%- else %}

    # server
    grpc_server = providers.Singleton(lazy(".server.grpc:new_grpc_server"), config)
    http_server = providers.Singleton(lazy(".server.http:new_http_server"), config)
    broker_server = providers.Singleton(lazy(".server.broker:new_broker_server"), broker, config)
{%- endif %}


#: the servers each role runs, in start order (stopped in reverse): subscribers come up
#: before the gRPC and HTTP servers accept work, and those stop taking calls before handlers
#: drain
ROLES: dict[str, tuple[str, ...]] = {
{%- if cookiecutter.include_sample %}
    "report": ("grpc_server", "http_server"),
    "saver": ("broker_server",),
{%- endif %}
    "all": ("broker_server", "grpc_server", "http_server"),
}


async def build_app(config: AppConfig, role: str, container: Container | None = None) -> App:
    """The App of `role`: its servers and the ops server (health, /metrics), resources connected.

    With a `container`, its (overridden) providers are used. The App closes the container's
    resources after its servers when it stops.
    """
    # with async resources, what the providers give are awaitables
    wired: Any = container or Container(config=config)
    servers = [await provided(getattr(wired, name)()) for name in ROLES[role]]
    servers.append(await ops_server_for(wired, servers))
    return App(f"{config.name}:{role}", servers, config.shutdown_timeout,
               after_stop=[lambda: provided(wired.shutdown_resources())])
