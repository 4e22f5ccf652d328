"""Alembic migrations of the meshbridge store, shipped inside the package.

Users never see an ``alembic.ini``: :mod:`meshbridge.store.migrate` runs these programmatically
when a store is opened (and ``meshbridge db upgrade`` runs them on demand). To add a revision
during development::

    .venv/bin/alembic -c /dev/null -x url=sqlite:///dev.db revision \\
        --rev-id 0003 -m "what changes"   # with script_location meshbridge.store:migrations

then set ``HEAD`` in :mod:`meshbridge.store.migrate` to the new revision (a test checks it).
"""
