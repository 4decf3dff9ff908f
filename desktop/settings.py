"""The window's remembered choices, through QSettings behind one enum of keys with typed getters.

Only the window's own state lives here (geometry, last voice/model/export format); options shared with
the command line (VRAM limit, low latency, chunk length) are ``inference.settings``, and the user's
data (voices, projects) lives in the folders ``inference.paths`` names. ``VESPER_HOME`` (tests, portable installs)
moves the settings file under it too, so a test never reads or writes the user's real settings.
"""

from __future__ import annotations

import enum
import os

from PySide6.QtCore import QByteArray, QSettings

from inference.paths import APP, HOME_ENV, config_dir


class Key(str, enum.Enum):
    GEOMETRY = "window/geometry"
    WINDOW_STATE = "window/state"
    LAST_VOICE = "choices/voice"
    LAST_MODEL = "choices/model"
    LAST_EXPORT_FORMAT = "choices/export_format"
    LAST_EXPORT_DIR = "choices/export_dir"


DEFAULTS: dict[Key, object] = {
    Key.GEOMETRY: QByteArray(),
    Key.WINDOW_STATE: QByteArray(),
    Key.LAST_VOICE: "",
    Key.LAST_MODEL: "",  # none yet: the user settings' default model
    Key.LAST_EXPORT_FORMAT: "M4B",
    Key.LAST_EXPORT_DIR: "",
}


class Settings:
    """Typed access to the window's QSettings."""

    def __init__(self, store: QSettings | None = None) -> None:
        self._store = store or _default_store()

    def text(self, key: Key) -> str:
        return str(self._store.value(key.value, DEFAULTS[key]))

    def blob(self, key: Key) -> QByteArray:
        value = self._store.value(key.value, DEFAULTS[key])
        return value if isinstance(value, QByteArray) else QByteArray()

    def set(self, key: Key, value: object) -> None:
        self._store.setValue(key.value, value)

    def sync(self) -> None:
        self._store.sync()


def _default_store() -> QSettings:
    if os.environ.get(HOME_ENV):
        return QSettings(str(config_dir() / "desktop.ini"), QSettings.Format.IniFormat)
    return QSettings(APP, APP)
