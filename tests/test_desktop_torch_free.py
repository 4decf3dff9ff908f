"""The desktop app never imports torch: every module under desktop/ loads in a fresh interpreter without it."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

MODULES = sorted(
    ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
    for path in (REPO / "desktop").rglob("*.py"))


def test_every_desktop_module_imports_without_torch():
    assert "desktop.main_window" in MODULES and "desktop.bridge" in MODULES
    code = (f"import importlib, sys\nfor name in {MODULES!r}:\n    importlib.import_module(name)\n"
            "loaded = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)
