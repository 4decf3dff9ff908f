"""Calibration records: what a plan's probe measured on this machine, read to correct its prediction.

The engine's probe (``inference.calibration``) writes one record per plan fingerprint and torch
version, in ``paths.calibration_dir()``; the planner reads it here, without torch, and adds the
difference between measured and predicted to every later prediction of that plan.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from importlib import metadata
from pathlib import Path

from inference import paths
from inference.hardware import Gpu
from inference.output import write_json
from inference.planning.types import Plan, fingerprint


def gpu_identity(gpu: Gpu) -> str:
    """The part of a plan that names the machine: the GPU's model and its driver."""
    return f"{gpu.name}|{gpu.driver}"


@cache
def torch_version() -> str:
    """The installed torch's version, read from its metadata (importing torch takes seconds)."""
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return "none"


def record_path(plan: Plan) -> Path:
    """Where ``plan``'s record lives: another torch may allocate differently, so it is part of the name."""
    return paths.calibration_dir() / f"{fingerprint(plan)}-torch{torch_version()}.json"


def lookup(plan: Plan) -> dict | None:
    """The stored record for this plan on this machine, or None."""
    try:
        return json.loads(record_path(plan).read_text())
    except (OSError, ValueError):
        return None


def store(plan: Plan, record: dict) -> Path:
    return write_json(record_path(plan), record)


def corrected(plan: Plan) -> Plan:
    """``plan`` with the stored correction applied, if this machine measured one."""
    if plan.device == "cpu" or not plan.gpu_id:
        return plan
    record = lookup(plan)
    if record is None:
        return plan
    delta = int(record["measured_bytes"]) - int(record["predicted_bytes"])
    return replace(plan, memory=replace(plan.memory, calibration=delta), calibrated=True)
