"""The picture of the mesh over HTTP: ``GET /api/v1/graph`` (any role) and the page at ``/ui/``.

The page and its script and style sheet are static package data (``meshbridge.ui``): they
hold no data, so they load without a token (a browser cannot send one when it navigates); the
script then asks for a token and reads ``/api/v1/graph`` with it. Every page answer carries
``meshbridge.ui.CSP``: only this server's scripts, styles and API, no inline script.
"""

from __future__ import annotations

import threading

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException

from meshbridge import ui
from meshbridge.api.context import ServerDep, Viewer
from meshbridge.server.graphs import Graphs

router = APIRouter()
_made = threading.Lock()

PAGE_HEADERS = {
    "Content-Security-Policy": ui.CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


def _graphs(request: Request, server: ServerDep) -> Graphs:
    with _made:
        graphs: Graphs | None = getattr(request.app.state, "graphs", None)
        if graphs is None:
            graphs = Graphs(server.catalog, secrets=server.manifests.material is not None,
                            finish=ui.with_layout)
            request.app.state.graphs = graphs
        return graphs


@router.get(
    "/api/v1/graph",
    tags=["graph"],
    summary="The mesh as a graph: regions, clusters, app instances, calls, states",
    responses={200: {"content": {"application/json": {}}}},
)
def mesh_graph(request: Request, server: ServerDep, _: Viewer) -> Response:
    """Regions, clusters and the app instances in them; an edge per call an InboundIntent
    allows (port, protocol, split weight, failover order), ingress hosts and egress services;
    per intent the objects made for it in each cluster (kind, namespace, name: never their
    content) with the state of the last apply, and a layout for drawing it
    (``meshbridge.wire.graph.MeshGraph``)."""
    body = _graphs(request, server).json()
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})


@router.get("/ui", include_in_schema=False)
def page_redirect() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=308)


@router.get("/ui/", include_in_schema=False)
def page() -> Response:
    return Response(ui.index_html(), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.get("/ui/{name}", include_in_schema=False)
def page_asset(name: str) -> Response:
    if name not in ui.ASSETS:
        raise HTTPException(404, "no such file")
    return Response(ui.asset(name), media_type=ui.ASSETS[name], headers=PAGE_HEADERS)
