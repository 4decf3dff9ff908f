"""Vesper's Qt desktop GUI (next wave). It reaches models only through the worker's client API and
never imports torch."""
