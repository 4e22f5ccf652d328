"""The meshbridge command line: a thin edge that parses, calls the service layer, maps errors.

Exit codes: 0 success, 1 failure (state store, output, an unexpected error), 2 invalid input.
"""

import gc

# No cyclic garbage collection while the command's modules load: they create many objects and
# no garbage, and the collections cost about a seventh of the start-up time.
_collecting = gc.isenabled()
gc.disable()
try:
    from meshbridge.cli.main import app, main
finally:
    if _collecting:
        gc.enable()

__all__ = ["app", "main"]
