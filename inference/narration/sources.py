"""Reading a source (plain text, Markdown, EPUB) into titled chapters of text blocks.

This is the only module that knows file formats. It yields a ``Document``: chapters of ``Block``s,
each one paragraph of readable text with the source line it starts on. What is then said (markup,
sentences, normalisation, dictionary) is decided in ``build``; nothing here knows about chunks.
"""

from __future__ import annotations

import codecs
import posixpath
import re
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

from inference.errors import BadInputError
from inference.text_input import clean_text, decode_text

KINDS = ("text", "markdown", "epub")
_SUFFIX_KINDS = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown", ".epub": "epub"}


@dataclass(frozen=True)
class Block:
    """One paragraph of source text.

    ``markup``: tags are read (the user's own text and Markdown; not a published book's prose, where
    brackets are the author's). ``literal``: read exactly as written, not even citation marks dropped (code).
    """

    text: str
    line: int = 1
    column: int = 1
    markup: bool = True
    literal: bool = False


@dataclass
class SourceChapter:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    chapters: list[SourceChapter]
    title: str = ""
    author: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)  # the source text's lines, to place markup errors


def kind_of(path: Path) -> str:
    """The source kind a file name implies (unknown suffixes read as plain text)."""
    return _SUFFIX_KINDS.get(path.suffix.lower(), "text")


def read_source(source: Path | str | bytes, kind: str | None = None, *, read_code: bool = False) -> Document:
    """Read a file (``Path``), decoded text (``str``) or raw bytes (standard input) into a ``Document``.

    ``kind`` is one of ``KINDS``; by default it follows a path's suffix, and text otherwise.
    """
    name = source.name if isinstance(source, Path) else "the input"
    kind = kind or (kind_of(source) if isinstance(source, Path) else "text")
    if kind not in KINDS:
        raise BadInputError(f"Unknown source kind {kind!r}: use one of {', '.join(KINDS)}.")
    if kind == "epub":
        document = _read_epub(source, name)
    else:
        text = _read_text(source, name)
        stem = source.stem if isinstance(source, Path) else ""
        document = read_markdown(text, stem, read_code=read_code) if kind == "markdown" else read_plain(text, stem)
        document.lines = text.splitlines()
    if not any(ch.isalnum() for chapter in document.chapters for block in chapter.blocks for ch in block.text):
        raise BadInputError(f"{name} has no words to read: give a text with at least one word.")
    return document


def _read_text(source: Path | str | bytes, name: str) -> str:
    """Plain text through ``inference.text_input`` (the one decoder); a binary file is refused first."""
    if isinstance(source, str):
        return clean_text(source, name)
    data = _read_bytes(source, name)
    if b"\x00" in data[:8192] and not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise BadInputError(f"{name} looks like a binary file, not text: give a .txt, .md or .epub file.")
    return decode_text(data, name)


def _read_bytes(source: Path | bytes, name: str) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        return source.read_bytes()
    except OSError as exc:
        raise BadInputError(f"Cannot read {name} ({exc.strerror or exc}): check the path.") from exc


# --- plain text -------------------------------------------------------------------------------------

_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)*")


_NUMBER_WORDS = ("one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
                 "sixteen|seventeen|eighteen|nineteen|twenty")
_CHAPTER_LINE = re.compile(  # the keyword and number, then nothing, a title after . : or a dash, or a Capitalised title
    rf"(?i:chapter|part|book)\s+(?:\d+|[ivxlcdmIVXLCDM]+|(?i:{_NUMBER_WORDS}))\b"
    r"(?:[.:]|\s*[.:—–-]\s*\S.*|\s+[A-Z\"“'][^.!?]*)?|(?i:prologue|epilogue)")


def read_plain(text: str, title: str = "") -> Document:
    """Paragraphs at blank lines. A paragraph that is one short line like "Chapter 3", "CHAPTER IV. The Storm",
    "Part Two" or "Prologue" starts a chapter titled with it (as plain-text books mark them); else one chapter."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    blocks, pos, line = [], 0, 1
    for match in [*_BLANK_LINES.finditer(text), None]:
        end = match.start() if match else len(text)
        piece = text[pos:end]
        stripped = piece.lstrip()
        if stripped.strip():
            lead = piece[: len(piece) - len(stripped)]
            column = len(lead) - lead.rfind("\n")  # 1-based, after any indentation
            blocks.append(Block(stripped.rstrip(), line + lead.count("\n"), column))
        if match:
            line += text[pos : match.end()].count("\n")
            pos = match.end()
    chapters = [SourceChapter(title)]
    for block in blocks:
        if "\n" not in block.text and len(block.text) <= 80 and _CHAPTER_LINE.fullmatch(block.text):
            chapters = chapters if chapters[-1].blocks else chapters[:-1]
            chapters.append(SourceChapter(block.text))
        chapters[-1].blocks.append(block)
    return Document(chapters, title=title)


# --- Markdown ---------------------------------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*\n", re.S)


def read_markdown(text: str, fallback_title: str = "", *, read_code: bool = False) -> Document:
    """Headings make chapters; emphasis, links and inline code read as their text; code blocks are skipped
    unless ``read_code``. Title and author come from YAML-style front matter or a lone first H1.

    The chapter level is the shallowest heading level after the book's title heading; deeper headings are
    read as paragraphs of their chapter. Text before the first chapter heading is an opening chapter.
    """
    from markdown_it import MarkdownIt

    text = text.replace("\r\n", "\n").replace("\r", "\n")
    meta, line_offset = {}, 0
    front = _FRONT_MATTER.match(text)
    if front:
        meta = dict(_front_matter_pairs(front.group(1)))
        line_offset = front.group(0).count("\n")
        text = text[front.end() :]
    parser = MarkdownIt("commonmark").enable(["table", "strikethrough"]).disable("text_join")  # keep escapes apart
    tokens = parser.parse(text)
    blocks = _markdown_blocks(tokens, line_offset, read_code)
    h1s = [b for b, level in blocks if level == 1]
    title = meta.get("title", "")
    if not title and len(h1s) == 1 and blocks and blocks[0][1] == 1:
        title = h1s[0].text
    levels = [level for b, level in blocks if level and not (level == 1 and b.text == title and len(h1s) == 1)]
    chapter_level = min(levels, default=0)
    chapters: list[SourceChapter] = []
    for block, level in blocks:
        if level and level == chapter_level:
            chapters.append(SourceChapter(block.text))
        elif not chapters:
            chapters.append(SourceChapter(title or fallback_title))
        chapters[-1].blocks.append(block)
    extra = {k: v for k, v in meta.items() if k not in ("title", "author")}
    return Document(chapters, title=title or fallback_title, author=meta.get("author", ""), metadata=extra)


def _front_matter_pairs(body: str):
    for raw in body.splitlines():
        key, sep, value = raw.partition(":")
        if sep and key.strip() and not raw[:1].isspace():
            yield key.strip().lower(), value.strip().strip("\"'")


def _markdown_blocks(tokens, line_offset: int, read_code: bool) -> list[tuple[Block, int]]:
    """(block, heading level or 0) for each readable block, in order; a table row is one block."""
    out: list[tuple[Block, int]] = []
    level, line = 0, 1 + line_offset
    row: list[str] | None = None
    for token in tokens:
        if token.map:
            line = token.map[0] + 1 + line_offset
        if token.type == "heading_open":
            level = int(token.tag[1])
        elif token.type == "heading_close":
            level = 0
        elif token.type == "tr_open":
            row, row_line = [], line
        elif token.type == "tr_close" and row is not None:
            if any(row):
                out.append((Block(", ".join(cell for cell in row if cell), row_line), 0))
            row = None
        elif token.type == "inline":
            text = _inline_text(token.children or []).strip()
            if row is not None:
                row.append(text)
            elif text:
                out.append((Block(text, line), level))
        elif token.type in ("fence", "code_block") and read_code and token.content.strip():
            out.append((Block(token.content.strip(), line, markup=False, literal=True), 0))
    return out


def _inline_text(children) -> str:
    """An inline token's words: markup-free text; brackets in inline code or escaped (``\\[``) stay literal
    (doubled for the markup reader); images and inline HTML are not read."""
    parts = []
    for child in children:
        if child.type == "text":
            parts.append(child.content)
        elif child.type == "text_special":  # an escape (a backslash before a bracket) or an entity (&amp;)
            literal = child.info == "escape" and child.content in "[]"
            parts.append(child.content * 2 if literal else child.content)
        elif child.type == "code_inline":
            parts.append(child.content.replace("[", "[[").replace("]", "]]"))
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
    return "".join(parts)


# --- EPUB -------------------------------------------------------------------------------------------

# Font obfuscation (IDPF and Adobe) lists fonts in encryption.xml without hiding any text: not DRM.
_FONT_OBFUSCATION = {"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"}
_XMLENC = "{http://www.w3.org/2001/04/xmlenc#}"


def _read_epub(source: Path | str | bytes, name: str) -> Document:
    """Spine order; chapter titles from the navigation (TOC), else the first heading, else a number.

    Headings are read where they stand, like any paragraph; a page with none has its title read first."""
    import io

    import ebooklib
    from ebooklib import epub

    if isinstance(source, str):
        raise BadInputError("An EPUB must be given as a file or bytes, not text: pass its path.")
    data = _read_bytes(source, name)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            _refuse_drm(archive, name)
        book = epub.read_epub(io.BytesIO(data), options={"ignore_ncx": False})
    except BadInputError:
        raise
    except Exception as exc:  # ebooklib raises bare KeyError/AttributeError/EpubException on broken books
        raise BadInputError(
            f"{name} is not a readable EPUB ({type(exc).__name__}): export it again or convert it with an e-book tool."
        ) from exc
    toc_titles = _toc_titles(book.toc)
    chapters = []
    for idref, *_ in book.spine:
        item = book.get_item_with_id(idref)
        if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT or isinstance(item, epub.EpubNav):
            continue  # the navigation page is the table of contents, not text to read
        page = _HtmlText()
        page.feed(item.get_content().decode("utf-8", errors="replace"))
        page.close()
        if not page.blocks:
            continue
        listed = toc_titles.get(item.get_name()) or toc_titles.get(posixpath.basename(item.get_name()))
        title = listed or page.first_heading or f"Chapter {len(chapters) + 1}"
        # Chapter titles are read (an audiobook says where it is): a page without a heading gets its title read
        # first, so the chapter mark always starts where its title is spoken.
        heard = page.blocks if page.first_heading else [Block(title, markup=False), *page.blocks]
        chapters.append(SourceChapter(title, heard))
    meta = {
        key: ", ".join(value for value, _ in values if value)  # several authors: all of them
        for key in ("title", "creator", "language", "publisher", "date", "identifier")
        if (values := book.get_metadata("DC", key)) and values[0][0]
    }
    title, author = meta.pop("title", ""), meta.pop("creator", "")
    return Document(chapters, title=title, author=author, metadata=meta)


def _refuse_drm(archive: zipfile.ZipFile, name: str) -> None:
    if "META-INF/encryption.xml" not in archive.namelist():
        return
    try:
        root = ElementTree.fromstring(archive.read("META-INF/encryption.xml"))
    except ElementTree.ParseError:
        root = None
    methods = [] if root is None else [m.get("Algorithm", "") for m in root.iter(f"{_XMLENC}EncryptionMethod")]
    if root is None or any(method not in _FONT_OBFUSCATION for method in methods):
        raise BadInputError(
            f"{name} is DRM-protected (its META-INF/encryption.xml encrypts the content): "
            "give a DRM-free copy of the book."
        )


def _toc_titles(toc, out: dict[str, str] | None = None) -> dict[str, str]:
    """File name -> the first TOC title that points into it (nested sections included).

    ebooklib gives a list of ``Link``s and ``(Section, children)`` pairs, or a lone ``Link``.
    """
    out = {} if out is None else out
    for entry in toc if isinstance(toc, list) else [toc]:
        node, children = entry if isinstance(entry, tuple) and len(entry) == 2 else (entry, [])
        href, title = getattr(node, "href", "") or "", getattr(node, "title", "") or ""
        if href and title:  # keyed by the file's path and, for navigation in another folder, its bare name
            path = href.split("#")[0]
            out.setdefault(posixpath.normpath(path), title)
            out.setdefault(posixpath.basename(path), title)
        _toc_titles(list(children), out)
    return out


_BLOCK_TAGS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "blockquote", "div", "pre", "dt", "dd", "td", "th",
               "figcaption", "caption", "section", "article", "aside", "body", "tr"}
_SKIP_TAGS = {"head", "script", "style", "svg", "math", "nav", "rt", "rp"}
_VOID_TAGS = {"br", "img", "hr", "meta", "link", "input", "wbr", "col", "area", "source"}
_NOTE_TYPES = {"footnote", "endnote", "rearnote", "noteref", "pagebreak"}  # note marks and notes are not read inline


class _HtmlText(HTMLParser):
    """XHTML to paragraphs: each block element's text is one paragraph; <br> is a line break."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.first_heading = ""
        self._parts: list[str] = []
        self._skipping: list[str] = []  # the open elements inside a skipped one (head, script, a footnote)
        self._heading = False

    def handle_starttag(self, tag, attrs):
        if self._skipping or tag in _SKIP_TAGS or _NOTE_TYPES & set((dict(attrs).get("epub:type") or "").split()):
            if tag not in _VOID_TAGS:
                self._skipping.append(tag)
        elif tag in _BLOCK_TAGS:
            self._flush()
            self._heading = tag[0] == "h" and tag[1:].isdigit()
        elif tag == "br":
            self._parts.append("\n")

    def handle_endtag(self, tag):
        if self._skipping:
            if tag == self._skipping[-1]:
                self._skipping.pop()
        elif tag in _BLOCK_TAGS:
            self._flush()

    def handle_data(self, data):
        if not self._skipping:
            self._parts.append(data)

    def close(self):
        super().close()
        self._flush()

    def _flush(self) -> None:
        text = " ".join("".join(self._parts).split())
        self._parts = []
        if text:
            if self._heading and not self.first_heading:
                self.first_heading = text
            self.blocks.append(Block(text, self.getpos()[0], markup=False))
        self._heading = False
