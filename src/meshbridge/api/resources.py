"""Routes of the intent documents, Kubernetes style, one set per kind.

::

    GET    /api/v1/{meshes,clusters}[?labelSelector=k=v,k2=v2]
    GET    /api/v1/{meshes,clusters}/{name}
    PUT    /api/v1/{meshes,clusters}/{name}                     create or replace
    DELETE /api/v1/{meshes,clusters}/{name}[?resourceVersion=N]
    GET    /api/v1/namespaces/{ns}/{apps,inboundintents,externalservices}[?labelSelector=...]
    GET|PUT|DELETE /api/v1/namespaces/{ns}/{apps,inboundintents,externalservices}/{name}
    GET    /api/v1/{apps,inboundintents,externalservices}       every namespace
    POST   /api/v1/apply[?prune=true][&dryRun=All]              many documents, all or nothing

Every write validates the whole resulting set of documents (see ``server.catalog``). A
Cluster naming a kubeconfig file (``spec.kubeconfig.path``) is refused first: the server reads
no file a caller names; Clusters name credentials an admin registered
(``spec.kubeconfig.credential``, see ``api.credentials``).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from meshbridge.api.bodies import read_body
from meshbridge.api.context import Editor, ServerDep, Viewer
from meshbridge.api.schemas import body_schema
from meshbridge.errors import BadRequest
from meshbridge.loading import BODY, parse_body, parse_one
from meshbridge.model import API_VERSION
from meshbridge.server.catalog import Delete, Put, WriteResult
from meshbridge.server.credentials import refuse_kubeconfig_paths
from meshbridge.server.stored import get_object, list_objects, parse_selector
from meshbridge.wire.messages import ApplyAnswer, ApplyItem, ListMeta
from meshbridge.wire.resources import RESOURCES, ResourceKind, strip_server_fields

router = APIRouter(prefix="/api/v1")

SelectorQuery = Annotated[
    str | None,
    Query(alias="labelSelector", max_length=4096, description="k=v,k2!=v2,k3,!k4"),
]
VersionQuery = Annotated[
    str | None,
    Query(alias="resourceVersion", max_length=32, description="Delete only at this version."),
]


def _put_result(result: WriteResult) -> JSONResponse:
    outcome = result.outcomes[0]
    status = 201 if outcome.action == "created" else 200
    return JSONResponse(outcome.object, status_code=status)


def _handlers(kind: ResourceKind) -> dict[str, Callable[..., Any]]:
    """The route functions of one kind: list (one namespace or cluster-scoped), list in every
    namespace, get, put, delete."""

    def ns_of(params: dict[str, str]) -> str:
        return params.get("namespace", "") if kind.namespaced else ""

    def list_in(
        request: Request, server: ServerDep, _: Viewer, selector: SelectorQuery = None
    ) -> dict[str, Any]:
        ns = ns_of(request.path_params) if kind.namespaced else None
        return list_objects(server.store, kind, ns, parse_selector(selector))

    def list_all(server: ServerDep, _: Viewer, selector: SelectorQuery = None) -> dict[str, Any]:
        return list_objects(server.store, kind, None, parse_selector(selector))

    def get_one(request: Request, name: str, server: ServerDep, _: Viewer) -> dict[str, Any]:
        return get_object(server.store, kind, ns_of(request.path_params), name)

    async def put_one(request: Request, name: str, server: ServerDep, who: Editor) -> JSONResponse:
        data = await read_body(request, server.max_body)
        key = (kind.kind, ns_of(request.path_params), name)
        ctype = request.headers.get("content-type")

        def work() -> WriteResult:
            body, expect = strip_server_fields(parse_one(data, ctype, limits=server.limits))
            refuse_kubeconfig_paths([(BODY, 1, body)])  # the server reads no file it is given
            return server.catalog.write([Put(body, BODY, 1, expect, key)], who.name)

        return _put_result(await run_in_threadpool(work))

    def delete_one(
        request: Request, name: str, server: ServerDep, who: Editor, version: VersionQuery = None
    ) -> dict[str, Any]:
        key = (kind.kind, ns_of(request.path_params), name)
        result = server.catalog.write([Delete(key, version)], who.name)
        return result.outcomes[0].object

    named = {
        f"list_{kind.plural}": list_in,
        f"list_{kind.plural}_all_namespaces": list_all,
        f"get_{kind.kind.lower()}": get_one,
        f"put_{kind.kind.lower()}": put_one,
        f"delete_{kind.kind.lower()}": delete_one,
    }
    for name, fn in named.items():  # operation ids in the OpenAPI document
        fn.__name__ = fn.__qualname__ = name
    return {
        "list": list_in,
        "list_all": list_all,
        "get": get_one,
        "put": put_one,
        "delete": delete_one,
    }


def _routes_for(kind: ResourceKind) -> None:
    scope = "/namespaces/{namespace}" if kind.namespaced else ""
    one = f"{scope}/{kind.plural}/{{name}}"
    tags: list[str | Enum] = [kind.kind]
    fns = _handlers(kind)
    where = " in a namespace" if kind.namespaced else ""
    add = router.add_api_route
    add(
        f"{scope}/{kind.plural}",
        fns["list"],
        methods=["GET"],
        tags=tags,
        summary=f"List {kind.plural}{where}",
    )
    add(one, fns["get"], methods=["GET"], tags=tags, summary=f"Read one {kind.kind}")
    add(
        one,
        fns["put"],
        methods=["PUT"],
        tags=tags,
        summary=f"Create or replace one {kind.kind}",
        openapi_extra=body_schema(kind.kind),
        responses={201: {"description": "Created"}},
    )
    add(one, fns["delete"], methods=["DELETE"], tags=tags, summary=f"Delete one {kind.kind}")
    if kind.namespaced:
        add(
            f"/{kind.plural}",
            fns["list_all"],
            methods=["GET"],
            tags=tags,
            summary=f"List {kind.plural} in every namespace",
        )


for _kind in RESOURCES.values():
    _routes_for(_kind)


@router.post(
    "/apply",
    tags=["apply"],
    summary="Store many documents: all of them or none",
    openapi_extra=body_schema(None),
)
async def apply(
    request: Request,
    server: ServerDep,
    who: Editor,
    prune: Annotated[
        bool, Query(description="Also delete every stored document not given.")
    ] = False,
    dry_run: Annotated[
        Literal["All"] | None,
        Query(
            alias="dryRun",
            description="All: validate and answer what would be done; store nothing.",
        ),
    ] = None,
) -> dict[str, Any]:
    """Create or replace every document of a multi-document YAML or JSON body, like
    ``kubectl apply -f``: in one transaction, after validating the whole resulting set. With
    ``dryRun=All`` nothing is stored (no revision, no audit entry, nothing to reconcile)."""
    data = await read_body(request, server.max_body)
    ctype = request.headers.get("content-type")

    def work() -> WriteResult:
        docs = parse_body(data, ctype, limits=server.limits)
        if not docs:
            raise BadRequest("the body holds no document")
        refuse_kubeconfig_paths((BODY, index, raw) for index, raw in docs)
        changes: list[Put | Delete] = []
        for index, raw in docs:
            body, expect = strip_server_fields(raw)
            changes.append(Put(body, BODY, index, expect))
        return server.catalog.write(changes, who.name, prune=prune, dry_run=dry_run == "All")

    result = await run_in_threadpool(work)
    return ApplyAnswer(
        api_version=API_VERSION,
        metadata=ListMeta(resource_version=str(result.revision)),
        items=[
            ApplyItem(
                kind=o.key[0],
                namespace=o.key[1] or None,
                name=o.key[2],
                action=o.action,
                resource_version=o.object["metadata"]["resourceVersion"],
            )
            for o in result.outcomes
        ],
    ).to_json()
