"""Byte sizes for people: the one formatter every command, plan reason and message uses."""

from __future__ import annotations

MiB = 1024**2
GiB = 1024**3


def gib(n: int | float) -> str:
    """``n`` bytes as GiB with two decimals ("4.98 GiB"): plans are compared at that precision."""
    return f"{n / GiB:.2f} GiB"
