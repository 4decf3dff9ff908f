"""User-facing errors.

Every error a user can cause (bad text, a missing recording, an unknown model, no network) is a
``VesperError`` whose message is one complete sentence that says what to do. The CLI prints it on
one line and exits non-zero; the worker forwards it to the GUI unchanged.
"""

from __future__ import annotations


class VesperError(Exception):
    """An error caused by the user's input or environment, with a message fit to show as is."""


class BadInputError(VesperError):
    """The text, the reference recording or an option is unusable."""


class ModelNotFoundError(VesperError):
    """The model name, hub id or folder does not resolve to a loadable checkpoint."""


class OfflineModelError(ModelNotFoundError):
    """The model is not in the local cache and the hub cannot be reached (or offline mode is on)."""


class HardwareSpecError(VesperError):
    """A hardware preset name or JSON description is unknown or malformed."""
