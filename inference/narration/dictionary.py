"""A project's pronunciation dictionary: whole words (or phrases) respelled before synthesis.

Models guess names and jargon; a respelling ("Siobhan = shi-VAWN") makes them say it right. The file
has one ``word = respelling`` entry a line, ``#`` starts a comment. Entries match whole words,
ignoring case; a word in double quotes (``"US" = you ess``) matches that exact case only, and
exact-case entries win over the others.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from inference.errors import BadInputError


@dataclass(frozen=True)
class Dictionary:
    """``any_case`` keys are case-folded; ``exact`` keys match as written."""

    any_case: Mapping[str, str] = field(default_factory=dict)
    exact: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "any_case", {k.casefold(): v for k, v in self.any_case.items()})
        object.__setattr__(self, "_pattern", _compile(self.exact, self.any_case))

    def apply(self, text: str) -> str:
        """``text`` with every whole-word entry replaced by its respelling (one pass: no re-matching)."""
        pattern: re.Pattern[str] | None = self._pattern  # type: ignore[attr-defined]
        if pattern is None:
            return text
        return pattern.sub(self._respell, text)

    def _respell(self, match: re.Match[str]) -> str:
        if match.group("exact") is not None:
            return self.exact[match.group("exact")]
        return self.any_case[match.group("any").casefold()]

    def __bool__(self) -> bool:
        return bool(self.exact or self.any_case)


def _compile(exact: Mapping[str, str], any_case: Mapping[str, str]) -> re.Pattern[str] | None:
    """One alternation, longest entries first so a phrase wins over a word inside it."""
    if not exact and not any_case:
        return None

    def alternation(words) -> str:
        return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) or r"(?!x)x"

    return re.compile(rf"(?<!\w)(?:(?P<exact>{alternation(exact)})|(?i:(?P<any>{alternation(any_case)})))(?!\w)")


def parse_dictionary(text: str, name: str = "the dictionary") -> Dictionary:
    """Entries from the file format above; a malformed or repeated entry names its line."""
    exact: dict[str, str] = {}
    any_case: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        word, sep, respelling = (part.strip() for part in line.partition("="))
        quoted = len(word) >= 2 and word[0] == word[-1] == '"'
        word = word[1:-1].strip() if quoted else word
        if not sep or not word or not respelling:
            raise BadInputError(f"Line {number} of {name} is not an entry: write it as word = respelling.")
        table, key = (exact, word) if quoted else (any_case, word.casefold())
        if key in table:
            raise BadInputError(f"Line {number} of {name} repeats {word!r}: keep one entry for it.")
        table[key] = respelling
    return Dictionary(any_case=any_case, exact=exact)


def load_dictionary(path: Path | str) -> Dictionary:
    """Read a dictionary file (UTF-8)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"Cannot read the dictionary {path.name} ({exc}): give a UTF-8 text file.") from exc
    return parse_dictionary(text, path.name)
