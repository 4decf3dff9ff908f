"""Compare sentence segmenters on Vesper's table of hard cases, and on speed.

Accuracy: exact sentence lists on tests/test_sentences.py's ``CASES`` (abbreviations, decimals, ellipses,
dialogue, URLs, CJK, Spanish, Hindi). Speed: 200 KB with no punctuation, and 100 KB of prose.
The candidates other than sentencex (the one Vesper uses) are not dependencies; install them to run this:

    .venv/bin/pip install pysbd syntok sentence-splitter blingfire
    .venv/bin/python benchmarks/segmenters.py

Writes benchmarks/results/segmenters.md (the table copied into docs/measurements.md).
"""

from __future__ import annotations

import importlib.metadata
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.test_sentences import CASES  # noqa: E402


def _pysbd(lang, text):
    import pysbd

    return pysbd.Segmenter(language=lang, clean=False).segment(text)


def _sentencex(lang, text):
    from sentencex import segment

    return list(segment(lang, text))


def _syntok(lang, text):
    from syntok import segmenter

    return ["".join(t.spacing + t.value for t in s) for p in segmenter.analyze(text) for s in p]


def _sentence_splitter(lang, text):
    from sentence_splitter import SentenceSplitter

    return SentenceSplitter(language=lang).split(text)


def _blingfire(lang, text):
    import blingfire

    return blingfire.text_to_sentences(text).split("\n")


CANDIDATES = {"sentencex": _sentencex, "pysbd": _pysbd, "syntok": _syntok, "sentence-splitter": _sentence_splitter,
              "blingfire": _blingfire}


def _seconds(split, text: str) -> float:
    start = time.perf_counter()
    split("en", text)
    return time.perf_counter() - start


def measure(name: str, split) -> dict:
    failures = []
    for lang, text, expected in CASES:
        try:
            got = [s.strip() for s in split(lang, text) if s.strip()]
        except Exception as exc:  # a segmenter that does not know the language counts as wrong
            got = [f"error: {type(exc).__name__}"]
        if got != expected:
            failures.append(text[:28])
    return {"name": name, "version": importlib.metadata.version(name), "correct": len(CASES) - len(failures),
            "no_punct_s": _seconds(split, "word " * 40_000),
            "prose_s": _seconds(split, "Dr. Smith arrived at 10:30 a.m. and said hello. " * 2_000),
            "failures": failures}


def main() -> None:
    rows = []
    for name, split in CANDIDATES.items():
        try:
            rows.append(measure(name, split))
        except ImportError:
            print(f"{name}: not installed, skipped")
    lines = [f"| segmenter | correct of {len(CASES)} | 200 KB no punctuation (s) | 100 KB prose (s) | wrong on |",
             "|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (-r["correct"], r["prose_s"])):
        lines.append(f"| {r['name']} {r['version']} | {r['correct']} | {r['no_punct_s']:.3f} | {r['prose_s']:.3f} | "
                     f"{'; '.join(r['failures']) or '-'} |")
    table = "\n".join(lines)
    print(table)
    out = Path(__file__).parent / "results" / "segmenters.md"
    out.write_text(table + "\n")


if __name__ == "__main__":
    main()
