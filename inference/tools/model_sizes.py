"""Write ``inference/model_sizes.json``: every registered model's shape, measured on the meta device.

Run ``python -m inference.tools.model_sizes`` after adding a model or changing an adapter's components;
``tests/test_model_sizes.py`` fails until the file matches the measurement again, so it cannot drift.
``--check`` only compares (exit status 1 when the file is out of date).
"""

from __future__ import annotations

import argparse
import json
import sys

from inference import registry
from inference.planning.measure import measure
from inference.planning.shapes import STORE


def measured() -> dict[str, dict]:
    """Registered name -> shape, as the meta device measures it now."""
    return {name: measure(registry.adapter_for_family(spec.family), spec.config()).to_dict()
            for name, spec in registry.specs().items()}


def render(shapes: dict[str, dict]) -> str:
    return json.dumps(shapes, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if the file is out of date")
    args = parser.parse_args(argv)
    text = render(measured())
    if args.check:
        current = STORE.read_text() if STORE.exists() else ""
        print("up to date" if current == text else f"{STORE} is out of date: run python -m inference.tools.model_sizes")
        return 0 if current == text else 1
    STORE.write_text(text)
    print(f"wrote {STORE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
