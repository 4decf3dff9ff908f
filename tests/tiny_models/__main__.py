"""``python -m tests.tiny_models OUT_DIR``: every family's tiny checkpoint under OUT_DIR/<family>.

``python -m tests.tiny_models --full-size OUT_DIR [NAME ...]``: every registered model (or the named
ones) at its real size with random weights under OUT_DIR/<name>, built on the GPU when there is one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.tiny_models import build_all


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.tiny_models")
    parser.add_argument("out", type=Path)
    parser.add_argument("names", nargs="*", help="registered models to write at full size (default: all)")
    parser.add_argument("--full-size", action="store_true", help="real configurations, random weights")
    args = parser.parse_args(argv)
    if not args.full_size:
        if args.names:
            parser.error("model names go with --full-size")
        for family, path in build_all(args.out).items():
            print(f"{family}: {path}")
        return 0
    from inference.registry import specs
    from tests.tiny_models.full_size import build_full

    for name in args.names or list(specs()):
        print(f"{name}: {build_full(name, args.out / name)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
