"""``python -m vIOP``: the command line lives in :mod:`vIOP.cli.main`."""

from __future__ import annotations

import sys

from vIOP.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
