"""Reading the user's text: UTF-8 or UTF-16 with a byte-order mark, control characters dropped, anything
else refused with the offset and line of the first bad byte."""

from __future__ import annotations

import codecs
import os
import subprocess
import sys

import pytest

from inference.errors import BadInputError
from inference.text_input import clean_text, decode_text, from_argument
from tests.conftest import REPO

TEXT = "Naïve café — “quoted”.\nSecond line 😀."


@pytest.mark.parametrize("data", [
    TEXT.encode("utf-8"),
    codecs.BOM_UTF8 + TEXT.encode("utf-8"),
    TEXT.encode("utf-16"),  # with this machine's byte-order mark
    codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"),
    codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"),
])
def test_utf8_and_utf16_with_a_bom_decode(data):
    assert decode_text(data) == TEXT


@pytest.mark.parametrize(("data", "where"), [
    (b"\xff\xfeA", "UTF-16: byte 0x41 at offset 2 (line 1)"),  # odd length after the mark
    (b"Line one.\nLine two, \xe9t\xe9.", "UTF-8: byte 0xe9 at offset 20 (line 2)"),
    (b"\xef\xbb\xbfOK\n\n\xc3(", "UTF-8: byte 0xc3 at offset 7 (line 3)"),
    (TEXT.encode("utf-16-le"), "UTF-8"),  # UTF-16 without its mark is not guessed
])
def test_anything_else_names_the_first_bad_byte(data, where):
    with pytest.raises(BadInputError, match="not valid " + where.replace("(", r"\(").replace(")", r"\)")):
        decode_text(data)


def test_control_characters_are_dropped_newline_and_tab_kept():
    assert clean_text("a\x00b\x07c\x1b[0m\td\r\ne\rf\x0cg\x85h\x7f") == "abc[0m\td\ne\nf g h"


def test_a_lone_surrogate_is_refused_with_its_position():
    with pytest.raises(BadInputError, match=r"U\+D800\) at character 3 \(line 2\)"):
        clean_text("a\nb\ud800c")


def test_an_argument_with_undecodable_bytes_counts_as_bad_bytes():
    assert from_argument("plain ünïcode") == "plain ünïcode"
    with pytest.raises(BadInputError, match="text argument is not valid UTF-8: byte 0xff at offset 2"):
        from_argument(os.fsdecode(b"ab\xffcd"))


def test_text_input_does_not_import_torch():
    code = "import sys, inference.text_input; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
