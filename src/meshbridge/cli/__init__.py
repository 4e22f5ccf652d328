"""The meshbridge command line: a thin edge that parses, calls the use cases, maps errors.

Exit codes: 0 success, 1 failure (state store, output, an unexpected error), 2 invalid input.
"""

from meshbridge.cli.main import app, main

__all__ = ["app", "main"]
