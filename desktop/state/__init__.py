"""Plain-Python models of what the window shows (no Qt, no torch): tested on their own, drawn by widgets."""
