"""The window's widgets, one per module; each talks to the bridge or to a state object, never to the client."""
