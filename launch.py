"""Start Vesper: ``python launch.py`` opens the window, ``python launch.py COMMAND ...`` runs a command (``--help``)."""

from __future__ import annotations

import sys

from inference.cli import main

if __name__ == "__main__":
    sys.exit(main())
