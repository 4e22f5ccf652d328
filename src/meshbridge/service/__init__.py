"""Use cases: read sources, load, consult the state store, compile, write.

This is the only layer that combines I/O (files, store, clock) with the pure compile step. The
edges (CLI, API) call these functions and map their errors.
"""
