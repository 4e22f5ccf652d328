"""The FastAPI application: routes, error mapping, the edge middleware, OpenAPI.

``create_app(store)`` takes an open store or a store location (``sqlite:///...``,
``postgresql://...``, a path) and an optional certificate ``material`` provider, which is handed
to every render (see ``meshbridge.usecases.render.MaterialProvider``).

The edge middleware, outermost, does three things for every request: refuses bodies over the
size limit (413), times and counts it for ``/metrics`` (labelled from the route table, never
from the request: :func:`_labels`), and turns any exception that escaped the handlers into a
bare ``500 internal error`` while the traceback goes to the log.

A path that misses a route only by a trailing slash is redirected (307) to the one that
matches, with a relative ``Location`` made of the path alone (:func:`_slash_redirect`):
Starlette's own redirect builds an absolute URL from the ``Host`` header the client sent.
There is no ``/docs``: Swagger UI would load its script and styles from a CDN, and a browser
cannot send the token it needs anyway; ``/openapi.json`` serves the description to any tool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI
from starlette.responses import RedirectResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meshbridge import __version__
from meshbridge.api import credentials as credentials_routes
from meshbridge.api import errors, ops, resources, status
from meshbridge.api import graph as graph_routes
from meshbridge.api.context import MiB, Server
from meshbridge.api.errors import internal_error
from meshbridge.api.metrics import Metrics
from meshbridge.api.schemas import components
from meshbridge.api.status import propagation_of
from meshbridge.errors import PayloadTooLarge
from meshbridge.kube import ReconcileOptions
from meshbridge.server.catalog import Catalog
from meshbridge.server.credentials import Credentials
from meshbridge.server.leases import DEFAULT_TTL, replica_id
from meshbridge.server.manifests import Manifests
from meshbridge.server.reconciler import Reconciler
from meshbridge.store import ClusterRuns, ResourceStore, open_store
from meshbridge.usecases.render import MaterialProvider
from meshbridge.usecases.statekey import load_sealer
from meshbridge.wire.resources import RESOURCES

__all__ = ["create_app"]

log = logging.getLogger("meshbridge.api")


class EdgeMiddleware:
    """Body size limit, request metrics and the last-resort 500, in one pass."""

    def __init__(self, app: ASGIApp, server: Server) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False
        limit = self.server.max_body
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except Exception:
            log.exception("unhandled error answering %s %s", scope.get("method"), _route(scope))
            if not response_started:
                await internal_error()(scope, receive, send)
                status = 500
        finally:
            route, method = _labels(scope)
            self.server.metrics.observe(route, method, status, time.perf_counter() - started)


OTHER = "other"
"""The route or method label of a request that matched no route, or no method of its route."""


def _route(scope: Scope) -> str:
    return _labels(scope)[0]


def _labels(scope: Scope) -> tuple[str, str]:
    """The metrics labels of a request, both from the route table: the template of the route
    it matched and a method that route has, or :data:`OTHER`. A client chooses its path and
    method freely (any token of up to 64 KB), so a label taken from the request would let
    anyone, without a token, grow ``/metrics`` and the process without bound."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return OTHER, OTHER
    methods = getattr(route, "methods", None) or ()
    method = str(scope.get("method", ""))
    return path, method if method in methods else OTHER


def _slash_redirect(app: FastAPI) -> ASGIApp:
    """The router's answer to a path no route matches: a 307 to the same path with its
    trailing slash removed or added when that one matches a route (as Starlette's own
    ``redirect_slashes``), with a relative ``Location``; 404 otherwise."""
    not_found = app.router.not_found

    async def default(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path not in ("", "/"):
            other = path.rstrip("/") if path.endswith("/") else path + "/"
            moved = {**scope, "path": other}
            if any(r.matches(moved)[0] is not Match.NONE for r in app.router.routes):
                location = "/" + quote(other.lstrip("/"))  # one slash: never //host
                query = scope.get("query_string", b"").decode("latin-1")
                if query:
                    location += "?" + query
                await RedirectResponse(location, status_code=307)(scope, receive, send)
                return
        await not_found(scope, receive, send)

    return default


def create_app(
    store: ResourceStore | str,
    material: MaterialProvider | None = None,
    *,
    max_body: int = 8 * MiB,
    metrics_public: bool = False,
    reconcile_interval: float = 0.0,
    reconcile_options: ReconcileOptions | None = None,
    credentials: Credentials | None = None,
    replica: str | None = None,
    lease_ttl: float = DEFAULT_TTL,
) -> FastAPI:
    """The meshbridge API over ``store`` (opened, and migrated, when given as a location).

    With ``reconcile_interval`` > 0 the app reconciles the stored mesh with its clusters in the
    background, in a thread of its own, after every change and at least that often, taking
    each cluster's lease (``lease_ttl`` seconds) first, so that of several replicas
    (``replica``: this one's name) one at a time writes to a cluster (``server.reconciler``).
    It reaches each cluster with the credential its Cluster names, kept in ``credentials``
    (without it the credentials routes answer 409 and such clusters fail; given a store
    location, the app keeps them sealed under that store's state key).
    """
    opened = open_store(store) if isinstance(store, str) else store
    if credentials is None and isinstance(store, str):
        credentials = Credentials(opened, lambda: load_sealer(store, opened))
    catalog = Catalog(opened)
    metrics = Metrics(catalog_counts(opened), cluster_runs(opened), propagation_of(opened))
    manifests = Manifests(catalog, material, on_render=metrics.render.observe)
    reconciler = None
    if reconcile_interval > 0:
        reconciler = Reconciler(
            catalog,
            material,
            interval=reconcile_interval,
            options=reconcile_options or ReconcileOptions(),
            credentials=credentials,
            replica=replica or replica_id(),
            lease_ttl=lease_ttl,
            on_run=metrics.reconciled,
            on_delivered=metrics.delivered,
        )
    server = Server(opened, catalog, manifests, metrics, max_body, metrics_public, reconciler,
                    credentials)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if reconciler is not None:
            reconciler.start()
        try:
            yield
        finally:
            if reconciler is not None:
                await asyncio.to_thread(reconciler.stop)

    app = FastAPI(
        lifespan=lifespan,
        title="meshbridge",
        version=__version__,
        description="Istio multi-cluster intents in, every cluster's manifests out.",
        openapi_url=None,  # served by ops.router, behind a token like every call but health
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,  # our own, relative: _slash_redirect
    )
    app.router.default = _slash_redirect(app)
    app.state.server = server
    errors.install(app)
    app.include_router(ops.router)
    app.include_router(resources.router)
    app.include_router(status.router)
    app.include_router(credentials_routes.router)
    app.include_router(graph_routes.router)
    app.add_middleware(EdgeMiddleware, server=server)
    _extend_openapi(app)
    return app


def catalog_counts(store: ResourceStore) -> Callable[[], dict[str, int]]:
    """Documents per kind, every kind present, counted in the store (for ``/metrics``)."""

    def counts() -> dict[str, int]:
        with store.reading():
            found = store.count_resources()
        return {kind: found.get(kind, 0) for kind in RESOURCES}

    return counts


def cluster_runs(store: ResourceStore) -> Callable[[], dict[str, ClusterRuns]]:
    """Each cluster's reconcile history, read in the store (for ``/metrics``)."""

    def runs() -> dict[str, ClusterRuns]:
        with store.reading():
            return store.cluster_runs()

    return runs


def _extend_openapi(app: FastAPI) -> None:
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = base()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(components())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
