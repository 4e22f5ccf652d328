"""Cluster credentials: registered, listed and deleted by admins only; never answered back.

::

    GET    /api/v1/credentials            every credential's public view
    GET    /api/v1/credentials/{name}     one
    PUT    /api/v1/credentials/{name}     register or replace: the body is the kubeconfig
                                          (YAML or JSON), self-contained (see server.credentials)
    DELETE /api/v1/credentials/{name}     409 while a Cluster names it

A Cluster names its credential with ``spec.kubeconfig.credential``; the server reads no file.
Answers hold names, contexts, server URLs and times, never a key, certificate or token.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from meshbridge.api.bodies import read_body
from meshbridge.api.context import Admin, Server, ServerDep
from meshbridge.api.errors import respond
from meshbridge.errors import SealingError
from meshbridge.server.credentials import Credentials, credential_users
from meshbridge.wire.messages import CredentialList

router = APIRouter(prefix="/api/v1", tags=["credentials"])
log = logging.getLogger("meshbridge.api")

_KUBECONFIG_BODY = {
    "requestBody": {
        "required": True,
        "description": "A kubeconfig that holds everything itself: server URL, "
        "certificate-authority-data, and client-certificate-data/client-key-data or a token. "
        "Fields naming files (certificate-authority, client-key, tokenFile) or running programs "
        "(exec, auth-provider) are refused.",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


def _vault(server: Server) -> Credentials:
    if server.credentials is None:
        raise HTTPException(409, "this server keeps no cluster credentials")
    return server.credentials


def _unsealable(exc: SealingError) -> JSONResponse:
    log.error("credentials: %s", exc)  # the detail (key file, origin) stays in the server log
    return respond(
        503,
        "the server cannot seal or open credentials: its state key is missing or does not open "
        "this store (see the server's log)",
    )


@router.get("/credentials", summary="Registered cluster credentials (never their secrets)")
def list_credentials(server: ServerDep, _: Admin) -> dict[str, Any]:
    return CredentialList(items=[c.view() for c in _vault(server).list()]).to_json()


@router.get("/credentials/{name}", summary="One credential (never its secrets)")
def get_credential(name: str, server: ServerDep, _: Admin) -> dict[str, Any]:
    return _vault(server).info(name).view().to_json()


@router.put(
    "/credentials/{name}",
    summary="Register or replace a cluster credential",
    openapi_extra=_KUBECONFIG_BODY,
    responses={201: {"description": "Created"}},
)
async def put_credential(
    request: Request, name: str, server: ServerDep, who: Admin
) -> JSONResponse:
    vault = _vault(server)
    data = await read_body(request, server.max_body)
    try:
        info, created = await run_in_threadpool(vault.put, name, data, who.name,
                                                   server.limits)
    except SealingError as exc:
        return _unsealable(exc)
    if server.reconciler is not None:
        server.reconciler.trigger()  # Clusters naming it are reached with it now
    return JSONResponse(info.view().to_json(), status_code=201 if created else 200)


@router.delete("/credentials/{name}", summary="Delete a credential no Cluster names")
def delete_credential(name: str, server: ServerDep, who: Admin) -> dict[str, str]:
    vault = _vault(server)
    vault.delete(name, who.name, in_use_by=credential_users(server.store, name))
    return {"name": name, "status": "deleted"}
