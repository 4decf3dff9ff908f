"""Narration: a text, a Markdown file or an EPUB in, a finished chaptered audiobook out (torch-free).

The CLI (``vesper narrate``) and the desktop app both drive this package; neither holds narration
logic of its own. The flow is one direction: source -> ``Script`` (chapters, paragraphs, chunks to
speak, pauses) -> project (one audio file per chunk, resumable) through the worker client ->
assembly, mastering and export.
"""
