"""The window's remembered choices, through QSettings behind one enum of keys with typed getters.

Only choices live here (geometry, last voice/model/format, worker options); the user's data (voices,
projects) lives in the folders ``inference.paths`` names. ``VESPER_HOME`` (tests, portable installs)
moves the settings file under it too, so a test never reads or writes the user's real settings.
"""

from __future__ import annotations

import enum
import os

from PySide6.QtCore import QByteArray, QSettings

from inference.defaults import DEFAULT_MODEL
from inference.paths import APP, HOME_ENV, data_dir


class Key(str, enum.Enum):
    GEOMETRY = "window/geometry"
    WINDOW_STATE = "window/state"
    LAST_VOICE = "choices/voice"
    LAST_MODEL = "choices/model"
    LAST_EXPORT_FORMAT = "choices/export_format"
    LAST_EXPORT_DIR = "choices/export_dir"
    VRAM_LIMIT_BYTES = "worker/vram_limit_bytes"
    LOW_LATENCY = "worker/low_latency"


DEFAULTS: dict[Key, object] = {
    Key.GEOMETRY: QByteArray(),
    Key.WINDOW_STATE: QByteArray(),
    Key.LAST_VOICE: "",
    Key.LAST_MODEL: DEFAULT_MODEL,
    Key.LAST_EXPORT_FORMAT: "FLAC",
    Key.LAST_EXPORT_DIR: "",
    Key.VRAM_LIMIT_BYTES: 0,
    Key.LOW_LATENCY: False,
}


class Settings:
    """Typed access to the window's QSettings."""

    def __init__(self, store: QSettings | None = None) -> None:
        self._store = store or _default_store()

    def text(self, key: Key) -> str:
        return str(self._store.value(key.value, DEFAULTS[key]))

    def number(self, key: Key) -> int:
        return int(self._store.value(key.value, DEFAULTS[key]))

    def flag(self, key: Key) -> bool:
        value = self._store.value(key.value, DEFAULTS[key])
        return value if isinstance(value, bool) else str(value).lower() == "true"

    def blob(self, key: Key) -> QByteArray:
        value = self._store.value(key.value, DEFAULTS[key])
        return value if isinstance(value, QByteArray) else QByteArray()

    def set(self, key: Key, value: object) -> None:
        self._store.setValue(key.value, value)

    def sync(self) -> None:
        self._store.sync()


def _default_store() -> QSettings:
    if os.environ.get(HOME_ENV):
        return QSettings(str(data_dir() / "settings.ini"), QSettings.Format.IniFormat)
    return QSettings(APP, APP)
