"""Where Vesper keeps its files: the one module that knows the folders (torch-free, the GUI uses it).

- cache (re-creatable): calibration records, the plan history;
- data (the user's own, never deleted by Vesper): the voice library (recordings are personal data),
  narration projects by default;
- logs: the rotating log shared by the CLI, the GUI and the worker;
- config: the user's settings file (``inference.settings``).

Model weights live in the Hugging Face cache (``HF_HOME``), which huggingface_hub owns.
``VESPER_HOME`` puts all of them under one folder (tests, portable installs); ``VESPER_CACHE_DIR``
moves the cache alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "vesper"
HOME_ENV = "VESPER_HOME"
CACHE_DIR_ENV = "VESPER_CACHE_DIR"


def _base(kind: str) -> Path | None:
    home = os.environ.get(HOME_ENV)
    return Path(home).expanduser() / kind if home else None


def cache_dir() -> Path:
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return _base("cache") or Path(platformdirs.user_cache_dir(APP, appauthor=False))


def data_dir() -> Path:
    return _base("data") or Path(platformdirs.user_data_dir(APP, appauthor=False))


def log_dir() -> Path:
    return _base("logs") or Path(platformdirs.user_log_dir(APP, appauthor=False))


def config_dir() -> Path:
    return _base("config") or Path(platformdirs.user_config_dir(APP, appauthor=False))


def settings_file() -> Path:
    return config_dir() / "settings.json"


def calibration_dir() -> Path:
    return cache_dir() / "calibration"


def plan_history_path() -> Path:
    return cache_dir() / "plans.json"


def voices_dir() -> Path:
    return data_dir() / "voices"


def projects_dir() -> Path:
    return data_dir() / "projects"


def log_file() -> Path:
    return log_dir() / "vesper.log"
