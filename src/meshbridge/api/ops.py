"""Routes beside the documents: rendered manifests, the audit log, tokens, health, metrics.

Who may do what:

* ``GET /healthz`` (process up) and ``GET /readyz`` (store answers): no token.
* ``GET /metrics``: any role (no token when the server runs with ``--public-metrics``).
* ``GET /api/v1/audit``: any role; it holds token names, kinds and names, never a body.
* ``GET /api/v1/clusters/{name}/manifests``: editor or admin, since a cluster's ``cacerts``
  Secret holds its intermediate CA's private key.
* ``/api/v1/tokens``: admin.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.params import Query
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from meshbridge.api.bodies import read_body
from meshbridge.api.context import Admin, Editor, ServerDep, Viewer, principal
from meshbridge.api.metrics import CONTENT_TYPE
from meshbridge.errors import StateError
from meshbridge.limits import Limits
from meshbridge.loading import parse_one
from meshbridge.server.manifests import ClusterManifests
from meshbridge.server.roles import ROLES
from meshbridge.server.tokens import create_token, list_tokens, revoke_token

router = APIRouter()

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


@router.get("/healthz", tags=["health"], summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", tags=["health"], summary="The store answers", responses={503: {}})
def readyz(server: ServerDep) -> JSONResponse:
    try:
        server.store.ping()
    except StateError:
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/metrics", tags=["health"], summary="Prometheus metrics (text format)")
def metrics(request: Request, server: ServerDep) -> Response:
    if not server.metrics_public:
        principal(request, server, _bearer_credentials(request))
    return Response(server.metrics.exposition(), media_type=CONTENT_TYPE)


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request, _: Viewer) -> JSONResponse:
    """The OpenAPI document of this API (any role)."""
    return JSONResponse(request.app.openapi())


def _bearer_credentials(request: Request) -> HTTPAuthorizationCredentials | None:
    scheme, credentials = get_authorization_scheme_param(request.headers.get("authorization"))
    if scheme.lower() != "bearer" or not credentials:
        return None
    return HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials)


@router.get(
    "/api/v1/clusters/{name}/manifests",
    tags=["manifests"],
    summary="One cluster's rendered manifests",
    responses={200: {"content": {"application/json": {}, "application/yaml": {}}}},
)
def manifests(request: Request, name: str, server: ServerDep, _: Editor) -> Response:
    """The cluster's objects as a Kubernetes ``List`` (JSON), or with ``Accept:
    application/yaml`` the exact bytes ``meshbridge render`` writes for it, its files joined
    with ``---``."""
    result: ClusterManifests = server.manifests.for_cluster(name)
    headers = {"ETag": f'"{result.etag}"', "X-Meshbridge-Revision": result.etag}
    accept = request.headers.get("accept", "")
    if any(t in accept for t in YAML_TYPES):
        return Response(result.yaml, media_type="application/yaml", headers=headers)
    return Response(result.json, media_type="application/json", headers=headers)


@router.get("/api/v1/audit", tags=["audit"], summary="The audit log, oldest first")
def audit(
    server: ServerDep,
    _: Viewer,
    after: Annotated[int, Query(ge=0, le=2**62, description="Entries after this id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    actor: Annotated[str | None, Query(max_length=128)] = None,
) -> dict[str, Any]:
    with server.store.reading():
        entries = server.store.list_audit(after=after, limit=limit, kind=kind, actor=actor)
    items = [
        {
            "id": e.id,
            "time": e.at,
            "actor": e.actor,
            "verb": e.verb,
            "kind": e.kind,
            "namespace": e.namespace or None,
            "name": e.name,
            "beforeResourceVersion": None if e.before is None else str(e.before),
            "afterResourceVersion": None if e.after is None else str(e.after),
        }
        for e in entries
    ]
    return {"items": items, "next": items[-1]["id"] if items else after}


class TokenRequest(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    role: str = Field(description=f"One of {', '.join(ROLES)}.")


_TOKEN_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": TokenRequest.model_json_schema()}},
    }
}


def _token_request(data: bytes, content_type: str | None, limits: Limits) -> TokenRequest:
    """The body, read by the one reader (as every body is: never by FastAPI, which would read
    it before the token is checked, and let a JSON text nested 100,000 deep crash it)."""
    raw = parse_one(data, content_type, limits=limits)
    try:
        return TokenRequest.model_validate(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


@router.get("/api/v1/tokens", tags=["tokens"], summary="Every token (never the secret)")
def tokens(server: ServerDep, _: Admin) -> dict[str, Any]:
    return {"items": list_tokens(server.store)}


@router.post("/api/v1/tokens", tags=["tokens"], status_code=201, summary="Create a token",
             openapi_extra=_TOKEN_BODY)
async def new_token(request: Request, server: ServerDep, who: Admin) -> dict[str, str]:
    """The answer holds the token: it is shown this once and never again."""
    data = await read_body(request, server.max_body)
    ctype = request.headers.get("content-type")
    body = await run_in_threadpool(_token_request, data, ctype, server.limits)
    token = await run_in_threadpool(create_token, server.store, body.name, body.role, who.name)
    return {"name": body.name, "role": body.role, "token": token}


@router.delete("/api/v1/tokens/{name}", tags=["tokens"], summary="Revoke a token")
def revoke(name: str, server: ServerDep, who: Admin) -> dict[str, str]:
    revoke_token(server.store, name, who.name)
    return {"name": name, "status": "revoked"}
