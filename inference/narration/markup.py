"""Narration markup inside a paragraph: ``[pause 1.5s]``, ``[voice: NAME]``, ``[voice]``.

The rules (README, "Narration markup"): a ``[...]`` group is a tag; ``[[`` and ``]]`` are literal
brackets; a group of only numbers (``[1]``, ``[2, 5]``, ``[3-4]``) is a citation mark and is not read.
A voice switch lasts until the next ``[voice: ...]`` or the end of the paragraph; ``[voice]`` goes
back to the narration's voice. Anything else in brackets, an unclosed ``[`` or an unknown voice is an
error naming its line and column, found before anything is generated.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from inference.errors import BadInputError

MAX_PAUSE_SECONDS = 60.0
_CITATION = re.compile(r"\s*\d+(?:\s*[,–-]\s*\d+)*\s*")
_PAUSE = re.compile(r"pause\s+(?P<value>\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>s|ms|sec|seconds?)?", re.I)
_VOICE = re.compile(r"voice(?:\s*:\s*(?P<name>[^\]]*?))?\s*", re.I)
_BRACKETS = re.compile(r"\[\[|\]\]|\[|\]")
_CITATION_MARK = re.compile(r"\s?\[" + _CITATION.pattern + r"\]")


@dataclass(frozen=True)
class Text:
    """Words to speak in one voice; ``offset`` is where they start in the paragraph's text."""

    text: str
    voice: str | None
    offset: int


@dataclass(frozen=True)
class PauseMark:
    seconds: float
    offset: int


class Position:
    """Turns an offset in a paragraph's text into a source line and column for messages."""

    def __init__(self, text: str, line: int, column: int = 1, source_lines: Sequence[str] = ()) -> None:
        self.text, self.line, self.column, self.source_lines = text, line, column, source_lines

    def of(self, offset: int, snippet: str = "") -> tuple[int, int]:
        before = self.text[:offset]
        line = self.line + before.count("\n")
        column = offset - before.rfind("\n") if "\n" in before else self.column + offset
        # The text as read can differ from the source (Markdown emphasis): prefer the snippet's real place.
        if snippet and 0 < line <= len(self.source_lines) and (found := self.source_lines[line - 1].find(snippet)) >= 0:
            column = found + 1
        return line, column


def parse(text: str, position: Position, voices: Collection[str]) -> list[Text | PauseMark]:
    """The paragraph as spoken pieces and pauses, in order. Raises ``BadInputError`` on bad markup."""
    known = {name.casefold(): name for name in voices}
    items: list[Text | PauseMark] = []
    voice: str | None = None
    words: list[str] = []
    start = pos = 0

    def flush(at: int) -> None:
        nonlocal words, start
        spoken = "".join(words)
        if spoken.strip():
            items.append(Text(spoken, voice, start))
        words, start = [], at

    for match in _BRACKETS.finditer(text):
        if match.start() < pos:
            continue
        words.append(text[pos : match.start()])
        token = match.group(0)
        if token in ("[[", "]]", "]"):
            words.append(token[0])
            pos = match.end()
            continue
        close = text.find("]", match.end())
        if close < 0 or "\n" in text[match.end() : close]:  # a tag stays on one line
            line, column = position.of(match.start(), text[match.start() : match.start() + 12])
            raise BadInputError(
                f"Unclosed [ at line {line}, column {column}: close it with ] or write [[ for a literal bracket."
            )
        body, pos = text[match.end() : close], close + 1
        if _CITATION.fullmatch(body):
            continue
        if (pause := _PAUSE.fullmatch(body.strip())) is not None:
            flush(pos)
            items.append(PauseMark(_seconds(pause, position, match.start(), text[match.start() : pos]), match.start()))
        elif (switch := _VOICE.fullmatch(body.strip())) is not None:
            flush(pos)
            voice = _voice(switch.group("name"), known, position, match.start(), text[match.start() : pos])
        else:
            raise _bad_tag(text[match.start() : pos], body, position.of(match.start(), text[match.start() : pos]))
    words.append(text[pos:])
    flush(len(text))
    return items


def drop_citations(text: str) -> str:
    """Text that is not markup (a book's prose) still loses its numeric citation marks: they are not read."""
    return _CITATION_MARK.sub("", text)


def _bad_tag(tag: str, body: str, where: tuple[int, int]) -> BadInputError:
    """A malformed pause or voice tag says how to write it; anything else says what tags exist."""
    at = f"at line {where[0]}, column {where[1]}"
    name = body.strip().split(":")[0].split(" ")[0].lower()
    if name == "pause":
        return BadInputError(f"Malformed pause {tag} {at}: write it like [pause 1.5s] or [pause 500ms].")
    if name == "voice":
        return BadInputError(f"Malformed voice switch {tag} {at}: write it like [voice: NAME], or [voice] to go back.")
    return BadInputError(
        f"Unknown markup {tag} {at}: use [pause 1.5s] or [voice: NAME], or write [[ and ]] for literal brackets."
    )


def _seconds(pause: re.Match[str], position: Position, offset: int, tag: str) -> float:
    value = float(pause.group("value"))
    seconds = value / 1000 if (pause.group("unit") or "s").lower() == "ms" else value
    if not 0 < seconds <= MAX_PAUSE_SECONDS:
        line, column = position.of(offset, tag)
        raise BadInputError(
            f"The pause {tag} at line {line}, column {column} is out of range: "
            f"give between 1 ms and {MAX_PAUSE_SECONDS:g} s."
        )
    return seconds


def _voice(name: str | None, known: dict[str, str], position: Position, offset: int, tag: str) -> str | None:
    if name is None:
        return None
    if not name.strip() or (found := known.get(name.strip().casefold())) is None:
        line, column = position.of(offset, tag)
        names = sorted(known.values())
        listed = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "") or "none yet"
        raise BadInputError(
            f"Unknown voice {name.strip()!r} in {tag} at line {line}, column {column}: "
            f"use a voice from the library ({listed}) or add it first."
        )
    return found
