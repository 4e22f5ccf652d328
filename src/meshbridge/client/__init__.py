"""The meshbridge server's client: what the CLI uses to talk to ``meshbridge serve``.

An edge, like ``cli/`` and ``api/``: it uses the wire (resource kinds, answers), the one
reader (documents) and the render's output path (emitter, writer), and is called by the CLI;
nothing below it knows HTTP. It holds the client
half of the server's boundary rules: a token goes over TLS (or to a loopback address only), the
server is verified (``--server-ca``), and ``render --server`` writes only inside its output
directory, whatever names the server sends.
"""

from meshbridge.client._http import (
    ClientCertificate,
    FileDocument,
    ServerClient,
    check_server_url,
    read_documents,
)
from meshbridge.client._render import (
    RemoteRender,
    fetch_all,
    render_from_server,
    safe_relative_path,
)

__all__ = [
    "ClientCertificate",
    "FileDocument",
    "RemoteRender",
    "ServerClient",
    "check_server_url",
    "fetch_all",
    "read_documents",
    "render_from_server",
    "safe_relative_path",
]
