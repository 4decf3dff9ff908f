"""The models Vesper offers, for the GUI and the CLI, without torch: what each is, how big, whether it
is downloaded, and where it would run on a given machine.

Everything here reads stored facts (``inference.families``, ``inference/model_sizes.json``) and the
Hugging Face cache on disk; nothing is downloaded and neither torch nor transformers is imported for a
registered model. ``preview`` plans for any ``Hardware`` (this machine, a preset, a JSON description),
so the GUI can show before a download whether a model fits and how.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inference import registry
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
