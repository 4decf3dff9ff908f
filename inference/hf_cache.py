"""Which models are in the Hugging Face cache, and removing one: huggingface_hub's own cache scan and
delete strategy, so Vesper never guesses at the cache's layout. Torch-free (the model manager uses it).
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import scan_cache_dir
from huggingface_hub.errors import CacheNotFound


def cached_models(cache_dir: Path | None = None) -> dict[str, int]:
    """Model repo id -> bytes on disk, for every model repo in the cache (``HF_HOME`` unless given)."""
    try:
        info = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return {}
    return {repo.repo_id: repo.size_on_disk for repo in info.repos if repo.repo_type == "model"}


def remove_model(repo_id: str, cache_dir: Path | None = None) -> int:
    """Delete every cached revision of ``repo_id``; the bytes freed (0 when it was not cached)."""
    try:
        info = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return 0
    revisions = [rev.commit_hash for repo in info.repos if repo.repo_id == repo_id and repo.repo_type == "model"
                 for rev in repo.revisions]
    if not revisions:
        return 0
    strategy = info.delete_revisions(*revisions)
    strategy.execute()
    return strategy.expected_freed_size
