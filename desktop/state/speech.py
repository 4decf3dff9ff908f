"""What Speak says: a selection read as the narration reads it, as the jobs and pauses to play in order.

The text goes through the same reading as Narrate (``read_text``: markup, sentences, numbers in words,
chunks), so ``[voice: NAME]`` and ``[pause 1.5s]`` in a selection are obeyed, not read out, and bad
markup or a name the library lacks stops Speak with Narrate's message before anything is sent. Chunks
in one voice run together as one job, as the narration runner groups them; a voice switch starts the
next job with that voice's recording, and a pause is silence between the jobs around it. Text without
markup is one job in the narrator's voice. No Qt, no worker: the controller sends these.
"""

from __future__ import annotations

from dataclasses import dataclass

from desktop.state.narration import read_text
from inference.narration import book
from inference.narration.script import Pause
from inference.voice_library import Voice, VoiceLibrary
from inference.worker.protocol import SpeakJob


@dataclass(frozen=True)
class Say:
    """Consecutive chunks in one voice: one job."""

    voice: Voice
    texts: tuple[str, ...]

    def job(self, model: str) -> SpeakJob:
        """The job that says it, its chunking pinned to the narration's (as the runner sends chunks)."""
        return SpeakJob(" ".join(self.texts), self.voice.recording, self.voice.transcript, model, chunks=self.texts)


@dataclass(frozen=True)
class Silence:
    """A ``[pause]``: this long between what comes before it and what comes after."""

    seconds: float


def read_speech(text: str, kind: str, narrator: Voice, library: VoiceLibrary, chunk_chars: int) -> list[Say | Silence]:
    """``text`` as the jobs and silences to play, in order; it starts and ends with a ``Say`` (a pause
    before the first words or after the last has nothing to separate, and is left out).

    Raises ``BadInputError`` (``inference.errors``) for bad markup, an unknown voice, or nothing to say.
    """
    script = read_text(text, kind, library, chunk_chars)
    voices = book.voices_for(script, narrator, library)
    parts: list[Say | Silence] = []
    for item in (i for chapter in script.chapters for paragraph in chapter.paragraphs for i in paragraph.items):
        if isinstance(item, Pause):
            if parts:
                parts.append(Silence(item.seconds))
        elif parts and isinstance(last := parts[-1], Say) and last.voice == voices[item.voice]:
            parts[-1] = Say(last.voice, (*last.texts, item.text))
        else:
            parts.append(Say(voices[item.voice], (item.text,)))
    while isinstance(parts[-1], Silence):  # the script has words: a Say comes first
        parts.pop()
    return parts
