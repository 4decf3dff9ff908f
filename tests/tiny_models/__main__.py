"""``python -m tests.tiny_models OUT_DIR``: write every family's tiny checkpoint under OUT_DIR."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.tiny_models import build_all


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.tiny_models OUT_DIR", file=sys.stderr)
        return 2
    for family, path in build_all(Path(argv[0])).items():
        print(f"{family}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
