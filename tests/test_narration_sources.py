"""Reading sources into chapters (inference.narration.sources) through build_script."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from ebooklib import epub

from inference.errors import BadInputError
from inference.narration.build import build_script
from inference.narration.sources import read_source

BOOK_MD = """---
title: The Long Road
author: Ann Writer
---
# The Long Road

A note before the first chapter.

## Chapter One

It began *quietly*, with a [link](https://example.com) and `code`.
The second line of the same paragraph.

- a list item is a paragraph too

```python
print("skipped unless read_code")
```

### A subsection stays in its chapter

More words.

| Name | Age |
|------|-----|
| Ann  | 30  |

## Chapter Two

The end.
"""


def _texts(chapter):
    return [c.text for c in chapter.chunks]


def test_markdown_book_has_a_chapter_per_heading_with_titles():
    script = build_script(BOOK_MD, kind="markdown", normalize=False)
    assert (script.title, script.author) == ("The Long Road", "Ann Writer")
    assert [c.title for c in script.chapters] == ["The Long Road", "Chapter One", "Chapter Two"]
    one = script.chapters[1]
    assert _texts(one)[0] == "Chapter One"  # the heading is read
    assert "It began quietly, with a link and code. The second line of the same paragraph." in _texts(one)
    assert "a list item is a paragraph too" in _texts(one)
    assert "A subsection stays in its chapter" in _texts(one)
    assert _texts(one)[-2:] == ["Name, Age", "Ann, 30"]  # a table row reads as one paragraph
    assert not any("print" in t for t in _texts(one))
    assert _texts(script.chapters[2]) == ["Chapter Two", "The end."]


def test_markdown_code_blocks_are_read_when_asked():
    script = build_script(BOOK_MD, kind="markdown", normalize=False, read_code=True)
    assert any('print("skipped unless read_code")' in t for t in _texts(script.chapters[1]))


def test_markdown_without_headings_is_one_chapter_named_after_the_file(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("First paragraph.\n\nSecond **bold** paragraph.\n")
    script = build_script(path)
    assert [c.title for c in script.chapters] == ["notes"]
    assert _texts(script.chapters[0]) == ["First paragraph.", "Second bold paragraph."]


def test_markdown_title_comes_from_a_lone_first_h1():
    script = build_script("# My Title\n\nText.\n\n## Part\n\nMore.\n", kind="markdown")
    assert script.title == "My Title"
    assert [c.title for c in script.chapters] == ["My Title", "Part"]


def test_plain_text_paragraphs_at_blank_lines_with_their_lines(tmp_path):
    path = tmp_path / "story.txt"
    path.write_text("First line\nstill first.\n\n\n  Second paragraph.\n")
    script = build_script(path)
    paragraphs = script.chapters[0].paragraphs
    assert [p.chunks[0].text for p in paragraphs] == ["First line still first.", "Second paragraph."]
    assert [(p.span.line, p.span.column) for p in paragraphs] == [(1, 1), (5, 3)]


def _epub(path: Path, *, chapters: list[tuple[str, str, str]], toc: bool = True) -> Path:
    """A real EPUB written by ebooklib: chapters are (file name, TOC title, XHTML body)."""
    book = epub.EpubBook()
    book.set_identifier("vesper-test")
    book.set_title("A Built Book")
    book.set_language("en")
    book.add_author("Bea Author")
    items = []
    for name, title, body in chapters:
        item = epub.EpubHtml(title=title, file_name=name, lang="en")
        item.content = f"<html><body>{body}</body></html>"
        book.add_item(item)
        items.append(item)
    links = [epub.Link(item.file_name, title, item.file_name.split(".")[0])
             for item, (_, title, _) in zip(items, chapters, strict=True)]
    book.toc = links if toc else []
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = list(reversed(items))  # spine order differs from the order the files were added in
    epub.write_epub(str(path), book)
    return path


def test_epub_follows_the_spine_with_toc_titles_and_metadata(tmp_path):
    path = _epub(tmp_path / "book.epub", chapters=[
        ("one.xhtml", "The First", "<h1>Heading One</h1><p>Alpha text.</p><p>Beta <em>text</em>"
                                   '<a epub:type="noteref" href="#n1">1</a>.<br/></p>'
                                   '<aside epub:type="footnote" id="n1"><p>A <b>note</b>.</p></aside>'),
        ("two.xhtml", "The Second", "<h2>Heading Two</h2><p>Gamma [1] text [sic].</p><script>x()</script>"),
    ])
    script = build_script(path)
    assert (script.title, script.author, script.language) == ("A Built Book", "Bea Author", "en")
    assert [c.title for c in script.chapters] == ["The Second", "The First"]
    assert _texts(script.chapters[0]) == ["Heading Two", "Gamma text [sic]."]  # book text: brackets are not markup
    assert _texts(script.chapters[1]) == ["Heading One", "Alpha text.", "Beta text."]


def test_epub_without_toc_titles_chapters_by_their_first_heading(tmp_path):
    path = _epub(tmp_path / "book.epub", toc=False, chapters=[
        ("one.xhtml", "", "<h1>Only Heading</h1><p>Some text.</p>"),
        ("two.xhtml", "", "<p>No heading here.</p>"),
    ])
    script = build_script(path)
    assert [c.title for c in script.chapters] == ["Chapter 1", "Only Heading"]
    assert _texts(script.chapters[0]) == ["Chapter one", "No heading here."]  # no heading: its title is read
    assert _texts(script.chapters[1]) == ["Only Heading", "Some text."]


def test_broken_epub_is_one_line(tmp_path):
    path = tmp_path / "broken.epub"
    path.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    with pytest.raises(BadInputError, match="not a readable EPUB") as info:
        build_script(path)
    assert "\n" not in str(info.value)


def test_epub_zip_without_a_package_is_one_line(tmp_path):
    path = tmp_path / "empty.epub"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/epub+zip")
    with pytest.raises(BadInputError, match="not a readable EPUB"):
        build_script(path)


def _with_encryption(path: Path, algorithm: str, uri: str) -> Path:
    xml = ('<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
           'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData>'
           f'<enc:EncryptionMethod Algorithm="{algorithm}"/>'
           f'<enc:CipherData><enc:CipherReference URI="{uri}"/></enc:CipherData>'
           '</enc:EncryptedData></encryption>')
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("META-INF/encryption.xml", xml)
    return path


def test_drm_protected_epub_is_refused_in_one_line(tmp_path):
    path = _with_encryption(_epub(tmp_path / "drm.epub", chapters=[("one.xhtml", "One", "<p>Secret.</p>")]),
                            "http://www.w3.org/2001/04/xmlenc#aes128-cbc", "EPUB/one.xhtml")
    with pytest.raises(BadInputError, match="DRM-protected") as info:
        build_script(path)
    assert "\n" not in str(info.value)


def test_font_obfuscation_alone_is_not_drm(tmp_path):
    path = _with_encryption(_epub(tmp_path / "fonts.epub", chapters=[("one.xhtml", "One", "<p>Open text.</p>")]),
                            "http://www.idpf.org/2008/embedding", "EPUB/fonts/a.otf")
    assert _texts(build_script(path).chapters[0]) == ["One", "Open text."]  # the TOC title, read


@pytest.mark.parametrize("data", [b"", b"   \n\t\n  ", "\ufeff  \n".encode(), b"[1] ... !?"])
def test_empty_or_wordless_files_are_one_line(tmp_path, data):
    path = tmp_path / "empty.txt"
    path.write_bytes(data)
    with pytest.raises(BadInputError, match="no words") as info:
        build_script(path)
    assert "\n" not in str(info.value)


def test_binary_file_is_one_line(tmp_path):
    path = tmp_path / "image.txt"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(BadInputError, match="binary"):
        build_script(path)


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(BadInputError, match="Cannot read"):
        build_script(tmp_path / "nowhere.txt")


def test_decoding_honours_byte_order_marks_and_names_a_bad_byte():
    """Decoding is inference.text_input's; a source reads through it (a UTF-16 file's NULs are not binary)."""
    for data in ("\ufeffHéllo.".encode(), "\ufeffHéllo.".encode("utf-16-le"), "\ufeffHéllo.".encode("utf-16-be")):
        assert [b.text for b in read_source(data).chapters[0].blocks] == ["Héllo."]
    with pytest.raises(BadInputError, match="offset 3"):
        read_source(b"abc\xff\xfedef")


def test_bytes_from_standard_input_read_as_text():
    document = read_source(b"One.\n\nTwo.")
    assert [b.text for b in document.chapters[0].blocks] == ["One.", "Two."]


def test_missing_epub_is_one_line(tmp_path):
    with pytest.raises(BadInputError, match="Cannot read"):
        build_script(tmp_path / "nowhere.epub")


def test_plain_text_chapter_lines_start_chapters():
    text = ("THE BOOK\n\nCHAPTER I. The Storm\n\nIt rained.\n\nChapter 2\n\nChapter 2 was sunnier than the first.\n\n"
            "Part Three: Home\n\nWe went home.\n\nEpilogue\n\nThe end.")
    script = build_script(text, normalize=False)
    assert [c.title for c in script.chapters] == ["Chapter 1", "CHAPTER I. The Storm", "Chapter 2", "Part Three: Home",
                                                  "Epilogue"]
    assert _texts(script.chapters[2]) == ["Chapter 2", "Chapter 2 was sunnier than the first."]


def test_plain_text_starting_with_a_chapter_line_has_no_empty_opening():
    script = build_script("Chapter 1\n\nText one.\n\nChapter 2\n\nText two.")
    assert [c.title for c in script.chapters] == ["Chapter 1", "Chapter 2"]
