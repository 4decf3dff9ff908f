"""The models Vesper offers, for the GUI and the CLI, without torch: what each is, how big, whether it
is downloaded, and where it would run on a given machine.

Everything here reads stored facts (``inference.families``, ``inference/model_sizes.json``) and the
Hugging Face cache on disk; nothing is downloaded and neither torch nor transformers is imported for a
registered model. ``preview`` plans for any ``Hardware`` (this machine, a preset, a JSON description),
so the GUI can show before a download whether a model fits and how.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from inference import registry, speed
from inference.errors import VesperError
from inference.families import FAMILIES, ModelSpec
from inference.hardware import Hardware
from inference.models import describe
from inference.planner import Plan, Workload, candidates
from inference.planning.shapes import stored


@dataclass(frozen=True)
class Entry:
    """One registered model as the GUI lists it.

    ``download_bytes`` is an estimate (``download_estimated``): the weights' elements at the dtype the
    hub checkpoint stores (``ModelSpec.checkpoint_dtype``), tokenizer and config files left out.
    ``cached`` is None when the cache was not looked at.
    """

    name: str
    hub_id: str
    family: str
    description: str
    parameters: int
    download_bytes: int
    download_estimated: bool
    repos: tuple[str, ...]  # the hub repos a download fetches (the model and its companions)
    sample_rate: int
    needs_transcript: bool
    cached: bool | None = None


def models(check_cache: bool = True, cache_dir: Path | None = None) -> list[Entry]:
    """Every registered model, in registration order; ``check_cache`` scans the Hugging Face cache."""
    present = cached_repos(cache_dir) if check_cache else None
    return [_entry(spec, present) for spec in registry.specs().values()]


def entry(name: str, check_cache: bool = True, cache_dir: Path | None = None) -> Entry:
    """The registered model ``name`` (``KeyError`` if there is none)."""
    return _entry(registry.specs()[name], cached_repos(cache_dir) if check_cache else None)


def preview(model: str, hardware: Hardware, workload: Workload = Workload()) -> list[Plan]:
    """The plans ``model`` would get on ``hardware``, fastest first (``VesperError`` if none fits).

    ``model`` is a registered name (no torch), a hub id or a folder (those are measured on the meta
    device, which imports torch).
    """
    return candidates(describe(model), hardware, workload)


def cached_repos(cache_dir: Path | None = None) -> set[str]:
    """Hub model repos with safetensors weights in the Hugging Face cache (``cache_dir``, default the
    user's, as huggingface_hub finds it); read from disk, no network."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return set()
    return {repo.repo_id for repo in info.repos if repo.repo_type == "model"
            and any(f.file_name.endswith(".safetensors") for rev in repo.revisions for f in rev.files)}


def _entry(spec: ModelSpec, present: set[str] | None) -> Entry:
    shape = stored()[spec.name]
    family = FAMILIES[spec.family]
    repos = (spec.hub_id, *spec.companions)
    cached = None if present is None else all(r in present for r in repos)
    return Entry(spec.name, spec.hub_id, spec.family, spec.description, shape.parameters,
                 shape.at(spec.checkpoint_dtype).total_bytes, True, repos, family.sample_rate,
                 family.needs_transcript, cached)


class Fit(str, enum.Enum):
    """How a model fits a machine, best first: what ``vesper models`` and the GUI's plan panel show."""

    FITS = "fits fully"
    OFFLOAD = "needs offload"
    TOO_SLOW = "too slow for real time"
    NO_FIT = "does not fit"


RESIDENT_LEVELS = ("resident", "codec-cpu", "cpu")  # every weight where it computes: nothing crosses a link


@dataclass(frozen=True)
class Verdict:
    """One registered model on one machine: whether and how it fits, its predicted peaks and speed.

    ``plan`` is None when nothing fits (``why`` then holds the refusal); ``real_time_factor`` is the
    predicted seconds of decoding per second of audio (``inference.speed``; below 1 is faster than real
    time). Peaks are the plan's predictions in bytes: VRAM (0 on the CPU) and host RAM held.
    """

    model: str
    fit: Fit
    level: str
    device: str
    dtype: str
    peak_vram_bytes: int
    peak_ram_bytes: int
    real_time_factor: float | None
    why: str
    plan: Plan | None = None

    def to_dict(self) -> dict:
        return {"model": self.model, "verdict": self.fit.value, "level": self.level, "device": self.device,
                "dtype": self.dtype, "peak_vram_bytes": self.peak_vram_bytes, "peak_ram_bytes": self.peak_ram_bytes,
                "real_time_factor": self.real_time_factor, "why": self.why}


def verdicts(hardware: Hardware, workload: Workload = Workload()) -> list[Verdict]:
    """Every registered model's verdict on ``hardware``, in registration order, from stored sizes alone
    (no torch, no download): the one source of the CLI's ``vesper models`` and the GUI's plan panel."""
    return [verdict(name, hardware, workload) for name in registry.specs()]


def verdict(model: str, hardware: Hardware, workload: Workload = Workload()) -> Verdict:
    """The verdict for one registered model (``KeyError`` for a name that is not registered)."""
    spec = registry.specs()[model]
    try:
        plan = candidates(describe(model), hardware, workload)[0]
    except VesperError as exc:
        return Verdict(model, Fit.NO_FIT, "", "", "", 0, 0, None, str(exc))
    gpu = hardware.gpu
    rtf = speed.real_time_factor(plan, spec.family, gpu.bandwidth_gbps if gpu else 0.0,
                                 gpu.pinned_bandwidth_gbps if gpu else 0.0)
    fit = Fit.FITS if plan.level in RESIDENT_LEVELS and not plan.from_disk else Fit.OFFLOAD
    if rtf > 1:
        fit = Fit.TOO_SLOW
    where = f"{plan.level} on {plan.device}, {plan.dtype}" + (f" computed in {plan.compute_dtype}"
                                                             if plan.compute_dtype else "")
    return Verdict(model, fit, plan.level, plan.device, plan.dtype, plan.predicted_peak_bytes, plan.ram_needed_bytes,
                   round(rtf, 3), where, plan)
