"""``python -m meshbridge_dev.testenv``: the same command as ``scripts/k8s-testenv``."""

import sys

from .cli import main

sys.exit(main())
