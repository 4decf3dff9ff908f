"""Turning what the user typed, piped or pasted into plain text a tokenizer can read.

Text arrives as bytes (standard input, a file), as a command-line argument (which Python decodes with
``surrogateescape``, so undecodable bytes survive as lone surrogates) or as a string from the GUI. A
tokenizer given a lone surrogate or a control character either fails deep inside the worker or reads
something nobody wrote, so everything goes through here first: UTF-8 (a byte-order mark is accepted) or
UTF-16 with its byte-order mark, anything else refused with the offset and line of the first bad byte;
control characters other than newline and tab dropped. Torch-free: the client and the GUI use it.
"""

from __future__ import annotations

import codecs
import os
import unicodedata

from inference.errors import BadInputError

_KEPT_CONTROLS = frozenset("\n\t")


def decode_text(data: bytes, source: str = "The text") -> str:
    """``data`` as plain text, or ``BadInputError`` naming the first byte that is not UTF-8/UTF-16."""
    utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0  # "utf-16" reads its own mark
    encoding = "utf-16" if utf16 else "utf-8"
    try:
        text = data[skip:].decode(encoding)
    except UnicodeDecodeError as exc:
        offset = skip + exc.start
        line = data[skip:offset].decode(encoding, errors="replace").count("\n") + 1
        raise BadInputError(
            f"{source} is not valid {'UTF-16' if utf16 else 'UTF-8'}: byte 0x{data[offset]:02x} at offset {offset} "
            f"(line {line}) cannot be read; give it as UTF-8 (or UTF-16 with a byte-order mark).") from None
    return clean_text(text, source)


def from_argument(argument: str, source: str = "The text argument") -> str:
    """A command-line argument as plain text: bytes the locale could not decode are refused like bad input."""
    return decode_text(os.fsencode(argument), source)


def clean_text(text: str, source: str = "The text") -> str:
    """``text`` without control characters; a lone surrogate is refused.

    Newline and tab stay, a carriage return becomes a newline, the other whitespace controls a space.
    Strings from the GUI or a job file never went through ``decode_text``; a lone surrogate in one cannot
    be encoded for any tokenizer, so it is refused at its position.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        line = text[: exc.start].count("\n") + 1
        raise BadInputError(f"{source} holds an invalid character (a lone surrogate, U+{ord(text[exc.start]):04X}) "
                            f"at character {exc.start} (line {line}); remove it and try again.") from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return "".join(_plain_char(ch) for ch in text)


def _plain_char(ch: str) -> str:
    """A control character dropped, or a space where it separated words (form feed, vertical tab)."""
    if ch in _KEPT_CONTROLS or unicodedata.category(ch) != "Cc":
        return ch
    return " " if ch.isspace() else ""
