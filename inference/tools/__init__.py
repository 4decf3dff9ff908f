"""Developer tools run as modules (``python -m inference.tools.NAME``); nothing at run time imports them."""
