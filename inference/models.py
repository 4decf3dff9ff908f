"""Resolving what the user typed (a short name, a hub id, a folder) into a checkpoint to load.

Describing a model needs no weights: a registered name carries its stored sizes (no torch, no
transformers: the planner and the catalogue run on them), a folder has its config.json, and a hub id
needs only config.json. Fetching downloads safetensors weights (never pickles) into the Hugging Face
cache, honouring HF_HOME and HF_HUB_OFFLINE, and works offline once the files are cached.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inference import registry
from inference.checkpoint_files import stored_dtype
from inference.errors import ModelNotFoundError, OfflineModelError
from inference.families import FAMILIES, Family, ModelSpec
from inference.planning.shapes import ModelShape, stored

if TYPE_CHECKING:
    from inference.adapters.base import ModelAdapter

# Weights only as safetensors; configs, processors, tokenizers and chat templates as text.
OFFLINE_MODE = "offline mode is on (HF_HUB_OFFLINE)"
DownloadHook = Callable[[str, str, int, int], None]  # (repo_id, filename, done_bytes, total_bytes)
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken", "tokenizer*"]


@dataclass(frozen=True)
class ModelRef:
    """A model the user named, resolved far enough to plan for it.

    ``facts`` and ``shape`` are what planning reads; for a registered model both come without torch.
    ``adapter`` and ``config`` (torch, transformers) are resolved on first use, by the engine and the
    meta-device measurement. ``read_config`` is a config already read (a folder's, a hub id's, a test's).
    """

    label: str  # what to show: the registered name, hub id or folder
    family: str
    spec: ModelSpec | None = None
    hub_id: str | None = None
    local_path: Path | None = None
    read_config: Any = field(default=None, compare=False, repr=False)

    @property
    def facts(self) -> Family:
        return FAMILIES[self.family]

    @cached_property
    def adapter(self) -> ModelAdapter:
        return registry.adapter_for_family(self.family)

    @cached_property
    def config(self) -> Any:
        """The transformers config (built for a registered model, read for a folder or hub id)."""
        return self.read_config if self.read_config is not None else self.spec.config()

    @cached_property
    def shape(self) -> ModelShape:
        """Sizes stored for a registered model; measured on the meta device (torch) for anything else."""
        if self.spec is not None and self.read_config is None and self.spec.name in stored():
            return stored()[self.spec.name]
        from inference.planning.measure import measure

        return measure(self.adapter, self.config)

    @property
    def checkpoint_dtype(self) -> str | None:
        """The dtype the checkpoint's weights are stored in: a folder's from its safetensors headers, a
        registered model's as registered; None when not known before the download (another hub id)."""
        if self.local_path is not None:
            return stored_dtype(self.local_path)
        return self.spec.checkpoint_dtype if self.spec is not None else None


def describe(model: str) -> ModelRef:
    """Resolve a name, hub id or folder without downloading weights."""
    path = Path(model).expanduser()
    if path.exists() or model.startswith((".", "/", "~")):
        return _describe_folder(path)
    spec = registry.specs().get(model)
    if spec is not None:
        return ModelRef(spec.name, spec.family, spec, spec.hub_id)
    if model.count("/") == 1:
        spec = registry.spec_for_hub_id(model)
        if spec is not None:
            return ModelRef(model, spec.family, spec, model)
        config_dir = _download(model, ["config.json"])
        return ModelRef(model, _family_for(config_dir, model), None, model, None, _read_config(config_dir))
    raise ModelNotFoundError(f"Unknown model '{model}'. Registered models: {', '.join(registry.specs())}; "
                             "or give a Hugging Face hub id (owner/name) or a local folder.")


def fetch(ref: ModelRef, progress: DownloadHook | None = None) -> Path:
    """The folder holding the model's files, downloading them (and its companion repos) first if needed.

    ``progress(repo_id, filename, done_bytes, total_bytes)`` hears every file being downloaded, from
    huggingface_hub's own progress hooks; an exception it raises (a cancel) stops the download and
    leaves the cache as huggingface_hub leaves it: finished files kept, the partial one deleted, and
    the snapshot not marked complete, so the next run downloads the rest.
    """
    if ref.local_path is not None:
        return ref.local_path
    assert ref.hub_id is not None
    needed = hub_repos(ref)
    folder = _download(ref.hub_id, ALLOW_PATTERNS, needed, progress)
    for companion in companion_repos(folder):
        _download(companion, ALLOW_PATTERNS, needed, progress)
    return folder


def is_cached(ref: ModelRef) -> bool:
    """Whether ``fetch`` would find everything in the cache (no download stage needed)."""
    if ref.local_path is not None:
        return True
    assert ref.hub_id is not None
    folder = _cached(ref.hub_id, ALLOW_PATTERNS)
    return folder is not None and all(_cached(c, ALLOW_PATTERNS) is not None for c in companion_repos(folder))


def check_can_download(ref: ModelRef) -> None:
    """Raise the offline advice now if offline mode forbids downloading what is not cached."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE and not is_cached(ref):
        raise OfflineModelError(_offline_message(hub_repos(ref), OFFLINE_MODE))


def hub_repos(ref: ModelRef) -> list[str]:
    """Every hub repo the model needs: its own, then its companions (from its cached processor config if
    there is one, else from the registry), for download advice that is complete before anything is cached."""
    if ref.hub_id is None:
        return []
    folder = _cached(ref.hub_id, ["processor_config.json"])
    companions = companion_repos(folder) if folder is not None else []
    if not companions and ref.spec is not None:
        companions = list(ref.spec.companions)
    return [ref.hub_id, *companions]


def companion_repos(folder: Path) -> list[str]:
    """Hub repos a checkpoint's processor loads from elsewhere (Pocket TTS's codec, say).

    Fetching them with the main repo means one download up front and a model that then works
    offline, instead of a second download hidden inside the first load.
    """
    config = folder / "processor_config.json"
    if not config.is_file():
        return []
    found: list[str] = []

    def visit(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key.endswith("name_or_path") and isinstance(value, str) and value.count("/") == 1 \
                        and not (folder / value).exists() and not Path(value).exists():
                    found.append(value)
                visit(value)

    visit(json.loads(config.read_text()))
    return sorted(set(found))


def _describe_folder(path: Path) -> ModelRef:
    if not path.is_dir():
        raise ModelNotFoundError(f"Model folder {path} does not exist.")
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"Folder {path} holds no model: it has no config.json.")
    return ModelRef(str(path), _family_for(path, str(path)), None, None, path, _read_config(path))


def _read_config(folder: Path) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(folder)


def _family_for(folder: Path, label: str) -> str:
    model_type = json.loads((folder / "config.json").read_text()).get("model_type", "")
    family = registry.family_for_model_type(model_type)
    if family is None:
        supported = ", ".join(sorted(f.model_type for f in FAMILIES.values()))
        raise ModelNotFoundError(f"Model {label} is a '{model_type}' model, which Vesper cannot run; "
                                 f"supported model types: {supported}.")
    return family


def _cached(hub_id: str, patterns: list[str]) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(hub_id, allow_patterns=patterns, local_files_only=True))
    except LocalEntryNotFoundError:  # also an incomplete snapshot (a download that was cancelled)
        return None


def _download(hub_id: str, patterns: list[str], needed: list[str] | None = None,
              progress: DownloadHook | None = None) -> Path:
    """Files of a hub repo from the cache, or downloaded; clear errors for offline and missing repos.

    ``needed`` are all the repos the model needs, for the offline advice.
    """
    import httpx2  # huggingface_hub's HTTP client: an unreachable hub raises its transport errors
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    folder = _cached(hub_id, patterns)
    if folder is not None:
        return folder
    needed = needed or [hub_id]
    if constants.HF_HUB_OFFLINE:
        raise OfflineModelError(_offline_message(needed, OFFLINE_MODE))
    try:
        return _download_files(hub_id, patterns, progress)
    except GatedRepoError as exc:
        raise ModelNotFoundError(f"Model {hub_id} is gated on the hub: accept its terms on huggingface.co and run "
                                 "`hf auth login`, then try again.") from exc
    except RepositoryNotFoundError as exc:
        raise ModelNotFoundError(f"Model {hub_id} does not exist on the Hugging Face hub.") from exc
    except (LocalEntryNotFoundError, OSError, httpx2.TransportError) as exc:  # no network, no DNS, no answer
        raise OfflineModelError(_offline_message(needed, "the hub cannot be reached")) from exc


def _download_files(hub_id: str, patterns: list[str], progress: DownloadHook | None) -> Path:
    """Download file by file, so each one reports its own bytes, then let ``snapshot_download`` finish.

    ``snapshot_download`` aggregates its files' progress into one bar, so the files are fetched first
    with ``hf_hub_download`` at the resolved commit (which records no branch ref); the closing
    ``snapshot_download`` finds them all cached and only then writes the ref and the tree listing that
    mark the snapshot complete.
    """
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils import filter_repo_objects

    api = HfApi()
    commit = api.repo_info(hub_id).sha
    files = [f for f in api.list_repo_tree(hub_id, recursive=True, revision=commit) if isinstance(f, RepoFile)]
    for file in filter_repo_objects(files, allow_patterns=patterns, key=lambda f: f.path):
        hook = None if progress is None else functools.partial(_FileProgress, progress, hub_id, file.path)
        if progress is not None:
            progress(hub_id, file.path, 0, file.size)
        hf_hub_download(hub_id, file.path, revision=commit, tqdm_class=hook)
        if progress is not None:
            progress(hub_id, file.path, file.size, file.size)
    return Path(snapshot_download(hub_id, allow_patterns=patterns))


class _FileProgress:
    """What huggingface_hub's ``http_get`` calls a progress bar: it reports to ``DownloadHook`` instead."""

    def __init__(self, report: DownloadHook, repo_id: str, filename: str, total: int | None = None,
                 initial: int = 0, **_: object) -> None:
        self.report, self.repo_id, self.filename = report, repo_id, filename
        self.total, self.n = total or 0, initial

    def __enter__(self) -> _FileProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def update(self, n: int | float | None = 1) -> None:
        self.n += int(n or 0)
        self.report(self.repo_id, self.filename, self.n, self.total)

    def close(self) -> None:
        pass


def _offline_message(repos: list[str], why: str) -> str:
    commands = " and ".join(f"`hf download {repo}`" for repo in repos)
    return (f"Model {repos[0]} is not downloaded and {why}. Connect to the internet once to download it "
            f"(or run {commands}), or pass --model /path/to/a/local/model/folder.")
