"""Use cases: what the CLI and the server both run — render, apply, diff, status, PKI.

Each combines I/O (intent files, the state store, the clock, live clusters through ``kube``) with
the pure compile step, and reports plain results. The edges (``cli``, ``api``) and the server's
own domain (``server``) call them and map their errors; nothing here knows HTTP or a terminal.
"""
