"""What every route needs: the store, the catalog, the manifests cache, metrics and limits,
held by the app (``app.state.server``), plus the authentication dependencies.

Authentication is a bearer token on every route but ``/healthz`` and ``/readyz`` (and
``/metrics`` when the server is started with public metrics). 401 without a valid token, 403
when the token's role may not do what is asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from meshbridge.api.metrics import Metrics
from meshbridge.limits import Limits, for_bodies
from meshbridge.server.catalog import Catalog
from meshbridge.server.credentials import Credentials
from meshbridge.server.manifests import Manifests
from meshbridge.server.reconciler import Reconciler
from meshbridge.server.roles import allows
from meshbridge.server.tokens import Principal, authenticate
from meshbridge.store import ResourceStore

MiB = 1024 * 1024


@dataclass
class Server:
    store: ResourceStore
    catalog: Catalog
    manifests: Manifests
    metrics: Metrics
    max_body: int = 8 * MiB
    metrics_public: bool = False
    reconciler: Reconciler | None = None
    credentials: Credentials | None = None

    @property
    def limits(self) -> Limits:
        """What a request body may hold (docs/server.md, "Limits"): ``max_body`` bytes."""
        return for_bodies(self.max_body)


def server_of(request: Request) -> Server:
    server: Server = request.app.state.server
    return server


ServerDep = Annotated[Server, Depends(server_of)]

_bearer = HTTPBearer(
    auto_error=False,
    description="A token from `meshbridge token create` (roles: viewer, editor, admin).",
)


def principal(
    request: Request,
    server: ServerDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if creds is None:
        raise HTTPException(
            401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    found = authenticate(server.store, creds.credentials)
    if found is None:
        raise HTTPException(
            401,
            "the bearer token is not valid (unknown or revoked)",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    request.state.principal = found
    return found


def _role(needed: str) -> object:
    def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if not allows(who.role, needed):
            raise HTTPException(403, f"the {who.role} role may not do this: it needs {needed}")
        return who

    return Depends(check)


Viewer = Annotated[Principal, _role("viewer")]
Editor = Annotated[Principal, _role("editor")]
Admin = Annotated[Principal, _role("admin")]
