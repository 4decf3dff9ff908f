"""Defaults shared by the torch side (registry, planner) and the torch-free side (worker protocol, CLI, GUI)."""

DEFAULT_MODEL = "pocket-tts"  # small enough for any laptop, fast on the CPU
DEFAULT_CHUNK_CHARS = 300  # a few sentences: long enough for natural prosody, short enough to plan for
MAX_REFERENCE_SECONDS = 20.0  # read_reference trims recordings to this; the planner sizes voice prompts for it
