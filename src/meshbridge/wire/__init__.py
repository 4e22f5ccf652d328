"""The wire: what travels between ``meshbridge serve`` (``api``) and its client (``client``).

Below both ends, so neither imports the other: the REST resource table (``resources``: kinds,
URLs, server-set fields) and the JSON bodies as pydantic models (``messages``).
"""
