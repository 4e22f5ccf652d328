"""The HTTP API of ``meshbridge serve``: a thin edge over the use cases and the server domain.

Routes parse requests, call ``meshbridge.usecases`` and ``meshbridge.server``, and map errors to
statuses; they hold no logic of their own. See ``docs/server.md`` for the resources, roles and
error shape.
"""

from meshbridge.api.app import create_app

__all__ = ["create_app"]
