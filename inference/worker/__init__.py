"""The inference worker: all model work runs in a child process that the GUI and CLI drive by messages.

``client`` (what the GUI and CLI import) and ``protocol`` never import torch, so a CUDA fault, an
out-of-memory error or a leaking library can only ever take down the child, which the client restarts.
``process`` is the child's side. This package imports nothing on purpose: importing the client must
not pull in the worker's heavy modules.
"""
